"""Tests for engine/watcher.py: the sibling of a filled stop / target is cancelled (pushed or polled); reconcile."""

from __future__ import annotations

import ccxt

from engine import Account, BracketWatcher, MultiAccountExecutor
from engine.ids import client_order_id
from engine.watcher import Watch

BTC = "BTC/USDT:USDT"
T0 = 1_704_067_200_000
HOUR = 3_600_000


class Events:
    enabled = True

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    async def account_executed(self, signal, result) -> None: ...

    async def signal_summary(self, signal, summary) -> None: ...

    async def event(self, title: str, text: str) -> None:
        self.events.append((title, text))


async def deliver(venue, watcher: BracketWatcher) -> None:
    """Hand the venue's queued order updates to the watcher (what the backtest runner / paper session do)."""
    await venue.drain_updates(watcher)


def status(ex, oid: str) -> str:
    return ex.algo_orders[oid]["status"]


async def bracket(make_accounts, seed_signal, *balances, notifier=None):
    accounts = make_accounts(*(balances or (1_000,)))
    executor = MultiAccountExecutor(accounts, notifier=notifier)
    summary = await executor.execute(seed_signal)
    assert all(r.ok for r in summary.results)
    return executor.watcher, accounts, summary.results


async def test_stop_fill_cancels_the_target(venue, make_accounts, seed_signal):
    watcher, (acct,), (r,) = await bracket(make_accounts, seed_signal)
    ex = acct.exchange
    venue.apply_candle(BTC, T0 + HOUR, 49_900, 49_950, 49_400, 49_450)
    assert status(ex, r.stop_loss_order_id) == "closed" and status(ex, r.take_profit_order_id) == "open"
    await deliver(venue, watcher)
    assert status(ex, r.take_profit_order_id) == "canceled"
    assert watcher.cancelled_siblings == 1 and watcher.open_brackets() == []
    assert not ex.positions and ex.closed[-1].exit_reason == "stop_loss"


async def test_target_fill_cancels_the_stop(venue, make_accounts, seed_signal):
    watcher, (acct,), (r,) = await bracket(make_accounts, seed_signal)
    ex = acct.exchange
    venue.apply_candle(BTC, T0 + HOUR, 50_100, 51_200, 50_050, 51_100)
    await deliver(venue, watcher)
    assert status(ex, r.take_profit_order_id) == "closed" and status(ex, r.stop_loss_order_id) == "canceled"
    assert ex.closed[-1].exit_reason == "take_profit"
    assert watcher.open_brackets() == []


async def test_each_account_gets_its_own_cancel(venue, make_accounts, seed_signal):
    watcher, accounts, results = await bracket(make_accounts, seed_signal, 1_000, 5_000, 500)
    venue.apply_candle(BTC, T0 + HOUR, 50_100, 51_200, 50_050, 51_100)
    await deliver(venue, watcher)
    assert watcher.cancelled_siblings == 3
    for a, r in zip(accounts, results, strict=True):
        assert status(a.exchange, r.stop_loss_order_id) == "canceled"


async def test_sibling_already_gone_is_not_an_error(venue, make_accounts, seed_signal, recorder):
    events = Events()
    watcher, (acct,), (r,) = await bracket(make_accounts, seed_signal, notifier=events)
    ex = acct.exchange
    await ex.cancel_order(r.take_profit_order_id, BTC, {"trigger": True})  # e.g. cancelled by hand
    await venue.drain_updates(recorder)  # nothing queued before the fill
    venue.apply_candle(BTC, T0 + HOUR, 49_900, 49_950, 49_400, 49_450)
    await deliver(venue, watcher)  # the cancel answers OrderNotFound (-2011)
    assert watcher.cancelled_siblings == 0 and events.events == []
    assert watcher.open_brackets() == []


async def test_a_failed_cancel_is_alerted(venue, make_accounts, seed_signal):
    events = Events()
    watcher, (acct,), (r,) = await bracket(make_accounts, seed_signal, notifier=events)
    acct.exchange.fail_next("cancel_order", ccxt.ExchangeNotAvailable("down"))
    venue.apply_candle(BTC, T0 + HOUR, 49_900, 49_950, 49_400, 49_450)
    await deliver(venue, watcher)
    assert [t for t, _ in events.events] == ["⚠️ Sibling order not cancelled - Account 1"]
    assert r.take_profit_order_id in events.events[0][1]


async def test_updates_of_unknown_orders_are_ignored(venue, make_accounts, seed_signal):
    watcher, _, _ = await bracket(make_accounts, seed_signal)
    assert await watcher.on_order_update("Account 1", {"id": "999", "status": "closed"}) is None
    assert await watcher.on_order_update("Nobody", {"id": "999", "status": "closed"}) is None
    assert len(watcher.open_brackets()) == 1


