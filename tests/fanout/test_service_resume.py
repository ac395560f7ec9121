"""Tests for fanout/service.py across a restart (issue 11): a signal journaled but not done is resumed on start
and settled after ticks — never skipped, never sent twice — on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from dataclasses import asdict

import ccxt
import pytest

from analysis.paper_replay import RecordedPrices
from engine import Account, MultiAccountExecutor
from engine.ids import client_order_id
from engine.results import OrderEvent
from fanout.service import TradingService
from live.session import LiveSession
from simulator.paper_session import PaperSession, resume_venue
from storage.journal import Journal
from tests.fanout.test_service import MINUTE, PAPER_MINUTES, T0

BTC = "BTC/USDT:USDT"
NOW = 1_800_000_000.0  # the service's wall clock in these tests (seconds)


@pytest.fixture
def journal(database_url):
    j = Journal(database_url)
    yield j
    j.close()


def live_service(accounts, journal, *, now=NOW, **kw) -> TradingService:
    executor = MultiAccountExecutor(accounts, retry_delay=0.0, receive_window=0, **kw)
    return TradingService(mode="live", executor=executor, journal=journal, session=LiveSession(executor),
                          clock=lambda: now)


def journaled(journal, signal, *, status="claimed", received_at=NOW - 10, mode="live") -> None:
    """What a process that died left in the journal about ``signal``."""
    assert journal.claim_signal(signal.id, mode=mode, source="file:signals.csv", payload=asdict(signal))
    with journal.engine.begin() as conn:  # its arrival time, as that process recorded it
        from sqlalchemy import update

        from storage.journal import processed_signals
        conn.execute(update(processed_signals).values(received_at=received_at))
    if status == "claimed":
        journal.mark_claimed(signal.id)


async def intent(journal, signal, account: str, leg: str = "E", mode: str = "live") -> None:
    await journal.record_order(mode, OrderEvent(
        signal_id=signal.id, account=account, leg=leg, state="intent",
        client_order_id=client_order_id(signal.id, account, leg), amount=0.008, price=signal.entry, margin=20.0,
        notional=400.0, leverage=20))


async def test_a_claimed_signal_of_a_dead_process_is_resumed_not_skipped(venue, make_accounts, seed_signal, journal):
    """Killed after Account 1's entry filled and before its stop; Account 2 never started. The restart gives
    Account 1 the signal's stop and target (not entry −2 %) and its row, trades Account 2, and reconciles clean."""
    accounts = make_accounts(1_000, 5_000)
    one = accounts[0].exchange
    await one.set_leverage(20, BTC)
    await one.create_order(BTC, "market", "buy", 0.008, None, {"clientOrderId": client_order_id("seed-1",
                                                                                                "Account 1", "E")})
    journaled(journal, seed_signal)
    await intent(journal, seed_signal, "Account 1")

    service = live_service(accounts, journal)
    await service.start()
    assert journal.unfinished_signals("live") == []
    rows = {r["account"]: r for r in journal.executions("live")}
    assert {n: (r["status"], r["quantity"], r["stop_loss"], r["take_profit"]) for n, r in rows.items()} == {
        "Account 1": ("success", 0.008, 49_500.0, 51_000.0), "Account 2": ("success", 0.04, 49_500.0, 51_000.0)}
    assert rows["Account 1"]["reason"] == "resumed after restart" and rows["Account 1"]["margin"] == 20.0
    for a in accounts:
        triggers = sorted(o["triggerPrice"] for o in a.exchange.algo_orders.values() if o["status"] == "open")
        assert triggers == [49_500.0, 51_000.0] and len(a.exchange.orders) == 1
    assert len(service.executor.watcher.open_brackets()) == 2
    # a second restart: nothing left to do, nothing sent
    again = live_service(accounts, journal)
    await again.start()
    assert all(len(a.exchange.orders) == 1 for a in accounts)
    assert await again.handle(seed_signal, "file:signals.csv") is None  # the file offers it again: done already


async def test_a_received_signal_is_traded_on_start_while_fresh(venue, make_accounts, seed_signal, journal):
    accounts = make_accounts(1_000)
    journaled(journal, seed_signal, status="received")  # killed before it was claimed
    await live_service(accounts, journal).start()
    assert [r["status"] for r in journal.executions("live")] == ["success"]
    assert len(accounts[0].exchange.orders) == 1


async def test_a_stale_signal_is_expired_after_restart_with_an_alert(venue, make_accounts, seed_signal, journal):
    accounts = make_accounts(1_000)
    events = []

    class Alerts:
        enabled = False

        async def event(self, title, text):
            events.append((title, text))

    journaled(journal, seed_signal, received_at=NOW - 600)  # ten minutes down: RESUME_MAX_AGE_SECONDS is 300
    await live_service(accounts, journal, notifier=Alerts()).start()
    ((row,),) = [journal.executions("live")]
    assert (row["status"], row["reason"]) == ("skipped", "expired after restart: received 600 s ago (at most "
                                                         "300 s, RESUME_MAX_AGE_SECONDS)")
    assert not accounts[0].exchange.orders and journal.unfinished_signals("live") == []
    assert [t for t, _ in events] == ["⌛ Signal expired after restart - BTC/USDT"]


