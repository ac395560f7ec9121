"""`fanout backtest`: replay signals over candles on simulated accounts and write the run's files."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from analysis import format_table, write_outputs
from fanout import argtypes
from fanout.options import (
    add_balance_options,
    add_fee_options,
    add_sizing_options,
    balances_from_args,
    config_from_args,
)
from fanout.signals_file import read_signals
from marketdata import paths
from marketdata.cache import cache_path
from marketdata.candles import CandleError, Candles, load_candles
from marketdata.rules import MarketRules
from marketdata.synthetic import demo_signals, generate_candles
from simulator.parallel import default_workers, run_backtest

log = logging.getLogger("fanout.backtest")
DEMO_SEED = 7
DEMO_DAYS = 30
DEMO_START = "2024-01-01"
DEMO_SYMBOL = "BTC/USDT:USDT"  # the demo's synthetic candles, and --symbol's default


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backtest", help="backtest signals on simulated accounts (no arguments: offline demo)",
                       description="Backtest signals over candles on simulated Binance USDⓈ-M accounts. With no "
                                   "arguments, runs the bundled demo offline.")
    add_data_options(p)
    add_balance_options(p)
    add_sizing_options(p)
    add_fee_options(p)
    p.add_argument("--slippage-bps", type=argtypes.SLIPPAGE_BPS, default=0.0,
                   help="market-fill slippage in basis points (0..1000)")
    p.add_argument("--workers", type=argtypes.whole(low=1), default=None, metavar="N",
                   help="worker processes the accounts are shared out to (default: this machine's CPUs; 1: one "
                        "process); the output files are the same for any N")
    p.add_argument("--out", metavar="DIR", default="out/backtest", help="output folder (default out/backtest)")
    p.add_argument("--json", action="store_true", help="print summary.json instead of the table")
    p.add_argument("--no-plot", action="store_true", help="skip equity.png")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def add_data_options(p: argparse.ArgumentParser) -> None:
    """--candles, --fine-candles, --symbol, --timeframe, --signals (backtest and sweep)."""
    p.add_argument("--candles", metavar="PATH", help="candles CSV/Parquet (default: data/cache, else synthetic)")
    p.add_argument("--fine-candles", metavar="PATH", help="finer candles (e.g. 1m under 1h) to order intra-candle hits")
    p.add_argument("--symbol", type=argtypes.symbol, default=DEMO_SYMBOL,
                   help=f"symbol of the candles / cache (default {DEMO_SYMBOL})")
    p.add_argument("--timeframe", type=argtypes.timeframe, default="1m",
                   help="timeframe of the cached candles to read (default 1m)")
    p.add_argument("--signals", metavar="PATH", help="signals CSV or JSON lines (default: bundled demo signals)")


@dataclass(frozen=True, slots=True)
class Inputs:
    """What a backtest replays: candles (and finer ones), signals, the market rules, and where they came from."""

    candles: Candles
    fine: Candles | None
    signals: list
    rules: MarketRules
    meta: dict  # how to find the candles again (summary.json)


def load_inputs(args: argparse.Namespace, accounts: int) -> Inputs:
    """Read and check the candles, signals and rules of ``args`` (add_data_options), saying on stderr what they
    are; a refusal raises before anything runs."""
    candles, origin, meta = _candles(args)
    fine = load_candles(args.fine_candles, symbol=candles.symbol) if args.fine_candles else None
    rules = MarketRules.load()
    rules.check_symbols([candles.symbol])
    if args.signals:
        signals = read_signals(args.signals)
        sig_origin = f"signals from {args.signals}"
        if not signals:
            raise ValueError(f"--signals {args.signals}: no signals in the file")
    else:
        signals = read_signals(paths.demo_signals_file())
        sig_origin = f"bundled demo signals {paths.demo_signals_file()}"
        t0, t1 = int(candles.time[0]), int(candles.time[-1])
        if not any(t0 <= s.time <= t1 for s in signals):
            from engine.signal import parse_signal

            signals = [parse_signal(d) for d in demo_signals(candles)]
            sig_origin = f"demo signals derived from the candles ({len(signals)}; bundled ones are outside them)"
    print(f"📏 market rules: snapshot {rules.name} ({rules.path})", file=sys.stderr)
    note = rules.fallback_note([candles.symbol])
    if note:
        print(f"⚠️  {note}", file=sys.stderr)
    print(f"📈 {origin}: {len(candles):,} candles {candles.timeframe} {candles.symbol}", file=sys.stderr)
    print(f"📨 {sig_origin}: {len(signals)} signals; {accounts} accounts", file=sys.stderr)
    return Inputs(candles, fine, signals, rules, meta)


def _candles(args: argparse.Namespace) -> tuple[Candles, str, dict]:
    """The candles to replay, a description, and how to find them again (for summary.json)."""
    symbol = args.symbol
    if args.candles:
        candles = load_candles(args.candles, symbol=symbol)
        return candles, f"candles from {args.candles}", {
            "path": str(Path(args.candles).resolve()), "timeframe": candles.timeframe, "symbol": symbol}
    cached = cache_path(symbol, args.timeframe)
    if cached.exists():
        candles = load_candles(cached, symbol=symbol, timeframe=args.timeframe)
        return candles, f"real candles from cache {cached}", {
            "path": str(cached.resolve()), "timeframe": args.timeframe, "symbol": symbol}
    if symbol != DEMO_SYMBOL or args.timeframe != "1m":
        raise CandleError(str(cached), "no cached candles; run `fanout data download "
                          f"{symbol.split(':')[0]} {args.timeframe} --since YYYY-MM-DD` first")
    candles = generate_candles(symbol=symbol, start=DEMO_START, minutes=DEMO_DAYS * 24 * 60, seed=DEMO_SEED)
    return candles, f"SYNTHETIC candles generated by fanout (seed {DEMO_SEED}, {DEMO_DAYS} days of 1m BTC/USDT)", {
        "seed": DEMO_SEED, "start": DEMO_START, "minutes": DEMO_DAYS * 24 * 60, "timeframe": "1m", "symbol": symbol}


def run(args: argparse.Namespace) -> int:
    """Everything is read and checked before the run starts: a refusal (the CLI's error line) writes nothing."""
    balances = balances_from_args(args)
    config = config_from_args(args)
    workers = min(args.workers or default_workers(), len(balances))
    data = load_inputs(args, len(balances))
    if workers > 1:
        print(f"⚙️  {len(balances)} accounts on {workers} worker processes", file=sys.stderr)
    candles, fine, signals, rules, meta = data.candles, data.fine, data.signals, data.rules, data.meta
    logging.getLogger("fanout.executor").setLevel(logging.WARNING)
    logging.getLogger("fanout.watcher").setLevel(logging.WARNING)
    result = run_backtest(
        [candles], signals, balances, config, workers=workers, fine=[fine] if fine is not None else None,
        rules=rules, taker_fee=args.taker_fee, maker_fee=args.maker_fee, slippage_bps=args.slippage_bps,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    summary = write_outputs(result, args.out, plot=not args.no_plot, candles_meta=meta, market_rules=rules.describe())
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        if result.synthetic:
            print("⚠️  SYNTHETIC candles (generated, not market data) — `fanout data download` for real ones")
        print(format_table(summary))
        files = "trades.csv, skipped.csv, equity.csv, summary.json" + ("" if args.no_plot else ", equity.png")
        print(f"\n📁 {Path(args.out)}/: {files}")
    return 0
