"""Tests room: re-record tests/cassettes/*.yaml (local stand-in by default, --live-demo for Binance demo trading).

    .venv/bin/python scripts/record_cassettes.py [SCENARIO ...] [--live-demo] [--env-file production.env]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.standin.record import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
