"""Market-data room: the CSV cache of downloaded series: file layout, reading, atomic writing, what is cached.

Layout (docs/data.md): one CSV per symbol, timeframe and series under the cache folder
(:func:`marketdata.paths.cache_dir`, FANOUT_DATA_DIR honoured): ``<ID>-<timeframe>.csv`` for trade candles
(``BTCUSDT-1m.csv``, header ``open_time,open,high,low,close,volume``), ``<ID>-<timeframe>-mark.csv`` for mark-price
candles (no volume), ``<ID>-funding.csv`` for funding rates (``fundingTime,fundingRate,markPrice``). The first column
is the time, ISO-8601 UTC (``2023-03-01 00:00:00+00:00``); the other columns are kept as written. One row per time,
sorted, no duplicates; every write goes to a temporary file renamed over the cache.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.signal import SignalError, normalize_symbol
from marketdata import paths
from marketdata.times import (
    BINANCE_TIMEFRAMES,
    TimeParseError,
    format_times,
    parse_time,
    parse_times,
    timeframe_to_ms,
)

HEADER = ("open_time", "open", "high", "low", "close", "volume")
"""The header of a trade-candle cache file (the default series)."""

MARK = "mark"
MARK_HEADER = ("open_time", "open", "high", "low", "close")
"""Mark-price candles (``<ID>-<timeframe>-mark.csv``): Binance's markPriceKlines have no volume."""

FUNDING = "funding"
FUNDING_HEADER = ("fundingTime", "fundingRate", "markPrice")
"""Funding rates (``<ID>-funding.csv``, no timeframe: Binance's funding interval differs by symbol and over time):
the funding time, the rate as a fraction paid by longs when positive, and Binance's mark price then (empty when
the answer had none)."""

Rows = dict[int, tuple[str, ...]]
"""Cache rows keyed by open time (epoch ms): the columns after the first, as written."""


class MarketDataError(Exception):
    """A download or cache problem, worded for the user; ``path`` is the cache file when one is involved."""

    def __init__(self, message: str, path: Path | None = None):
        super().__init__(message)
        self.path = path


def unified_symbol(symbol: str) -> str:
    """``BTCUSDT``, ``BTC/USDT`` or ``BTC/USDT:USDT`` → ``BTC/USDT:USDT``; MarketDataError naming the symbol."""
    try:
        return normalize_symbol(symbol)
    except SignalError as exc:
        detail = str(exc).split(": ", 1)[-1]
        raise MarketDataError(f"symbol: {detail}") from None


def market_id(symbol: str) -> str:
    """Binance's id of the perpetual, ``BTCUSDT`` for any accepted spelling."""
    base, quote = unified_symbol(symbol).split(":")[0].split("/")
    return base + quote


def cache_path(symbol: str, timeframe: str, root: str | Path | None = None, *, series: str = "") -> Path:
    """Where a series of ``symbol`` at ``timeframe`` is cached: ``<root>/BTCUSDT-1m.csv`` for trade candles,
    ``<root>/BTCUSDT-1m-<series>.csv`` for another ``series``. ``root`` defaults to the cache folder."""
    timeframe_to_ms(timeframe, choices=BINANCE_TIMEFRAMES)
    if series and not series.isidentifier():
        raise ValueError(f"series {series!r} must be a plain word such as 'mark' or 'funding'")
    root = paths.cache_dir() if root is None else Path(root)
    return root / f"{market_id(symbol)}-{timeframe}{'-' + series if series else ''}.csv"


def funding_path(symbol: str, root: str | Path | None = None) -> Path:
    """Where the funding rates of ``symbol`` are cached: ``<root>/BTCUSDT-funding.csv``."""
    root = paths.cache_dir() if root is None else Path(root)
    return root / f"{market_id(symbol)}-{FUNDING}.csv"


