"""Shared CLI options: sizing/risk flags that build an ExecutionConfig, and simulated-account balances."""

from __future__ import annotations

import argparse
from dataclasses import replace

from engine.config import ExecutionConfig
from fanout.balances import parse_balances, read_accounts_file


def add_sizing_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sizing and risk (defaults from the design document)")
    g.add_argument("--leverage", type=int, help="leverage (default 20)")
    g.add_argument("--position-pct", type=float, help="margin as %% of available balance (default 2)")
    g.add_argument("--max-position", type=float, help="margin cap per trade in USDT (default 100)")
    g.add_argument("--min-balance", type=float, help="skip accounts below this balance (default 10)")
    g.add_argument("--daily-loss-pct", type=float, help="daily realised-loss limit in %% of equity (default 5, 0=off)")
    g.add_argument("--max-open", type=int, help="max open positions per account (default 5, 0=off)")
    g.add_argument("--min-rr", type=float, help="minimum reward:risk of a signal (default 0=off)")


def add_balance_options(p: argparse.ArgumentParser, default: str | None = "1000,5000,500") -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--balances", default=None, help=f"simulated account balances, comma separated (default {default})")
    g.add_argument("--accounts", metavar="FILE", help="simulated accounts file: CSV name,balance or JSON")


def balances_from_args(args: argparse.Namespace, default: str = "1000,5000,500") -> dict[str, float]:
    if getattr(args, "accounts", None):
        return read_accounts_file(args.accounts)
    return parse_balances(args.balances if args.balances is not None else default)


def config_from_args(args: argparse.Namespace, base: ExecutionConfig | None = None) -> ExecutionConfig:
    cfg = base or ExecutionConfig()
    changes = {}
    if args.leverage is not None:
        changes["leverage"] = args.leverage
    if args.position_pct is not None:
        changes["position_size_pct"] = args.position_pct / 100
    if args.max_position is not None:
        changes["max_position_usd"] = args.max_position
    if args.min_balance is not None:
        changes["min_balance_usd"] = args.min_balance
    if args.daily_loss_pct is not None:
        changes["daily_loss_limit_pct"] = args.daily_loss_pct / 100
    if args.max_open is not None:
        changes["max_open_positions"] = args.max_open
    if args.min_rr is not None:
        changes["min_reward_risk"] = args.min_rr
    return replace(cfg, **changes) if changes else cfg
