"""CLI room: shared options: sizing/risk flags that build an ExecutionConfig, simulated-account balances, fees."""

from __future__ import annotations

import argparse
from dataclasses import replace

from engine.config import ExecutionConfig
from fanout import argtypes
from fanout.balances import DEFAULT_BALANCES, parse_balances, read_accounts_file
from simulator.fills import MAKER_FEE, TAKER_FEE


def add_sizing_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sizing and risk (defaults from the design document)")
    g.add_argument("--leverage", type=argtypes.LEVERAGE, help="leverage 1..125 (default 20)")
    g.add_argument("--position-pct", type=argtypes.number(low=0, high=100, low_open=True),
                   help="margin as %% of available balance (default 2)")
    g.add_argument("--max-position", type=argtypes.number(low=0, low_open=True),
                   help="margin cap per trade in USDT (default 100)")
    g.add_argument("--min-balance", type=argtypes.number(low=0), help="skip accounts below this balance (default 10)")
    g.add_argument("--daily-loss-pct", type=argtypes.number(low=0, high=100, high_open=True),
                   help="daily realised-loss limit in %% of equity (default 5, 0=off)")
    g.add_argument("--max-open", type=argtypes.whole(low=0), help="max open positions per account (default 5, 0=off)")
    g.add_argument("--min-rr", type=argtypes.number(low=0), help="minimum reward:risk of a signal (default 0=off)")


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
