"""The `fanout` console script: one sub-command module per job, each exposing ``register(subparsers)``.

Every command runs inside one error boundary (fanout/errors.py): whatever it raises ends as a single ``error:``
line and an exit code, a bad option as argparse's ``error: argument --OPTION: …``; ``-v`` adds the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from fanout.errors import report, secret_values

# Each module defines register(subparsers) which adds its sub-command and sets ``func=handler(args) -> int``.
COMMAND_MODULES = [
    "fanout.cmd_backtest",
    "fanout.cmd_sweep",
    "fanout.cmd_signal",
    "fanout.cmd_run",
    "fanout.cmd_accounts",
    "fanout.cmd_data",
    "fanout.cmd_report",
]
_VERBOSE_HELP = "debug logging, and the traceback of an error"


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line refusal: ``error: argument --leverage: …`` and where the options are listed."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message} (`{self.prog} --help` lists the options)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fanout",
        description="Execute one futures signal on many Binance USDⓈ-M accounts: backtest, paper and live.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help=_VERBOSE_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    _accept_verbose_anywhere(parser)
    return parser


def _accept_verbose_anywhere(parser: argparse.ArgumentParser) -> None:
    """``fanout signal … -v`` works as ``fanout -v signal …`` does (on every sub-command, nested ones too)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in {id(p): p for p in action.choices.values()}.values():
                if "--verbose" not in child._option_string_actions:
                    child.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                                       help=_VERBOSE_HELP)
                _accept_verbose_anywhere(child)


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit code (2: refused input, 1: failure, 130: interrupted)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a refused option (2), already printed
        return exc.code if isinstance(exc.code, int) else 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s" if args.verbose else "%(message)s",
        stream=sys.stderr,
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (Exception, KeyboardInterrupt) as exc:  # the one error boundary
        return report(exc, verbose=args.verbose, secrets=_secrets(args))


def _secrets(args: argparse.Namespace) -> list[str]:
    """Secret values the settings hold (the real environment and the command's --env-file), to mask in output."""
    settings: list[dict[str, str]] = [dict(os.environ)]
    env_file = getattr(args, "env_file", None)
    if env_file:
        try:
            from live.env import load_env

            settings.append(load_env(env_file, environ={}))
        except Exception:  # noqa: BLE001 — an unreadable file holds nothing to mask
            pass
    return secret_values(*settings)


if __name__ == "__main__":
    sys.exit(main())
