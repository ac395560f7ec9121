"""Funding in paper mode (fills.py rule 9): PaperFeed looks for the source's funding history once an hour and the
venue applies each event once per position, also when the feed sees it again (a restart)."""

from __future__ import annotations

import asyncio

import pytest

from simulator.paper import FUNDING_CHECK_MS, PaperFeed
from simulator.venue import SimulatedVenue

BTC = "BTC/USDT:USDT"
T0 = 1_704_067_200_000  # 2024-01-01T00:00Z
HOUR = 3_600_000


class Source:
    def __init__(self, funding=None):
        self.now = T0 + 60_000
        self.events = funding
        self.asked: list[int] = []

    def milliseconds(self) -> int:
        return self.now

    async def fetch_ticker(self, symbol):
        return {"last": 50_000.0, "timestamp": self.now}

    async def fetch_ohlcv(self, symbol, timeframe="1m", since=None, limit=None):
        return []

    async def fetch_funding_rate_history(self, symbol, since=None, limit=None):
        self.asked.append(since)
        return [e for e in self.events if e["timestamp"] >= since]


class NoFundingSource(Source):
    fetch_funding_rate_history = None  # a source without funding history (getattr finds None)


def venue_with_long(qty=0.01):
    venue = SimulatedVenue.from_snapshot()
    ex = venue.add_account("A", 1_000)
    venue.set_price(BTC, 50_000.0, T0)
    asyncio.run(ex.set_leverage(10, BTC))
    asyncio.run(ex.create_order(BTC, "market", "buy", qty))
    return venue, ex


def event(t, rate, mark=""):
    return {"timestamp": t, "fundingRate": rate, "info": {"fundingTime": str(t), "fundingRate": str(rate),
                                                           "markPrice": mark}}


def test_paper_funding_once_an_hour_at_the_mark_or_the_last_price_each_event_once():
    venue, ex = venue_with_long()
    source = Source([event(T0 + HOUR, 0.0001, "50100"), event(T0 + 2 * HOUR, -0.0002), event(T0 + 9 * HOUR, 0.5)])
    feed = PaperFeed(venue, source)
    asyncio.run(feed.poll({BTC}))  # the first poll only notes the hour
    assert source.asked == [] and ex.wallet == pytest.approx(1_000 - 0.01 * 50_000 * 0.0005)
    wallet = ex.wallet
    source.now = T0 + 2 * HOUR + 5_000
    asyncio.run(feed.poll({BTC}))
    assert source.asked == [T0]
    expected = -0.01 * 50_100 * 0.0001 + 0.01 * 50_000 * 0.0002  # mark given / the last price stands in
    assert ex.wallet - wallet == pytest.approx(expected)
    assert ex.positions[BTC].funding == pytest.approx(expected)
    source.now += 10_000
    asyncio.run(feed.poll({BTC}))  # same hour: not asked again
    assert source.asked == [T0]
    restarted = PaperFeed(SimulatedVenue.from_state(venue.to_state(), venue.rules), source)
    source.now = T0 + 3 * HOUR
    asyncio.run(restarted.poll({BTC}))
    source.now = T0 + 4 * HOUR
    asyncio.run(restarted.poll({BTC}))  # sees both events again, from the last one funded: nothing paid twice
    assert source.asked[-1] == T0 + 2 * HOUR
    assert restarted.venue.accounts["A"].wallet == pytest.approx(ex.wallet)
    assert FUNDING_CHECK_MS == HOUR


def test_a_source_without_funding_history_leaves_funding_unknown(caplog):
    venue, ex = venue_with_long()
    feed = PaperFeed(venue, NoFundingSource())
    source = feed.source
    for hour in range(3):
        source.now = T0 + hour * HOUR + 1
        asyncio.run(feed.poll({BTC}))
    assert feed.funding_unknown == {BTC}
    assert sum("funding unknown for BTC/USDT:USDT" in r.message for r in caplog.records) == 1
