"""Market-data room: where fanout keeps its files: the project's data/ folder, or FANOUT_DATA_DIR when set.

Everything below the data folder is found through these functions (read at call time, so a changed
FANOUT_DATA_DIR takes effect at once): the market-rules snapshot, the download cache, the demo signals. The
layout of files inside the cache belongs to marketdata/cache.py.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BUNDLED_DATA = PROJECT_ROOT / "data"
"""The checkout's data/ folder, with the files fanout ships (market_rules.json, demo_signals.csv)."""


def data_dir() -> Path:
    """FANOUT_DATA_DIR when set (installed copies, Docker), else the checkout's data/."""
    return Path(os.environ.get("FANOUT_DATA_DIR") or BUNDLED_DATA)


def cache_dir() -> Path:
    """Where `fanout data download` stores series and backtests look for them: ``<data>/cache``."""
    return data_dir() / "cache"


def market_rules_file() -> Path:
    """The market-rules snapshot (``python -m marketdata.rules`` builds it): ``<data>/market_rules.json``."""
    return data_dir() / "market_rules.json"


def demo_signals_file() -> Path:
    return data_dir() / "demo_signals.csv"
