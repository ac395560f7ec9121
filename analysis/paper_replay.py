"""Analysis room: stand-in paper records: recorded candle prices replayed through the paper feed (no fill loop here).

:class:`RecordedPrices` implements the paper feed's ``PriceSource`` over stored one-minute candles, on a clock
the replay moves; :func:`recorded_price_paper` runs the signals through the engine on a ``SimulatedVenue`` fed
by :class:`simulator.paper.PaperFeed` from that source, as paper mode is fed by the live API. Fills, stops,
targets and liquidations are the simulator's (simulator/paper.py, simulator/fills.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import ccxt
import numpy as np
import pandas as pd

from analysis.paper_vs_backtest import RECORD_COLUMNS
from analysis.sync import run_sync
from engine import Account, ExecutionConfig, MultiAccountExecutor, Signal
from marketdata.candles import Candles
from marketdata.rules import MarketRules
from simulator.paper import PaperFeed
from simulator.venue import SimulatedVenue

MINUTE = 60_000
OHLCV_LIMIT = 500  # candles per fetch_ohlcv when no limit is given (Binance's klines default)
# Between signals the replay polls on minute boundaries in long steps (PaperFeed.poll reads up to 500 candles
# per round, so a step below that leaves no candle for a later round). A poll on a minute boundary applies the
# closed candles and then the close of the last one as the price: a no-op for every position that candle judged,
# so polling every minute would apply the same fills (tests/analysis/test_paper_replay.py checks it does).
_STEP = 400 * MINUTE
RECORD_SOURCE = "recorded candle close (stand-in for live ticks)"


class RecordedPrices:
    """Recorded prices as a paper ``PriceSource`` (ccxt's method names and return shapes) on a replay clock.

    candles: one symbol's stored one-minute candles (paper mode polls one-minute candles).
    The clock starts at the first candle's open and only moves forward (:meth:`advance`).

    - ``fetch_ohlcv``: the candles opening in ``[since, now]`` (the one still forming at ``now`` included, as the
      live API returns it; the feed skips it), at most ``limit``; without ``since``, the latest ones.
    - ``fetch_ticker``: ``last`` is the close of the candle in progress at ``now`` (the last one opening before
      ``now``): on a minute boundary, the close of the candle that just closed; inside a minute, the close that
      minute will have (a recorded price cannot be split within its minute).
    """

    def __init__(self, candles: Candles) -> None:
        if candles.timeframe != "1m":
            raise ValueError(f"recorded prices need 1m candles (paper mode polls one-minute candles), got "
                             f"{candles.timeframe} candles from {candles.source or candles.symbol}")
        if len(candles) == 0:
            raise ValueError(f"recorded prices: no candles in {candles.source or candles.symbol}")
        self.candles = candles
        self.now_ms = int(candles.time[0])

    def __repr__(self) -> str:
        return f"RecordedPrices({self.candles.symbol}, {len(self.candles)} candles, now={self.now_ms})"

    def advance(self, to_ms: int) -> None:
        """Move the clock to ``to_ms``; it never goes back."""
        if to_ms < self.now_ms:
            raise ValueError(f"the recorded-price clock only moves forward: {to_ms} < {self.now_ms}")
        self.now_ms = int(to_ms)

    def milliseconds(self) -> int:
        return self.now_ms

    async def fetch_ticker(self, symbol: str) -> dict:
        c = self._series(symbol)
        i = int(np.searchsorted(c.time, self.now_ms, side="left")) - 1
        if i < 0:
            raise ccxt.ExchangeNotAvailable(f"no recorded price for {symbol} before its first candle")
        price = float(c.close[i])
        return {"symbol": symbol, "timestamp": self.now_ms, "last": price, "close": price}

    async def fetch_ohlcv(self, symbol: str, timeframe: str = "1m", since: int | None = None,
                          limit: int | None = None) -> list[list[float]]:
        c = self._series(symbol)
        if timeframe != c.timeframe:
            raise ccxt.BadRequest(f"recorded prices hold {c.timeframe} candles, not {timeframe}")
        n = OHLCV_LIMIT if limit is None else int(limit)
        end = int(np.searchsorted(c.time, self.now_ms, side="right"))
        start = max(0, end - n) if since is None else int(np.searchsorted(c.time, since, side="left"))
        stop = min(end, start + n)
        return [[int(c.time[k]), float(c.open[k]), float(c.high[k]), float(c.low[k]), float(c.close[k]),
                 float(c.volume[k])] for k in range(start, stop)]

    def _series(self, symbol: str) -> Candles:
        if symbol != self.candles.symbol:
            raise ccxt.BadSymbol(f"recorded prices hold {self.candles.symbol}, not {symbol}")
        return self.candles


def recorded_price_paper(candles: Candles, signals: Iterable[Signal], balances: dict[str, float],
                         config: ExecutionConfig | None = None, *, delay_ms: int = 60_000,
                         rules: MarketRules | None = None, **venue_options: Any) -> pd.DataFrame:
    """A STAND-IN for paper-mode execution records, built from recorded candle prices (not a live feed).

    The signals run in time order through :class:`engine.MultiAccountExecutor` on a :class:`SimulatedVenue`
    fed by :class:`simulator.paper.PaperFeed` from :class:`RecordedPrices` over ``candles`` (one-minute candles),
    as paper mode is fed by the live API. Each signal executes at a recorded "live" tick ``delay_ms`` after its
    candle opened, at that tick's price — with the default 60 s, the close of the signal's candle, where a
    backtest fills at its open. Between signals the feed is polled as paper mode polls it, so closed candles
    settle the stops and targets of positions opened before them.
    ``venue_options`` go to :class:`SimulatedVenue` (taker_fee, slippage_bps, ...). Returns one row per (signal,
    account): signal_id, account, fill_price (NaN unless filled), quantity, time (the tick, UTC), status, reason,
    symbol, side, margin, source.
    """
    if delay_ms <= 0:
        raise ValueError(f"delay_ms must be > 0, got {delay_ms!r}")
    prices = RecordedPrices(candles)
    ordered = sorted(signals, key=lambda s: (s.time if s.time is not None else 0, s.id))
    venue = SimulatedVenue(rules or MarketRules.load(), **venue_options)
    for name, balance in balances.items():
        venue.add_account(name, balance)
    return run_sync(lambda: _replay(PaperFeed(venue, prices), prices, ordered, config or ExecutionConfig(),
                                    delay_ms))


async def _replay(feed: PaperFeed, prices: RecordedPrices, signals: list[Signal], config: ExecutionConfig,
                  delay_ms: int) -> pd.DataFrame:
    venue, c = feed.venue, prices.candles
    executor = MultiAccountExecutor([Account(n, ex) for n, ex in venue.accounts.items()], config, retries=0,
                                    retry_delay=0.0)

    async def settle() -> None:  # order updates (fills of stops and targets) to the watcher, as paper mode does
        await venue.drain_updates(executor.watcher)

    rows: list[dict] = []
    for signal in signals:
        reason = _unreplayable(signal, c)
        if reason:
            rows += [_record(signal, name, "skipped", reason, None) for name in venue.accounts]
            continue
        tick = int(c.time[c.index_at_or_after(signal.time)]) + delay_ms
        while prices.now_ms < tick:  # time passes as paper mode polls it; a mid-minute clock first meets a boundary
            boundary = (prices.now_ms // MINUTE + 1) * MINUTE
            prices.advance(min(tick, boundary if prices.now_ms % MINUTE else prices.now_ms + _STEP))
            await feed.poll({c.symbol})
            await settle()
        await feed.refresh(signal.symbol)
        await settle()
        summary = await executor.execute(signal)
        await settle()
        rows += [_record(signal, r.account, r.status, r.reason, r, tick) for r in summary.results]
    df = pd.DataFrame(rows, columns=[*RECORD_COLUMNS, "status", "reason", "symbol", "side", "margin", "source"])
    df["time"] = pd.to_datetime(df["time"], unit="ms", utc=True)
    return df


def _unreplayable(signal: Signal, candles: Candles) -> str:
    """Why the candles cannot replay ``signal`` (the skip reason of every account), or ``""``."""
    if signal.symbol != candles.symbol:
        return f"no candles for {signal.symbol}"
    if signal.time is None:
        return "signal has no time"
    if candles.index_at_or_after(signal.time) >= len(candles):
        return "signal after the last candle"
    return ""


def _record(signal: Signal, account: str, status: str, reason: str, result: Any, tick: int | None = None) -> dict:
    ok = result is not None and result.ok
    return {
        "signal_id": signal.id, "account": account, "fill_price": result.fill_price if ok else np.nan,
        "quantity": result.quantity if ok else 0.0, "time": tick if tick is not None else np.nan,
        "status": status, "reason": reason, "symbol": signal.symbol, "side": signal.side,
        "margin": result.margin if ok else 0.0, "source": RECORD_SOURCE,
    }
