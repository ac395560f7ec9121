"""The ``fanout data`` command: ``download`` Binance USDⓈ-M candles, mark prices and funding rates into the cache
for many symbols at once, ``list`` what is cached, ``markets`` (fanout/cmd_data_markets.py) refresh the rules."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from engine.errors import is_error
from fanout import cmd_data_markets
from fanout.argtypes import whole
from fanout.errors import explain
from marketdata import paths
from marketdata.cache import FUNDING, MARK, MarketDataError, market_id, summarize_cache, unified_symbol
from marketdata.client import make_exchange
from marketdata.download import DownloadReport, download, download_funding
from marketdata.times import BINANCE_TIMEFRAMES, format_time, parse_time

_SHOWN_GAPS = 5


def register(subparsers: Any) -> None:
    """Add ``data download`` and ``data list`` to the CLI."""
    data = subparsers.add_parser("data", help="download and list cached candles (data/cache/)",
                                 description="Download Binance USDⓈ-M candles into the local cache and list it.")
    data.set_defaults(func=lambda args: (data.print_help(), 2)[1])
    sub = data.add_subparsers(dest="data_command", metavar="ACTION")

    dl = sub.add_parser(
        "download", help="download candles, mark prices and funding rates through ccxt (public, no keys)",
        description="Download closed candles of each SYMBOL at TIMEFRAME covering [--since, --until) into "
                    "<cache-dir>/<SYMBOL>-<TIMEFRAME>.csv (with --mark also <SYMBOL>-<TIMEFRAME>-mark.csv, with "
                    "--funding <SYMBOL>-funding.csv), fetching only what the cache lacks. One symbol failing does "
                    "not stop the others. BINANCE_API_URL replaces https://fapi.binance.com when set.",
    )
    dl.add_argument("symbols", nargs="+", metavar="SYMBOL",
                    help="one or more of BTCUSDT, BTC/USDT or BTC/USDT:USDT (also comma-separated)")
    dl.add_argument("timeframe", metavar="TIMEFRAME", choices=BINANCE_TIMEFRAMES,
                    help=f"one of {', '.join(BINANCE_TIMEFRAMES)}")
    dl.add_argument("--since", required=True, metavar="DATE", help="first candle: ISO date or date-time (UTC), or epoch ms")
    dl.add_argument("--until", metavar="DATE", help="end, exclusive: ISO date or date-time (UTC), or epoch ms (default now)")
    dl.add_argument("--funding", action="store_true",
                    help="also the funding-rate history (GET /fapi/v1/fundingRate) over the same period")
    dl.add_argument("--mark", action="store_true",
                    help="also mark-price candles at TIMEFRAME (GET /fapi/v1/markPriceKlines)")
    dl.add_argument("--cache-dir", default=str(paths.cache_dir()), metavar="DIR", help="cache folder (default %(default)s)")
    dl.add_argument("--retries", type=whole(low=0, high=20), default=2, metavar="N",
                    help="retries of a request after a transient network error (default %(default)s)")
    dl.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    dl.set_defaults(func=handle_download)

    cmd_data_markets.register(sub)

    ls = sub.add_parser("list", help="show the cached candle files")
    ls.add_argument("--cache-dir", default=str(paths.cache_dir()), metavar="DIR", help="cache folder (default %(default)s)")
    ls.set_defaults(func=handle_list)


def _short(ms: int) -> str:
    return format_time(ms, sep=" ").removesuffix(":00Z")


def describe(report: DownloadReport) -> list[str]:
    """The command's summary lines for a finished download."""
    what = {"": f"{report.timeframe}", MARK: f"{report.timeframe} mark"}.get(report.series, report.series)
    noun = "funding rates" if report.series == FUNDING else "candles"
    lines = [
        f"{report.symbol} {what}: {report.fetched:,} new {noun} in {report.requests} requests → "
        f"{report.path} ({report.rows:,} rows"
        + (f", {_short(report.first)} → {_short(report.last)} UTC)" if report.rows else ")")
    ]
    span = f"{_short(report.since)} → {_short(report.until)}"
    if report.series == FUNDING:
        seen = ", ".join(f"{k} ×{v:,}" for k, v in sorted((report.intervals or {}).items(),
                                                          key=lambda kv: -kv[1]))
        lines.append(f"intervals between funding times: {seen or 'none (fewer than two events)'}; "
                     f"{report.duplicates} duplicate(s) removed")
        return lines
    if not report.gaps:
        check = f"validation: complete, no gaps in {span}"
    else:
        shown = ", ".join(f"{_short(g.start_ms)} → {_short(g.end_ms)} ({g.missing:,})" for g in report.gaps[:_SHOWN_GAPS])
        more = f", … {len(report.gaps) - _SHOWN_GAPS} more" if len(report.gaps) > _SHOWN_GAPS else ""
        check = (f"validation: {len(report.gaps)} gap(s), {report.missing:,} missing candles in {span}: "
                 f"{shown}{more}")
    lines.append(check + f"; {report.duplicates} duplicate(s) removed")
    return lines


