"""Where fanout keeps its files: the project's data/ folder (override with FANOUT_DATA_DIR)."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    return Path(os.environ.get("FANOUT_DATA_DIR") or PROJECT_ROOT / "data")


def cache_file(symbol: str, timeframe: str) -> Path:
    """data/cache/<BASE><QUOTE>-<tf>.csv, the layout `fanout data download` writes."""
    base_quote = symbol.split(":")[0].replace("/", "")
    return data_dir() / "cache" / f"{base_quote}-{timeframe}.csv"


def demo_signals_file() -> Path:
    return data_dir() / "demo_signals.csv"
