"""Storage room: schema versions and upgrades — one ``schema_version`` row per component, ordered idempotent steps.

A component (the journal, the account store) owns some tables. Its version is the row
``schema_version(component, version)``; version 1 is the schema fanout made before versions were recorded.
:func:`ensure_schema`, run whenever a component opens a database:

- fresh database (none of its tables, no row): creates the current tables and records the latest version;
- a row older than the latest, or no row but the tables are there (made by a fanout from before versions:
  adopted as version 1): creates tables that are missing, runs the steps above that version in order and
  records the latest version, all in one transaction;
- a row newer than this fanout knows: :class:`SchemaVersionError` naming both versions (nothing is changed);
- the latest version: nothing (one SELECT).

Upgrades are serialised between processes: on PostgreSQL by a transaction-scoped advisory lock, on SQLite by
``BEGIN IMMEDIATE`` (the database's write lock). Both engines run DDL inside the transaction, so a failed step
leaves the database as it was.

A step adds what its version introduced and must be idempotent (a table created since it was written, from the
current definitions, may already hold it): :func:`create_table`, :func:`add_column` and :func:`widen_to_text` are
such steps. DEVELOPERS.md
("Changing the database schema") says how to add one.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.schema import CreateColumn

from storage.database import DatabaseUrlError, open_engine

log = logging.getLogger("fanout.storage")

version_metadata = MetaData()
schema_version = Table(
    "schema_version", version_metadata,
    Column("component", String(32), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
)


class SchemaVersionError(DatabaseUrlError):
    """The database was made by a newer fanout (its schema version is above the ones this fanout knows)."""


@dataclass(frozen=True, slots=True)
class Step:
    """Upgrade to ``version``: ``apply(connection)`` inside the upgrade transaction; idempotent."""

    version: int
    description: str
    apply: Callable[[Connection], None]


@dataclass(frozen=True, slots=True)
class Component:
    """A set of tables versioned together.

    name: the ``schema_version.component`` key (e.g. ``journal``).
    metadata: the current table definitions (what a fresh database gets).
    steps: upgrades from version 2 on, in order, one per version; the latest version is the last step's (1 without).
    """

    name: str
    metadata: MetaData
    steps: Sequence[Step] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        numbers = [s.version for s in self.steps]
        if numbers != list(range(2, len(numbers) + 2)):
            raise ValueError(f"schema component {self.name}: steps must be versions 2, 3, … in order, got {numbers}")

    @property
    def latest(self) -> int:
        return self.steps[-1].version if self.steps else 1


def create_table(table: Table) -> Callable[[Connection], None]:
    """A step creating ``table`` (its current definition) unless it exists."""

    def apply(conn: Connection) -> None:
        table.create(conn, checkfirst=True)

    return apply


def add_column(table: Table, column_name: str) -> Callable[[Connection], None]:
    """A step adding ``table.c[column_name]`` (its current definition) unless the table has it.

    The column must be nullable or have a server default (existing rows need a value)."""

    def apply(conn: Connection) -> None:
        column = table.c[column_name]
        if column_name in {c["name"] for c in inspect(conn).get_columns(table.name)}:
            return
        ddl = CreateColumn(column).compile(dialect=conn.dialect)
        conn.execute(text(f"ALTER TABLE {conn.dialect.identifier_preparer.quote(table.name)} ADD COLUMN {ddl}"))

    return apply


def widen_to_text(table: Table, column_name: str) -> Callable[[Connection], None]:
    """A step making a VARCHAR(n) column TEXT: PostgreSQL enforces the length, SQLite never did (nothing to do)."""

    def apply(conn: Connection) -> None:
        if conn.dialect.name == "postgresql":
            quote = conn.dialect.identifier_preparer.quote
            conn.execute(text(f"ALTER TABLE {quote(table.name)} ALTER COLUMN {quote(column_name)} TYPE TEXT"))

    return apply


def _lock_key(text_key: str) -> int:
    """A stable signed 64-bit key for PostgreSQL advisory locks."""
    return int.from_bytes(hashlib.sha256(text_key.encode()).digest()[:8], "big", signed=True)


def _read_version(conn: Connection, name: str) -> int | None:
    if not inspect(conn).has_table(schema_version.name):
        return None
    row = conn.execute(select(schema_version.c.version).where(schema_version.c.component == name)).first()
    return None if row is None else int(row[0])


def _check_not_newer(component: Component, found: int | None) -> None:
    if found is not None and found > component.latest:
        raise SchemaVersionError(
            f"DATABASE_URL holds a {component.name} schema of version {found}, made by a newer fanout; this fanout "
            f"knows versions up to {component.latest}. Upgrade fanout (pip install -U fanout) or use another "
            f"database; nothing was changed")


def _begin_exclusive(conn: Connection) -> None:
    """Serialise upgraders: PostgreSQL advisory lock for this transaction, SQLite's write lock."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key("fanout schema_version")})
    elif conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def ensure_schema(engine: Engine, component: Component) -> int:
    """Create or upgrade ``component``'s tables on ``engine``; returns the version found (0 for a fresh database).

    Raises :class:`SchemaVersionError` when the database is newer than this fanout."""
    with engine.connect() as conn:
        found = _read_version(conn, component.name)
    _check_not_newer(component, found)
    if found == component.latest:
        return found
    with engine.connect() as conn:
        _begin_exclusive(conn)
        found = _read_version(conn, component.name)  # another process may have upgraded meanwhile
        _check_not_newer(component, found)
        if found == component.latest:
            conn.rollback()
            return found
        existing = set(inspect(conn).get_table_names()) & set(component.metadata.tables)
        start = found if found is not None else (1 if existing else None)
        version_metadata.create_all(conn)
        component.metadata.create_all(conn, checkfirst=True)
        if start is not None:
            for step in component.steps:
                if step.version > start:
                    log.info("🗄️ %s schema: upgrading to version %d (%s)", component.name, step.version,
                             step.description)
                    step.apply(conn)
        now = time.time()
        if found is None:
            conn.execute(schema_version.insert().values(component=component.name, version=component.latest,
                                                        updated_at=now))
        else:
            conn.execute(update(schema_version).where(schema_version.c.component == component.name)
                         .values(version=component.latest, updated_at=now))
        conn.commit()
    if start is not None:
        log.info("🗄️ %s schema: version %d → %d%s", component.name, start, component.latest,
                 " (adopted: made before schema versions were recorded)" if found is None else "")
    return found if found is not None else (start or 0)


def open_versioned(url: str, component: Component) -> Engine:
    """An engine for ``url`` with ``component``'s tables created or upgraded (:func:`ensure_schema`); on failure
    the engine is disposed and the error raised."""
    engine = open_engine(url)
    try:
        ensure_schema(engine, component)
    except BaseException:
        engine.dispose()
        raise
    return engine
