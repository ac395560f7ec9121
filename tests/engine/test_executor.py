"""Tests for engine/executor.py on simulated accounts: the seed example, isolation, stop failures, retries, stats."""

from __future__ import annotations

import asyncio

import ccxt
import pytest

from engine import ExecutionConfig, MultiAccountExecutor, parse_signal
from engine.ids import client_order_id

BTC = "BTC/USDT:USDT"


def no_wait(accounts, config=None, **kw) -> MultiAccountExecutor:
    """An executor that retries without sleeping and trusts "not found" at once (the simulator has no queue)."""
    return MultiAccountExecutor(accounts, config, retry_delay=0.0, receive_window=0, **kw)


def calls(exchange, method: str) -> list[tuple]:
    """Record the arguments of every call of ``exchange.method`` (the call still goes through)."""
    seen: list[tuple] = []
    real = getattr(exchange, method)

    async def spy(*args, **kwargs):
        seen.append(args)
        return await real(*args, **kwargs)

    setattr(exchange, method, spy)
    return seen


def open_algo(exchange) -> list[dict]:
    return [o for o in exchange.algo_orders.values() if o["status"] == "open"]


def leg(order: dict) -> str:
    """stop_loss / take_profit, read from ccxt's fields as the engine would."""
    return "stop_loss" if order["stopLossPrice"] is not None else "take_profit"


class RecordingNotifier:
    enabled = True

    def __init__(self) -> None:
        self.executed: list[str] = []
        self.summaries: list = []
        self.events: list[tuple[str, str]] = []

    async def account_executed(self, signal, result) -> None:
        self.executed.append(result.account)

    async def signal_summary(self, signal, summary) -> None:
        self.summaries.append(summary)

    async def event(self, title: str, text: str) -> None:
        self.events.append((title, text))


# --- the design document's example --------------------------------------------------------------------------

async def test_seed_example(venue, make_accounts, seed_signal):
    accounts = make_accounts(1_000, 5_000, 500)
    notifier = RecordingNotifier()
    executor = MultiAccountExecutor(accounts, notifier=notifier)
    summary = await executor.execute(seed_signal)

    rows = [(r.status, r.margin, r.notional, r.quantity, r.leverage) for r in summary.results]
    assert rows == [("success", 20.0, 400.0, 0.008, 20), ("success", 100.0, 2_000.0, 0.04, 20),
                    ("success", 10.0, 200.0, 0.004, 20)]
    assert (summary.succeeded, summary.total) == (3, 3)
    assert (summary.total_margin, summary.total_notional, summary.total_quantity) == (130.0, 2_600.0, 0.052)
    d = summary.to_dict()
    assert (d["succeeded"], d["total"], d["total_margin"], d["total_notional"], d["total_quantity"]) == (
        3, 3, 130.0, 2_600.0, 0.052)

    for a, r in zip(accounts, summary.results, strict=True):
        ex = a.exchange
        assert (r.fill_price, r.stop_loss, r.take_profit, r.reason, r.closed) == (50_000.0, 49_500.0, 51_000.0, "", False)
        assert r.liquidation_price == pytest.approx(47_690.76, abs=0.01)
        pos = ex.positions[BTC]
        assert (pos.long, pos.contracts, pos.leverage) == (True, r.quantity, 20)
        assert ex.margin_mode[BTC] == "isolated" and ex.leverage[BTC] == 20
        legs = {leg(o): o for o in open_algo(ex)}
        assert legs["stop_loss"]["triggerPrice"] == 49_500.0 and legs["take_profit"]["triggerPrice"] == 51_000.0
        assert all(o["side"] == "sell" and o["reduceOnly"] and o["amount"] == r.quantity for o in legs.values())
        assert legs["stop_loss"]["info"]["workingType"] == "MARK_PRICE"
        assert ex.by_client_id[client_order_id("seed-1", a.name, "E")]["id"] == r.entry_order_id
        assert r.fee == pytest.approx(r.notional * 0.0005)

    assert executor.stats.to_dict() == {
        "signals": 1, "trades": 3, "successes": 3, "failures": 0, "skipped": 0,
        "per_account": {f"Account {i}": {"trades": 1, "successes": 1, "failures": 0, "skipped": 0} for i in (1, 2, 3)},
    }
    assert sorted(notifier.executed) == ["Account 1", "Account 2", "Account 3"]
    assert notifier.summaries == [summary]
    assert len(executor.watcher.open_brackets()) == 3


