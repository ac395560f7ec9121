"""CLI room: shared options: sizing/risk flags that build an ExecutionConfig, simulated-account balances, fees."""

from __future__ import annotations

import argparse
from dataclasses import replace

from engine.config import ExecutionConfig
from fanout import argtypes
from fanout.balances import DEFAULT_BALANCES, parse_balances, read_accounts_file
from simulator.fills import MAKER_FEE, TAKER_FEE

_SIZING_OPTIONS = (  # flag, type, help
    ("--leverage", argtypes.LEVERAGE, "leverage 1..125 (default 20)"),
    ("--position-pct", argtypes.number(low=0, high=100, low_open=True), "margin as %% of available balance (default 2)"),
    ("--max-position", argtypes.number(low=0, low_open=True), "margin cap per trade in USDT (default 100)"),
    ("--min-balance", argtypes.number(low=0), "skip accounts below this balance (default 10)"),
    ("--daily-loss-pct", argtypes.number(low=0, high=100, high_open=True),
     "daily realised-loss limit in %% of equity (default 5, 0=off)"),
    ("--max-open", argtypes.whole(low=0), "max open positions per account (default 5, 0=off)"),
    ("--min-rr", argtypes.number(low=0), "minimum reward:risk of a signal (default 0=off)"),
)


def add_sizing_options(p: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """The sizing / risk flags (``skip``: flags the command defines otherwise, as ``fanout sweep``'s grid axes)."""
    g = p.add_argument_group("sizing and risk (defaults from the design document)")
    for flag, kind, text in _SIZING_OPTIONS:
        if flag not in skip:
            g.add_argument(flag, type=kind, help=text)


def add_balance_options(p: argparse.ArgumentParser, default: str | None = DEFAULT_BALANCES) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--balances", type=argtypes.balances, default=None,
                   help=f"simulated account balances, comma separated (default {default})")
    g.add_argument("--accounts", metavar="FILE", help="simulated accounts file: CSV name,balance or JSON")


def balances_from_args(args: argparse.Namespace, default: str = DEFAULT_BALANCES) -> dict[str, float]:
    """The --accounts file, else --balances (checked when parsed), else ``default``."""
    if getattr(args, "accounts", None):
        return read_accounts_file(args.accounts)
    return args.balances if args.balances is not None else parse_balances(default)


def add_fee_options(p: argparse.ArgumentParser, *, maker: bool = True) -> None:
    """``--taker-fee`` (and ``--maker-fee``): fee fractions of the simulated venue, defaults from simulator/fills.py."""
    p.add_argument("--taker-fee", type=argtypes.FEE, default=TAKER_FEE,
                   help=f"taker fee fraction (default {TAKER_FEE} = {TAKER_FEE * 100:g}%%)")
    if maker:
        p.add_argument("--maker-fee", type=argtypes.FEE, default=MAKER_FEE,
                       help=f"maker fee fraction (default {MAKER_FEE} = {MAKER_FEE * 100:g}%%)")


# CLI flag → (ExecutionConfig field, conversion); percentages on the command line, fractions in the config
_CONFIG_FLAGS = {
    "leverage": ("leverage", int),
    "position_pct": ("position_size_pct", lambda v: v / 100),
    "max_position": ("max_position_usd", float),
    "min_balance": ("min_balance_usd", float),
    "daily_loss_pct": ("daily_loss_limit_pct", lambda v: v / 100),
    "max_open": ("max_open_positions", int),
    "min_rr": ("min_reward_risk", float),
}


def config_from_args(args: argparse.Namespace, base: ExecutionConfig | None = None) -> ExecutionConfig:
    """The base config (defaults or the environment's) with the sizing / risk flags that were given."""
    changes = {
        name: convert(getattr(args, flag))
        for flag, (name, convert) in _CONFIG_FLAGS.items()
        if getattr(args, flag, None) is not None
    }
    cfg = base or ExecutionConfig()
    return replace(cfg, **changes) if changes else cfg