async def test_an_unknown_account_keeps_its_signal_open_until_a_tick_settles_it(venue, make_accounts, seed_signal,
                                                                                journal):
    accounts = make_accounts(1_000, 5_000)
    ex = accounts[0].exchange
    ex.fail_next("create_order", ccxt.RequestTimeout("timed out"))  # the request never arrived
    for _ in range(7):
        ex.fail_next("fetch_order", ccxt.ExchangeNotAvailable("502"))
    real = ex.fetch_positions

    async def unreadable(symbols=None, params=None):
        if symbols:
            raise ccxt.ExchangeNotAvailable("502")
        return await real(symbols, params)

    ex.fetch_positions = unreadable
    service = live_service(accounts, journal, now=time.time())  # handle journals it at the real time
    summary = await service.handle(seed_signal, "webhook")
    assert [r.status for r in summary.results] == ["unknown", "success"]
    assert [r["signal_id"] for r in journal.unfinished_signals("live")] == ["seed-1"]
    assert {r["account"]: r["status"] for r in journal.executions("live")} == {"Account 1": "unknown",
                                                                              "Account 2": "success"}
    ex.fetch_positions = real  # the venue answers again
    await service.tick_once()  # the sweep finds nothing; the resume looks the entry up: never placed, still fresh
    assert {r["account"]: r["status"] for r in journal.executions("live")} == {"Account 1": "success",
                                                                              "Account 2": "success"}
    assert journal.unfinished_signals("live") == [] and len(ex.orders) == 1


# --- paper: the journal holds the simulated venue --------------------------------------------------------------

def paper_service(rules, journal, prices) -> TradingService:
    venue = resume_venue(journal, rules, {"A": 1_000, "B": 5_000}, taker_fee=0.0)
    executor = MultiAccountExecutor([Account(n, ex) for n, ex in venue.accounts.items()])
    session = PaperSession(venue, prices, executor.watcher, journal)
    return TradingService(mode="paper", executor=executor, journal=journal, session=session,
                          clock=lambda: NOW)


async def test_paper_never_journals_an_outcome_the_saved_venue_lacks(rules, journal, seed_signal):
    """Each account's row is written after the venue holding its orders was saved: a kill anywhere after it
    (after the 📊 summary, before the final save included) loses nothing."""
    prices = RecordedPrices(PAPER_MINUTES)
    prices.advance(T0 + MINUTE)
    service = paper_service(rules, journal, prices)
    await service.start()
    seen = {}
    real = journal.record_outcome

    async def check(mode, result):
        saved = journal.load_state("paper_venue")["accounts"][result.account]
        seen[result.account] = (len(saved["positions"]), len([o for o in saved["algo_orders"]
                                                              if o["status"] == "open"]))
        await real(mode, result)

    journal.record_outcome = check
    await service.handle(seed_signal, "file")
    assert seen == {"A": (1, 2), "B": (1, 2)}


async def test_paper_resumes_a_signal_whose_run_died_before_it_was_done(rules, journal, seed_signal):
    prices = RecordedPrices(PAPER_MINUTES)
    prices.advance(T0 + MINUTE)
    first = paper_service(rules, journal, prices)
    await first.start()
    journal.finish_signal = lambda *a: (_ for _ in ()).throw(SystemError("killed before 'done'"))
    with pytest.raises(SystemError):
        await first.handle(seed_signal, "file")
    del journal.finish_signal
    assert [r["status"] for r in journal.unfinished_signals("paper")] == ["claimed"]

    again = paper_service(rules, journal, prices)  # the restart: venue and journal as saved
    await again.start()
    assert journal.unfinished_signals("paper") == []
    assert sorted((r["account"], r["status"]) for r in journal.executions("paper")) == [("A", "success"),
                                                                                       ("B", "success")]
    for ex in again.session.venue.accounts.values():
        assert len(ex.orders) == 1 and BTC in ex.positions  # kept, not traded twice


async def test_a_fresh_signal_waits_for_a_price_instead_of_expiring(venue, make_accounts, seed_signal, journal):
    """Found by the crash harness: when the resume's price check cannot read a price (the venue's ticker
    unreachable), a fresh signal used to be expired at once ('no price to check'); it now waits for the next
    tick, and trades once the price is there."""
    accounts = make_accounts(1_000)
    journaled(journal, seed_signal)  # killed after the claim, before any order
    accounts[0].exchange.fail_next("fetch_ticker", ccxt.NetworkError("binanceusdm GET ticker: connection refused"))
    service = live_service(accounts, journal)
    await service.start()
    ((row,),) = [journal.executions("live")]
    assert row["status"] == "unknown" and row["reason"].startswith("not sent yet after restart: no price to check")
    assert journal.unfinished_signals("live") and not accounts[0].exchange.orders
    await service.tick_once()
    ((row,),) = [journal.executions("live")]
    assert row["status"] == "success" and journal.unfinished_signals("live") == []
    assert len(accounts[0].exchange.orders) == 1