async def test_short_signal(venue, make_accounts):
    accounts = make_accounts(1_000)
    sig = parse_signal({"symbol": "BTCUSDT", "side": "sell", "entry": 50_000, "sl": 50_500, "tp": 49_000})
    (r,) = (await MultiAccountExecutor(accounts).execute(sig)).results
    assert r.ok and r.side == "SHORT" and r.quantity == 0.008
    ex = accounts[0].exchange
    assert ex.positions[BTC].long is False
    assert all(o["side"] == "buy" for o in open_algo(ex))
    assert r.liquidation_price == pytest.approx(420 / (0.008 * 1.004))


async def test_exchange_calls_and_their_arguments(venue, make_accounts, seed_signal):
    (account,) = make_accounts(1_000)
    ex = account.exchange
    orders = calls(ex, "create_order")
    leverage = calls(ex, "set_leverage")
    await MultiAccountExecutor([account]).execute(seed_signal)
    cid = {leg: client_order_id("seed-1", "Account 1", leg) for leg in ("E", "SL", "TP")}
    assert orders == [
        (BTC, "market", "buy", 0.008, None, {"clientOrderId": cid["E"]}),
        (BTC, "market", "sell", 0.008, None, {"stopLossPrice": 49_500.0, "reduceOnly": True,
                                              "workingType": "MARK_PRICE", "clientOrderId": cid["SL"]}),
        (BTC, "market", "sell", 0.008, None, {"takeProfitPrice": 51_000.0, "reduceOnly": True,
                                              "workingType": "MARK_PRICE", "clientOrderId": cid["TP"]}),
    ]
    assert leverage == [(20, BTC)]


async def test_leverage_and_margin_mode_are_set_once(venue, make_accounts):
    (account,) = make_accounts(10_000)
    ex = account.exchange
    leverage, modes = calls(ex, "set_leverage"), calls(ex, "set_margin_mode")
    executor = MultiAccountExecutor([account], ExecutionConfig(max_open_positions=0))
    for i, lev in enumerate((None, None, 10)):
        sig = parse_signal({"symbol": "BTCUSDT", "side": "long", "entry": 50_000, "sl": 49_500, "tp": 51_000,
                            "id": f"s{i}", "leverage": lev})
        ex.positions.clear()  # let the same symbol trade again
        for o in ex.algo_orders.values():
            o["status"] = "canceled"
        assert (await executor.execute(sig)).results[0].ok
    assert leverage == [(20, BTC), (10, BTC)]
    assert modes == [("isolated", BTC)]



async def test_margin_mode_already_set_by_an_earlier_run_is_not_a_failure(venue, make_accounts, seed_signal):
    """A restarted bot sets the margin mode again: Binance answers -4046 and ccxt raises MarginModeAlreadySet
    (throwMarginModeAlreadySet is on by default); the account trades anyway (found by the crash harness)."""
    (account,) = make_accounts(1_000)
    account.exchange.fail_next("set_margin_mode", ccxt.MarginModeAlreadySet(
        'binanceusdm {"code":-4046,"msg":"No need to change margin type."}'))
    summary = await no_wait([account]).execute(seed_signal)
    assert summary.results[0].status == "success", summary.results[0].reason

# --- failure isolation ------------------------------------------------------------------------------------------

async def test_one_account_failing_does_not_stop_the_others(venue, make_accounts, seed_signal):
    accounts = make_accounts(1_000, 5_000, 500)
    accounts[1].exchange.fail_next("fetch_balance", RuntimeError("boom"))
    notifier = RecordingNotifier()
    executor = MultiAccountExecutor(accounts, notifier=notifier)
    summary = await executor.execute(seed_signal)
    a1, a2, a3 = summary.results
    assert a1.ok and a3.ok
    assert (a2.status, a2.reason) == ("failed", "RuntimeError: boom")
    assert (summary.succeeded, summary.total, summary.total_margin) == (2, 3, 30.0)
    assert BTC not in accounts[1].exchange.positions and not accounts[1].exchange.orders
    assert executor.stats.failures == 1 and executor.stats.successes == 2
    assert sorted(notifier.executed) == ["Account 1", "Account 2", "Account 3"]


