"""Tests for engine/resume.py on simulated accounts: a signal interrupted at each point of its life is finished
from what exists at the venue — never sent twice, protected at the signal's prices, expired when stale."""

from __future__ import annotations

import ccxt
import pytest

from engine import MultiAccountExecutor
from engine.ids import client_order_id
from engine.results import FAILED, SKIPPED, SUCCESS, UNKNOWN, AccountResult
from engine.resume import Prior

BTC = "BTC/USDT:USDT"


class Events:
    enabled = False

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    async def event(self, title: str, text: str) -> None:
        self.events.append((title, text))


class Journal:
    """An ExecutionJournal keeping what the executor writes."""

    def __init__(self) -> None:
        self.orders: list[tuple[str, str, str]] = []
        self.outcomes: dict[str, AccountResult] = {}

    async def record_order(self, event) -> None:
        self.orders.append((event.account, event.leg, event.state))

    async def record_outcome(self, result) -> None:
        self.outcomes[result.account] = result


def executor(accounts, **kw) -> MultiAccountExecutor:
    return MultiAccountExecutor(accounts, retry_delay=0.0, receive_window=0, **kw)


def algo(ex, status="open") -> dict[str, dict]:
    """Trigger orders by leg (stop_loss / take_profit)."""
    return {("stop_loss" if o["stopLossPrice"] is not None else "take_profit"): o
            for o in ex.algo_orders.values() if o["status"] == status}


def cid(account: str, leg: str) -> str:
    return client_order_id("seed-1", account, leg)


async def entry_only(ex, account: str, qty: float = 0.008) -> dict:
    """What a process that died right after the entry left behind: the entry, no stop, no target."""
    await ex.set_margin_mode("isolated", BTC)
    await ex.set_leverage(20, BTC)
    return await ex.create_order(BTC, "market", "buy", qty, None, {"clientOrderId": cid(account, "E")})


async def test_an_entry_without_its_stop_gets_the_signals_stop_and_target(venue, make_accounts, seed_signal):
    """The issue's case: killed between the entry and its stop. Not entry −2 %: the signal's prices, and a row."""
    (acct,) = make_accounts(1_000)
    ex = acct.exchange
    entry = await entry_only(ex, acct.name)
    journal = Journal()
    run = executor([acct], journal=journal)
    prior = {acct.name: Prior(legs=frozenset({"E"}), margin=20.0, notional=400.0, leverage=20)}
    (r,) = (await run.resume(seed_signal, prior, age_s=30)).results
    assert (r.status, r.reason, r.quantity, r.fill_price, r.entry_order_id) == (
        SUCCESS, "resumed after restart", 0.008, 50_000.0, entry["id"])
    assert (r.margin, r.notional, r.leverage) == (20.0, 400.0, 20)  # the sizing the intent recorded
    legs = algo(ex)
    assert (legs["stop_loss"]["triggerPrice"], legs["take_profit"]["triggerPrice"]) == (49_500.0, 51_000.0)
    assert {o["clientOrderId"] for o in legs.values()} == {cid(acct.name, "SL"), cid(acct.name, "TP")}
    assert len(ex.orders) == 1  # the entry was not sent again
    assert journal.outcomes[acct.name] is r and len(run.watcher.open_brackets()) == 1


async def test_a_stop_already_placed_is_kept_and_only_the_target_added(venue, make_accounts, seed_signal):
    (acct,) = make_accounts(1_000)
    ex = acct.exchange
    await entry_only(ex, acct.name)
    stop = await ex.create_order(BTC, "market", "sell", 0.008, None, {
        "stopLossPrice": 49_500.0, "reduceOnly": True, "clientOrderId": cid(acct.name, "SL")})
    prior = {acct.name: Prior(legs=frozenset({"E", "SL"}))}
    (r,) = (await executor([acct]).resume(seed_signal, prior, age_s=30)).results
    assert r.ok and r.stop_loss_order_id == stop["id"]
    assert len([o for o in ex.algo_orders.values() if o["stopLossPrice"] is not None]) == 1
    assert set(algo(ex)) == {"stop_loss", "take_profit"}


async def test_an_entry_never_sent_is_sent_while_the_signal_is_fresh(venue, make_accounts, seed_signal):
    """Killed after the intent, before the request: nothing at the venue, so the normal path runs, same ids."""
    accounts = make_accounts(1_000, 5_000)
    prior = {"Account 1": Prior(legs=frozenset({"E"}))}  # Account 2 never got as far as its intent
    summary = await executor(accounts).resume(seed_signal, prior, age_s=30)
    assert [(r.account, r.status, r.quantity) for r in summary.results] == [
        ("Account 1", SUCCESS, 0.008), ("Account 2", SUCCESS, 0.04)]
    for a in accounts:
        assert a.exchange.by_client_id[cid(a.name, "E")]["status"] == "closed" and len(a.exchange.orders) == 1


async def test_a_stale_signal_expires_with_an_alert_and_sends_nothing(venue, make_accounts, seed_signal):
    accounts = make_accounts(1_000, 5_000)
    events = Events()
    summary = await executor(accounts, notifier=events).resume(seed_signal, {}, age_s=301)
    assert [(r.status, r.reason) for r in summary.results] == [
        (SKIPPED, "expired after restart: received 301 s ago (at most 300 s, RESUME_MAX_AGE_SECONDS)")] * 2
    assert not any(a.exchange.orders for a in accounts)
    ((title, text),) = events.events
    assert title == "⌛ Signal expired after restart - BTC/USDT" and "Account 1, Account 2" in text


