"""Tests for analysis/paper_replay.py: recorded prices as the paper feed's price source, and the stand-in paper
records replayed through simulator.paper.PaperFeed (no fill loop of its own)."""

from __future__ import annotations

import ccxt
import numpy as np
import pandas as pd
import pytest

import analysis
from analysis import paper_replay
from analysis.paper_replay import RecordedPrices
from engine import Account, ExecutionConfig, MultiAccountExecutor, parse_signal
from marketdata.candles import resample
from marketdata.rules import MarketRules
from simulator.paper import PaperFeed
from simulator.venue import SimulatedVenue

MINUTE = 60_000
BALANCES = {"A": 1_000.0, "B": 5_000.0, "C": 100.0}


@pytest.fixture(scope="module")
def week(demo_candles):
    return demo_candles.slice(None, int(demo_candles.time[0]) + 7 * 1440 * MINUTE)


@pytest.fixture(scope="module")
def week_signals(week, demo_signals):
    return [s for s in demo_signals if s.time < int(week.time[-1])]


# --- the price source --------------------------------------------------------------------------------------------

async def test_recorded_prices_serve_closed_candles_and_the_last_price(week):
    prices = RecordedPrices(week)
    t0 = int(week.time[0])
    assert prices.milliseconds() == t0
    prices.advance(t0 + 3 * MINUTE)
    rows = await prices.fetch_ohlcv(week.symbol, "1m", since=t0, limit=500)
    assert [r[0] for r in rows] == [t0 + k * MINUTE for k in range(4)]  # the candle forming at now included
    assert rows[1][1:5] == [week.open[1], week.high[1], week.low[1], week.close[1]]
    assert len(await prices.fetch_ohlcv(week.symbol, since=t0, limit=2)) == 2
    assert [r[0] for r in await prices.fetch_ohlcv(week.symbol, limit=2)] == [t0 + 2 * MINUTE, t0 + 3 * MINUTE]
    ticker = await prices.fetch_ticker(week.symbol)
    assert ticker["last"] == week.close[2] and ticker["timestamp"] == t0 + 3 * MINUTE  # the candle just closed
    prices.advance(t0 + 3 * MINUTE + 30_000)
    assert (await prices.fetch_ticker(week.symbol))["last"] == week.close[3]  # the candle in progress


async def test_recorded_prices_refuse_what_they_cannot_serve(week):
    prices = RecordedPrices(week)
    with pytest.raises(ccxt.ExchangeNotAvailable, match="before its first candle"):
        await prices.fetch_ticker(week.symbol)
    with pytest.raises(ccxt.BadSymbol, match="not ETH/USDT:USDT"):
        await prices.fetch_ticker("ETH/USDT:USDT")
    with pytest.raises(ccxt.BadRequest, match="not 5m"):
        await prices.fetch_ohlcv(week.symbol, "5m")
    prices.advance(int(week.time[10]))
    with pytest.raises(ValueError, match="only moves forward"):
        prices.advance(int(week.time[5]))
    with pytest.raises(ValueError, match="need 1m candles .* got 1h"):
        RecordedPrices(resample(week, "1h"))


# --- the stand-in paper records ----------------------------------------------------------------------------------

def test_recorded_price_paper_fills_at_the_next_minute_close(demo_candles, demo_signals):
    records = analysis.recorded_price_paper(demo_candles, demo_signals[:6], {"A": 1_000.0, "B": 100.0})
    assert len(records) == 12 and list(records.columns[:5]) == ["signal_id", "account", "fill_price", "quantity",
                                                                "time"]
    a = records[records["account"] == "A"]
    assert (a["status"] == "success").any()
    for _, r in a[a["status"] == "success"].iterrows():
        signal = next(s for s in demo_signals if s.id == r["signal_id"])
        i = demo_candles.index_at_or_after(signal.time)
        assert r["fill_price"] == demo_candles.close[i]
        assert r["time"] == pd.Timestamp(int(demo_candles.time[i]) + 60_000, unit="ms", tz="UTC")
    b = records[records["account"] == "B"]  # $100 is below the minimum notional
    assert (b["status"] == "skipped").all() and b["fill_price"].isna().all()
    assert b["reason"].map(analysis.skip_category).eq("min_size").all()


