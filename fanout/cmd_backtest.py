"""`fanout backtest`: replay signals over candles on simulated accounts and write the run's files."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from analysis import format_symbol_table, format_table, write_outputs
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
from marketdata.dataset import DatasetError, SymbolData, gather, split_assignment
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
    """--candles, --symbols, --funding, --mark, --fine-candles, --symbol, --timeframe, --signals (backtest, sweep)."""
    p.add_argument("--candles", metavar="PATH", action="append", default=[],
                   help="candles CSV/Parquet; repeat for many symbols, SYMBOL=PATH to name the symbol, or a folder "
                        "of SYMBOL-….csv files (default: data/cache, else synthetic)")
    p.add_argument("--symbols", metavar="A,B,...", action="append", default=[],
                   help="symbols whose --timeframe candles are read from the download cache (with their cached "
                        "funding and mark prices)")
    p.add_argument("--funding", metavar="SYMBOL=PATH", action="append", default=[],
                   help="funding-rate file of a symbol (repeatable; columns symbol, fundingTime, fundingRate"
                        "[, markPrice]); default: one in a --candles folder or the cache, else 'funding unknown'")
    p.add_argument("--mark", metavar="SYMBOL=PATH", action="append", default=[],
                   help="mark-price candles of a symbol (repeatable); default: a …-mark… file in a --candles folder "
                        "or the cache, else candle prices stand in")
    p.add_argument("--fine-candles", metavar="PATH", action="append", default=[],
                   help="finer candles (e.g. 1m under 1h) to order intra-candle hits; SYMBOL=PATH with many symbols")
    p.add_argument("--symbol", type=argtypes.symbol, default=None,
                   help=f"symbol of a lone --candles file / of the cache (default {DEMO_SYMBOL})")
    p.add_argument("--timeframe", type=argtypes.timeframe, default="1m",
                   help="timeframe of the cached candles to read (default 1m)")
    p.add_argument("--signals", metavar="PATH", help="signals CSV or JSON lines (default: bundled demo signals)")


@dataclass(frozen=True, slots=True)
class Inputs:
    """What a backtest replays: each symbol's series (candles, funding, mark prices), finer candles, signals, the
    market rules, and where they came from."""

    series: list[SymbolData]
    fine: list[Candles]
    signals: list
    rules: MarketRules
    meta: dict  # how to find the candles again (summary.json)

    @property
    def candles(self) -> Candles:
        """The first symbol's candles (the only ones of a single-symbol run)."""
        return self.series[0].candles

    @property
    def all_candles(self) -> list[Candles]:
        return [s.candles for s in self.series]


def load_inputs(args: argparse.Namespace, accounts: int) -> Inputs:
    """Read and check the candles, signals and rules of ``args`` (add_data_options), saying on stderr what they
    are; a refusal raises before anything runs."""
    rules = MarketRules.load()
    series, meta = _series(args, rules)
    rules.check_symbols([s.symbol for s in series])
    fine = _fine(args, series)
    first = series[0].candles
    if args.signals:
        signals = read_signals(args.signals)
        sig_origin = f"signals from {args.signals}"
        if not signals:
            raise ValueError(f"--signals {args.signals}: no signals in the file")
    else:
        signals = read_signals(paths.demo_signals_file())
        sig_origin = f"bundled demo signals {paths.demo_signals_file()}"
        t0, t1 = int(first.time[0]), int(first.time[-1])
        if len(series) == 1 and not any(t0 <= s.time <= t1 for s in signals):
            from engine.signal import parse_signal

            signals = [parse_signal(d) for d in demo_signals(first)]
            sig_origin = f"demo signals derived from the candles ({len(signals)}; bundled ones are outside them)"
    print(f"📏 market rules: snapshot {rules.name} ({rules.path})", file=sys.stderr)
    note = rules.fallback_note([s.symbol for s in series])
    if note:
        print(f"⚠️  {note}", file=sys.stderr)
    for s in series:
        print(f"📈 {s.origin}: {len(s.candles):,} candles {s.candles.timeframe} {s.symbol}", file=sys.stderr)
    for s in series:
        if s.funding is not None:
            print(f"💸 {s.funding_origin}: {len(s.funding):,} funding events {s.symbol}", file=sys.stderr)
    for s in series:
        if s.mark is not None:
            print(f"🏷️  {s.mark_origin}: {len(s.mark):,} mark candles {s.symbol}", file=sys.stderr)
    if any(s.mark is not None for s in series):
        stand_in = [s.symbol for s in series if s.mark is None]
        if stand_in:
            print(f"🏷️  no mark prices for {', '.join(stand_in)}: candle prices stand in", file=sys.stderr)
    unknown = [s.symbol for s in series if s.funding is None]
    if unknown:
        print(f"💸 funding unknown for {', '.join(unknown)}: not simulated (no funding data; `fanout data download "
              f"SYMBOL --funding` or --funding SYMBOL=PATH)", file=sys.stderr)
    if len(series) > 1:
        traded = {s.symbol for s in signals}
        without = sorted(traded - {s.symbol for s in series})
        if without:
            shown = ", ".join(without[:8]) + (f" and {len(without) - 8} more" if len(without) > 8 else "")
            print(f"⚠️  no candles for {shown}: their signals are skipped", file=sys.stderr)
    print(f"📨 {sig_origin}: {len(signals)} signals; {accounts} accounts", file=sys.stderr)
    return Inputs(series, fine, signals, rules, meta)


