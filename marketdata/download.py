"""Market-data room: download Binance USDⓈ-M candles with ccxt ``fetch_ohlcv`` into the CSV cache (marketdata/cache.py).

Downloading covers ``[since, until)`` (``until`` capped at the start of the still-open candle). With a cache
present only the part before its first and after its last candle is requested, so the file stays contiguous and
an interrupted run resumes where it stopped: the rows fetched before a failure are always written.
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

from marketdata.cache import MarketDataError, Rows, cache_path, read_cache, unified_symbol, write_cache
from marketdata.client import make_exchange, resolve_market
from marketdata.times import BINANCE_TIMEFRAMES, Gap, align_up, find_gaps, format_time, timeframe_to_ms

# Candles per request. Binance allows 1500, but its request weight is 5 up to 1000 candles and 10 above, so pages
# of 1000 cost a third less weight per candle and, under ccxt's weight-based throttle, download faster.
PAGE_LIMIT = 1000

Progress = Callable[[int, int], None]
"""``progress(done, total)``: candle slots covered so far out of the slots the download has to cover."""


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


def _number(value: Any) -> str:
    """A price or volume as ccxt parsed it, written positionally (never ``1e-05``), shortest exact form."""
    text = repr(float(value))
    return format(Decimal(text), "f") if "e" in text else text


def _retryable(exc: BaseException) -> bool:
    """Transient failures worth another try; rate-limit answers (429/418) stop at once."""
    return isinstance(exc, ccxt.OperationFailed) and not isinstance(exc, (ccxt.DDoSProtection, ccxt.BadResponse))


class _Fetcher:
    """Pages through ``fetch_ohlcv``, keeping every candle received so far in ``rows``."""

    def __init__(self, exchange: Any, symbol: str, timeframe: str, limit: int, retries: int, retry_delay: float):
        self.exchange, self.symbol, self.timeframe = exchange, symbol, timeframe
        self.step = timeframe_to_ms(timeframe)
        self.limit, self.retries, self.retry_delay = limit, retries, retry_delay
        self.rows: Rows = {}
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

    Only the part outside the cached ``[first, last]`` is requested. Rows fetched before any failure are merged
    and written before the error propagates. Raises MarketDataError (bad symbol, timeframe, range or cache file,
    or a ccxt error after ``retries``; its message names the cause and says the partial rows were kept).
    ``root``: the cache folder (default :func:`marketdata.paths.cache_dir`). ``exchange``: an already-built ccxt
    binanceusdm (not closed here); otherwise one is made from ``api_url`` (:func:`marketdata.client.make_exchange`).
    ``markets_file``: the rules snapshot that spares the exchangeInfo request (default the data folder's).
    """
    unified = unified_symbol(symbol)
    step = timeframe_to_ms(timeframe, choices=BINANCE_TIMEFRAMES)
    if not 1 <= limit <= 1500:
        raise ValueError(f"limit {limit} must be between 1 and 1500")
    now = int(time.time() * 1000) if now is None else now
    start = align_up(since, step)
    stop = min(align_up(now if until is None else until, step), now // step * step)
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
            market = await resolve_market(exchange, unified, markets_file)
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
        duplicates=duplicates, gaps=tuple(find_gaps(times, step, start, stop)),
    )
