"""Tests room: the per-IP request-weight budget (live/budget.py) on a simulated clock: windows, priorities,
header corrections, 429 pauses, 418 bans, per-account order counts and refusals."""

from __future__ import annotations

import asyncio
import logging

import pytest

from live.budget import BudgetWaitTooLong, WeightBudget
from live.budget_config import BudgetConfig, Priority, request_priority
from live.weights import UNKNOWN_WEIGHT, request_cost
from tests.standin.clock import MINUTE_START, SimClock
from tests.standin.rig import Alerts

PROTECTIVE, ENTRY, HOUSEKEEPING = Priority.PROTECTIVE, Priority.ENTRY, Priority.HOUSEKEEPING


def budget(clock: SimClock, **kw) -> WeightBudget:
    """Limit 100, no margin: protective may use 100, entries 90, housekeeping 50 a minute."""
    return WeightBudget(BudgetConfig(weight_limit=100, safety_margin=0.0, **kw), clock=clock)


async def blocked(b: WeightBudget, account: str, weight: int) -> bool:
    """True if this request cannot go now (it is withdrawn again)."""
    attempt = asyncio.ensure_future(b.acquire(account=account, weight=weight))
    await asyncio.sleep(0)
    if attempt.done():
        b.settle(attempt.result())
        return False
    attempt.cancel()
    await asyncio.gather(attempt, return_exceptions=True)
    return True


async def take(b: WeightBudget, account: str, weight: int, priority: Priority = ENTRY, orders: int = 0):
    ticket = await b.acquire(account=account, weight=weight, orders=orders, priority=priority)
    b.settle(ticket)
    return ticket


def test_weights_follow_binance():
    assert request_cost("GET", "/fapi/v3/account", {}) == (5, 0)
    assert request_cost("GET", "/fapi/v1/openAlgoOrders", {}) == (40, 0)
    assert request_cost("GET", "/fapi/v1/openAlgoOrders", {"symbol": "BTCUSDT"}) == (1, 0)
    assert request_cost("POST", "/fapi/v1/order", {"symbol": "BTCUSDT"}) == (0, 1)
    assert request_cost("GET", "/fapi/v1/klines", {"limit": "1500"}) == (10, 0)
    assert request_cost("GET", "/prefix/fapi/v1/leverageBracket", {"symbol": "X"}) == (1, 0)
    assert request_cost("GET", "/fapi/v1/somethingNew", {}) == (UNKNOWN_WEIGHT, 0)


async def test_a_request_that_does_not_fit_waits_for_the_next_minute(caplog):
    clock = SimClock(MINUTE_START + 10)
    b = budget(clock, boundary_guard_s=0.0)
    await take(b, "Account 1", 85)
    caplog.set_level(logging.INFO, logger="fanout.live.budget")
    ticket = await b.acquire(account="Account 2", weight=10)  # 95 > 90: entries' share is full
    assert clock.time() == MINUTE_START + 60
    assert ticket.weight_sent == (ticket.weight_sent[0], 10.0)  # the new minute starts from zero
    assert b.waited == {"Account 2": 50.0}
    assert "Account 2 waits about 50 s (entry): 85 of 100 weight used this minute" in caplog.text


async def test_protective_requests_use_the_reserve_and_go_first():
    clock = SimClock(MINUTE_START)
    b = budget(clock)
    await take(b, "Account 1", 90)
    await take(b, "Account 1", 10, PROTECTIVE)  # the last 10 are the protective reserve
    assert clock.time() == MINUTE_START
    assert await blocked(b, "Account 2", 1)  # entries wait for the next minute
    order: list[str] = []

    async def go(name: str, priority: Priority, weight: int) -> None:
        await take(b, name, weight, priority)
        order.append(name)

    b.register("Account 2")
    b.register("Account 3")
    await asyncio.gather(go("housekeeping", HOUSEKEEPING, 20), go("Account 3", ENTRY, 20),
                         go("Account 2", ENTRY, 40), go("stop", PROTECTIVE, 40))
    # minute 2: the stop, then Account 2 (registered first); Account 3 would pass 90 → minute 3, then housekeeping
    assert order == ["stop", "Account 2", "Account 3", "housekeeping"]
    assert clock.time() == MINUTE_START + 121  # two minutes on, plus the 1 s boundary guard


