"""Tests for simulator/venue.py: the one fill loop, order updates for the watcher, the end-of-data close, and
saving / restoring a venue that then behaves exactly like the original."""

from __future__ import annotations

import json

import pytest

from engine import Account, MultiAccountExecutor, parse_signal
from simulator.venue import SimulatedVenue

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"
T0 = 1_704_067_200_000
MINUTE = 60_000
HOUR = 3_600_000
STOP_CANDLE = (49_900, 49_950, 49_400, 49_450)  # crosses the seed signal's 49,500 stop
TARGET_CANDLE = (50_100, 51_200, 50_050, 51_100)  # crosses its 51,000 target


async def bracketed(venue, seed_signal, *balances, at=T0):
    """Accounts on ``venue`` holding the seed signal's position (entry at the clock ``at``), with stop and target."""
    venue.set_price(BTC, 50_000, at)
    start = len(venue.accounts)
    accounts = [Account(f"Account {start + i}", venue.add_account(f"Account {start + i}", b))
                for i, b in enumerate(balances, 1)]
    executor = MultiAccountExecutor(accounts)
    summary = await executor.execute(seed_signal)
    assert all(r.ok for r in summary.results)
    return executor, accounts


def statuses(ex) -> dict[str, str]:
    return {o["info"]["orderType"]: o["status"] for o in ex.algo_orders.values()}


# --- drain_updates ---------------------------------------------------------------------------------------------------

async def test_drain_updates_delivers_queued_fills_in_order_once(venue, seed_signal, recorder):
    _, (a, b) = await bracketed(venue, seed_signal, 1_000, 5_000)
    assert await venue.drain_updates(recorder) == 0  # placing orders pushes nothing
    venue.apply_candle(BTC, T0 + HOUR, *STOP_CANDLE)
    assert await venue.drain_updates(recorder) == 2
    assert [(acct, o["status"], o["stopLossPrice"]) for acct, o in recorder.updates] == [
        ("Account 1", "closed", 49_500.0), ("Account 2", "closed", 49_500.0)]
    assert all("_kind" not in o for _, o in recorder.updates)  # ccxt's shape, nothing private
    assert await venue.drain_updates(recorder) == 0


async def test_drain_updates_cancels_siblings_through_the_watcher(venue, seed_signal):
    executor, (a,) = await bracketed(venue, seed_signal, 1_000)
    venue.apply_candle(BTC, T0 + HOUR, *TARGET_CANDLE)
    assert statuses(a.exchange) == {"STOP_MARKET": "open", "TAKE_PROFIT_MARKET": "closed"}
    await venue.drain_updates(executor.watcher)
    assert statuses(a.exchange) == {"STOP_MARKET": "canceled", "TAKE_PROFIT_MARKET": "closed"}
    assert executor.watcher.open_brackets() == [] and executor.watcher.cancelled_siblings == 1


async def test_updates_queued_while_draining_are_delivered_too(venue):
    seen = []

    class Echo:
        async def on_order_update(self, account, order):
            seen.append(order["id"])
            if order["id"] == "1":
                venue.emit(account, {"id": "2"})

    venue.emit("A", {"id": "1"})
    assert await venue.drain_updates(Echo()) == 2 and seen == ["1", "2"]


# --- apply_candle ----------------------------------------------------------------------------------------------------

async def test_apply_candle_judges_only_positions_open_when_the_candle_began(venue, seed_signal):
    _, (early,) = await bracketed(venue, seed_signal, 1_000, at=T0)
    _, (late,) = await bracketed(venue, seed_signal, 1_000, at=T0 + 30_000)  # mid-minute entry
    closed = venue.apply_candle(BTC, T0, *STOP_CANDLE)
    assert [(c.account, c.exit_reason, c.exit_time) for c in closed] == [("Account 1", "stop_loss", T0)]
    assert BTC in late.exchange.positions  # the minute's low may have come before its entry
    assert venue.now_ms == T0 + 30_000  # the clock never goes back
    assert venue.prices[BTC] == STOP_CANDLE[3]


async def test_apply_candle_opened_before_widens_the_cut(venue, seed_signal):
    await bracketed(venue, seed_signal, 1_000, at=T0)
    await bracketed(venue, seed_signal, 1_000, at=T0 + 30_000)
    closed = venue.apply_candle(BTC, T0, *STOP_CANDLE, opened_before=T0 + 30_000)
    assert [(c.account, c.exit_time) for c in closed] == [("Account 1", T0), ("Account 2", T0)]


async def test_apply_candle_that_crosses_nothing_only_moves_price_and_clock(venue, seed_signal, recorder):
    _, (a,) = await bracketed(venue, seed_signal, 1_000)
    assert venue.apply_candle(BTC, T0 + HOUR, 50_000, 50_100, 49_900, 50_050) == []
    assert BTC in a.exchange.positions and (venue.now_ms, venue.prices[BTC]) == (T0 + HOUR, 50_050)
    assert await venue.drain_updates(recorder) == 0


