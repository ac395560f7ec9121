"""Simulator room: the simulated Binance USDⓈ-M exchange, its one fill loop, the backtest runner and paper trading.

- ``venue.py`` — ``SimulatedVenue``: what all accounts share, THE fill loop (``apply_candle``), order updates for
  the watcher (``drain_updates``), the end-of-data close (``close_all``), saving / restoring (``to_state``).
- ``exchange.py`` — ``SimulatedExchange``: one account's ccxt face (the engine's Exchange port).
- ``account.py`` — ``SimulatedAccount``: one account's book and what fills do to it (``apply_candle``).
- ``fills.py`` — the fill rules, the one list of assumptions; ``scan.py`` — numpy first-crossing scans.
- ``records.py`` — positions, closed trades, orders (records read as ccxt dicts), trade rows.
- ``precision.py`` — memoised ccxt lookups.
- ``backtest.py`` — ``BacktestRunner``; ``parallel.py`` — ``run_backtest`` on worker processes.
- ``paper.py`` — ``PaperFeed`` (live prices into the venue); ``paper_session.py`` — ``PaperSession``, paper mode's
  side of the service (live's: live/session.py).
"""