@pytest.mark.parametrize(("price", "why"), [(49_400.0, "no longer between the stop 49500 and the target 51000"),
                                             (50_600.0, "1.20% from the entry 50000 (at most 1.00%")])
async def test_a_fresh_signal_whose_price_drifted_expires(venue, make_accounts, seed_signal, price, why):
    (acct,) = make_accounts(1_000)
    venue.set_price(BTC, price)
    (r,) = (await executor([acct]).resume(seed_signal, {}, age_s=5)).results
    assert r.status == SKIPPED and r.reason.startswith("expired after restart: price ") and why in r.reason
    assert not acct.exchange.orders


async def test_recorded_outcomes_are_kept_and_their_brackets_watched_again(venue, make_accounts, seed_signal):
    """Killed after Account 1 finished and before Account 2 did: Account 1 is not touched again."""
    accounts = make_accounts(1_000, 5_000)
    first = executor(accounts[:1])
    (done,) = (await first.execute(seed_signal)).results
    journal = Journal()
    again = executor(accounts, journal=journal)
    fetches = []
    real = accounts[0].exchange.fetch_order

    async def spy(*args, **kwargs):
        fetches.append(args)
        return await real(*args, **kwargs)

    accounts[0].exchange.fetch_order = spy
    summary = await again.resume(seed_signal, {"Account 1": Prior(outcome=done, legs=frozenset({"E", "SL", "TP"}))},
                                 age_s=30)
    assert [r.account for r in summary.results] == ["Account 1", "Account 2"] and summary.results[0] is done
    assert fetches == [] and "Account 1" not in journal.outcomes  # neither looked up nor recorded again
    assert summary.results[1].ok and len(accounts[0].exchange.orders) == 1
    assert {b.account for b in again.watcher.open_brackets()} == {"Account 1", "Account 2"}


async def test_a_position_closed_while_the_bot_was_down_is_a_success_without_orphans(venue, make_accounts,
                                                                                      seed_signal):
    (acct,) = make_accounts(1_000)
    ex = acct.exchange
    await entry_only(ex, acct.name)
    await ex.create_order(BTC, "market", "sell", 0.008, None, {  # its target, placed before the crash
        "takeProfitPrice": 51_000.0, "reduceOnly": True, "clientOrderId": cid(acct.name, "TP")})
    await ex.create_order(BTC, "market", "sell", 0.008, None, {"reduceOnly": True})  # closed by hand
    (r,) = (await executor([acct]).resume(seed_signal, {acct.name: Prior(legs=frozenset({"E", "TP"}))},
                                          age_s=30)).results
    assert r.ok and r.reason == "resumed after restart: the position was already closed"
    assert algo(ex) == {}  # the target left on a flat account is cancelled


async def test_an_entry_whose_lookup_keeps_failing_is_found_by_its_position(venue, make_accounts, seed_signal):
    (acct,) = make_accounts(1_000)
    ex = acct.exchange
    await entry_only(ex, acct.name)
    for _ in range(7):
        ex.fail_next("fetch_order", ccxt.ExchangeNotAvailable("502"))
    (r,) = (await executor([acct]).resume(seed_signal, {acct.name: Prior(legs=frozenset({"E"}))},
                                          age_s=30)).results
    assert r.ok and set(algo(ex)) == {"stop_loss", "take_profit"} and len(ex.orders) == 1


async def test_an_entry_of_unknown_fate_stays_unknown_quietly_until_it_can_be_told(venue, make_accounts,
                                                                                    seed_signal):
    (acct,) = make_accounts(1_000)
    ex = acct.exchange
    for _ in range(7):
        ex.fail_next("fetch_order", ccxt.ExchangeNotAvailable("502"))
    journal = Journal()
    run = executor([acct], journal=journal)
    prior = {acct.name: Prior(legs=frozenset({"E"}))}
    (r,) = (await run.resume(seed_signal, prior, age_s=30)).results
    assert r.status == UNKNOWN and journal.outcomes[acct.name].status == UNKNOWN
    assert set(run.watcher.watches) == {(acct.name, BTC)} and not ex.orders
    # tried again while it still cannot be told: nothing new recorded
    for _ in range(7):
        ex.fail_next("fetch_order", ccxt.ExchangeNotAvailable("502"))
    journal.outcomes.clear()
    prior = {acct.name: Prior(outcome=r, legs=frozenset({"E"}))}
    (again,) = (await run.resume(seed_signal, prior, age_s=40)).results
    assert again.status == UNKNOWN and journal.outcomes == {}
    # the venue answers: it was never placed, and the signal is still fresh — sent now
    (settled,) = (await run.resume(seed_signal, prior, age_s=50)).results
    assert settled.ok and len(ex.orders) == 1 and journal.outcomes[acct.name] is settled


async def test_a_failed_stop_on_resume_closes_the_position(venue, make_accounts, seed_signal):
    (acct,) = make_accounts(1_000)
    ex = acct.exchange
    await entry_only(ex, acct.name)
    venue.set_price(BTC, 49_400.0)  # below the signal's stop while the bot was down
    (r,) = (await executor([acct]).resume(seed_signal, {acct.name: Prior(legs=frozenset({"E"}))},
                                          age_s=30)).results
    assert r.status == FAILED and r.closed and not ex.positions and algo(ex) == {}