def test_recorded_price_paper_skips_signals_outside_the_candles(demo_candles):
    late = parse_signal({"symbol": "BTCUSDT", "side": "long", "entry": 40_000, "sl": 39_000, "tp": 42_000,
                         "id": "late", "time": "2030-01-01T00:00:00Z"})
    eth = parse_signal({"symbol": "ETHUSDT", "side": "long", "entry": 2_000, "sl": 1_900, "tp": 2_200,
                        "id": "eth", "time": "2024-01-02T00:00:00Z"})
    records = analysis.recorded_price_paper(demo_candles, [late, eth], {"A": 1_000.0})
    assert records["status"].tolist() == ["skipped", "skipped"]
    assert records["reason"].tolist() == ["no candles for ETH/USDT:USDT", "signal after the last candle"]
    with pytest.raises(ValueError, match="delay_ms"):
        analysis.recorded_price_paper(demo_candles, [late], {"A": 1_000.0}, delay_ms=0)


async def _direct_paper_feed(candles, signals, balances, delay_ms):
    """The reference: a paper process polling PaperFeed on every minute boundary, executing each signal at its tick."""
    venue = SimulatedVenue(MarketRules.load())
    for name, balance in balances.items():
        venue.add_account(name, balance)
    prices = RecordedPrices(candles)
    feed = PaperFeed(venue, prices)
    executor = MultiAccountExecutor([Account(n, ex) for n, ex in venue.accounts.items()], ExecutionConfig(),
                                    retries=0, retry_delay=0.0)

    async def settle():
        await venue.drain_updates(executor.watcher)

    entries = []
    for signal in sorted(signals, key=lambda s: (s.time, s.id)):
        tick = int(candles.time[candles.index_at_or_after(signal.time)]) + delay_ms
        while prices.now_ms < tick:
            prices.advance(min(tick, (prices.now_ms // MINUTE + 1) * MINUTE))
            await feed.poll({candles.symbol})
            await settle()
        await feed.refresh(signal.symbol)
        await settle()
        summary = await executor.execute(signal)
        await settle()
        entries += [(r.signal_id, r.account, r.status, r.fill_price, r.quantity) for r in summary.results]
    return entries, _exits(venue)


def _exit(c):
    return c.account, c.entry_time, c.exit_time, c.exit_reason, c.exit_price, round(c.pnl, 8)


def _exits(venue):
    return sorted(_exit(c) for ex in venue.accounts.values() for c in ex.closed)


@pytest.fixture
def feeds(monkeypatch):
    """Every PaperFeed the replay builds (the replay's own import of it, spied on), with what its polls closed."""
    built = []

    class Spy(PaperFeed):
        def __init__(self, venue, source):
            super().__init__(venue, source)
            self.closed_by_polls = []
            built.append(self)

        async def poll(self, symbols):
            closed = await super().poll(symbols)
            self.closed_by_polls += closed
            return closed

    monkeypatch.setattr(paper_replay, "PaperFeed", Spy)
    return built


@pytest.mark.parametrize("delay_ms", [60_000, 90_000, 5 * MINUTE])
async def test_replay_is_a_paper_feed_run(week, week_signals, feeds, delay_ms):
    """The stand-in is PaperFeed driven by recorded prices: the same entries and exits as a PaperFeed polled on
    every minute boundary (the replay steps further between signals; it must not change a fill)."""
    expected_entries, expected_exits = await _direct_paper_feed(week, week_signals, BALANCES, delay_ms)
    records = analysis.recorded_price_paper(week, week_signals, BALANCES, delay_ms=delay_ms)
    (feed,) = feeds
    entries = [(r.signal_id, r.account, r.status, None if np.isnan(r.fill_price) else r.fill_price, r.quantity)
               for r in records.itertuples()]
    assert entries == [(s, a, st, p, q if st == "success" else 0.0) for s, a, st, p, q in expected_entries]
    assert _exits(feed.venue) == expected_exits
    assert {e[3] for e in expected_exits} >= {"take_profit", "stop_loss"}, "the window must hold exits to compare"
    assert sorted(_exit(c) for c in feed.closed_by_polls) == expected_exits  # every exit came from PaperFeed.poll
