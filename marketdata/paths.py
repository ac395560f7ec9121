"""Market-data room: where fanout keeps its files: the project's data/ folder (override with FANOUT_DATA_DIR)."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    return Path(os.environ.get("FANOUT_DATA_DIR") or PROJECT_ROOT / "data")


def cache_dir() -> Path:
    """Where `fanout data download` stores candles and backtests look for them."""
    return data_dir() / "cache"


def cache_file(symbol: str, timeframe: str) -> Path:
    """<cache_dir>/<BASE><QUOTE>-<tf>.csv, the layout marketdata/download.py writes."""
    from marketdata.download import cache_path

    return cache_path(symbol, timeframe, cache_dir())


def demo_signals_file() -> Path:
    return data_dir() / "demo_signals.csv"
