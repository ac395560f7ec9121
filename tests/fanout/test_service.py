"""Tests for fanout/service.py: TradingService drives any Session (engine/ports.py) the same way — claim, prepare,
execute, fall back, record, persist — and PaperSession / LiveSession plug into it unchanged."""

from __future__ import annotations

import logging

import ccxt
import numpy as np
import pytest

from analysis.paper_replay import RecordedPrices
from engine import Account, MultiAccountExecutor, SignalSummary, parse_signal
from engine.ports import Session
from engine.watcher import Bracket
from fanout.service import TradingService, saved_ledger
from live.session import LiveSession
from marketdata.candles import Candles
from simulator.paper_session import PaperSession, resume_venue
from storage.journal import Journal

BTC = "BTC/USDT:USDT"
T0 = 1_704_067_200_000
MINUTE = 60_000
HOUR = 3_600_000


class ScriptedSession:
    """A Session that records what the service asks of it (and can fail to prepare or retry accounts)."""

    def __init__(self, executor: MultiAccountExecutor | None = None) -> None:
        self.executor = executor
        self.calls: list[str] = []
        self.prepare_error: Exception | None = None
        self.retry_on: list[Account] = []
        self.brackets_at_start: int | None = None

    async def start(self) -> None:
        self.calls.append("start")
        self.brackets_at_start = len(self.executor.watcher.open_brackets())

    async def prepare(self, signal) -> None:
        self.calls.append(f"prepare {signal.id}")
        if self.prepare_error is not None:
            raise self.prepare_error

    async def fallback(self, signal, summary: SignalSummary) -> SignalSummary | None:
        self.calls.append(f"fallback {signal.id}")
        return await self.executor.execute(signal, accounts=self.retry_on) if self.retry_on else None

    async def tick(self) -> None:
        self.calls.append("tick")

    def persist(self) -> None:
        self.calls.append("persist")


@pytest.fixture
def journal(database_url):
    j = Journal(database_url)
    yield j
    j.close()


def service_for(session, executor, journal, mode="paper") -> TradingService:
    session.executor = executor
    return TradingService(mode=mode, executor=executor, journal=journal, session=session)


def test_sessions_satisfy_the_port(venue, journal, make_accounts):
    executor = MultiAccountExecutor(make_accounts(1_000))
    assert isinstance(ScriptedSession(executor), Session)
    assert isinstance(LiveSession(executor), Session)
    assert isinstance(PaperSession(venue, RecordedPrices(minute_candles([50_000])), executor.watcher, journal),
                      Session)


# --- the service's own sequence, with a scripted session ----------------------------------------------------------

async def test_a_signal_is_prepared_executed_offered_to_the_fallback_recorded_and_saved(make_accounts, seed_signal,
                                                                                        journal):
    executor = MultiAccountExecutor(make_accounts(1_000, 5_000))
    session = ScriptedSession()
    service = service_for(session, executor, journal)
    summary = await service.handle(seed_signal, "file")
    assert summary.succeeded == 2 and service.executed == [summary]
    # the session's state is saved before each account's outcome is journaled, and at the end
    assert session.calls == ["prepare seed-1", "persist", "persist", "fallback seed-1", "persist"]
    assert sorted(r["account"] for r in journal.executions("paper")) == ["Account 1", "Account 2"]
    assert len(journal.load_state("paper_brackets")) == 2
    assert journal.load_state("paper_stats")["signals"] == 1
    assert set(journal.load_state("paper_risk_ledger")) == {"Account 1", "Account 2"}
    assert await service.handle(seed_signal, "webhook") is None  # claimed once: never executed again
    assert session.calls == ["prepare seed-1", "persist", "persist", "fallback seed-1", "persist"]


async def test_a_failed_prepare_sends_nothing_and_leaves_the_signal_for_later(make_accounts, seed_signal, journal):
    accounts = make_accounts(1_000)
    session = ScriptedSession()
    session.prepare_error = ConnectionError("no price")
    service = service_for(session, MultiAccountExecutor(accounts), journal)
    with pytest.raises(ConnectionError):
        await service.handle(seed_signal, "file")
    assert session.calls == ["prepare seed-1", "persist"]
    assert not journal.is_processed("seed-1") and not accounts[0].exchange.orders
    session.prepare_error = None
    assert (await service.handle(seed_signal, "file")).succeeded == 1


async def test_a_signal_that_cannot_be_prepared_is_logged_once_per_reason(make_accounts, seed_signal, journal,
                                                                          caplog):
    caplog.set_level(logging.DEBUG, logger="fanout.service")
    session = ScriptedSession()
    service = service_for(session, MultiAccountExecutor(make_accounts(1_000)), journal)

    def said(text: str) -> list[str]:
        return [r.getMessage() for r in caplog.records if text in r.getMessage() and r.levelno >= logging.INFO]

    for error in (ConnectionError("no price"), ConnectionError("no price"), ConnectionError("no price"),
                  TimeoutError("ticker timed out"), TimeoutError("ticker timed out")):
        session.prepare_error = error  # a watched signals file hands the signal over again every second
        with pytest.raises(type(error)):
            await service.handle(seed_signal, "file")
    assert said("could not prepare") == [  # once, then again when the reason changed
        "❌ signal seed-1 not executed: could not prepare: no price (trying again)",
        "❌ signal seed-1 not executed: could not prepare: ticker timed out (trying again)"]
    assert len(said("📨 file signal seed-1")) == 1
    session.prepare_error = None
    assert (await service.handle(seed_signal, "file")).succeeded == 1
    assert said("✅ signal seed-1 prepared after all")


