"""Market-data room: download Binance USDⓈ-M candles with ccxt ``fetch_ohlcv`` into the CSV cache under ``data/cache/``.

Cache format (docs/data.md): one CSV per symbol and timeframe, ``<cache>/<BASE><QUOTE>-<timeframe>.csv`` (e.g.
``data/cache/BTCUSDT-1m.csv``), header ``open_time,open,high,low,close,volume``, ``open_time`` ISO-8601 UTC
(``2023-03-01 00:00:00+00:00``), one row per closed candle, sorted, no duplicates. Rewritten atomically.

Downloading covers ``[since, until)`` (``until`` capped at the start of the still-open candle). With a cache
present only the part before its first and after its last candle is requested, so the file stays contiguous and
an interrupted run resumes where it stopped: the rows fetched before a failure are always written.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt

from engine.signal import SignalError, normalize_symbol

CACHE_ROOT = Path("data/cache")
MARKETS_FILE = Path(__file__).resolve().parents[1] / "data" / "market_rules.json"
HEADER = ("open_time", "open", "high", "low", "close", "volume")
_MINUTE = 60_000
TIMEFRAMES: dict[str, int] = {
    "1m": _MINUTE, "3m": 3 * _MINUTE, "5m": 5 * _MINUTE, "15m": 15 * _MINUTE, "30m": 30 * _MINUTE,
    "1h": 60 * _MINUTE, "2h": 120 * _MINUTE, "4h": 240 * _MINUTE, "6h": 360 * _MINUTE, "8h": 480 * _MINUTE,
    "12h": 720 * _MINUTE, "1d": 1440 * _MINUTE,
}
# Candles per request. Binance allows 1500, but its request weight is 5 up to 1000 candles and 10 above, so pages
# of 1000 cost a third less weight per candle and, under ccxt's weight-based throttle, download faster.
PAGE_LIMIT = 1000
_FAPI_ORIGIN = "https://fapi.binance.com"

Progress = Callable[[int, int], None]
"""``progress(done, total)``: candle slots covered so far out of the slots the download has to cover."""


class MarketDataError(Exception):
    """A download or cache problem, worded for the user; ``path`` is the cache file when one is involved."""

    def __init__(self, message: str, path: Path | None = None):
        super().__init__(message)
        self.path = path


@dataclass(frozen=True, slots=True, kw_only=True)
class Gap:
    """A run of missing candles: ``start`` is the first missing open time (epoch ms), ``missing`` how many."""

    start: int
    missing: int
    timeframe_ms: int

    @property
    def end(self) -> int:
        """Open time (epoch ms) just after the run: the next candle present, or the range end."""
        return self.start + self.missing * self.timeframe_ms


@dataclass(frozen=True, slots=True, kw_only=True)
class DownloadReport:
    """What ``download`` did and found.

    symbol: unified symbol (``BTC/USDT:USDT``); timeframe: ccxt timeframe; path: the cache file.
    since, until: the covered range in epoch ms, open times aligned to the timeframe, ``until`` exclusive.
    requests: HTTP requests made (retries included); fetched: new candles added to the cache.
    rows, first, last: the cache file after the run (first/last open times in epoch ms, None when empty).
    duplicates: rows dropped because their open time was already present (cache and pages together).
    gaps: runs of missing candles inside ``[since, until)``, leading and trailing runs included.
    """

    symbol: str
    timeframe: str
    path: Path
    since: int
    until: int
    requests: int
    fetched: int
    rows: int
    first: int | None
    last: int | None
    duplicates: int
    gaps: tuple[Gap, ...]

    @property
    def missing(self) -> int:
        return sum(gap.missing for gap in self.gaps)


# --- symbols, timeframes, times -------------------------------------------------------------------------------


def timeframe_ms(timeframe: str) -> int:
    """Milliseconds in one candle of ``timeframe``; ValueError naming the field for anything unsupported."""
    try:
        return TIMEFRAMES[timeframe]
    except (KeyError, TypeError):
        raise ValueError(f"timeframe {timeframe!r} is not one of {', '.join(TIMEFRAMES)}") from None


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


def format_time(ms: int) -> str:
    """Epoch ms → the cache's ``2023-03-01 00:00:00+00:00``."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(sep=" ")


