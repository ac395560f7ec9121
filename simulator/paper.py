"""Simulator room: the paper feed — the simulated venue fed with live prices (no second fill engine).

A ``PriceSource`` (ccxt's public market data, or recorded prices in tests and reports) supplies the last price
and closed one-minute candles. Market orders fill at the last price; stops, targets and liquidations are applied
by the venue's one fill loop (``SimulatedVenue.apply_candle``, rules in simulator/fills.py) to each closed candle —
only for positions opened by the time that candle began — and to each polled last price, so a position opened
mid-minute is never judged on prices from before its entry. Funding (fills.py rule 9) is looked for once an hour
from the source's funding history. Order updates stay queued on the venue for the caller to drain
(simulator/paper_session.py does).
"""

from __future__ import annotations

import logging
from typing import Protocol

from simulator.records import ClosedPosition
from simulator.venue import SimulatedVenue

log = logging.getLogger("fanout.paper")
MINUTE = 60_000


class PriceSource(Protocol):
    """Live market data, with ccxt's return shapes."""

    async def fetch_ticker(self, symbol: str) -> dict: ...

    async def fetch_ohlcv(self, symbol: str, timeframe: str = "1m", since: int | None = None,
                          limit: int | None = None) -> list[list[float]]: ...

    def milliseconds(self) -> int: ...


FUNDING_CHECK_MS = 3_600_000  # funding times fall on the hour (Binance's 1h / 4h / 8h intervals): look once an hour


class PaperFeed:
    """Moves the venue's prices and clock forward from a live price source, applying fills as it goes."""

    def __init__(self, venue: SimulatedVenue, source: PriceSource) -> None:
        self.venue = venue
        self.source = source
        self.last_candle: dict[str, int] = {}  # symbol -> open time of the last processed closed candle
        self.funding_unknown: set[str] = set()  # symbols whose funding the source cannot tell (logged once)
        self._funding_hour: dict[str, int] = {}  # symbol -> the hour funding was last looked for

    async def refresh(self, symbol: str) -> float:
        """Fetch the last price (before executing a signal) and apply it; returns the price."""
        ticker = await self.source.fetch_ticker(symbol)
        price = float(ticker.get("last") or ticker.get("close"))
        now = int(ticker.get("timestamp") or self.source.milliseconds())
        self._apply_tick(symbol, price, now)
        return price

    async def poll(self, symbols: set[str]) -> list[ClosedPosition]:
        """One polling round: closed candles since the last round, then the last price."""
        closed: list[ClosedPosition] = []
        now = self.source.milliseconds()
        for symbol in sorted(symbols):
            since = self.last_candle.get(symbol)
            start = since + MINUTE if since is not None else (now // MINUTE - 2) * MINUTE
            rows = await self.source.fetch_ohlcv(symbol, "1m", since=start, limit=500)
            for t, o, h, low, c, *_ in rows:
                t = int(t)
                if t + MINUTE > now or (since is not None and t <= since):
                    continue  # still open, or seen
                closed += self.apply_candle(symbol, t, float(o), float(h), float(low), float(c))
                self.last_candle[symbol] = t
            ticker = await self.source.fetch_ticker(symbol)
            closed += self._apply_tick(symbol, float(ticker.get("last") or ticker.get("close")), now)
            await self.funding(symbol, now)
        return closed

    async def funding(self, symbol: str, now: int) -> int:
        """Funding events of ``symbol`` up to ``now`` applied to its open positions (fills.py rule 9), looked for
        once an hour (on the first poll of a new hour) from the oldest unfunded position on; the events applied.

        The rate and time come from the source's ``fetch_funding_rate_history`` (``GET /fapi/v1/fundingRate``),
        the notional at the event's ``markPrice`` when it gives one, else at the venue's last price. A source
        without that method leaves funding unknown (logged once); a failed look is logged and retried next hour.
        """
        fetch = getattr(self.source, "fetch_funding_rate_history", None)
        if fetch is None:
            if symbol not in self.funding_unknown:
                self.funding_unknown.add(symbol)
                log.warning("📄 funding unknown for %s: the price source gives no funding history", symbol)
            return 0
        hour = now // FUNDING_CHECK_MS
        last = self._funding_hour.setdefault(symbol, hour)
        if hour == last:
            return 0
        self._funding_hour[symbol] = hour
        since = [max(p.opened_at, p.funded_at) for ex in self.venue.accounts.values()
                 if (p := ex.positions.get(symbol)) is not None]
        if not since:
            return 0
        try:
            events = await fetch(symbol, since=min(since), limit=1000)
        except Exception as exc:  # paper trading goes on; the next hour's look catches up from the same point
            log.warning("📄 funding of %s not fetched (%s: %s): looked for again next hour", symbol,
                        type(exc).__name__, exc)
            return 0
        applied = 0
        for event in sorted(events or [], key=lambda e: int(e["timestamp"])):
            t = int(event["timestamp"])
            if t > now:
                continue
            mark = (event.get("info") or {}).get("markPrice")
            price = float(mark) if mark not in (None, "") else self.venue.price(symbol)
            for account, amount in self.venue.apply_funding(symbol, t, float(event["fundingRate"]), price):
                log.info("📄 %s %s funding %+.4f USDT (rate %s)", account, symbol, amount, event["fundingRate"])
                applied += 1
        return applied

    def apply_candle(self, symbol: str, t: int, o: float, h: float, low: float, c: float) -> list[ClosedPosition]:
        """Apply one closed candle to positions opened by the time it began (the venue's fill loop); logs exits."""
        closed = self.venue.apply_candle(symbol, t, o, h, low, c)
        for done in closed:
            log.info("📄 %s %s closed by %s at %.2f", done.account, symbol, done.exit_reason, done.exit_price)
        return closed

    def _apply_tick(self, symbol: str, price: float, now: int) -> list[ClosedPosition]:
        """A last price is a candle of one price at ``now``."""
        return self.apply_candle(symbol, now, price, price, price, price)