async def test_housekeeping_never_takes_more_than_its_share():
    clock = SimClock(MINUTE_START)
    b = budget(clock)
    for _ in range(5):
        await take(b, "Account 1", 10, HOUSEKEEPING)
    assert clock.time() == MINUTE_START
    await take(b, "Account 1", 10, HOUSEKEEPING)
    assert clock.time() > MINUTE_START + 59  # the sixth waited: 50 is housekeeping's share
    with request_priority(HOUSEKEEPING):  # the priority comes from the context too
        b.settle(await b.acquire(account="Account 1", weight=40))
        assert await blocked(b, "Account 1", 1)


async def test_an_order_that_costs_no_weight_passes_the_queue():
    clock = SimClock(MINUTE_START)
    b = budget(clock)
    await take(b, "Account 1", 90)
    waiting = asyncio.ensure_future(b.acquire(account="Account 2", weight=5))
    await asyncio.sleep(0)
    ticket = await b.acquire(account="Account 3", weight=0, orders=1, priority=ENTRY)
    assert ticket.orders == 1 and clock.time() == MINUTE_START and not waiting.done()
    await waiting
    assert clock.time() > MINUTE_START + 59


async def test_headers_correct_the_count_with_other_users_of_the_ip():
    clock = SimClock(MINUTE_START + 5)
    b = budget(clock)
    ticket = await b.acquire(account="Account 1", weight=5)
    b.observe(ticket, 200, {"X-MBX-USED-WEIGHT-1M": "70"}, "{}")  # someone else on this IP used 65
    b.settle(ticket)
    assert b.weight.used == 70
    await take(b, "Account 1", 21)
    assert clock.time() >= MINUTE_START + 60  # 70 + 21 > 90
    # a header from a request sent in an earlier minute says nothing about this one
    b.observe(ticket, 200, {"x-mbx-used-weight-1m": "99"}, "{}")
    assert b.weight.used == 21


async def test_a_window_turning_carries_weight_still_in_flight():
    clock = SimClock(MINUTE_START + 59.9)
    b = budget(clock, boundary_guard_s=0.0)
    flying = await b.acquire(account="Account 1", weight=60)
    clock.advance(0.2)  # the minute turned while it was on the wire: the server may count it in the new one
    assert b.weight.room(clock.time()) == 40
    b.settle(flying)


async def test_429_pauses_every_account_for_retry_after(caplog):
    clock = SimClock(MINUTE_START)
    b = budget(clock)
    ticket = await b.acquire(account="Account 1", weight=1)
    b.observe(ticket, 429, {"Retry-After": "7"}, '{"code":-1003,"msg":"Too much request weight used"}')
    b.settle(ticket)
    assert b.rejections[429] == 1 and b.paused_until == MINUTE_START + 7
    await take(b, "Account 2", 0, PROTECTIVE, orders=1)  # even a stop waits for the pause to end
    assert clock.time() == MINUTE_START + 7
    assert "every account waits 7 s" in caplog.text


async def test_order_count_429_pauses_that_account_only():
    clock = SimClock(MINUTE_START)
    b = budget(clock)
    ticket = await b.acquire(account="Account 1", weight=0, orders=1)
    b.observe(ticket, 429, {"Retry-After": "3"}, '{"code": -1015, "msg": "Too many new orders"}')
    b.settle(ticket)
    await take(b, "Account 2", 0, orders=1)
    await take(b, "Account 1", 5)
    assert clock.time() == MINUTE_START  # others' orders and Account 1's weighted calls go on
    await take(b, "Account 1", 0, orders=1)
    assert clock.time() >= MINUTE_START + 3