async def test_the_fallback_outcome_replaces_those_accounts_results(make_accounts, seed_signal, journal):
    accounts = make_accounts(1_000, 5_000)
    for a in accounts:
        a.exchange.fail_next("fetch_balance", ccxt.AuthenticationError("binanceusdm key rejected"))
    executor = MultiAccountExecutor(accounts, retries=0, retry_delay=0.0)
    session = ScriptedSession()
    session.retry_on = [accounts[1]]
    summary = await service_for(session, executor, journal).handle(seed_signal, "file")
    assert [(r.account, r.status) for r in summary.results] == [("Account 1", "failed"), ("Account 2", "success")]
    assert {r["account"]: r["status"] for r in journal.executions("paper")} == {"Account 1": "failed",
                                                                               "Account 2": "success"}


async def test_a_tick_runs_the_session_then_saves(make_accounts, journal):
    session = ScriptedSession()
    service = service_for(session, MultiAccountExecutor(make_accounts(1_000)), journal)
    await service.tick_once()
    assert session.calls == ["tick", "persist"]  # (nothing unfinished to resume)
    assert journal.load_state("paper_brackets") == []


async def test_start_restores_the_watched_brackets_before_the_session_starts(make_accounts, seed_signal, journal):
    first = MultiAccountExecutor(make_accounts(1_000))
    await service_for(ScriptedSession(), first, journal, mode="live").handle(seed_signal, "file")
    saved = journal.load_state("live_brackets")
    journal.save_state("live_brackets", [*saved, {**saved[0], "account": "Gone"}])  # an account no longer run
    again = ScriptedSession()
    service = service_for(again, MultiAccountExecutor(first.accounts), journal, mode="live")
    await service.start()
    assert again.calls == ["start"] and again.brackets_at_start == 1
    assert service.executor.watcher.open_brackets() == [Bracket(**saved[0])]
    assert saved_ledger(journal, "live").day_start == first.ledger.day_start
    assert saved_ledger(journal, "paper").day_start == {}


# --- PaperSession behind the service ----------------------------------------------------------------------------------

def minute_candles(opens, highs=None, lows=None, closes=None) -> Candles:
    o = np.array(opens, dtype=float)
    return Candles(symbol=BTC, timeframe="1m", time=T0 + MINUTE * np.arange(len(o)), open=o,
                   high=np.array(highs or opens, dtype=float), low=np.array(lows or opens, dtype=float),
                   close=np.array(closes or opens, dtype=float), volume=np.ones(len(o)))


PAPER_MINUTES = minute_candles(opens=[50_000, 50_050, 50_200, 51_100], highs=[50_100, 50_300, 51_200, 51_150],
                               lows=[49_900, 49_950, 50_150, 51_000], closes=[50_050, 50_200, 51_100, 51_050])


def paper_service(rules, journal, prices) -> TradingService:
    venue = resume_venue(journal, rules, {"A": 1_000, "B": 5_000}, taker_fee=0.0)
    executor = MultiAccountExecutor([Account(n, ex) for n, ex in venue.accounts.items()])
    session = PaperSession(venue, prices, executor.watcher, journal)
    return TradingService(mode="paper", executor=executor, journal=journal, session=session)


async def test_paper_session_fills_at_the_live_price_and_settles_candles(rules, journal, seed_signal):
    prices = RecordedPrices(PAPER_MINUTES)
    service = paper_service(rules, journal, prices)
    await service.start()
    prices.advance(T0 + MINUTE)  # the first minute has closed: its close is the last price
    summary = await service.handle(seed_signal, "file")
    assert [(r.account, r.fill_price) for r in summary.results] == [("A", 50_050.0), ("B", 50_050.0)]
    venue = service.session.venue
    await service.tick_once()  # nothing closed after the entry yet
    assert all(BTC in ex.positions for ex in venue.accounts.values())
    prices.advance(T0 + 4 * MINUTE)  # minute 2 crossed the 51,000 target
    await service.tick_once()
    for ex in venue.accounts.values():
        assert [(c.exit_reason, c.exit_time) for c in ex.closed] == [("take_profit", T0 + 2 * MINUTE)]
        assert {o["status"] for o in ex.algo_orders.values()} == {"closed", "canceled"}  # the watcher cancelled
    assert service.executor.watcher.cancelled_siblings == 2
    assert journal.load_state("paper_feed") == {BTC: T0 + 3 * MINUTE}