async def test_a_slow_account_does_not_hold_the_others_back(venue, make_accounts, seed_signal):
    """Account 2's balance call only returns once accounts 1 and 3 have finished: accounts run concurrently.

    Run one after the other, account 2 would wait for account 3 forever (the wait_for below turns that into a
    failure instead of a hang). No timing is measured.
    """
    accounts = make_accounts(1_000, 5_000, 500)
    notifier = RecordingNotifier()
    others_done = asyncio.Event()
    slow = accounts[1].exchange
    real = slow.fetch_balance

    async def fetch_balance_after_the_others(params=None):
        await others_done.wait()
        return await real(params)

    slow.fetch_balance = fetch_balance_after_the_others
    done = notifier.account_executed

    async def account_executed(signal, result):
        await done(signal, result)
        if {"Account 1", "Account 3"} <= set(notifier.executed):
            others_done.set()

    notifier.account_executed = account_executed
    summary = await asyncio.wait_for(MultiAccountExecutor(accounts, notifier=notifier).execute(seed_signal), 10)
    assert notifier.executed[:2] in (["Account 1", "Account 3"], ["Account 3", "Account 1"])
    assert notifier.executed[2] == "Account 2"
    assert [r.ok for r in summary.results] == [True, True, True]
    # the result order follows the account order, not the finishing order
    assert [r.account for r in summary.results] == ["Account 1", "Account 2", "Account 3"]


async def test_unknown_symbol_fails_each_account_with_bad_symbol(venue, make_accounts):
    accounts = make_accounts(1_000, 500)
    sig = parse_signal({"symbol": "NOPEUSDT", "side": "long", "entry": 1, "sl": 0.9, "tp": 1.2})
    summary = await MultiAccountExecutor(accounts).execute(sig)
    assert [r.status for r in summary.results] == ["failed", "failed"]
    assert all(r.reason.startswith("BadSymbol") for r in summary.results)


async def test_notifier_failures_never_reach_order_flow(venue, make_accounts, seed_signal):
    class Broken:
        enabled = True

        async def account_executed(self, signal, result):
            raise RuntimeError("discord down")

        async def signal_summary(self, signal, summary):
            await asyncio.Event().wait()  # never answers: the executor's notify_timeout ends the wait

        async def event(self, title, text):
            raise RuntimeError("discord down")

    accounts = make_accounts(1_000)
    summary = await MultiAccountExecutor(accounts, notifier=Broken(), notify_timeout=0.01).execute(seed_signal)
    assert summary.results[0].ok


async def test_a_disabled_notifier_is_not_asked_for_trade_alerts(venue, make_accounts, seed_signal):
    notifier = RecordingNotifier()
    notifier.enabled = False  # what the null notifier answers: it would drop them anyway
    summary = await MultiAccountExecutor(make_accounts(1_000, 5_000), notifier=notifier).execute(seed_signal)
    assert [r.ok for r in summary.results] == [True, True]
    assert notifier.executed == [] and notifier.summaries == []


async def test_skips_are_counted_apart_from_trades(venue, make_accounts, seed_signal):
    accounts = make_accounts(1_000, 5, 100)  # $5 below the $10 minimum; $100 -> $40 notional below BTC's minimum
    executor = MultiAccountExecutor(accounts)
    summary = await executor.execute(seed_signal)
    ok, low, small = summary.results
    assert ok.ok
    assert (low.status, low.reason) == ("skipped", "balance $5.00 below minimum $10.00")
    assert small.status == "skipped" and "below minimum 0.001" in small.reason
    assert executor.stats.to_dict()["skipped"] == 2 and executor.stats.trades == 1
    assert executor.stats.per_account["Account 2"] == {"trades": 0, "successes": 0, "failures": 0, "skipped": 1}


