"""Tests room: a flat, quiet account's balance read ahead (live/idle_account.py) — kept only while the user-data
stream has said nothing since it was read, dropped by any event, a stream drop or age; against the stand-in, a
signal on quiet accounts asks no balance and sizes exactly as one that asks, and a deposit is seen."""

from __future__ import annotations

import asyncio

import pytest

from engine import MultiAccountExecutor, parse_signal
from live import idle_account
from live.idle_account import IdleAccount
from live.session import LiveSession
from tests.standin.rig import live_rig
from tests.standin.scenarios import SEED_SIGNAL, SYMBOL_ID
from tests.standin.user_data import config_event

GUARD_S = 20  # an upper bound so a broken stream fails the test instead of hanging it; never waited out
FLAT = {"assets": [{"asset": "USDT", "walletBalance": "1000", "availableBalance": "1000"}],
        "positions": [{"symbol": "ETHUSDT", "positionAmt": "0"}]}  # a symbol with open orders only: still flat
HOLDING = {"assets": FLAT["assets"], "positions": [{"symbol": "BTCUSDT", "positionAmt": "0.008"}]}


class Clock:
    def __init__(self) -> None:
        self.ms = 1_000_000

    def __call__(self) -> int:
        return self.ms


@pytest.fixture
def idle() -> IdleAccount:
    account = IdleAccount(Clock())
    account.stream_changed(True)
    return account


def test_a_flat_reply_read_while_the_stream_is_up_is_kept_as_a_copy(idle):
    idle.keep(idle.events, FLAT)
    assert idle.fresh() == FLAT and idle.fresh() is not FLAT


@pytest.mark.parametrize("reply", [HOLDING, {"positions": []}, {"assets": [], "positions": [{"positionAmt": "x"}]},
                                   ["not", "a", "dict"]])
def test_a_position_or_an_unreadable_reply_is_not_kept(idle, reply):
    idle.keep(idle.events, reply)
    assert idle.fresh() is None


def test_an_event_while_the_reply_was_being_asked_means_it_is_not_kept_and_asked_again(idle):
    asked_at = idle.events
    idle.asked()
    idle.event()  # e.g. an order update between the request and its reply
    idle.keep(asked_at, FLAT)
    assert idle.fresh() is None
    idle.now_ms.ms += idle_account.SETTLE_MS
    assert idle.wants_refresh()


@pytest.mark.parametrize("change", ["order event", "account update", "stream down", "stream back", "age"])
def test_any_event_a_stream_gap_or_age_drops_the_kept_reply(idle, change):
    idle.keep(idle.events, FLAT)
    if change == "order event":
        idle.event()
    elif change == "account update":
        idle.event(account_update=True)
    elif change == "stream down":
        idle.stream_changed(False)
    elif change == "stream back":
        idle.stream_changed(False)
        idle.stream_changed(True)
    else:
        idle.now_ms.ms += idle_account.MAX_AGE_MS + 1
    assert idle.fresh() is None


def test_without_a_stream_nothing_is_kept():
    idle = IdleAccount(Clock())
    idle.keep(idle.events, FLAT)
    assert idle.fresh() is None and not idle.wants_refresh()


def test_a_refresh_waits_for_a_quiet_stream_and_a_held_position_is_not_read_again_until_the_account_changes(idle):
    assert not idle.wants_refresh()  # the stream just came up: not quiet yet
    idle.now_ms.ms += idle_account.SETTLE_MS
    assert idle.wants_refresh()
    idle.asked()
    idle.keep(idle.events, HOLDING)  # a position: nothing kept
    idle.now_ms.ms += 10 * idle_account.SETTLE_MS
    assert not idle.wants_refresh()  # every tick would otherwise read it again
    idle.event()  # an order update does not change a position
    idle.now_ms.ms += idle_account.SETTLE_MS
    assert not idle.wants_refresh()
    idle.event(account_update=True)  # the position closed
    assert not idle.wants_refresh()  # settling
    idle.now_ms.ms += idle_account.SETTLE_MS
    assert idle.wants_refresh()
    idle.asked()
    idle.keep(idle.events, FLAT)
    assert idle.fresh() is not None and not idle.wants_refresh()
    idle.now_ms.ms += idle_account.MAX_AGE_MS + 1  # however quiet, read again after the maximum age
    assert idle.wants_refresh()


def test_the_reconciliations_read_before_the_stream_decides_whether_the_account_is_read_ahead_on_connect():
    holding = IdleAccount(Clock())
    holding.keep(holding.events, HOLDING)  # read before the stream was up: not kept, but a position is known
    holding.stream_changed(True)
    assert holding.fresh() is None and not holding.wants_refresh(settle=False)
    holding.event(account_update=True)  # it changed (closed, perhaps)
    holding.now_ms.ms += idle_account.SETTLE_MS
    assert holding.wants_refresh()
    flat = IdleAccount(Clock())
    flat.keep(flat.events, FLAT)
    flat.stream_changed(True)
    assert flat.fresh() is None  # read before the stream: events may have been missed
    assert flat.wants_refresh(settle=False)


# ---------------------------------------------------------------------------------- against the stand-in
def balance_reads(rig, account: str | None = None) -> int:
    return sum(1 for e in rig.standin.log
               if e[1:3] == ("GET", "/fapi/v3/account") and (account is None or e[0] == account))


def moved_by_the_test(exchange) -> Clock:
    """The read-ahead's clock of ``exchange`` replaced by one the test moves, starting at the exchange's time."""
    clock = Clock()
    clock.ms = exchange.milliseconds()
    exchange.idle.now_ms = clock
    return clock


async def wait_for(condition) -> None:
    """Until ``condition()`` holds (it is checked after each turn of the event loop; GUARD_S is never waited out)."""
    async with asyncio.timeout(GUARD_S):
        while not condition():
            await asyncio.sleep(0.01)


