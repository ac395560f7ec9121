"""Tests room: LiveSession with user-data streams against the stand-in on 127.0.0.1: a filled take-profit's stop
is cancelled through the stream with no polling; a cut stream is polled (only that account) until it is back by
itself, and its reconnection resyncs over REST what it missed."""

from __future__ import annotations

import asyncio

import pytest

from engine import MultiAccountExecutor, parse_signal
from live.session import LiveSession
from tests.standin.rig import live_rig
from tests.standin.scenarios import SEED_SIGNAL, SYMBOL_ID

GUARD_S = 20  # an upper bound so a broken stream fails the test instead of hanging it; never waited out


def algo_status(rig, account: str, order_type: str) -> str:
    algos = rig.standin.account(account).algos.values()
    return next(a["algoStatus"] for a in algos if a["orderType"] == order_type)


def polls(rig, account: str) -> int:
    return sum(1 for e in rig.standin.log if e[0] == account and e[1:3] == ("GET", "/fapi/v1/openAlgoOrders"))


async def started(rig) -> tuple[MultiAccountExecutor, LiveSession]:
    executor = MultiAccountExecutor(rig.accounts, retry_delay=0.01)
    session = LiveSession(executor, streams=True)
    await session.start()
    assert await session.streams.wait_up(GUARD_S) == []
    summary = await executor.execute(parse_signal(dict(SEED_SIGNAL)))
    assert summary.succeeded == len(rig.accounts)
    return executor, session


async def wait_for(condition, what: str) -> None:
    async with asyncio.timeout(GUARD_S):
        while not condition():
            await asyncio.sleep(0.01)


async def test_a_filled_take_profit_cancels_its_stop_through_the_stream_without_polling():
    async with live_rig([1000.0, 5000.0]) as rig:
        executor, session = await started(rig)
        try:
            await session.tick()  # every stream is up: nothing is polled
            rig.standin.set_price(SYMBOL_ID, 51_000.0)
            await wait_for(lambda: executor.watcher.cancelled_siblings == 2, "both stops cancelled")
            for name in ("Account 1", "Account 2"):
                assert algo_status(rig, name, "STOP_MARKET") == "CANCELED"
                assert algo_status(rig, name, "TAKE_PROFIT_MARKET") == "FINISHED"
                assert polls(rig, name) == 0
            assert executor.watcher.open_brackets() == []
        finally:
            await session.close()


async def test_a_cut_stream_is_polled_alone_comes_back_by_itself_and_resyncs():
    async with live_rig([1000.0, 5000.0]) as rig:
        executor, session = await started(rig)
        one = session.streams.get("Account 1")
        one.backoff = (0.01, 0.05)
        try:
            await rig.cut_stream(one)  # Account 1's stream drops and cannot reconnect yet
            assert session.streams.down() == ["Account 1"]
            await session.tick()  # one polling round, only for the account whose stream is down
            assert polls(rig, "Account 1") == 1 and polls(rig, "Account 2") == 0
            rig.standin.streams.block(False)
            await asyncio.wait_for(one.wait_connects(2), GUARD_S)  # back by itself, resynced over REST
            await wait_for(lambda: polls(rig, "Account 1") == 2, "the resync")
            assert session.streams.down() == []
            await session.tick()
            assert polls(rig, "Account 1") == 2
        finally:
            await session.close()


async def test_a_fill_missed_while_the_stream_was_down_is_found_by_the_resync():
    async with live_rig([1000.0]) as rig:
        executor, session = await started(rig)
        one = session.streams.get("Account 1")
        one.backoff = (0.01, 0.05)
        try:
            await rig.cut_stream(one)
            rig.standin.set_price(SYMBOL_ID, 51_000.0)  # filled while nobody listens: the event is lost
            assert algo_status(rig, "Account 1", "STOP_MARKET") == "NEW"
            rig.standin.streams.block(False)
            await asyncio.wait_for(one.wait_connects(2), GUARD_S)
            await wait_for(lambda: executor.watcher.cancelled_siblings == 1, "stop cancelled by the resync")
            assert algo_status(rig, "Account 1", "STOP_MARKET") == "CANCELED"
        finally:
            await session.close()


class Outcomes:
    """The executor's journal port in these tests: keeps each recorded outcome."""

    def __init__(self) -> None:
        self.results = []

    async def record_order(self, event) -> None:
        return None

    async def record_outcome(self, result) -> None:
        self.results.append(result)


async def test_the_entry_fee_comes_from_the_stream_into_the_outcome():
    async with live_rig([1000.0]) as rig:
        executor = MultiAccountExecutor(rig.accounts, retry_delay=0.01)
        executor.journal = outcomes = Outcomes()
        session = LiveSession(executor, streams=True)
        await session.start()
        try:
            assert await session.streams.wait_up(GUARD_S) == []
            (result,) = (await executor.execute(parse_signal(dict(SEED_SIGNAL)))).results
            assert result.fee == outcomes.results[0].fee == pytest.approx(0.008 * 50_000 * 0.0005)
            assert not [e for e in rig.standin.log if e[2] == "/fapi/v1/userTrades"]
        finally:
            await session.close()


async def test_with_the_stream_down_the_entry_fee_is_asked_over_rest():
    async with live_rig([1000.0]) as rig:
        executor = MultiAccountExecutor(rig.accounts, retry_delay=0.01)
        executor.journal = Outcomes()
        session = LiveSession(executor, streams=True)
        await session.start()
        one = session.streams.get("Account 1")
        try:
            await asyncio.wait_for(one.up.wait(), GUARD_S)
            await rig.cut_stream(one)
            (result,) = (await executor.execute(parse_signal(dict(SEED_SIGNAL)))).results
            assert result.fee == pytest.approx(0.008 * 50_000 * 0.0005)
            (asked,) = [e for e in rig.standin.log if e[2] == "/fapi/v1/userTrades"]
            assert asked[3]["orderId"] == result.entry_order_id and asked[3]["symbol"] == SYMBOL_ID
        finally:
            await session.close()


async def test_a_leverage_change_reported_by_the_stream_is_set_again_on_the_next_signal():
    async with live_rig([1000.0]) as rig:
        executor, session = await started(rig)
        try:
            await wait_for(lambda: executor.settings.leverage.get(("Account 1", "BTC/USDT:USDT")) == 20, "config")
            session._on_config("Account 1", SYMBOL_ID, 5)  # as ACCOUNT_CONFIG_UPDATE says after a change in the app
            assert executor.settings.wants_leverage("Account 1", "BTC/USDT:USDT", 20)
        finally:
            await session.close()