def test_account_names_must_be_unique(venue):
    a = venue.add_account("A", 100)
    from engine import Account

    with pytest.raises(ValueError, match="unique"):
        MultiAccountExecutor([Account("A", a), Account("A", a)])


# --- stop-loss / take-profit failures ---------------------------------------------------------------------------

async def test_stop_rejected_after_entry_by_a_price_move_closes_at_market(venue, make_accounts, seed_signal):
    """The price fell through the stop before the order went in: Binance rejects the stop with -2021."""
    accounts = make_accounts(1_000)
    ex = accounts[0].exchange
    venue.set_price(BTC, 49_400)  # below the 49,500 stop
    notifier = RecordingNotifier()
    summary = await MultiAccountExecutor(accounts, notifier=notifier).execute(seed_signal)
    (r,) = summary.results
    assert (r.status, r.closed) == ("failed", True)
    assert "stop-loss rejected, position closed at market" in r.reason and "OrderImmediatelyFillable" in r.reason
    assert "-2021" in r.reason
    assert not ex.positions and not open_algo(ex)
    assert ex.closed[-1].exit_reason == "close"
    assert ex.by_client_id[client_order_id("seed-1", "Account 1", "X")]["reduceOnly"] is True
    assert any("Stop-loss failed" in title for title, _ in notifier.events)
    assert summary.succeeded == 0


async def test_stop_rejected_on_the_second_order_closes_at_market(venue, make_accounts, seed_signal):
    accounts = make_accounts(1_000, 5_000)
    ex = accounts[0].exchange
    real = ex.create_order
    n = 0

    async def second_call_rejected(*args, **kwargs):
        nonlocal n
        n += 1
        if n == 2:
            raise ccxt.InvalidOrder('binanceusdm {"code":-2021,"msg":"Order would immediately trigger."}')
        return await real(*args, **kwargs)

    ex.create_order = second_call_rejected
    bad, good = (await MultiAccountExecutor(accounts).execute(seed_signal)).results
    assert bad.closed and bad.status == "failed" and "InvalidOrder" in bad.reason
    assert not ex.positions and not open_algo(ex)
    assert good.ok and BTC in accounts[1].exchange.positions


async def test_stop_rejected_and_close_failing_is_reported_loudly(venue, make_accounts, seed_signal):
    accounts = make_accounts(1_000)
    ex = accounts[0].exchange
    venue.set_price(BTC, 49_400)
    real = ex.create_order
    n = 0

    async def close_fails(*args, **kwargs):
        nonlocal n
        n += 1
        if n == 4:  # entry, then stop and target together, then the close
            raise ccxt.ExchangeNotAvailable("maintenance")
        return await real(*args, **kwargs)

    ex.create_order = close_fails
    (r,) = (await MultiAccountExecutor(accounts, retries=0, retry_delay=0).execute(seed_signal)).results
    assert r.status == "failed" and not r.closed
    assert "EMERGENCY CLOSE FAILED" in r.reason
    assert BTC in ex.positions  # still open: the reason says so
    assert [o["takeProfitPrice"] for o in open_algo(ex)] == [51_000.0]  # the target still limits it


async def test_stop_rejected_the_target_placed_beside_it_is_cancelled_with_the_close(venue, make_accounts,
                                                                                       seed_signal):
    accounts = make_accounts(1_000)
    ex = accounts[0].exchange
    venue.set_price(BTC, 49_400)  # the stop would trigger at once (-2021); the target is accepted
    (r,) = (await MultiAccountExecutor(accounts, retries=0, retry_delay=0).execute(seed_signal)).results
    assert r.closed and r.status == "failed" and r.take_profit_order_id is None
    assert not ex.positions and not open_algo(ex)


async def test_take_profit_rejected_keeps_the_stop(venue, make_accounts, seed_signal):
    """The price is already past the target: the TP is rejected (-2021) but the trade stands with its stop."""
    accounts = make_accounts(1_000)
    ex = accounts[0].exchange
    venue.set_price(BTC, 51_100)
    (r,) = (await MultiAccountExecutor(accounts).execute(seed_signal)).results
    assert r.ok and not r.closed
    assert r.reason.startswith("take-profit not placed (stop-loss is in place)") and "-2021" in r.reason
    assert r.take_profit_order_id is None and r.stop_loss_order_id is not None
    assert [leg(o) for o in open_algo(ex)] == ["stop_loss"]
    assert BTC in ex.positions


