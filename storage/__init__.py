"""Storage room: the database behind paper and live (journal of signals and executions, state), SQLite or PostgreSQL."""