def _series(args: argparse.Namespace, rules: MarketRules) -> tuple[list[SymbolData], dict]:
    """Each symbol's series, and how to find the candles again (summary.json ``candles``)."""
    if args.candles or args.symbols:
        series = gather(candles=args.candles, symbols=args.symbols, funding=args.funding, mark=args.mark,
                        timeframe=args.timeframe, symbol_hint=args.symbol, default_symbol=DEMO_SYMBOL,
                        known_ids=rules.ids)
    else:
        symbol = args.symbol or DEMO_SYMBOL
        cached = cache_path(symbol, args.timeframe)
        if cached.exists():
            series = gather(symbols=[symbol], funding=args.funding, mark=args.mark, timeframe=args.timeframe)
        else:
            if symbol != DEMO_SYMBOL or args.timeframe != "1m":
                raise CandleError(str(cached), "no cached candles; run `fanout data "
                                  f"download {symbol.split(':')[0]} {args.timeframe} --since YYYY-MM-DD` first")
            candles = generate_candles(symbol=symbol, start=DEMO_START, minutes=DEMO_DAYS * 24 * 60, seed=DEMO_SEED)
            origin = (f"SYNTHETIC candles generated by fanout (seed {DEMO_SEED}, {DEMO_DAYS} days of 1m "
                      "BTC/USDT)")
            return [SymbolData(symbol, candles, origin)], {
                "seed": DEMO_SEED, "start": DEMO_START, "minutes": DEMO_DAYS * 24 * 60, "timeframe": "1m",
                "symbol": symbol}
    where = {s.symbol: {"path": str(Path(s.candles.source).resolve()), "timeframe": s.candles.timeframe}
             for s in series}
    if len(series) == 1:
        s = series[0]
        return series, {**where[s.symbol], "symbol": s.symbol}
    return series, {"series": where}


def _fine(args: argparse.Namespace, series: list[SymbolData]) -> list[Candles]:
    """The --fine-candles of each symbol (a lone path belongs to a single-symbol run's symbol)."""
    out: dict[str, Candles] = {}
    for value in args.fine_candles:
        symbol, path = split_assignment(value, "--fine-candles")
        if symbol is None:
            if len(series) > 1:
                raise DatasetError(f"--fine-candles {value}: with many symbols give it as SYMBOL=PATH")
            symbol = series[0].symbol
        if symbol in out:
            raise DatasetError(f"--fine-candles for {symbol} given twice")
        out[symbol] = load_candles(path, symbol=symbol)
    return list(out.values())


def run(args: argparse.Namespace) -> int:
    """Everything is read and checked before the run starts: a refusal (the CLI's error line) writes nothing."""
    balances = balances_from_args(args)
    config = config_from_args(args)
    workers = min(args.workers or default_workers(), len(balances))
    data = load_inputs(args, len(balances))
    if workers > 1:
        print(f"⚙️  {len(balances)} accounts on {workers} worker processes", file=sys.stderr)
    signals, rules, meta = data.signals, data.rules, data.meta
    logging.getLogger("fanout.executor").setLevel(logging.WARNING)
    logging.getLogger("fanout.watcher").setLevel(logging.WARNING)
    result = run_backtest(
        data.all_candles, signals, balances, config, workers=workers, fine=data.fine or None,
        rules=rules, taker_fee=args.taker_fee, maker_fee=args.maker_fee, slippage_bps=args.slippage_bps,
        progress=not args.no_progress and sys.stderr.isatty(),
        funding=[s.funding for s in data.series if s.funding is not None] or None,
        mark=[s.mark for s in data.series if s.mark is not None] or None,
    )
    summary = write_outputs(result, args.out, plot=not args.no_plot, candles_meta=meta, market_rules=rules.describe())
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        if result.synthetic:
            print("⚠️  SYNTHETIC candles (generated, not market data) — `fanout data download` for real ones")
        print(format_table(summary))
        if "symbols" in summary:
            print()
            print(format_symbol_table(summary))
        unknown = (summary.get("funding") or {}).get("unknown")
        if unknown:
            print(f"\n⚠️  funding unknown for {', '.join(unknown)}: not counted in their pnl")
        files = "trades.csv, skipped.csv, equity.csv, summary.json" + ("" if args.no_plot else ", equity.png")
        if "symbols" in summary and not args.no_plot:
            files += ", symbols.png"
        print(f"\n📁 {Path(args.out)}/: {files}")
    return 0