async def test_paper_session_resumes_where_it_stopped(rules, journal, seed_signal):
    prices = RecordedPrices(PAPER_MINUTES)
    prices.advance(T0 + MINUTE)
    first = paper_service(rules, journal, prices)
    await first.start()
    await first.handle(seed_signal, "file")
    saved = journal.load_state("paper_venue")
    again = paper_service(rules, journal, prices)  # a restart: venue, feed and brackets from the journal
    await again.start()
    assert again.session.venue.to_state() == saved
    assert len(again.executor.watcher.open_brackets()) == 2
    prices.advance(T0 + 4 * MINUTE)
    await again.tick_once()
    assert again.executor.watcher.cancelled_siblings == 2
    assert all(not ex.positions for ex in again.session.venue.accounts.values())


async def test_paper_session_without_a_price_leaves_the_signal_unprocessed(rules, journal, seed_signal):
    prices = RecordedPrices(PAPER_MINUTES)  # the clock is at the first minute's open: no closed price yet
    service = paper_service(rules, journal, prices)
    with pytest.raises(ccxt.ExchangeNotAvailable):
        await service.handle(seed_signal, "file")
    assert not journal.is_processed(seed_signal.id)


# --- LiveSession behind the service (simulated accounts standing in for live ones) ---------------------------------

async def test_live_session_reconciles_every_account_at_start(venue, journal):
    naked = venue.add_account("Naked", 1_000)
    await naked.create_order(BTC, "market", "buy", 0.008)  # a position without a stop (e.g. after a crash)
    broken = venue.add_account("Broken", 1_000)
    broken.fail_next("fetch_positions", ccxt.ExchangeNotAvailable("down"))
    events = []

    class Alerts:
        enabled = True

        async def account_executed(self, signal, result): ...

        async def signal_summary(self, signal, summary): ...

        async def event(self, title, text):
            events.append(title)

    executor = MultiAccountExecutor([Account("Naked", naked), Account("Broken", broken)], notifier=Alerts())
    service = TradingService(mode="live", executor=executor, journal=journal, session=LiveSession(executor))
    await service.start()
    (stop,) = await naked.fetch_open_orders(BTC, None, None, {"trigger": True})
    assert (stop["stopLossPrice"], stop["reduceOnly"]) == (49_000.0, True)
    assert sorted(events) == ["❌ Reconcile failed - Broken", "🔧 Reconciled - Naked"]  # concurrently: any order


async def test_live_session_can_skip_reconciliation_or_close(venue, journal):
    ex = venue.add_account("A", 1_000)
    await ex.create_order(BTC, "market", "buy", 0.008)
    executor = MultiAccountExecutor([Account("A", ex)])
    await LiveSession(executor, reconcile=False).start()
    assert BTC in ex.positions and not ex.algo_orders
    await LiveSession(executor, unprotected="close").start()
    assert not ex.positions
    with pytest.raises(ValueError, match="unprotected"):
        LiveSession(executor, unprotected="hope")


async def test_live_session_tick_polls_for_fills(venue, make_accounts, seed_signal, journal, recorder):
    executor = MultiAccountExecutor(make_accounts(1_000))
    service = TradingService(mode="live", executor=executor, journal=journal, session=LiveSession(executor))
    await service.handle(seed_signal, "webhook")
    venue.apply_candle(BTC, T0 + HOUR, 49_900, 49_950, 49_400, 49_450)  # the stop fills on the exchange
    await venue.drain_updates(recorder)  # no websocket: nothing reaches the watcher until it polls
    await service.tick_once()
    assert executor.watcher.cancelled_siblings == 1 and executor.watcher.open_brackets() == []
    assert journal.load_state("live_brackets") == []


async def test_live_session_falls_back_to_the_primary_key_only_when_nothing_was_placed(make_accounts, seed_signal,
                                                                                       journal):
    accounts = make_accounts(1_000, 5_000)
    for a in accounts:
        a.exchange.fail_next("fetch_balance", ccxt.AuthenticationError("binanceusdm key rejected"))
    executor = MultiAccountExecutor(accounts, retries=0, retry_delay=0.0)
    session = LiveSession(executor, fallback_account=accounts[0])
    service = TradingService(mode="live", executor=executor, journal=journal, session=session)
    summary = await service.handle(seed_signal, "file")
    assert [(r.account, r.status) for r in summary.results] == [("Account 1", "success"), ("Account 2", "failed")]

    accounts[1].exchange.fail_next("fetch_balance", ccxt.AuthenticationError("binanceusdm key rejected"))
    other = parse_signal({"symbol": "ETH/USDT", "side": "long", "entry": 2_000, "sl": 1_980, "tp": 2_040,
                          "id": "eth-1"})
    accounts[0].exchange.venue.set_price("ETH/USDT:USDT", 2_000)
    summary = await service.handle(other, "file")  # one account placed its orders: no fallback
    assert [(r.account, r.status) for r in summary.results] == [("Account 1", "success"), ("Account 2", "failed")]
    assert executor.stats.signals == 3  # the seed signal, its fallback, the ETH signal
