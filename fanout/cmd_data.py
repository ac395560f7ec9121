"""The ``fanout data`` command: ``download`` Binance USDⓈ-M candles into the cache, ``list`` what is cached."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from fanout import cmd_data_markets
from fanout.argtypes import whole
from marketdata import paths
from marketdata.cache import MarketDataError, summarize_cache
from marketdata.download import DownloadReport, download
from marketdata.times import BINANCE_TIMEFRAMES, format_time, parse_time

_SHOWN_GAPS = 5


def register(subparsers: Any) -> None:
    """Add ``data download`` and ``data list`` to the CLI."""
    data = subparsers.add_parser("data", help="download and list cached candles (data/cache/)",
                                 description="Download Binance USDⓈ-M candles into the local cache and list it.")
    data.set_defaults(func=lambda args: (data.print_help(), 2)[1])
    sub = data.add_subparsers(dest="data_command", metavar="ACTION")

    dl = sub.add_parser(
        "download", help="download candles through ccxt (public endpoint, no keys)",
        description="Download closed candles of SYMBOL at TIMEFRAME covering [--since, --until) into "
                    "<cache-dir>/<SYMBOL>-<TIMEFRAME>.csv, fetching only what the cache lacks. "
                    "BINANCE_API_URL replaces https://fapi.binance.com when set.",
    )
    dl.add_argument("symbol", metavar="SYMBOL", help="BTCUSDT, BTC/USDT or BTC/USDT:USDT")
    dl.add_argument("timeframe", metavar="TIMEFRAME", choices=BINANCE_TIMEFRAMES,
                    help=f"one of {', '.join(BINANCE_TIMEFRAMES)}")
    dl.add_argument("--since", required=True, metavar="DATE", help="first candle: ISO date or date-time (UTC), or epoch ms")
    dl.add_argument("--until", metavar="DATE", help="end, exclusive: ISO date or date-time (UTC), or epoch ms (default now)")
    dl.add_argument("--cache-dir", default=str(paths.cache_dir()), metavar="DIR", help="cache folder (default %(default)s)")
    dl.add_argument("--retries", type=whole(low=0, high=20), default=2, metavar="N",
                    help="retries of a request after a transient network error (default %(default)s)")
    dl.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    dl.set_defaults(func=handle_download)

    cmd_data_markets.register(sub)

    ls = sub.add_parser("list", help="show the cached candle files")
    ls.add_argument("--cache-dir", default=str(paths.cache_dir()), metavar="DIR", help="cache folder (default %(default)s)")
    ls.set_defaults(func=handle_list)


def _short(ms: int) -> str:
    return format_time(ms, sep=" ").removesuffix(":00Z")


def describe(report: DownloadReport) -> list[str]:
    """The command's summary lines for a finished download."""
    lines = [
        f"{report.symbol} {report.timeframe}: {report.fetched:,} new candles in {report.requests} requests → "
        f"{report.path} ({report.rows:,} rows"
        + (f", {_short(report.first)} → {_short(report.last)} UTC)" if report.rows else ")")
    ]
    span = f"{_short(report.since)} → {_short(report.until)}"
    if not report.gaps:
        check = f"validation: complete, no gaps in {span}"
    else:
        shown = ", ".join(f"{_short(g.start_ms)} → {_short(g.end_ms)} ({g.missing:,})" for g in report.gaps[:_SHOWN_GAPS])
        more = f", … {len(report.gaps) - _SHOWN_GAPS} more" if len(report.gaps) > _SHOWN_GAPS else ""
        check = (f"validation: {len(report.gaps)} gap(s), {report.missing:,} missing candles in {span}: "
                 f"{shown}{more}")
    lines.append(check + f"; {report.duplicates} duplicate(s) removed")
    return lines


def handle_download(args: argparse.Namespace) -> int:
    try:
        since = parse_time(args.since, "--since")
        until = parse_time(args.until, "--until") if args.until else None
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="candle", desc=f"{args.symbol} {args.timeframe}", leave=False,
                       disable=args.quiet or not sys.stderr.isatty())
        bar.update(done - bar.n)

    try:
        report = asyncio.run(download(
            args.symbol, args.timeframe, since, until, root=args.cache_dir,
            api_url=os.environ.get("BINANCE_API_URL") or None, progress=progress, retries=args.retries,
        ))
    except (MarketDataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if bar is not None:
            bar.close()
    print("\n".join(describe(report)))
    return 0


def handle_list(args: argparse.Namespace) -> int:
    try:
        summaries = summarize_cache(args.cache_dir)
    except (MarketDataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not summaries:
        print(f"no cached candles under {args.cache_dir} (fetch some: fanout data download BTCUSDT 1m --since 2024-01-01)")
        return 0
    print(f"{'file':<28} {'symbol':<12} {'tf':<4} {'rows':>10}  {'first (UTC)':<16}  {'last (UTC)':<16}  missing")
    for s in summaries:
        first = _short(s.first) if s.first is not None else "-"
        last = _short(s.last) if s.last is not None else "-"
        print(f"{s.path.name:<28} {s.symbol:<12} {s.timeframe:<4} {s.rows:>10,}  {first:<16}  {last:<16}  {s.missing:,}")
    return 0
