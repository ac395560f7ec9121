"""Tests room: re-record tests/cassettes/*.yaml (local stand-in by default, --live-demo for Binance demo trading).

    .venv/bin/python scripts/record_cassettes.py [SCENARIO ...] [--live-demo] [--env-file production.env]

Scenario names starting with ``cli_`` are whole `fanout` commands (tests/standin/cli_record.py); without names
every scenario is recorded, the ``cli_`` ones too (not with --live-demo).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.standin.cli_record import CLI_SCENARIOS  # noqa: E402
from tests.standin.cli_record import main as cli_main  # noqa: E402
from tests.standin.record import main  # noqa: E402
from tests.standin.scenarios import SCENARIOS  # noqa: E402


def record(argv: list[str]) -> int:
    cli = [a for a in argv if a in CLI_SCENARIOS]
    rest = [a for a in argv if a not in CLI_SCENARIOS]
    named = any(a in SCENARIOS for a in rest)
    code = main(rest) if named or not cli else 0
    if cli or not (named or "--live-demo" in rest or {"-h", "--help"} & set(rest)):
        port = argparse.ArgumentParser(add_help=False)
        port.add_argument("--port", type=int, default=0)
        code = code or cli_main(cli, port.parse_known_args(rest)[0].port)
    return code


if __name__ == "__main__":
    sys.exit(record(sys.argv[1:]))
