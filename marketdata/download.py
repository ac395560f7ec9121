"""Market-data room: download Binance USDⓈ-M series into the CSV cache (marketdata/cache.py): trade or mark-price
candles with ccxt ``fetch_ohlcv`` (``GET /fapi/v1/klines``, ``/fapi/v1/markPriceKlines``) and funding rates
(``GET /fapi/v1/fundingRate``).

Downloading covers ``[since, until)`` (``until`` capped at the start of the still-open candle). With a cache
present only the part before its first and after its last row is requested, newest first before it and oldest
first after it, so the file stays contiguous and an interrupted run resumes where it stopped: the rows fetched
before a failure are always written.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt

from marketdata.cache import (
    FUNDING,
    FUNDING_HEADER,
    HEADER,
    MARK,
    MARK_HEADER,
    MarketDataError,
    Rows,
    cache_path,
    funding_path,
    read_cache,
    unified_symbol,
    write_cache,
)
from marketdata.client import make_exchange, resolve_market
from marketdata.times import BINANCE_TIMEFRAMES, Gap, align_up, find_gaps, format_time, timeframe_to_ms

# Candles per request. Binance allows 1500, but its request weight is 5 up to 1000 candles and 10 above, so pages
# of 1000 cost a third less weight per candle and, under ccxt's weight-based throttle, download faster.
PAGE_LIMIT = 1000

FUNDING_PAGE_LIMIT = 1000
"""Funding rates per request (Binance's maximum). Going backward, a window spans ``limit`` hours: at Binance's
shortest funding interval (1h) one page always covers it."""
_HOUR = 3_600_000

Progress = Callable[[int, int], None]
"""``progress(done, total)``: candle slots (for funding: hours) covered so far out of those to cover."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DownloadReport:
    """What ``download`` did and found.

    symbol: unified symbol (``BTC/USDT:USDT``); timeframe: ccxt timeframe (``""`` for funding); path: the cache file.
    series: ``""`` trade candles, ``"mark"`` mark-price candles, ``"funding"`` funding rates.
    since, until: the covered range in epoch ms, open times aligned to the timeframe, ``until`` exclusive.
    requests: HTTP requests made (retries included); fetched: new candles added to the cache.
    rows, first, last: the cache file after the run (first/last open times in epoch ms, None when empty).
    duplicates: rows dropped because their open time was already present (cache and pages together).
    gaps: runs of missing candles inside ``[since, until)``, leading and trailing runs included (none for funding:
    it has no fixed interval; see ``intervals``).
    intervals: for funding, how many events followed the previous one after each interval (``{"8h": 90}``).
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
    series: str = ""
    intervals: dict[str, int] | None = None

    @property
    def missing(self) -> int:
        return sum(gap.missing for gap in self.gaps)


def _number(value: Any) -> str:
    """A price or volume as ccxt parsed it, written positionally (never ``1e-05``), shortest exact form."""
    text = repr(float(value))
    return format(Decimal(text), "f") if "e" in text else text


def _retryable(exc: BaseException) -> bool:
    """Transient failures worth another try; rate-limit answers (429/418) stop at once."""
    return isinstance(exc, ccxt.OperationFailed) and not isinstance(exc, (ccxt.DDoSProtection, ccxt.BadResponse))


class _Pager:
    """Requests with retries, and every row received so far in ``rows`` (written even when a later page fails)."""

    def __init__(self, exchange: Any, retries: int, retry_delay: float) -> None:
        self.exchange, self.retries, self.retry_delay = exchange, retries, retry_delay
        self.rows: Rows = {}
        self.duplicates = 0
        self.requests = 0

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        for attempt in range(self.retries + 1):
            self.requests += 1
            try:
                return await fn(*args, **kwargs)
            except ccxt.BaseError as exc:
                if attempt >= self.retries or not _retryable(exc):
                    raise
                await asyncio.sleep(self.retry_delay * 2**attempt)
        raise AssertionError("unreachable")

    def keep(self, ms: int, row: tuple[str, ...]) -> None:
        if ms in self.rows:
            self.duplicates += 1
        self.rows[ms] = row


class _CandlePager(_Pager):
    """Pages through ``fetch_ohlcv`` (trade candles, or mark-price candles with ``price="mark"``)."""

    def __init__(self, exchange: Any, symbol: str, timeframe: str, limit: int, retries: int, retry_delay: float,
                 series: str = "") -> None:
        super().__init__(exchange, retries, retry_delay)
        self.symbol, self.timeframe, self.limit = symbol, timeframe, limit
        self.step = timeframe_to_ms(timeframe)
        self.price = {"price": "mark"} if series == MARK else {}
        self.width = 4 if series == MARK else 5  # mark klines carry no volume

    async def page(self, start: int, stop: int) -> list[int]:
        """Candles with open time in ``[start, stop)``, at most ``limit``; returns their sorted open times."""
        candles = await self.call(self.exchange.fetch_ohlcv, self.symbol, self.timeframe, since=start,
                                  limit=self.limit, params={**self.price, "until": stop - 1})
        times = []
        for candle in candles:
            ms = int(candle[0])
            if not start <= ms < stop or ms % self.step:
                continue
            self.keep(ms, tuple(_number(v) for v in candle[1:1 + self.width]))
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


class _FundingPager(_Pager):
    """Pages through ``GET /fapi/v1/fundingRate`` (raw answers: the rates are kept exactly as Binance writes them)."""

    def __init__(self, exchange: Any, market_id: str, limit: int, retries: int, retry_delay: float) -> None:
        super().__init__(exchange, retries, retry_delay)
        self.market_id, self.limit = market_id, limit

    async def page(self, start: int, stop: int) -> list[int]:
        """Funding events with time in ``[start, stop)``, at most ``limit``, oldest first; returns their times."""
        answer = await self.call(self.exchange.fapiPublicGetFundingRate, {
            "symbol": self.market_id, "startTime": start, "endTime": stop - 1, "limit": self.limit})
        times = []
        for event in answer or []:
            ms = int(event["fundingTime"])
            if not start <= ms < stop:
                continue
            rate, mark = str(event["fundingRate"]), str(event.get("markPrice") or "")
            self.keep(ms, (_number(rate), _number(mark) if mark else ""))
            times.append(ms)
        return sorted(set(times))

    async def forward(self, start: int, stop: int, advance: Callable[[int], None]) -> None:
        """``[start, stop)`` oldest first; a short page is the last one."""
        cursor = start
        while cursor < stop:
            times = await self.page(cursor, stop)
            nxt = times[-1] + 1 if len(times) >= self.limit else stop
            advance(nxt - cursor)
            cursor = nxt

    async def backward(self, start: int, stop: int, advance: Callable[[int], None]) -> None:
        """``[start, stop)`` newest first, in windows one page always covers, so a failure leaves no hole before the
        cache's first event; an empty window before any event means nothing older (before listing)."""
        end = stop
        while end > start:
            begin = max(start, end - self.limit * _HOUR)
            times = await self.page(begin, end)
            advance(end - begin)
            if not times and end < stop:
                break
            end = begin


def _ranges(cached: Rows, start: int, stop: int, step: int) -> list[tuple[str, int, int]]:
    """What to request for ``[start, stop)`` around the cached ``[first, last]``."""
    if not cached:
        return [("forward", start, stop)]
    first, last = min(cached), max(cached)
    ranges = []
    if start < first:
        ranges.append(("backward", start, first))
    if stop > last + step:
        ranges.append(("forward", last + step, stop))
    return ranges


async def _fill(
    *, label: str, noun: str, path: Path, header: tuple[str, ...], cached: Rows, duplicates: int,
    ranges: list[tuple[str, int, int]], units: int, make_pager: Callable[[Any, dict], _Pager], unified: str,
    exchange: Any, api_url: str | None, markets_file: Path | None, progress: Progress | None,
) -> tuple[Rows, int, _Pager | None]:
    """Fetch ``ranges`` into ``cached`` (the rows of the cache file at ``path``) and write the file, also after a
    failure. Returns the rows, the duplicates dropped and the pager (None when nothing was requested). A ccxt error
    becomes MarketDataError naming ``label``, the cause and how many ``noun`` were kept."""
    ranges = [r for r in ranges if r[1] < r[2]]
    if not ranges:
        if duplicates:
            write_cache(path, cached, header)
        return cached, duplicates, None
    total = sum((b - a) // units for _, a, b in ranges)
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(min(done // units, total), total)

    own = exchange is None
    exchange = make_exchange(api_url) if own else exchange
    pager: _Pager | None = None
    error: BaseException | None = None
    try:
        market = await resolve_market(exchange, unified, markets_file)
        pager = make_pager(exchange, market)
        for direction, a, b in ranges:
            await getattr(pager, direction)(a, b, advance)
    except ccxt.BaseError as exc:
        error = exc
    finally:
        if own:
            await exchange.close()
        if pager is not None and pager.rows:
            duplicates += pager.duplicates + sum(1 for ms in pager.rows if ms in cached)
            cached.update(pager.rows)
            write_cache(path, cached, header)
    if error is not None:
        kept = (f"; {len(pager.rows)} new {noun} kept in {path}, run again to resume"
                if pager is not None and pager.rows else "; nothing new was written")
        reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        raise MarketDataError(f"{unified} {label}: {type(error).__name__}: {reason}{kept}", path) from error
    return cached, duplicates, pager


async def download(
    symbol: str,
    timeframe: str,
    since: int,
    until: int | None = None,
    *,
    series: str = "",
    root: str | Path | None = None,
    api_url: str | None = None,
    exchange: Any = None,
    progress: Progress | None = None,
    now: int | None = None,
    limit: int = PAGE_LIMIT,
    retries: int = 2,
    retry_delay: float = 1.0,
    markets_file: Path | None = None,
) -> DownloadReport:
    """Bring the cache of ``symbol``/``timeframe`` to cover ``[since, until)`` (epoch ms, ``until`` default now,
    exclusive; the still-open candle is never stored) and validate it.

    series: ``""`` trade candles (``GET /fapi/v1/klines``), ``"mark"`` mark-price candles
    (``GET /fapi/v1/markPriceKlines``, cached as ``<ID>-<timeframe>-mark.csv``).
    Only the part outside the cached ``[first, last]`` is requested. Rows fetched before any failure are merged
    and written before the error propagates. Raises MarketDataError (bad symbol, timeframe, range or cache file,
    or a ccxt error after ``retries``; its message names the cause and says the partial rows were kept).
    ``root``: the cache folder (default :func:`marketdata.paths.cache_dir`). ``exchange``: an already-built ccxt
    binanceusdm (not closed here); otherwise one is made from ``api_url`` (:func:`marketdata.client.make_exchange`).
    ``markets_file``: the rules snapshot that spares the exchangeInfo request (default the data folder's).
    """
    unified = unified_symbol(symbol)
    step = timeframe_to_ms(timeframe, choices=BINANCE_TIMEFRAMES)
    if series not in ("", MARK):
        raise ValueError(f"series {series!r} is not '' (trade candles) or 'mark'")
    if not 1 <= limit <= 1500:
        raise ValueError(f"limit {limit} must be between 1 and 1500")
    now = int(time.time() * 1000) if now is None else now
    start = align_up(since, step)
    stop = min(align_up(now if until is None else until, step), now // step * step)
    label = f"{timeframe}{' mark' if series else ''}"
    if start >= stop:
        raise MarketDataError(f"since/until: nothing to download between {format_time(since)} and "
                              f"{format_time(now if until is None else until)} for {label} candles "
                              f"(until is exclusive and the current candle is still open)")
    path = cache_path(unified, timeframe, root, series=series)
    header = MARK_HEADER if series else HEADER
    cached, duplicates = read_cache(path, header)
    rows, duplicates, pager = await _fill(
        label=label, noun="candles", path=path, header=header, cached=cached, duplicates=duplicates,
        ranges=_ranges(cached, start, stop, step), units=step,
        make_pager=lambda ex, market: _CandlePager(ex, market["symbol"], timeframe, limit, retries, retry_delay,
                                                   series),
        unified=unified, exchange=exchange, api_url=api_url, markets_file=markets_file, progress=progress)
    times = sorted(rows)
    return DownloadReport(
        symbol=unified, timeframe=timeframe, path=path, since=start, until=stop,
        requests=pager.requests if pager else 0, fetched=len(pager.rows) if pager else 0,
        rows=len(times), first=times[0] if times else None, last=times[-1] if times else None,
        duplicates=duplicates, gaps=tuple(find_gaps(times, step, start, stop)), series=series,
    )


async def download_funding(
    symbol: str,
    since: int,
    until: int | None = None,
    *,
    root: str | Path | None = None,
    api_url: str | None = None,
    exchange: Any = None,
    progress: Progress | None = None,
    now: int | None = None,
    limit: int = FUNDING_PAGE_LIMIT,
    retries: int = 2,
    retry_delay: float = 1.0,
    markets_file: Path | None = None,
) -> DownloadReport:
    """Bring the funding-rate cache of ``symbol`` (``<ID>-funding.csv``) to cover ``[since, until)`` (epoch ms,
    ``until`` default now) from ``GET /fapi/v1/fundingRate``, paginated and resumable like :func:`download`.

    Funding times are kept as Binance sends them (no grid: intervals differ by symbol and have changed); the report
    counts the intervals seen instead of gaps. Same errors and arguments as :func:`download`.
    """
    unified = unified_symbol(symbol)
    if not 1 <= limit <= FUNDING_PAGE_LIMIT:
        raise ValueError(f"limit {limit} must be between 1 and {FUNDING_PAGE_LIMIT}")
    now = int(time.time() * 1000) if now is None else now
    stop = min(now if until is None else until, now)
    if since >= stop:
        raise MarketDataError(f"since/until: nothing to download between {format_time(since)} and "
                              f"{format_time(stop)} for funding rates (until is exclusive)")
    path = funding_path(unified, root)
    cached, duplicates = read_cache(path, FUNDING_HEADER)
    rows, duplicates, pager = await _fill(
        label="funding", noun="funding rates", path=path, header=FUNDING_HEADER, cached=cached,
        duplicates=duplicates, ranges=_ranges(cached, since, stop, 1), units=_HOUR,
        make_pager=lambda ex, market: _FundingPager(ex, market["id"], limit, retries, retry_delay),
        unified=unified, exchange=exchange, api_url=api_url, markets_file=markets_file, progress=progress)
    times = sorted(rows)
    return DownloadReport(
        symbol=unified, timeframe="", path=path, since=since, until=stop,
        requests=pager.requests if pager else 0, fetched=len(pager.rows) if pager else 0,
        rows=len(times), first=times[0] if times else None, last=times[-1] if times else None,
        duplicates=duplicates, gaps=(), series=FUNDING, intervals=funding_intervals(times),
    )


def funding_intervals(times: list[int]) -> dict[str, int]:
    """How often each interval separates consecutive funding times, rounded to the hour (``{"8h": 90}``)."""
    counts: dict[str, int] = {}
    for a, b in zip(times, times[1:], strict=False):
        hours = round((b - a) / _HOUR)
        key = f"{hours}h"
        counts[key] = counts.get(key, 0) + 1
    return counts