async def test_set_leverage_failure_means_no_order(venue, make_accounts, seed_signal):
    accounts = make_accounts(1_000, 500)
    ex = accounts[0].exchange
    ex.fail_next("set_leverage", ccxt.BadRequest('binanceusdm {"code":-4028,"msg":"Leverage 20 is not valid"}'))
    executor = MultiAccountExecutor(accounts)
    bad, good = (await executor.execute(seed_signal)).results
    assert bad.status == "failed" and "leverage / margin mode not set, nothing traded" in bad.reason
    assert "-4028" in bad.reason
    assert not ex.orders and not ex.algo_orders and not ex.positions
    assert good.ok
    # the failed leverage is not remembered: the next signal tries again and trades
    again = await executor.execute(parse_signal({"symbol": "BTCUSDT", "side": "long", "entry": 50_000,
                                                  "sl": 49_500, "tp": 51_000, "id": "seed-2"}))
    assert again.results[0].ok and ex.leverage[BTC] == 20


async def test_margin_mode_failure_means_no_order(venue, make_accounts, seed_signal):
    accounts = make_accounts(1_000)
    ex = accounts[0].exchange
    ex.fail_next("set_margin_mode", ccxt.ExchangeError("nope"))
    (r,) = (await MultiAccountExecutor(accounts).execute(seed_signal)).results
    assert r.status == "failed" and "nothing traded" in r.reason and not ex.orders


async def test_entry_rejected_fails_the_account(venue, make_accounts, seed_signal):
    accounts = make_accounts(1_000)
    ex = accounts[0].exchange
    ex.fail_next("create_order", ccxt.InsufficientFunds('binanceusdm {"code":-2019,"msg":"Margin is insufficient."}'))
    (r,) = (await no_wait(accounts).execute(seed_signal)).results
    assert r.status == "failed" and r.reason.startswith("entry order failed: InsufficientFunds")
    assert not ex.positions and not ex.algo_orders


# --- timeouts and retries ---------------------------------------------------------------------------------------

async def test_timeout_after_send_is_looked_up_not_resent(venue, make_accounts, seed_signal):
    accounts = make_accounts(1_000)
    ex = accounts[0].exchange
    ex.fail_next("create_order", ccxt.RequestTimeout("binanceusdm POST /fapi/v1/order timed out"), after_effect=True)
    lookups = calls(ex, "fetch_order")
    (r,) = (await no_wait(accounts).execute(seed_signal)).results
    assert r.ok and r.quantity == 0.008
    assert len(ex.orders) == 1 and ex.positions[BTC].contracts == 0.008  # no duplicate entry
    assert lookups == [(None, BTC, {"clientOrderId": client_order_id("seed-1", "Account 1", "E")})]
    assert r.entry_order_id == next(iter(ex.orders))


async def test_timeout_after_send_of_the_stop_is_looked_up_as_a_trigger_order(venue, make_accounts, seed_signal):
    accounts = make_accounts(1_000)
    ex = accounts[0].exchange
    real = ex.create_order
    n = 0

    async def stop_reply_lost(*args, **kwargs):
        nonlocal n
        n += 1
        order = await real(*args, **kwargs)
        if n == 2:
            raise ccxt.RequestTimeout("timed out")
        return order

    ex.create_order = stop_reply_lost
    lookups = calls(ex, "fetch_order")
    (r,) = (await no_wait(accounts).execute(seed_signal)).results
    assert r.ok and len(open_algo(ex)) == 2
    assert lookups[0][2] == {"clientOrderId": client_order_id("seed-1", "Account 1", "SL"), "trigger": True}
    assert r.stop_loss_order_id == ex.by_client_id[client_order_id("seed-1", "Account 1", "SL")]["id"]


