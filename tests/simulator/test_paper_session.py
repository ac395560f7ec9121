"""Tests for simulator/paper_session.py with a plain in-memory StateStore (the simulator needs no database)."""

from __future__ import annotations

import json

import pytest

from engine import Account, BracketWatcher, MultiAccountExecutor
from simulator.paper_session import FEED_KEY, VENUE_KEY, PaperSession, resume_venue

BTC = "BTC/USDT:USDT"
T0 = 1_704_067_200_000
MINUTE = 60_000


class MemoryStore:
    """A StateStore in a dict, JSON round-tripped like the journal's."""

    def __init__(self) -> None:
        self.docs: dict[str, str] = {}

    def save_state(self, key, value) -> None:
        self.docs[key] = json.dumps(value)

    def load_state(self, key):
        return json.loads(self.docs[key]) if key in self.docs else None


class Prices:
    """A price source with one fixed last price and the minute candles given."""

    def __init__(self, now: int, last: float, candles: list[list[float]] | None = None) -> None:
        self.now, self.last, self.candles = now, last, candles or []

    def milliseconds(self) -> int:
        return self.now

    async def fetch_ticker(self, symbol):
        return {"symbol": symbol, "last": self.last, "timestamp": self.now}

    async def fetch_ohlcv(self, symbol, timeframe="1m", since=None, limit=None):
        return [c for c in self.candles if since is None or c[0] >= since][:limit]


def session(rules, store, prices, balances=None, **settings) -> PaperSession:
    venue = resume_venue(store, rules, balances or {"A": 1_000}, **settings)
    return PaperSession(venue, prices, BracketWatcher([Account(n, ex) for n, ex in venue.accounts.items()]), store)


async def test_prepare_puts_the_live_price_into_the_venue(rules, seed_signal):
    s = session(rules, MemoryStore(), Prices(T0 + 5_000, 50_012.3))
    await s.prepare(seed_signal)
    assert (s.venue.prices[BTC], s.venue.now_ms) == (50_012.3, T0 + 5_000)


async def test_persist_and_resume_keep_wallets_and_add_only_new_accounts(rules, seed_signal):
    store = MemoryStore()
    first = session(rules, store, Prices(T0, 50_000), {"A": 1_000}, taker_fee=0.001)
    await first.prepare(seed_signal)
    await first.venue.accounts["A"].create_order(BTC, "market", "buy", 0.008)
    first.feed.last_candle[BTC] = T0 - MINUTE
    first.persist()
    assert set(store.docs) == {VENUE_KEY, FEED_KEY}
    again = session(rules, store, Prices(T0, 50_000), {"A": 5_000, "B": 700}, taker_fee=0.0)
    assert again.venue.accounts["A"].wallet == pytest.approx(1_000 - 0.4)  # saved, not re-seeded
    assert again.venue.accounts["B"].wallet == 700 and again.venue.taker_fee == 0.0  # settings are today's
    assert again.feed.last_candle == {BTC: T0 - MINUTE}


async def test_tick_polls_symbols_of_positions_and_brackets_and_drains_into_the_watcher(rules, seed_signal):
    candle = [T0 + MINUTE, 50_000.0, 50_100.0, 49_000.0, 49_100.0, 1.0]  # crosses the 49,500 stop
    prices = Prices(T0 + 500, 50_000.0)
    s = session(rules, MemoryStore(), prices)
    executor = MultiAccountExecutor([Account(n, ex) for n, ex in s.venue.accounts.items()], watcher=s.watcher)
    await s.prepare(seed_signal)
    assert (await executor.execute(seed_signal)).succeeded == 1
    prices.now, prices.candles = T0 + 2 * MINUTE + 500, [candle]
    await s.tick()
    ex = s.venue.accounts["A"]
    assert [c.exit_reason for c in ex.closed] == ["stop_loss"]
    assert {o["status"] for o in ex.algo_orders.values()} == {"closed", "canceled"}
    assert s.watcher.open_brackets() == []


async def test_fallback_is_never_needed_on_paper(rules, seed_signal):
    s = session(rules, MemoryStore(), Prices(T0, 50_000))
    assert await s.fallback(seed_signal, None) is None
