"""Analysis room: run loading, charts, sizing studies, paper-vs-backtest (reads runs and the journal, trades nothing)."""