async def test_timeout_before_send_is_looked_up_then_resent_once(venue, make_accounts, seed_signal):
    accounts = make_accounts(1_000)
    ex = accounts[0].exchange
    ex.fail_next("create_order", ccxt.RequestTimeout("timed out"))  # never reached the exchange
    sent = calls(ex, "create_order")
    (r,) = (await no_wait(accounts).execute(seed_signal)).results
    assert r.ok
    assert len(ex.orders) == 1 and ex.positions[BTC].contracts == 0.008
    assert len(sent) == 4  # entry twice (the first lost), stop, target


async def test_timeout_on_the_last_attempt_is_still_looked_up(venue, make_accounts, seed_signal):
    """With no retries left, an order whose reply was lost must still be found, not reported as failed."""
    accounts = make_accounts(1_000)
    ex = accounts[0].exchange
    ex.fail_next("create_order", ccxt.RequestTimeout("timed out"), after_effect=True)
    (r,) = (await MultiAccountExecutor(accounts, retries=0, retry_delay=0).execute(seed_signal)).results
    assert r.ok, r.reason
    assert len(ex.orders) == 1 and len(open_algo(ex)) == 2


async def test_an_entry_whose_lookup_fails_is_settled_by_its_position(venue, make_accounts, seed_signal):
    """Reply lost, then every lookup fails (a 502): the position shows the entry filled — protected at once."""
    accounts = make_accounts(1_000)
    ex = accounts[0].exchange
    ex.fail_next("create_order", ccxt.RequestTimeout("timed out"), after_effect=True)
    for _ in range(7):
        ex.fail_next("fetch_order", ccxt.ExchangeNotAvailable("502 Bad Gateway"))
    (r,) = (await no_wait(accounts).execute(seed_signal)).results
    assert r.ok and r.reason.startswith("entry found by its position (OrderStateUnknown")
    assert (r.quantity, r.fill_price) == (0.008, 50_000.0)
    assert len(ex.orders) == 1  # never resent
    assert sorted(leg(o) for o in open_algo(ex)) == ["stop_loss", "take_profit"]
    assert {o["triggerPrice"] for o in open_algo(ex)} == {49_500.0, 51_000.0}


async def test_an_entry_of_unknown_fate_without_a_readable_position_is_unknown_and_watched(venue, make_accounts,
                                                                                           seed_signal):
    accounts = make_accounts(1_000, 5_000)
    ex = accounts[0].exchange
    ex.fail_next("create_order", ccxt.RequestTimeout("timed out"), after_effect=True)
    for _ in range(7):
        ex.fail_next("fetch_order", ccxt.ExchangeNotAvailable("502"))
    real = ex.fetch_positions

    async def unreadable_after_the_entry(symbols=None, params=None):
        if symbols:  # the check after the lookups (the risk check before the entry asks for every symbol)
            raise ccxt.NetworkError("connection reset")
        return await real(symbols, params)

    ex.fetch_positions = unreadable_after_the_entry
    executor = no_wait(accounts)
    unknown, other = (await executor.execute(seed_signal)).results
    assert unknown.status == "unknown" and not unknown.final and "entry state unknown" in unknown.reason
    assert other.ok and len(accounts[1].exchange.orders) == 1
    assert not open_algo(ex) and BTC in ex.positions  # naked, for now
    (watch,) = executor.watcher.watches.values()
    assert (watch.account, watch.symbol, watch.signal_id, watch.stop_loss) == ("Account 1", BTC, "seed-1", 49_500.0)
    # the next watcher round protects it, with the signal's stop and client order id
    ex.fetch_positions = real
    await executor.watcher.sweep()
    (stop,) = open_algo(ex)
    assert (leg(stop), stop["triggerPrice"], stop["amount"], stop["clientOrderId"]) == (
        "stop_loss", 49_500.0, 0.008, client_order_id("seed-1", "Account 1", "SL"))
    assert executor.watcher.watches == {}  # clean, and the simulator's clock is past the watch (no queue)


