"""The `fanout` console script: one sub-command module per job, each exposing ``register(subparsers)``."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Each module defines register(subparsers) which adds its sub-command and sets ``func=handler(args) -> int``.
COMMAND_MODULES = [
    "fanout.cmd_backtest",
    "fanout.cmd_signal",
    "fanout.cmd_run",
    "fanout.cmd_accounts",
    "fanout.cmd_data",
    "fanout.cmd_report",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fanout",
        description="Execute one futures signal on many Binance USDⓈ-M accounts: backtest, paper and live.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s" if args.verbose else "%(message)s",
        stream=sys.stderr,
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