def load_cached(symbol: str, timeframe: str, root: str | Path | None = None, *, series: str = "") -> Path | None:
    """The cache file of ``symbol``/``timeframe`` (``timeframe`` ``""`` with ``series="funding"``) if it exists and
    holds at least one row, else None."""
    path = funding_path(symbol, root) if series == FUNDING else cache_path(symbol, timeframe, root, series=series)
    if not path.is_file():
        return None
    with path.open(newline="") as fh:
        fh.readline()
        return path if fh.readline().strip() else None


def read_cache(path: Path, header: Sequence[str] = HEADER) -> tuple[Rows, int]:
    """Rows of a cache file keyed by open time, and the number of duplicate open times dropped (the later row
    wins). A missing or empty file reads as no rows. MarketDataError names the file and line of a bad row."""
    if not path.is_file():
        return {}, 0
    lines: list[int] = []
    stamps: list[str] = []
    values: list[tuple[str, ...]] = []
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        found = next(reader, None)
        if found is None:
            return {}, 0
        if tuple(h.strip() for h in found) != tuple(header):
            raise MarketDataError(f"{path}: header {found!r} is not {','.join(header)}", path)
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise MarketDataError(f"{path} line {line_no}: expected {len(header)} columns, got {len(row)}", path)
            lines.append(line_no)
            stamps.append(row[0])
            values.append(tuple(row[1:]))
    if not stamps:
        return {}, 0
    try:
        times = parse_times(stamps, header[0]).tolist()
    except TimeParseError as exc:
        raise MarketDataError(f"{path} line {lines[exc.index]}: {exc}", path) from None
    rows: Rows = {}
    for ms, row in zip(times, values, strict=True):
        rows[ms] = row
    return rows, len(times) - len(rows)


def write_cache(path: Path, rows: Rows, header: Sequence[str] = HEADER) -> None:
    """Write the rows sorted by open time, atomically (a temporary file beside the cache, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        times = sorted(rows)
        stamps = format_times(times, sep=" ", zone="+00:00")
        writer.writerows((stamp, *rows[ms]) for stamp, ms in zip(stamps, times, strict=True))
    os.replace(tmp, path)


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheSummary:
    """One cache file at a glance.

    path: the file; symbol: Binance's market id from the file name (``BTCUSDT``); timeframe: e.g. ``1m``;
    series: ``""`` for trade candles, else the series name from the file name (``mark``, ``funding``).
    rows: rows in the file; first, last: their first and last open times (epoch ms, None when empty).
    missing: slots between first and last without a row (0 for funding rates, which have no fixed interval).
    """

    path: Path
    symbol: str
    timeframe: str
    series: str
    rows: int
    first: int | None
    last: int | None
    missing: int


def summarize_cache(root: str | Path | None = None) -> list[CacheSummary]:
    """Every ``<ID>-<timeframe>[-<series>].csv`` under ``root`` (default the cache folder), read by streaming
    (first, last and row count only), sorted by file name."""
    found: list[CacheSummary] = []
    root = paths.cache_dir() if root is None else Path(root)
    if not root.is_dir():
        return found
    for path in sorted(root.glob("*-*.csv")):
        ident, timeframe, *rest = path.stem.split("-")
        if timeframe == FUNDING and not rest:
            timeframe, rest = "", [FUNDING]
        elif timeframe not in BINANCE_TIMEFRAMES or len(rest) > 1:
            continue
        rows, first_line, last_line = 0, "", ""
        with path.open(newline="") as fh:
            fh.readline()
            for line in fh:
                if line.strip():
                    rows += 1
                    first_line = first_line or line
                    last_line = line
        try:
            first = parse_time(first_line.split(",", 1)[0], "open_time") if rows else None
            last = parse_time(last_line.split(",", 1)[0], "open_time") if rows else None
        except TimeParseError as exc:
            raise MarketDataError(f"{path}: {exc}", path) from None
        step = timeframe_to_ms(timeframe) if timeframe else 0
        missing = (last - first) // step + 1 - rows if rows and step else 0
        found.append(CacheSummary(path=path, symbol=ident, timeframe=timeframe, series=rest[0] if rest else "",
                                  rows=rows, first=first, last=last, missing=max(missing, 0)))
    return found