async def test_apply_candle_leaves_other_symbols_alone(venue, seed_signal):
    _, (a,) = await bracketed(venue, seed_signal, 1_000)
    venue.set_price(ETH, 2_000)
    assert venue.apply_candle(ETH, T0 + HOUR, 2_000, 2_000, 1, 1) == []
    assert BTC in a.exchange.positions


async def test_account_apply_candle_reports_the_level_and_price(venue, seed_signal):
    _, (a,) = await bracketed(venue, seed_signal, 1_000)
    ex = a.exchange
    hit = ex.apply_candle(BTC, T0 + HOUR, 49_000, 49_100, 48_900)  # gaps through the stop
    assert (hit.level.kind, hit.price, hit.closed.exit_price, hit.closed.exit_time) == (
        "stop_loss", 49_000, 49_000, T0 + HOUR)
    assert ex.apply_candle(BTC, T0 + 2 * HOUR, *STOP_CANDLE[:3]) is None  # no position left


# --- close_all -------------------------------------------------------------------------------------------------------

async def test_close_all_closes_at_the_last_price_and_cancels_the_orders(rules, seed_signal, recorder):
    venue = SimulatedVenue(rules, slippage_bps=5)
    _, (a, b) = await bracketed(venue, seed_signal, 1_000, 5_000)
    venue.set_price(BTC, 50_200, T0 + HOUR)
    closed = venue.close_all(T0 + 2 * HOUR)
    assert [(c.account, c.exit_reason, c.exit_price, c.exit_time) for c in closed] == [
        ("Account 1", "end_of_data", 50_200, T0 + 2 * HOUR), ("Account 2", "end_of_data", 50_200, T0 + 2 * HOUR)]
    assert not a.exchange.positions and not b.exchange.positions
    qty, entry = closed[0].quantity, closed[0].entry_price
    assert entry == pytest.approx(50_000 * 1.0005)  # slipped on the way in, not on the way out
    assert closed[0].pnl == pytest.approx((50_200 - entry) * qty - qty * (entry + 50_200) * 0.0005)
    for acct in (a, b):
        assert statuses(acct.exchange) == {"STOP_MARKET": "canceled", "TAKE_PROFIT_MARKET": "canceled"}
        assert {o["info"]["algoStatus"] for o in acct.exchange.algo_orders.values()} == {"CANCELED"}
    await venue.drain_updates(recorder)
    assert sorted((acct, o["status"]) for acct, o in recorder.updates) == [
        ("Account 1", "canceled"), ("Account 1", "canceled"), ("Account 2", "canceled"), ("Account 2", "canceled")]
    assert venue.close_all(T0 + 3 * HOUR) == []


async def test_close_all_forgets_the_brackets_through_the_watcher(venue, seed_signal):
    executor, _ = await bracketed(venue, seed_signal, 1_000)
    venue.close_all(T0 + HOUR)
    await venue.drain_updates(executor.watcher)
    assert executor.watcher.open_brackets() == [] and executor.watcher.cancelled_siblings == 0


async def test_close_all_at_a_time_per_symbol(venue, seed_signal):
    _, (a,) = await bracketed(venue, seed_signal, 1_000)
    ex = a.exchange
    venue.set_price(ETH, 2_000)
    await ex.create_order(ETH, "market", "sell", 0.1)
    closed = venue.close_all({BTC: T0 + HOUR, ETH: T0 + 2 * HOUR})
    assert [(c.symbol, c.side, c.exit_time) for c in closed] == [(BTC, "LONG", T0 + HOUR), (ETH, "SHORT", T0 + 2 * HOUR)]


# --- to_state / from_state -------------------------------------------------------------------------------------------

async def busy_venue(rules, seed_signal) -> SimulatedVenue:
    """Three accounts: one stopped out, one with a bracketed position, one with a half-closed position."""
    venue = SimulatedVenue(rules, taker_fee=0.0004, slippage_bps=1)
    venue.set_price(BTC, 50_000, T0)
    accounts = [Account(n, venue.add_account(n, b)) for n, b in (("A", 1_000), ("B", 5_000), ("C", 20_000))]
    executor = MultiAccountExecutor(accounts[:1])
    await executor.execute(seed_signal)
    venue.apply_candle(BTC, T0 + MINUTE, *STOP_CANDLE)
    await venue.drain_updates(executor.watcher)
    venue.set_price(BTC, 50_000, T0 + 2 * MINUTE)
    await MultiAccountExecutor(accounts[1:2]).execute(seed_signal)
    c = accounts[2].exchange
    await c.set_leverage(10, BTC)
    await c.create_order(BTC, "market", "sell", 0.2, None, {"clientOrderId": "short-1"})
    await c.create_order(BTC, "market", "buy", 0.1, None, {"clientOrderId": "half", "reduceOnly": True})
    await c.create_order(BTC, "market", "buy", 0.1, None, {"stopLossPrice": 50_500, "reduceOnly": True,
                                                          "clientOrderId": "c-stop"})
    venue.apply_candle(BTC, T0 + 3 * MINUTE, 50_000, 50_100, 49_900, 50_050)  # crosses nothing
    venue.set_price(ETH, 2_500)
    venue.emit("B", {"id": "pending", "status": "closed"})  # an update not yet delivered
    return venue