async def test_liquidation_cancels_both_legs_and_forgets_the_bracket(venue, make_accounts, seed_signal):
    watcher, (acct,), (r,) = await bracket(make_accounts, seed_signal)
    venue.apply_candle(BTC, T0 + HOUR, 47_000, 47_100, 46_900, 47_050)  # gap through the stop and liquidation
    assert acct.exchange.closed[-1].exit_reason == "liquidation"
    await deliver(venue, watcher)
    assert watcher.open_brackets() == [] and watcher.cancelled_siblings == 0


async def test_poll_finds_a_filled_leg_and_cancels_the_sibling(venue, make_accounts, seed_signal, recorder):
    watcher, (acct,), (r,) = await bracket(make_accounts, seed_signal)
    ex = acct.exchange
    venue.apply_candle(BTC, T0 + HOUR, 49_900, 49_950, 49_400, 49_450)
    await venue.drain_updates(recorder)  # nothing reaches the watcher: live without a websocket
    assert await watcher.poll() == 1
    assert status(ex, r.take_profit_order_id) == "canceled"
    assert watcher.open_brackets() == []
    assert await watcher.poll() == 0


async def test_poll_with_nothing_filled_changes_nothing(venue, make_accounts, seed_signal):
    watcher, (acct,), (r,) = await bracket(make_accounts, seed_signal)
    assert await watcher.poll() == 0
    assert len(watcher.open_brackets()) == 1
    acct.exchange.fail_next("fetch_open_orders", ccxt.ExchangeNotAvailable("down"))
    assert await watcher.poll() == 0  # logged, retried on the next poll


# --- reconcile ---------------------------------------------------------------------------------------------------

async def open_naked(ex, side="buy", qty=0.008) -> None:
    await ex.set_leverage(20, BTC)
    await ex.create_order(BTC, "market", side, qty)


async def test_reconcile_protects_a_position_without_stop(venue):
    ex = venue.add_account("A", 1_000)
    await open_naked(ex)
    watcher = BracketWatcher([Account("A", ex)])
    report = await watcher.reconcile(Account("A", ex))
    assert report.protected == ["BTC/USDT:USDT stop 49000"]
    (stop,) = [o for o in ex.algo_orders.values() if o["status"] == "open"]
    assert (stop["info"]["orderType"], stop["side"], stop["triggerPrice"], stop["amount"], stop["reduceOnly"]) == (
        "STOP_MARKET", "sell", 49_000.0, 0.008, True)
    again = await watcher.reconcile(Account("A", ex))  # now protected: nothing to do
    assert not again.changed


async def test_reconcile_protects_a_short(venue):
    ex = venue.add_account("A", 1_000)
    await open_naked(ex, side="sell")
    report = await BracketWatcher([]).reconcile(Account("A", ex), stop_distance_pct=0.01)
    assert report.protected == ["BTC/USDT:USDT stop 50500"]


async def test_reconcile_uses_the_tracked_stop(venue, make_accounts, seed_signal):
    watcher, (acct,), (r,) = await bracket(make_accounts, seed_signal)
    ex = acct.exchange
    await ex.cancel_order(r.stop_loss_order_id, BTC, {"trigger": True})  # the stop vanished
    report = await watcher.reconcile(acct)
    assert report.protected == ["BTC/USDT:USDT stop 49500"]


async def test_reconcile_closes_an_unprotected_position_when_asked(venue):
    events = Events()
    ex = venue.add_account("A", 1_000)
    await open_naked(ex)
    report = await BracketWatcher([], notifier=events).reconcile(Account("A", ex), unprotected="close")
    assert report.closed == [BTC] and not ex.positions
    assert events.events and events.events[0][0] == "🔧 Reconciled - A"


async def test_reconcile_cancels_orphan_reduce_only_orders(venue, make_accounts, seed_signal):
    watcher, (acct,), (r,) = await bracket(make_accounts, seed_signal)
    ex = acct.exchange
    await ex.create_order(BTC, "market", "sell", 0.008, None, {"reduceOnly": True})  # closed by hand
    report = await watcher.reconcile(acct)
    assert sorted(report.orphans_cancelled) == sorted([r.stop_loss_order_id, r.take_profit_order_id])
    assert all(o["status"] == "canceled" for o in ex.algo_orders.values())
    assert not report.protected and not report.closed


async def test_reconcile_reports_errors(venue):
    ex = venue.add_account("A", 1_000)
    await open_naked(ex)
    ex.fail_next("create_order", ccxt.ExchangeNotAvailable("down"))
    report = await BracketWatcher([]).reconcile(Account("A", ex))
    assert report.errors == [f"{BTC}: ExchangeNotAvailable: down"] and report.changed
    assert BTC in ex.positions