def _symbols(raw: list[str]) -> list[str]:
    """Unified symbols from the arguments (commas split, duplicates dropped); MarketDataError naming a bad one."""
    out: list[str] = []
    for part in (p.strip() for arg in raw for p in arg.split(",")):
        if part and unified_symbol(part) not in out:
            out.append(unified_symbol(part))
    if not out:
        raise MarketDataError("SYMBOL: no symbol given")
    return out


async def _download_all(args: argparse.Namespace, symbols: list[str], since: int, until: int | None) -> list[str]:
    """Every (symbol, series) in turn through one client (one rate limiter); returns the failures' messages."""
    jobs = [(sym, series) for sym in symbols for series in ("", *((MARK,) if args.mark else ()),
                                                            *((FUNDING,) if args.funding else ()))]
    exchange = make_exchange(os.environ.get("BINANCE_API_URL") or None)
    failures: list[str] = []
    try:
        for n, (symbol, series) in enumerate(jobs, 1):
            label = f"[{n}/{len(jobs)}] {market_id(symbol)} " + {"": args.timeframe, MARK: f"{args.timeframe} mark",
                                                                  FUNDING: "funding"}[series]
            bar = _Bar(label, "h" if series == FUNDING else "candle", args.quiet)
            common = {"root": args.cache_dir, "exchange": exchange, "progress": bar, "retries": args.retries}
            try:
                if series == FUNDING:
                    report = await download_funding(symbol, since, until, **common)
                else:
                    report = await download(symbol, args.timeframe, since, until, series=series, **common)
            except (MarketDataError, ValueError) as exc:
                failures.append(f"{label.split('] ', 1)[1]}: {exc}")
                print(f"error: {_words(exc)}", file=sys.stderr)
                continue
            finally:
                bar.close()
            print("\n".join(describe(report)), flush=True)
    finally:
        await exchange.close()
    return failures


def _words(exc: Exception) -> str:
    """A failed download in the error boundary's words (fanout/errors.py): the venue's failure as every command
    says it (e.g. "venue unreachable at host (BINANCE_API_URL): connection refused"), with what was kept."""
    cause = exc.__cause__
    if not isinstance(exc, MarketDataError) or cause is None or not is_error(cause, "BaseError"):
        return str(exc)
    text = str(exc)
    kept = text.rsplit("; ", 1)[1] if "; " in text else ""
    return f"{text.split(': ', 1)[0]}: {explain(cause)}" + (f"; {kept}" if kept else "")


class _Bar:
    """One tqdm bar per download, made on its first progress report (only on a terminal, unless --quiet)."""

    def __init__(self, label: str, unit: str, quiet: bool) -> None:
        self.label, self.unit, self.quiet, self.bar = label, unit, quiet, None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit=self.unit, desc=self.label, leave=False,
                            disable=self.quiet or not sys.stderr.isatty())
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def handle_download(args: argparse.Namespace) -> int:
    try:
        since = parse_time(args.since, "--since")
        until = parse_time(args.until, "--until") if args.until else None
        symbols = _symbols(args.symbols)
    except (ValueError, MarketDataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        failures = asyncio.run(_download_all(args, symbols, since, until))
    except (MarketDataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if failures and len(failures) > 1:
        print(f"{len(failures)} download(s) failed: " + "; ".join(f.split(":", 1)[0] for f in failures),
              file=sys.stderr)
    return 1 if failures else 0


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
        print(f"{s.path.name:<28} {s.symbol:<12} {s.timeframe or '-':<4} {s.rows:>10,}  {first:<16}  {last:<16}  {s.missing:,}")
    return 0