def snapshot(venue: SimulatedVenue) -> str:
    return json.dumps(venue.to_state(), sort_keys=True)


async def test_state_round_trip_is_exact(rules, seed_signal):
    venue = await busy_venue(rules, seed_signal)
    saved = json.loads(json.dumps(venue.to_state()))  # through JSON, as the journal stores it
    restored = SimulatedVenue.from_state(saved, rules, taker_fee=0.0004, slippage_bps=1)
    assert snapshot(restored) == snapshot(venue)
    assert list(restored.accounts) == ["A", "B", "C"] and restored.now_ms == venue.now_ms
    for name, ex in venue.accounts.items():
        again = restored.accounts[name]
        assert (again.wallet, again.realized_pnl, again.fees_paid) == (ex.wallet, ex.realized_pnl, ex.fees_paid)
        assert again.positions == ex.positions and again.closed == ex.closed
        assert [await again.fetch_positions()] == [await ex.fetch_positions()]
        assert await again.fetch_balance() == await ex.fetch_balance()
        assert await again.fetch_open_orders(None, None, None, {"trigger": True}) == await ex.fetch_open_orders(
            None, None, None, {"trigger": True})


async def test_a_restored_venue_behaves_like_the_original(rules, seed_signal):
    original = await busy_venue(rules, seed_signal)
    restored = SimulatedVenue.from_state(json.loads(json.dumps(original.to_state())), rules, taker_fee=0.0004,
                                         slippage_bps=1)
    outcomes = []
    for venue in (original, restored):
        seen: list = []

        class Sink:
            async def on_order_update(self, account, order, seen=seen):
                seen.append((account, order))

        executor = MultiAccountExecutor([Account(n, ex) for n, ex in venue.accounts.items()])
        steps = [
            venue.apply_candle(BTC, T0 + 4 * MINUTE, 50_050, 50_600, 49_950, 50_550),  # C's stop fires
            venue.apply_candle(BTC, T0 + 5 * MINUTE, 50_550, 51_100, 50_500, 51_050),  # B's target fills
        ]
        await venue.drain_updates(Sink())
        venue.set_price(BTC, 51_000, T0 + 6 * MINUTE)
        summary = await executor.execute(parse_signal({"symbol": "BTC/USDT", "side": "long", "entry": 51_000,
                                                       "sl": 50_500, "tp": 52_000, "id": "next"}))
        steps.append(venue.close_all(T0 + HOUR))
        outcomes.append((steps, seen, [(r.account, r.status, r.entry_order_id, r.stop_loss_order_id)
                                       for r in summary.results], snapshot(venue)))
    assert outcomes[0] == outcomes[1]
    steps, seen, results, _ = outcomes[0]
    assert [status for _, status, _, _ in results] == ["success", "success", "success"]
    assert [[(c.account, c.exit_reason) for c in step] for step in steps] == [
        [("C", "stop_loss")], [("B", "take_profit")], [("A", "end_of_data"), ("B", "end_of_data"),
                                                       ("C", "end_of_data")]]
    assert seen[0] == ("B", {"id": "pending", "status": "closed"})  # the saved undelivered update comes first


async def test_restored_client_ids_and_counters(rules, seed_signal):
    venue = await busy_venue(rules, seed_signal)
    restored = SimulatedVenue.from_state(json.loads(json.dumps(venue.to_state())), rules)
    c = restored.accounts["C"]
    assert (await c.fetch_order(None, BTC, {"clientOrderId": "half"}))["reduceOnly"] is True
    assert (await c.fetch_order(None, BTC, {"clientOrderId": "c-stop", "trigger": True}))["stopLossPrice"] == 50_500
    assert restored.next_id() == venue.next_id() and restored.next_algo_id() == venue.next_algo_id()


async def test_state_saved_before_client_ids_and_updates_still_loads(rules, seed_signal):
    venue = await busy_venue(rules, seed_signal)
    old = json.loads(json.dumps(venue.to_state()))
    del old["updates"]
    for account in old["accounts"].values():
        del account["client_ids"]
    restored = SimulatedVenue.from_state(old, rules)
    c = restored.accounts["C"]
    assert (await c.fetch_order(None, BTC, {"clientOrderId": "c-stop", "trigger": True}))["stopLossPrice"] == 50_500
    assert restored.accounts["B"].positions == venue.accounts["B"].positions


def test_unknown_state_version_is_refused(rules):
    with pytest.raises(ValueError, match="state version 99"):
        SimulatedVenue.from_state({"version": 99}, rules)


async def test_order_books_are_read_only(venue, seed_signal):
    _, (a,) = await bracketed(venue, seed_signal, 1_000)
    with pytest.raises(TypeError):
        a.exchange.algo_orders["x"] = {}  # type: ignore[index]
    with pytest.raises(AttributeError):
        a.exchange.algo_orders = {}  # type: ignore[misc]