async def test_a_truncated_reply_is_maybe_sent_not_failed(venue, make_accounts, seed_signal):
    """ccxt raises the generic ExchangeError for a body cut off mid-way: the order may exist — looked up."""
    accounts = make_accounts(1_000)
    ex = accounts[0].exchange
    ex.fail_next("create_order", ccxt.ExchangeError("binanceusdm POST /fapi/v1/order"), after_effect=True)
    sent = calls(ex, "create_order")
    (r,) = (await no_wait(accounts).execute(seed_signal)).results
    assert r.ok and len(ex.orders) == 1 and len(sent) == 3


async def test_a_generic_error_before_the_venue_acted_is_looked_up_then_resent(venue, make_accounts, seed_signal):
    accounts = make_accounts(1_000)
    ex = accounts[0].exchange
    ex.fail_next("create_order", ccxt.ExchangeError("binanceusdm POST /fapi/v1/order"))
    lookups = calls(ex, "fetch_order")
    (r,) = (await no_wait(accounts).execute(seed_signal)).results
    assert r.ok and len(ex.orders) == 1 and len(lookups) == 1


async def test_a_duplicate_id_refusal_after_a_lost_reply_finds_the_order(venue, make_accounts, seed_signal):
    """Lost reply, lookup says "not found" (too early), resend refused -4116: the refusal is not trusted."""
    accounts = make_accounts(1_000)
    ex = accounts[0].exchange
    ex.fail_next("create_order", ccxt.RequestTimeout("timed out"), after_effect=True)
    ex.fail_next("fetch_order", ccxt.OrderNotFound("-2013 Order does not exist."))
    ex.fail_next("create_order", ccxt.InvalidOrder('{"code":-4116,"msg":"ClientOrderId is duplicated."}'))
    (r,) = (await no_wait(accounts).execute(seed_signal)).results
    assert r.ok and len(ex.orders) == 1 and r.entry_order_id == next(iter(ex.orders))


async def test_not_found_is_trusted_only_after_the_receive_window(venue, make_accounts, seed_signal):
    """A request still in flight may land: "not found" is asked again until the venue's receive window is over."""
    accounts = make_accounts(1_000)
    ex = accounts[0].exchange
    ex.fail_next("create_order", ccxt.ExchangeNotAvailable("502"))  # never reached the venue
    lookups = calls(ex, "fetch_order")
    executor = MultiAccountExecutor(accounts, retry_delay=0.001, receive_window=0.0025)
    (r,) = (await executor.execute(seed_signal)).results
    assert r.ok and len(ex.orders) == 1
    assert len(lookups) == 2  # after 0.001 s: too early; after 0.003 s: trusted, then resent


async def test_a_lost_stop_reply_and_failing_lookups_close_the_position_and_leave_no_orphan(venue, make_accounts,
                                                                                              seed_signal):
    """The stop may exist (it does): the emergency close cancels every reduce-only order it leaves behind."""
    accounts = make_accounts(1_000)
    ex = accounts[0].exchange
    real = ex.create_order
    n = 0

    async def stop_reply_lost(*args, **kwargs):
        nonlocal n
        n += 1
        order = await real(*args, **kwargs)
        if n == 2:
            for _ in range(7):
                ex.fail_next("fetch_order", ccxt.ExchangeNotAvailable("502"))
            raise ccxt.RequestTimeout("timed out")
        return order

    ex.create_order = stop_reply_lost
    executor = no_wait(accounts)
    (r,) = (await executor.execute(seed_signal)).results
    assert r.status == "failed" and r.closed and "OrderStateUnknown" in r.reason
    assert not ex.positions and not open_algo(ex)  # the stop that did land is cancelled
    assert [w.reason for w in executor.watcher.watches.values()] == ["stop-loss state unknown, position closed"]


@pytest.mark.parametrize("error", [ccxt.DDoSProtection("rate"), ccxt.RateLimitExceeded("-1003"),
                                   ccxt.ExchangeNotAvailable("down"), ccxt.OnMaintenance("maintenance"),
                                   ccxt.NetworkError("connection reset"), ccxt.BadResponse("not JSON")],
                         ids=lambda e: type(e).__name__)