def parse_time(text: str, field: str = "open_time") -> int:
    """ISO-8601 date or date-time (UTC when no zone) or epoch ms → epoch ms; ValueError naming ``field``."""
    raw = text.strip()
    if raw.isdigit():
        return int(raw)
    try:
        dt = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{field}: {text!r} is not an ISO-8601 date or date-time (e.g. 2023-03-01T12:00)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def _align_up(ms: int, step: int) -> int:
    return -(-ms // step) * step


# --- the cache file -------------------------------------------------------------------------------------------


def cache_path(symbol: str, timeframe: str, root: str | Path = CACHE_ROOT) -> Path:
    """Where the candles of ``symbol`` and ``timeframe`` are cached: ``<root>/BTCUSDT-1m.csv``."""
    timeframe_ms(timeframe)
    return Path(root) / f"{market_id(symbol)}-{timeframe}.csv"


def load_cached(symbol: str, timeframe: str, root: str | Path = CACHE_ROOT) -> Path | None:
    """The cache file for ``symbol``/``timeframe`` if it exists and holds at least one candle, else None."""
    path = cache_path(symbol, timeframe, root)
    if not path.is_file():
        return None
    with path.open(newline="") as fh:
        fh.readline()
        return path if fh.readline().strip() else None


def read_cache(path: Path) -> tuple[dict[int, tuple[str, ...]], int]:
    """Rows of a cache file keyed by open time (epoch ms) with the five value columns as written, and the number
    of duplicate open times dropped (the later row wins). A missing file reads as empty."""
    rows: dict[int, tuple[str, ...]] = {}
    duplicates = 0
    if not path.is_file():
        return rows, 0
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            return rows, 0
        if tuple(h.strip() for h in header) != HEADER:
            raise MarketDataError(f"{path}: header {header!r} is not {','.join(HEADER)}", path)
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(HEADER):
                raise MarketDataError(f"{path} line {line_no}: expected {len(HEADER)} columns, got {len(row)}", path)
            try:
                ms = parse_time(row[0])
            except ValueError as exc:
                raise MarketDataError(f"{path} line {line_no}: {exc}", path) from None
            if ms in rows:
                duplicates += 1
            rows[ms] = tuple(row[1:])
    return rows, duplicates


def write_cache(path: Path, rows: dict[int, tuple[str, ...]]) -> None:
    """Write the rows sorted by open time, atomically (a temporary file beside the cache, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(HEADER)
        for ms in sorted(rows):
            writer.writerow((format_time(ms), *rows[ms]))
    os.replace(tmp, path)


def find_gaps(times: list[int], since: int, until: int, step: int) -> list[Gap]:
    """Runs of missing open times in ``[since, until)`` given the sorted open times present (any range)."""
    gaps: list[Gap] = []
    expected = since
    for ms in times:
        if ms < since:
            continue
        if ms >= until:
            break
        if ms > expected:
            gaps.append(Gap(start=expected, missing=(ms - expected) // step, timeframe_ms=step))
        expected = max(expected, ms + step)
    if expected < until:
        gaps.append(Gap(start=expected, missing=(until - expected + step - 1) // step, timeframe_ms=step))
    return gaps


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheSummary:
    """One cache file at a glance: ``missing`` = candle slots between first and last without a row."""

    path: Path
    symbol: str
    timeframe: str
    rows: int
    first: int | None
    last: int | None
    missing: int


def summarize_cache(root: str | Path = CACHE_ROOT) -> list[CacheSummary]:
    """Every ``<ID>-<timeframe>.csv`` under ``root``, read by streaming (first, last and row count only)."""
    found: list[CacheSummary] = []
    root = Path(root)
    if not root.is_dir():
        return found
    for path in sorted(root.glob("*-*.csv")):
        ident, _, timeframe = path.stem.rpartition("-")
        if timeframe not in TIMEFRAMES:
            continue
        rows, first_line, last_line = 0, "", ""
        with path.open(newline="") as fh:
            fh.readline()
            for line in fh:
                if line.strip():
                    rows += 1
                    first_line = first_line or line
                    last_line = line
        first = parse_time(first_line.split(",", 1)[0]) if rows else None
        last = parse_time(last_line.split(",", 1)[0]) if rows else None
        step = TIMEFRAMES[timeframe]
        missing = (last - first) // step + 1 - rows if rows else 0
        found.append(CacheSummary(
            path=path, symbol=ident, timeframe=timeframe, rows=rows, first=first, last=last, missing=max(missing, 0),
        ))
    return found


def _number(value: Any) -> str:
    """A price or volume as ccxt parsed it, written positionally (never ``1e-05``), shortest exact form."""
    text = repr(float(value))
    return format(Decimal(text), "f") if "e" in text else text


# --- the exchange ---------------------------------------------------------------------------------------------


def make_exchange(api_url: str | None = None) -> Any:
    """A public (keyless) ``ccxt.async_support.binanceusdm``; ``api_url`` replaces ``https://fapi.binance.com``
    for the fapi endpoints (e.g. a stand-in server or a proxy). Close it with ``await exchange.close()``."""
    import ccxt.async_support as ccxt_async

    exchange = ccxt_async.binanceusdm({
        "enableRateLimit": True,
        "options": {"fetchCurrencies": False, "adjustForTimeDifference": False},
    })
    if api_url:
        origin = api_url.strip().rstrip("/")
        if not origin.startswith(("http://", "https://")) or "?" in origin:
            raise MarketDataError(f"api_url (BINANCE_API_URL): {api_url!r} is not an http(s) origin such as "
                                  f"{_FAPI_ORIGIN}")
        for key, url in exchange.urls["api"].items():
            if key.startswith("fapi") and isinstance(url, str):
                exchange.urls["api"][key] = url.replace(_FAPI_ORIGIN, origin, 1)
    return exchange


def _offline_market(exchange: Any, ident: str, markets_file: Path | None) -> dict | None:
    """The market from the bundled exchangeInfo snapshot (data/market_rules.json), or None if it lacks it."""
    if markets_file is None or not Path(markets_file).is_file():
        return None
    try:
        symbols = json.loads(Path(markets_file).read_text()).get("symbols", {})
    except (OSError, ValueError):
        return None
    entries = symbols.values() if isinstance(symbols, dict) else symbols
    for entry in entries:
        info = entry.get("exchangeInfo", entry) if isinstance(entry, dict) else None
        if isinstance(info, dict) and info.get("symbol") == ident:
            return exchange.parse_market(info)
    return None


async def _resolve_market(exchange: Any, symbol: str, markets_file: Path | None) -> dict:
    """The ccxt market for ``symbol``: offline from the snapshot when it has it, else via ``load_markets``."""
    ident = symbol.split(":")[0].replace("/", "")
    if not exchange.markets:
        market = _offline_market(exchange, ident, markets_file)
        if market is not None and market.get("symbol") == symbol:
            exchange.set_markets([market])
        else:
            await exchange.load_markets()
    try:
        market = exchange.market(symbol)
    except ccxt.BadSymbol:
        raise MarketDataError(f"symbol: Binance USDⓈ-M has no market {symbol} ({ident}); check the spelling") from None
    if not (market.get("swap") and market.get("linear")):
        raise MarketDataError(f"symbol: {symbol} is not a USDⓈ-M perpetual")
    return market


# --- downloading ----------------------------------------------------------------------------------------------


def _retryable(exc: BaseException) -> bool:
    """Transient failures worth another try; rate-limit answers (429/418) stop at once."""
    return isinstance(exc, ccxt.OperationFailed) and not isinstance(exc, (ccxt.DDoSProtection, ccxt.BadResponse))


class _Fetcher:
    """Pages through ``fetch_ohlcv``, keeping every candle received so far in ``rows``."""

    def __init__(self, exchange: Any, symbol: str, timeframe: str, limit: int, retries: int, retry_delay: float):
        self.exchange, self.symbol, self.timeframe = exchange, symbol, timeframe
        self.step = timeframe_ms(timeframe)
        self.limit, self.retries, self.retry_delay = limit, retries, retry_delay
        self.rows: dict[int, tuple[str, ...]] = {}
        self.duplicates = 0
        self.requests = 0

    async def page(self, start: int, stop: int) -> list[int]:
        """Candles with open time in ``[start, stop)``, at most ``limit``; returns their sorted open times."""
        for attempt in range(self.retries + 1):
            self.requests += 1
            try:
                candles = await self.exchange.fetch_ohlcv(
                    self.symbol, self.timeframe, since=start, limit=self.limit, params={"until": stop - 1},
                )
                break
            except ccxt.BaseError as exc:
                if attempt >= self.retries or not _retryable(exc):
                    raise
                await asyncio.sleep(self.retry_delay * 2**attempt)
        times = []
        for candle in candles:
            ms = int(candle[0])
            if not start <= ms < stop or ms % self.step:
                continue
            if ms in self.rows:
                self.duplicates += 1
            self.rows[ms] = tuple(_number(v) for v in candle[1:6])
            times.append(ms)
        return sorted(set(times))

    async def forward(self, start: int, stop: int, advance: Callable[[int], None]) -> None:
        """``[start, stop)`` oldest first: each page starts after the last candle received; an empty page means
        the exchange has nothing more in the range (Binance skips over missing candles)."""
        cursor = start
        while cursor < stop:
            times = await self.page(cursor, stop)
            if not times:
                break
            nxt = times[-1] + self.step
            advance((min(nxt, stop) - cursor) // self.step)
            cursor = nxt

    async def backward(self, start: int, stop: int, advance: Callable[[int], None]) -> None:
        """``[start, stop)`` newest first, in windows of ``limit`` candles, so whatever was fetched before a failure
        joins the cache's first candle without a hole; an empty window means nothing older (before listing)."""
        end = stop
        while end > start:
            begin = max(start, end - self.limit * self.step)
            times = await self.page(begin, end)
            advance((end - begin) // self.step)
            if not times:
                break
            end = begin


async def download(
    symbol: str,
    timeframe: str,
    since: int,
    until: int | None = None,
    *,
    root: str | Path = CACHE_ROOT,
    api_url: str | None = None,
    exchange: Any = None,
    progress: Progress | None = None,
    now: int | None = None,
    limit: int = PAGE_LIMIT,
    retries: int = 2,
    retry_delay: float = 1.0,
    markets_file: Path | None = MARKETS_FILE,
) -> DownloadReport:
    """Bring the cache of ``symbol``/``timeframe`` to cover ``[since, until)`` (epoch ms, ``until`` default now,
    exclusive; the still-open candle is never stored) and validate it.

    Only the part outside the cached ``[first, last]`` is requested. Rows fetched before any failure are merged
    and written before the error propagates. Raises MarketDataError (bad symbol, timeframe, range or cache file,
    or a ccxt error after ``retries``; its message names the cause and says the partial rows were kept).
    ``exchange``: an already-built ccxt binanceusdm (not closed here); otherwise one is made from ``api_url``.
    """
    unified = unified_symbol(symbol)
    step = timeframe_ms(timeframe)
    if not 1 <= limit <= 1500:
        raise ValueError(f"limit {limit} must be between 1 and 1500")
    now = int(time.time() * 1000) if now is None else now
    start = _align_up(since, step)
    stop = min(_align_up(now if until is None else until, step), now // step * step)
    if start >= stop:
        raise MarketDataError(f"since/until: nothing to download between {format_time(since)} and "
                              f"{format_time(now if until is None else until)} for {timeframe} candles "
                              f"(until is exclusive and the current candle is still open)")
    path = cache_path(unified, timeframe, root)
    cached, duplicates = read_cache(path)
    ranges: list[tuple[str, int, int]] = []
    if cached:
        first, last = min(cached), max(cached)
        if start < first:
            ranges.append(("backward", start, first))
        if stop > last + step:
            ranges.append(("forward", last + step, stop))
    else:
        ranges.append(("forward", start, stop))

    fetcher = None
    if ranges:
        total = sum((b - a) // step for _, a, b in ranges)
        done = 0

        def advance(n: int) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress(min(done, total), total)

        own = exchange is None
        exchange = make_exchange(api_url) if own else exchange
        error: BaseException | None = None
        try:
            market = await _resolve_market(exchange, unified, markets_file)
            fetcher = _Fetcher(exchange, market["symbol"], timeframe, limit, retries, retry_delay)
            for direction, a, b in ranges:
                await getattr(fetcher, direction)(a, b, advance)
        except ccxt.BaseError as exc:
            error = exc
        finally:
            if own:
                await exchange.close()
            if fetcher is not None and fetcher.rows:
                duplicates += fetcher.duplicates + sum(1 for ms in fetcher.rows if ms in cached)
                cached.update(fetcher.rows)
                write_cache(path, cached)
        if error is not None:
            kept = (f"; {len(fetcher.rows)} new candles kept in {path}, run again to resume"
                    if fetcher is not None and fetcher.rows else "; nothing new was written")
            reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
            raise MarketDataError(f"{unified} {timeframe}: {type(error).__name__}: {reason}{kept}", path) from error
    elif duplicates:
        write_cache(path, cached)

    times = sorted(cached)
    return DownloadReport(
        symbol=unified, timeframe=timeframe, path=path, since=start, until=stop,
        requests=fetcher.requests if fetcher else 0, fetched=len(fetcher.rows) if fetcher else 0,
        rows=len(times), first=times[0] if times else None, last=times[-1] if times else None,
        duplicates=duplicates, gaps=tuple(find_gaps(times, start, stop, step)),
    )
