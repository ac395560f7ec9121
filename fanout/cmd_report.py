"""`fanout report`: a backtest run folder's charts as PNG files (no Jupyter needed) and its per-account table."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import analysis
from fanout.balances import parse_balances
from fanout.options import add_sizing_options, config_from_args
from fanout.signals_file import SignalFileError, read_signals
from marketdata import paths
from marketdata.candles import CandleError

DEFAULT_SIZING = ",".join(str(b) for b in analysis.DEFAULT_SIZING_BALANCES)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="PNG charts and the per-account table of a backtest run folder",
        description="Write the analysis charts of a `fanout backtest --out DIR` folder as PNG: equity.png, "
                    "drawdown.png, per_account.png, trades.png (candles with entries and exits, when the candles "
                    "can be located) and, with --sizing, sizing.png; then print the per-account table.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="folder written by `fanout backtest --out DIR`")
    p.add_argument("--out", metavar="DIR", help="where to write the PNG files (default RUN_DIR/report)")
    p.add_argument("--candles", metavar="PATH",
                   help="candles of the run, for trades.png and --sizing (default: from summary.json; the "
                        "synthetic demo candles are regenerated)")
    p.add_argument("--account", help="account whose trades trades.png marks (default: the one with most trades)")
    p.add_argument("--sizing", action="store_true",
                   help="also run the sizing study: the same signals from each balance of --sizing-balances")
    p.add_argument("--sizing-balances", metavar="LIST", default=DEFAULT_SIZING,
                   help=f"balances of the sizing study, comma separated (default {DEFAULT_SIZING})")
    p.add_argument("--signals", metavar="PATH", help="signals of the sizing study (default: the bundled demo signals)")
    add_sizing_options(p)
    p.set_defaults(func=run)


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _sizing_signals(args: argparse.Namespace, candles):
    if args.signals:
        return read_signals(args.signals), f"signals from {args.signals}"
    signals = read_signals(paths.demo_signals_file())
    t0, t1 = int(candles.time[0]), int(candles.time[-1])
    if any(t0 <= s.time <= t1 for s in signals):
        return signals, "bundled demo signals"
    from engine.signal import parse_signal
    from marketdata.synthetic import demo_signals

    derived = [parse_signal(d) for d in demo_signals(candles)]
    return derived, "demo signals derived from the candles (the bundled ones are outside them)"


def run(args: argparse.Namespace) -> int:
    try:
        result = analysis.load_run(args.run_dir)
    except analysis.RunDirError as exc:
        return _error(str(exc))
    if args.account is not None and args.account not in result.accounts:
        return _error(f"--account {args.account!r} is not in the run (accounts: {', '.join(result.accounts)})")
    try:
        config = config_from_args(args)
        balances = list(parse_balances(args.sizing_balances, variable="--sizing-balances").values())
    except ValueError as exc:
        return _error(str(exc))

    candles, candles_note = None, ""
    try:
        candles = analysis.locate_candles(result, args.candles)
    except CandleError as exc:
        return _error(f"--candles: {exc}")
    except analysis.CandlesUnavailable as exc:
        if args.candles or args.sizing:
            return _error(f"{exc}" + (" (--sizing needs candles)" if args.sizing else ""))
        candles_note = f"trades.png not written: {exc}"

    signals, signals_note = [], ""
    if args.sizing:
        try:
            signals, signals_note = _sizing_signals(args, candles)
        except SignalFileError as exc:
            return _error(str(exc))

    out = Path(args.out) if args.out else result.path / "report"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return _error(f"--out {str(out)!r} cannot be created ({exc.strerror})")
    figures = {
        "equity.png": analysis.plot_equity(result),
        "drawdown.png": analysis.plot_drawdown(result),
        "per_account.png": analysis.plot_per_account(result),
    }
    if candles is not None:
        figures["trades.png"] = analysis.plot_trades(result, candles, args.account)
    study = None
    if args.sizing:
        logging.getLogger("fanout.executor").setLevel(logging.WARNING)
        logging.getLogger("fanout.watcher").setLevel(logging.WARNING)
        print(f"📐 sizing study: {len(signals)} signals ({signals_note}) from {len(balances)} balances",
              file=sys.stderr)
        study = analysis.sizing_study(candles, signals, balances, config)
        figures["sizing.png"] = analysis.plot_sizing(study, synthetic=candles.synthetic)
    for name, fig in figures.items():
        fig.savefig(out / name, dpi=100)

    if result.synthetic:
        print(f"⚠️  {analysis.SYNTHETIC_NOTE}")
    print(analysis.format_table(result.summary))
    if study is not None:
        shown = study[["trades", "skipped_min_size", "skipped_other", "margin_mean", "quantity_mean",
                       "end_balance", "return_pct"]]
        print("\nsizing study (same signals on each balance; sizing flags, else the defaults):")
        print(shown.to_string(float_format=lambda v: f"{v:,.6g}"))
    if candles_note:
        print(f"⚠️  {candles_note}", file=sys.stderr)
    print(f"\n📁 {out}/: {', '.join(figures)}")
    return 0