async def started(rig) -> tuple[MultiAccountExecutor, LiveSession]:
    executor = MultiAccountExecutor(rig.accounts, retry_delay=0.01)
    session = LiveSession(executor, streams=True)
    await session.start()
    assert await session.streams.wait_up(GUARD_S) == []
    assert await session.streams.wait_resynced(GUARD_S) == []
    return executor, session


async def test_a_signal_on_quiet_accounts_asks_no_balance_and_sizes_as_one_that_asks():
    async with live_rig([1000.0, 5000.0]) as rig:
        executor, session = await started(rig)
        try:
            assert all(a.exchange.idle.fresh() is not None for a in rig.accounts)
            reads = balance_reads(rig)
            summary = await executor.execute(parse_signal(dict(SEED_SIGNAL)))
            assert balance_reads(rig) == reads  # sized from the reads made when the streams came up
            assert [(r.status, r.margin, r.quantity) for r in summary.results] == [
                ("success", 20.0, 0.008), ("success", 100.0, 0.04)]  # 2 % of 1,000 and 5,000 (capped at 100)
        finally:
            await session.close()


async def test_a_signal_without_streams_asks_the_balance_and_sizes_the_same():
    async with live_rig([1000.0, 5000.0]) as rig:
        executor = MultiAccountExecutor(rig.accounts, retry_delay=0.01)
        summary = await executor.execute(parse_signal(dict(SEED_SIGNAL)))
        assert balance_reads(rig) == 2
        assert [(r.status, r.margin, r.quantity) for r in summary.results] == [
            ("success", 20.0, 0.008), ("success", 100.0, 0.04)]


async def test_a_deposit_pushed_on_the_stream_is_seen_by_the_next_signal():
    async with live_rig([1000.0]) as rig:
        executor, session = await started(rig)
        stream = session.streams.get("Account 1")
        try:
            rig.standin.deposit("Account 1", 4000.0)
            await wait_for(lambda: stream.state.wallet == 5000.0)  # the ACCOUNT_UPDATE has arrived
            assert rig.exchange("Account 1").idle.fresh() is None
            reads = balance_reads(rig)
            (result,) = (await executor.execute(parse_signal(dict(SEED_SIGNAL)))).results
            assert balance_reads(rig) == reads + 1
            assert (result.status, result.margin) == ("success", 100.0)  # 2 % of 5,000
        finally:
            await session.close()


async def test_with_the_stream_down_the_balance_is_asked():
    async with live_rig([1000.0]) as rig:
        executor, session = await started(rig)
        one = session.streams.get("Account 1")
        try:
            await rig.cut_stream(one)
            reads = balance_reads(rig)
            (result,) = (await executor.execute(parse_signal(dict(SEED_SIGNAL)))).results
            assert balance_reads(rig) == reads + 1 and result.status == "success"
        finally:
            await session.close()


async def test_after_a_position_closes_the_tick_reads_the_account_once_it_has_settled():
    async with live_rig([1000.0]) as rig:
        executor, session = await started(rig)
        exchange = rig.exchange("Account 1")
        idle = exchange.idle
        clock = moved_by_the_test(exchange)
        marks = iter(range(2, 100))

        async def all_events_seen() -> None:
            """A last event pushed after the others: once it is seen, every earlier one has arrived."""
            leverage = next(marks)
            rig.standin.streams.push("Account 1", config_event("ETHUSDT", leverage, now=clock.ms))
            await wait_for(lambda: executor.settings.leverage.get(("Account 1", "ETH/USDT:USDT")) == leverage)

        try:
            await executor.execute(parse_signal(dict(SEED_SIGNAL)))
            await all_events_seen()
            assert idle.fresh() is None  # the signal's own orders and fill
            clock.ms += idle_account.SETTLE_MS
            reads = balance_reads(rig)
            await session.tick()  # holding a position: read once, nothing kept ...
            await session.reads_ahead_done()
            clock.ms += idle_account.SETTLE_MS
            await session.tick()  # ... and not read again while it is held
            await session.reads_ahead_done()
            assert balance_reads(rig) == reads + 1 and idle.fresh() is None
            rig.standin.set_price(SYMBOL_ID, 51_000.0)  # the take-profit fills, the stop is cancelled
            await wait_for(lambda: executor.watcher.cancelled_siblings == 1)
            await all_events_seen()
            await session.tick()  # not settled yet: nothing read
            await session.reads_ahead_done()
            assert balance_reads(rig) == reads + 1
            clock.ms += idle_account.SETTLE_MS
            await session.tick()
            await session.reads_ahead_done()
            assert balance_reads(rig) == reads + 2 and idle.fresh() is not None
        finally:
            await session.close()


async def test_a_read_ahead_stuck_in_the_budget_holds_up_neither_the_tick_nor_a_signal():
    async with live_rig([1000.0]) as rig:
        executor, session = await started(rig)
        exchange = rig.exchange("Account 1")
        clock = moved_by_the_test(exchange)
        queued = asyncio.Event()

        async def waiting_for_housekeeping_weight() -> bool:
            queued.set()
            await asyncio.Event().wait()  # never admitted (the minute's housekeeping share is spent)
            return False

        exchange.refresh_idle_account = waiting_for_housekeeping_weight
        try:
            exchange.idle.event(account_update=True)  # a change, then quiet
            clock.ms += idle_account.SETTLE_MS
            async with asyncio.timeout(GUARD_S):
                await session.tick()  # returns at once: the read waits in the background
                await queued.wait()
                (result,) = (await executor.execute(parse_signal(dict(SEED_SIGNAL)))).results
            assert result.status == "success"  # sized from its own read
        finally:
            await session.close()  # the stuck read is cancelled
