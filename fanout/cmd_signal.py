"""`fanout signal`: execute one signal now — offline (simulated accounts filling at the entry price), paper or live.

The mode is --mode, else TRADING_MODE from the environment / production.env, else offline. Alerts go to Discord
whenever DISCORD_WEBHOOK_URL is set.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys

from engine import Account, MultiAccountExecutor
from engine.results import SignalSummary
from engine.signal import Signal, SignalError, parse_signal
from fanout import argtypes
from fanout.options import (
    add_balance_options,
    add_fee_options,
    add_sizing_options,
    balances_from_args,
    config_from_args,
)
from live.env import DEFAULT_ENV_FILE
from simulator.venue import SimulatedVenue
from storage.instance_lock import InstanceLocked


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("signal", help="execute one signal on every account",
                       description="Execute one signal on every account. Offline by default: simulated accounts "
                                   "(--balances) filling at the entry price.")
    p.add_argument("symbol", help="BTCUSDT, BTC/USDT or BTC/USDT:USDT")
    p.add_argument("side", help="long/short (or buy/sell)")
    p.add_argument("--entry", required=True, type=argtypes.PRICE, help="entry price")
    p.add_argument("--sl", "--stop-loss", dest="sl", required=True, type=argtypes.PRICE,
                   help="stop-loss price (below entry for a long, above for a short)")
    p.add_argument("--tp", "--take-profit", dest="tp", required=True, type=argtypes.PRICE,
                   help="take-profit price (above entry for a long, below for a short)")
    p.add_argument("--id", help="signal id (default: derived from content and time)")
    p.add_argument("--signal-leverage", type=argtypes.LEVERAGE, dest="signal_leverage",
                   help="leverage override for this signal (1..125)")
    add_balance_options(p)
    add_sizing_options(p)
    add_fee_options(p, maker=False)
    p.add_argument("--mode", choices=["offline", "paper", "live"],
                   help="offline simulation at the entry price, paper (live prices, persisted) or live "
                        "(default: TRADING_MODE, else offline)")
    p.add_argument("--env-file", default=DEFAULT_ENV_FILE, help=f"settings file (default ./{DEFAULT_ENV_FILE})")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


# the signal's field → the argument that set it, so a refusal names what the user typed
_ARGUMENT_OF = {"symbol": "SYMBOL", "side": "SIDE", "entry": "--entry", "stop_loss": "--sl", "take_profit": "--tp",
                "id": "--id", "leverage": "--signal-leverage"}


def signal_from_args(args: argparse.Namespace, time_ms: int | None = None) -> Signal:
    try:
        return parse_signal({
            "symbol": args.symbol, "side": args.side, "entry": args.entry, "stop_loss": args.sl,
            "take_profit": args.tp, "id": args.id, "leverage": args.signal_leverage, "time": time_ms,
        })
    except SignalError as exc:
        argument = _ARGUMENT_OF.get(exc.field)
        raise SignalError(exc.field, str(exc).removeprefix(f"signal field '{exc.field}': ")
                          + (f" ({argument})" if argument else "")) from None


def format_summary(signal: Signal, summary: SignalSummary) -> str:
    base = signal.symbol.split("/")[0]
    lines = [
        f"Signal {signal.id}: {signal.display_symbol} {signal.side} entry {signal.entry:,.2f} "
        f"SL {signal.stop_loss:,.2f} TP {signal.take_profit:,.2f}"
    ]
    for r in summary.results:
        if r.ok:
            extra = f" ⚠️ {r.reason}" if r.reason else ""
            lines.append(
                f"✅ {r.account}: margin ${r.margin:,.2f}, notional ${r.notional:,.2f}, {r.leverage}x, "
                f"quantity {r.quantity:g} {base} @ {r.fill_price:,.2f}, SL {r.stop_loss:,.2f}, TP {r.take_profit:,.2f}{extra}"
            )
        else:
            icon = "⏭️" if r.status == "skipped" else "❌"
            lines.append(f"{icon} {r.account}: {r.status} — {r.reason}")
    lines.append(
        f"📊 {summary.succeeded}/{summary.total} succeeded — total margin ${summary.total_margin:,.2f}, "
        f"total notional ${summary.total_notional:,.2f}, total quantity {summary.total_quantity:g} {base}"
    )
    return "\n".join(lines)


async def execute_offline(signal: Signal, balances: dict[str, float], config, taker_fee: float,
                          notifier=None) -> SignalSummary:
    venue = SimulatedVenue.from_snapshot(taker_fee=taker_fee)
    if signal.symbol not in venue.rules.markets:
        known = ", ".join(sorted(s.split("/")[0] for s in venue.rules.markets))
        raise ValueError(f"SYMBOL {signal.display_symbol}: not in the market-rules snapshot the simulated "
                         f"accounts use (USDT perpetuals of {known})")
    venue.set_price(signal.symbol, signal.entry)
    accounts = [Account(name, venue.add_account(name, bal)) for name, bal in balances.items()]
    return await MultiAccountExecutor(accounts, config, notifier=notifier).execute(signal)


async def _execute(args: argparse.Namespace) -> tuple[Signal, SignalSummary | None, str]:
    from live.discord import build_notifier
    from live.env import load_env

    env = load_env(args.env_file)
    mode = (args.mode or env.get("TRADING_MODE") or "offline").strip().lower()
    if mode not in ("offline", "paper", "live"):
        raise ValueError(f"TRADING_MODE must be paper or live (unset: offline), got {mode!r}")
    signal = signal_from_args(args)  # refused before anything connects (the real one gets its time below)
    notifier = build_notifier(env)
    try:
        if mode == "offline":
            config = config_from_args(args)
            return signal, await execute_offline(signal, balances_from_args(args), config, args.taker_fee,
                                                 notifier), mode
        import time

        from engine import ExecutionConfig
        from fanout.modes import build_live, build_paper

        signal = signal_from_args(args, None if args.id else int(time.time() * 1000))
        config = config_from_args(args, ExecutionConfig.from_env(env))
        if mode == "live":
            runtime = await build_live(env, config, notifier)
        else:
            balances = balances_from_args(args) if (args.balances or args.accounts) else None
            runtime = await build_paper(env, config, notifier, balances=balances, taker_fee=args.taker_fee)
        try:
            return signal, await runtime.service.handle(signal, "cli"), mode
        finally:
            await runtime.close()
    finally:
        closer = getattr(notifier, "aclose", None)
        if closer is not None:
            await closer()


def run(args: argparse.Namespace) -> int:
    try:
        # with --json, stdout carries only the JSON document: the live banner and the like go to stderr
        with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
            signal, summary, mode = asyncio.run(_execute(args))
    except InstanceLocked as exc:  # a bot runs on this database: it trades, not a second process
        print(f"error: {exc}", file=sys.stderr)
        return 3
    if summary is None:
        print(f"signal {signal.id} was already executed ({mode}); not executing it again", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        if mode != "offline":
            print(f"[{mode}]")
        print(format_summary(signal, summary))
    return 1 if any(r.status == "failed" for r in summary.results) else 0