async def test_order_counts_per_account_from_headers():
    clock = SimClock(MINUTE_START + 1)
    b = WeightBudget(BudgetConfig(order_limit_10s=10, safety_margin=0.0), clock=clock)
    ticket = await b.acquire(account="Account 1", weight=0, orders=1)
    b.observe(ticket, 200, {"X-MBX-ORDER-COUNT-10S": "10", "X-MBX-ORDER-COUNT-1M": "10"}, "{}")
    b.settle(ticket)
    await take(b, "Account 2", 0, orders=1)
    assert clock.time() == MINUTE_START + 1
    await take(b, "Account 1", 0, orders=1)  # its ten-second window is full
    assert clock.time() == MINUTE_START + 11


async def test_418_stops_everything_alerts_with_the_end_and_refuses_long_entry_waits(caplog):
    clock = SimClock(MINUTE_START)
    b = WeightBudget(BudgetConfig(max_wait_s=60), clock=clock, notifier=Alerts())
    ticket = await b.acquire(account="Account 1", weight=5)
    end_ms = int((MINUTE_START + 600) * 1000)
    b.observe(ticket, 418, {"Retry-After": "600"},
              f'{{"code":-1003,"msg":"Way too much request weight used; IP banned until {end_ms}."}}')
    b.settle(ticket)
    await b.drain_alerts()
    title, text = b.notifier.events[0]
    assert title == "🚫 Binance IP ban" and "until 2026-01-01 00:10:00 UTC" in text
    with pytest.raises(BudgetWaitTooLong, match="Account 2: would wait 600 s .* IP banned by Binance"):
        await b.acquire(account="Account 2", weight=5)
    assert b.refused == 1
    await take(b, "Account 3", 0, PROTECTIVE, orders=1)  # a stop waits the ban out, nothing is sent before
    assert clock.time() == MINUTE_START + 600
    await b.drain_alerts()
    assert b.notifier.events[-1][0] == "▶️ Binance IP ban over"


async def test_418_without_a_time_in_the_body_uses_retry_after():
    clock = SimClock(MINUTE_START)
    b = budget(clock)
    ticket = await b.acquire(account="Account 1", weight=5)
    b.observe(ticket, 418, {"retry-after": "120"}, "")
    assert b.banned_until == MINUTE_START + 120 and b.rejections[418] == 1


async def test_a_queued_entry_is_refused_when_a_ban_comes_while_it_waits():
    clock = SimClock(MINUTE_START + 30)
    b = WeightBudget(BudgetConfig(weight_limit=100, safety_margin=0.0, max_wait_s=120), clock=clock)
    first = await b.acquire(account="Account 1", weight=90)
    waiting = asyncio.ensure_future(b.acquire(account="Account 2", weight=10))
    await asyncio.sleep(0)
    b.observe(first, 418, {"Retry-After": "3600"}, "")
    with pytest.raises(BudgetWaitTooLong):
        await waiting


def test_config_errors_name_the_variable():
    with pytest.raises(ValueError, match="BINANCE_WEIGHT_LIMIT must be a whole number"):
        BudgetConfig.from_env({"BINANCE_WEIGHT_LIMIT": "lots"})
    with pytest.raises(ValueError, match="BINANCE_WEIGHT_MARGIN must be in"):
        BudgetConfig.from_env({"BINANCE_WEIGHT_MARGIN": "1.5"})
    with pytest.raises(ValueError, match="BINANCE_MAX_WAIT_SECONDS must be zero or more"):
        BudgetConfig.from_env({"BINANCE_MAX_WAIT_SECONDS": "-1"})
    cfg = BudgetConfig.from_env({"BINANCE_WEIGHT_LIMIT": "6000", "BINANCE_WEIGHT_MARGIN": "0.2"})
    assert cfg.weight_limit == 6000 and cfg.usable == 4800