async def test_transient_or_unknown_error_before_send_is_retried(venue, make_accounts, seed_signal, error):
    accounts = make_accounts(1_000)
    ex = accounts[0].exchange
    ex.fail_next("create_order", error)
    sent = calls(ex, "create_order")
    (r,) = (await no_wait(accounts).execute(seed_signal)).results
    assert r.ok
    assert len(sent) == 4 and sent[0] == sent[1]  # the same order with the same client order id
    assert len(ex.orders) == 1


async def test_transient_errors_give_up_after_the_retries(venue, make_accounts, seed_signal):
    accounts = make_accounts(1_000)
    ex = accounts[0].exchange
    for _ in range(3):
        ex.fail_next("create_order", ccxt.DDoSProtection("rate"))
    (r,) = (await no_wait(accounts, retries=2).execute(seed_signal)).results
    assert r.status == "failed" and "DDoSProtection" in r.reason and not ex.orders


async def test_other_errors_are_not_retried(venue, make_accounts, seed_signal):
    accounts = make_accounts(1_000)
    ex = accounts[0].exchange
    ex.fail_next("create_order", ccxt.InvalidOrder("bad"))
    sent = calls(ex, "create_order")
    (r,) = (await no_wait(accounts).execute(seed_signal)).results
    assert r.status == "failed" and len(sent) == 1


async def test_stats_accumulate_over_signals(venue, make_accounts, seed_signal):
    accounts = make_accounts(1_000, 5_000)
    accounts[1].exchange.fail_next("fetch_positions", RuntimeError("boom"))
    executor = MultiAccountExecutor(accounts)
    await executor.execute(seed_signal)
    await executor.execute(seed_signal)  # both accounts already hold BTC now: skipped... except account 2
    s = executor.stats
    assert (s.signals, s.successes, s.failures) == (2, 2, 1)
    assert s.per_account["Account 1"] == {"trades": 1, "successes": 1, "failures": 0, "skipped": 1}
    assert s.per_account["Account 2"] == {"trades": 2, "successes": 1, "failures": 1, "skipped": 0}


# --- entry_sent and unexpected errors ---------------------------------------------------------------------------

async def test_entry_sent_marks_whether_an_order_may_exist(venue, make_accounts, seed_signal):
    accounts = make_accounts(1_000, 1_000, 5)
    accounts[0].exchange.fail_next("set_leverage", ccxt.BadRequest("no"))
    accounts[1].exchange.fail_next("create_order", ccxt.InvalidOrder("no"))
    lev_failed, entry_failed, skipped = (await no_wait(accounts).execute(seed_signal)).results
    assert (lev_failed.status, lev_failed.entry_sent) == ("failed", False)
    assert (entry_failed.status, entry_failed.entry_sent) == ("failed", True)
    assert (skipped.status, skipped.entry_sent) == ("skipped", False)


async def test_price_formatting_error_happens_before_the_entry(venue, make_accounts, seed_signal):
    """Nothing that can raise sits between the entry fill and the stop: a bad tick fails before any order."""
    accounts = make_accounts(1_000)
    ex = accounts[0].exchange

    def broken(symbol, price):
        raise ccxt.InvalidOrder("price precision")

    ex.price_to_precision = broken
    (r,) = (await MultiAccountExecutor(accounts).execute(seed_signal)).results
    assert r.status == "failed" and not r.entry_sent
    assert "unexpected error after sizing" in r.reason and "InvalidOrder" in r.reason
    assert not ex.orders and not ex.positions


async def test_a_5xx_after_the_order_reached_the_exchange_does_not_duplicate_it(venue, make_accounts, seed_signal):
    """ccxt raises ExchangeNotAvailable for Binance's HTTP 5xx, and Binance says a 503 "Unknown error" may have
    executed: the order is looked up by client order id before any resend."""
    accounts = make_accounts(1_000)
    ex = accounts[0].exchange
    ex.fail_next("create_order", ccxt.ExchangeNotAvailable("binanceusdm 503 Service Unavailable"), after_effect=True)
    (r,) = (await no_wait(accounts).execute(seed_signal)).results
    assert r.ok
    assert len(ex.orders) == 1 and ex.positions[BTC].contracts == 0.008