# --- the sweep: watched symbols, every round --------------------------------------------------------------------

def watch(account="A", **kw) -> Watch:
    return Watch(**{"account": account, "symbol": BTC, "side": "LONG", "signal_id": "seed-1", "stop_loss": 49_500.0,
                    "take_profit": 51_000.0, **kw})


def open_orders(ex) -> list[dict]:
    return [o for o in ex.algo_orders.values() if o["status"] == "open"]


async def test_sweep_gives_a_naked_watched_position_the_signals_stop(venue):
    events = Events()
    ex = venue.add_account("A", 1_000)
    await open_naked(ex)
    watcher = BracketWatcher([Account("A", ex)], notifier=events)
    watcher.watch(watch())
    (report,) = await watcher.sweep()
    assert report.protected == ["BTC/USDT:USDT stop 49500"]
    (stop,) = open_orders(ex)
    assert (stop["triggerPrice"], stop["reduceOnly"], stop["clientOrderId"]) == (
        49_500.0, True, client_order_id("seed-1", "A", "SL"))
    assert events.events[0][0] == "🛡️ Protected - A"
    assert watcher.watches == {}  # clean and past its time: dropped
    assert await watcher.sweep() == []  # nothing watched: no request at all


async def test_sweep_closes_a_position_whose_stop_the_price_has_passed(venue):
    ex = venue.add_account("A", 1_000)
    await open_naked(ex)
    venue.set_price(BTC, 49_400.0)  # below the stop: Binance refuses it (-2021, would trigger at once)
    watcher = BracketWatcher([Account("A", ex)])
    watcher.watch(watch())
    (report,) = await watcher.sweep()
    assert report.closed == [BTC] and not ex.positions and not open_orders(ex)
    assert "refused (OrderImmediatelyFillable" in report.errors[0]


async def test_sweep_cancels_reduce_only_orders_without_a_position(venue, make_accounts, seed_signal):
    watcher, (acct,), (r,) = await bracket(make_accounts, seed_signal)
    ex = acct.exchange
    await ex.create_order(BTC, "market", "sell", 0.008, None, {"reduceOnly": True})  # closed by hand
    watcher.watch(watch(account=acct.name))
    (report,) = await watcher.sweep()
    assert sorted(report.orphans_cancelled) == sorted([r.stop_loss_order_id, r.take_profit_order_id])
    assert not open_orders(ex)


async def test_sweep_keeps_watching_until_its_time_and_while_it_cannot_look(venue):
    ex = venue.add_account("A", 1_000)
    await open_naked(ex)
    watcher = BracketWatcher([Account("A", ex)])
    watcher.watch(watch(until_ms=T0 + HOUR))
    ex.fail_next("fetch_positions", ccxt.ExchangeNotAvailable("502"))
    assert await watcher.sweep() == [] and len(watcher.watches) == 1 and not open_orders(ex)
    await watcher.sweep()  # protected now, but a late order could still land: still watched
    assert len(open_orders(ex)) == 1 and len(watcher.watches) == 1
    venue.set_price(BTC, 50_000.0, T0 + HOUR)
    assert await watcher.sweep() == [] and watcher.watches == {}
    assert len(open_orders(ex)) == 1  # the stop that was there is kept, no second one


async def test_a_stop_cancelled_by_hand_is_found_by_the_poll_and_replaced_by_the_sweep(venue, make_accounts,
                                                                                       seed_signal):
    watcher, (acct,), (r,) = await bracket(make_accounts, seed_signal)
    ex = acct.exchange
    await ex.cancel_order(r.stop_loss_order_id, BTC, {"trigger": True})  # cancelled in the app
    await watcher.poll()
    assert set(watcher.watches) == {(acct.name, BTC)}
    await watcher.sweep()
    stops = [o for o in open_orders(ex) if o["stopLossPrice"] is not None]
    assert [(o["triggerPrice"], o["clientOrderId"]) for o in stops] == [
        (49_500.0, client_order_id("seed-1", acct.name, "SL"))]


async def test_a_sibling_that_cannot_be_cancelled_is_swept_next_round(venue, make_accounts, seed_signal):
    watcher, (acct,), (r,) = await bracket(make_accounts, seed_signal)
    ex = acct.exchange
    ex.fail_next("cancel_order", ccxt.ExchangeNotAvailable("502"))
    venue.apply_candle(BTC, T0 + HOUR, 50_000, 51_100, 50_000, 51_050)  # the target fills
    await deliver(venue, watcher)
    assert [o["id"] for o in open_orders(ex)] == [r.stop_loss_order_id]  # the cancel failed: an orphan
    (report,) = await watcher.sweep()
    assert report.orphans_cancelled == [r.stop_loss_order_id] and not open_orders(ex)
