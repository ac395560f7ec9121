"""Tests room: the user-data stream (live/user_stream.py) against the stand-in's websocket on 127.0.0.1:
fills pushed to the bracket watcher, fees from trade updates, the stream cut (polling takes over) and coming
back by itself, an expired listen key."""

from __future__ import annotations

import asyncio

import pytest

from engine import BracketWatcher, MultiAccountExecutor, parse_signal
from live.user_stream import UserStream
from tests.standin.rig import live_rig
from tests.standin.scenarios import SEED_SIGNAL, SYMBOL_ID

GUARD_S = 20  # an upper bound so a broken stream fails the test instead of hanging it; never waited out


class Updates:
    """on_order for the stream: hands each order to the watcher and signals when a bracket leg closed."""

    def __init__(self, watcher: BracketWatcher) -> None:
        self.watcher = watcher
        self.closed = asyncio.Event()
        self.seen: list[dict] = []

    async def __call__(self, account: str, order: dict) -> None:
        self.seen.append(order)
        if await self.watcher.on_order_update(account, order) is not None:
            self.closed.set()


async def trade_seed(rig) -> MultiAccountExecutor:
    executor = MultiAccountExecutor(rig.accounts, retry_delay=0.01)
    summary = await executor.execute(parse_signal(dict(SEED_SIGNAL)))
    assert summary.succeeded == len(rig.accounts)
    return executor


def algo_status(rig, account: str, order_type: str) -> str:
    algos = rig.standin.account(account).algos.values()
    return next(a["algoStatus"] for a in algos if a["orderType"] == order_type)


async def test_a_filled_take_profit_cancels_its_stop_through_the_stream():
    async with live_rig([1000.0]) as rig:
        executor = await trade_seed(rig)
        updates = Updates(executor.watcher)
        stream = UserStream("Account 1", rig.exchange("Account 1"), on_order=updates)
        stream.start()
        try:
            await asyncio.wait_for(stream.up.wait(), GUARD_S)
            rig.standin.set_price(SYMBOL_ID, 51_000.0)  # the take-profit triggers on the venue
            await asyncio.wait_for(updates.closed.wait(), GUARD_S)
            assert algo_status(rig, "Account 1", "STOP_MARKET") == "CANCELED"
            assert algo_status(rig, "Account 1", "TAKE_PROFIT_MARKET") == "FINISHED"
            assert executor.watcher.open_brackets() == []
            # the closing fill's commission came with its trade update: 0.008 BTC × 51,000 × 0.05 %
            tp = next(a for a in rig.standin.account("Account 1").algos.values()
                      if a["orderType"] == "TAKE_PROFIT_MARKET")
            fee = await stream.wait_fee(str(tp["actualOrderId"]), GUARD_S)
            assert fee == (pytest.approx(0.008 * 51_000 * 0.0005), "USDT")
            assert stream.state.positions[SYMBOL_ID]["pa"] == "0"
        finally:
            await stream.stop()


async def test_the_entry_fee_comes_from_the_stream():
    async with live_rig([1000.0]) as rig:
        stream = UserStream("Account 1", rig.exchange("Account 1"))
        stream.start()
        try:
            await asyncio.wait_for(stream.up.wait(), GUARD_S)
            executor = await trade_seed(rig)
            entry_id = next(iter(rig.standin.account("Account 1").orders))
            assert executor.stats.successes == 1
            assert await stream.wait_fee(str(entry_id), GUARD_S) == (pytest.approx(0.008 * 50_000 * 0.0005), "USDT")
            assert stream.state.wallet == pytest.approx(1000 - 0.2)
        finally:
            await stream.stop()


async def test_with_the_stream_cut_polling_cancels_the_sibling_and_the_stream_comes_back():
    async with live_rig([1000.0]) as rig:
        executor = await trade_seed(rig)
        resyncs: list[bool] = []

        async def on_connect(account: str, first: bool) -> None:
            resyncs.append(first)

        updates = Updates(executor.watcher)
        stream = UserStream("Account 1", rig.exchange("Account 1"), on_order=updates, on_connect=on_connect,
                            backoff=(0.01, 0.05))
        stream.start()
        try:
            await asyncio.wait_for(stream.up.wait(), GUARD_S)
            await rig.cut_stream(stream)
            rig.standin.set_price(SYMBOL_ID, 51_000.0)  # filled while nobody listens: the event is lost
            assert await executor.watcher.poll() == 1  # one polling round finds it
            assert algo_status(rig, "Account 1", "STOP_MARKET") == "CANCELED"
            rig.standin.streams.block(False)
            await asyncio.wait_for(stream.wait_connects(2), GUARD_S)  # back by itself
            assert stream.is_up and resyncs == [True, False]
        finally:
            await stream.stop()


async def test_an_expired_listen_key_is_replaced():
    async with live_rig([1000.0]) as rig:
        stream = UserStream("Account 1", rig.exchange("Account 1"), backoff=(0.01,))
        stream.start()
        try:
            await asyncio.wait_for(stream.up.wait(), GUARD_S)
            old_key = rig.standin.streams.key_of["Account 1"]
            rig.standin.streams.expire("Account 1")
            await asyncio.wait_for(stream.wait_connects(2), GUARD_S)
            assert rig.standin.streams.key_of["Account 1"] != old_key
            posts = [e for e in rig.standin.log if e[1:3] == ("POST", "/fapi/v1/listenKey")]
            assert len(posts) == 2
        finally:
            await stream.stop()


class _Client:
    def __init__(self, futures: dict | None = None) -> None:
        self.futures = futures or {}


def test_events_nobody_reads_skip_ccxt_and_the_rest_reach_it():
    from live.exchange import build_exchange
    from tests.standin.scenarios import dummy_credentials

    exchange = build_exchange(dummy_credentials(["Account 1"])[0], api_url="http://127.0.0.1:9")
    stream = UserStream("Account 1", exchange)
    hook = exchange.stream_hook
    new = {"e": "ORDER_TRADE_UPDATE", "o": {"i": 1, "x": "NEW", "X": "NEW"}}
    filled = {"e": "ORDER_TRADE_UPDATE", "o": {"i": 1, "x": "TRADE", "X": "FILLED"}}
    algo_new = {"e": "ALGO_UPDATE", "o": {"aid": 2, "X": "NEW"}}
    algo_done = {"e": "ALGO_UPDATE", "o": {"aid": 2, "X": "FINISHED"}}
    account = {"e": "ACCOUNT_UPDATE", "a": {"B": [{"a": "USDT", "wb": "990.5", "cw": "990.5"}], "P": []}}
    assert hook(_Client(), new) and hook(_Client(), algo_new)  # accepted, nothing filled: consumed here
    assert not hook(_Client(), filled) and not hook(_Client(), algo_done)  # ccxt parses them for the watcher
    assert hook(_Client(), account)  # our account state; no ccxt watcher waits for it
    assert stream.state.wallet == 990.5
    assert not hook(_Client({"future:balance": object()}), account)  # a watch_balance waits: ccxt gets it too
    assert not hook(_Client({"future:positions::BTC/USDT:USDT": object()}), account)
