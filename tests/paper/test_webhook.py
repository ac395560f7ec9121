"""The HTTP webhook signal source: token, validation, duplicates, loopback binding by default, handling tasks."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp.test_utils import TestClient, TestServer

from fanout.signal_sources import WebhookSignalSource

TOKEN = "s3cret-token-123"
GOOD = {"symbol": "BTCUSDT", "side": "long", "entry": 50000, "stop_loss": 49500, "take_profit": 51000, "id": "w1"}


@pytest.fixture()
async def client():
    received = []
    processed = set()

    async def handler(signal, source):
        received.append((signal, source))
        processed.add(signal.id)

    hook = WebhookSignalSource(handler, TOKEN, is_processed=processed.__contains__)
    async with TestClient(TestServer(hook.app())) as c:
        c.received = received
        c.hook = hook
        yield c


async def test_accepts_signal_with_token_in_header_query_or_body(client):
    r = await client.post("/signal", json=GOOD, headers={"X-Fanout-Token": TOKEN})
    assert r.status == 202 and (await r.json()) == {"accepted": "w1"}
    r = await client.post(f"/webhook?token={TOKEN}", json={**GOOD, "id": "w2"})
    assert r.status == 202
    r = await client.post("/signal", json={**GOOD, "id": "w3", "token": TOKEN})
    assert r.status == 202
    await client.hook.drain()
    assert client.hook.pending == 0
    assert [s.id for s, _ in client.received] == ["w1", "w2", "w3"]
    assert client.received[0][1] == "webhook"


async def test_rejects_bad_token_without_echoing_it(client):
    r = await client.post("/signal", json=GOOD, headers={"X-Fanout-Token": "wrong-token"})
    assert r.status == 401
    assert "wrong-token" not in await r.text() and TOKEN not in await r.text()
    assert client.received == []


async def test_malformed_signal_names_the_field_and_is_not_traded(client):
    r = await client.post("/signal", json={**GOOD, "stop_loss": 52000}, headers={"X-Fanout-Token": TOKEN})
    assert r.status == 400
    body = await r.json()
    assert body["field"] == "stop_loss"
    r = await client.post("/signal", data="not json", headers={"X-Fanout-Token": TOKEN})
    assert r.status == 400
    assert client.received == []


async def test_duplicate_signal_is_refused(client):
    await client.post("/signal", json=GOOD, headers={"X-Fanout-Token": TOKEN})
    await client.hook.drain()
    r = await client.post("/signal", json=GOOD, headers={"X-Fanout-Token": TOKEN})
    assert r.status == 409 and "already processed" in (await r.json())["error"]


async def test_duplicate_of_a_signal_still_being_handled_is_refused():
    release = asyncio.Event()
    handled = []

    async def slow_handler(signal, source):
        await release.wait()
        handled.append(signal.id)

    hook = WebhookSignalSource(slow_handler, TOKEN)
    async with TestClient(TestServer(hook.app())) as c:
        assert (await c.post("/signal", json=GOOD, headers={"X-Fanout-Token": TOKEN})).status == 202
        r = await c.post("/signal", json=GOOD, headers={"X-Fanout-Token": TOKEN})
        assert r.status == 409 and "already accepted" in (await r.json())["error"]
        assert hook.pending == 1
        release.set()
        await hook.stop()  # lets the accepted signal finish
    assert handled == ["w1"] and hook.pending == 0


async def test_a_failed_handling_is_logged_once_by_signal_id(caplog):
    async def failing(signal, source):
        raise RuntimeError("no live price for BTCUSDT")

    hook = WebhookSignalSource(failing, TOKEN)
    async with TestClient(TestServer(hook.app())) as c:
        with caplog.at_level(logging.ERROR, logger="fanout.sources"):
            assert (await c.post("/signal", json=GOOD, headers={"X-Fanout-Token": TOKEN})).status == 202
            await hook.drain()  # does not raise
    failures = [m for m in caplog.messages if "w1" in m]
    assert failures == ["❌ webhook signal w1 was accepted but handling it failed: unexpected RuntimeError: no live price for "
                        "BTCUSDT"]
    assert "Task exception was never retrieved" not in caplog.text


def test_requires_a_token_and_binds_loopback_by_default():
    async def handler(signal, source):
        return None

    with pytest.raises(ValueError, match="WEBHOOK_TOKEN"):
        WebhookSignalSource(handler, "")
    assert WebhookSignalSource(handler, TOKEN).host == "127.0.0.1"


async def test_a_signal_that_fails_after_202_is_logged_once_in_words(caplog):
    """The handler runs after the reply: its failure is logged once, never "Task exception was never retrieved"."""
    import ccxt

    complaints = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, context: complaints.append(context))

    async def handler(signal, source):
        raise ccxt.RequestTimeout("binanceusdm GET https://fapi.binance.com/fapi/v1/ticker/24hr?symbol=BTCUSDT")

    hook = WebhookSignalSource(handler, TOKEN)
    async with TestClient(TestServer(hook.app())) as c:
        r = await c.post("/signal", json=GOOD, headers={"X-Fanout-Token": TOKEN})
        assert r.status == 202
        await hook.drain()
    assert hook.pending == 0
    assert [m for m in caplog.messages if "failed" in m] == [
        "❌ webhook signal w1 was accepted but handling it failed: venue at fapi.binance.com did not answer in time "
        "(check the network)"]
    assert complaints == []


async def test_a_port_already_taken_names_the_variables():
    async def handler(signal, source):
        return None

    first = WebhookSignalSource(handler, TOKEN, port=0)
    await first.start()
    port = first.runner.addresses[0][1]
    try:
        with pytest.raises(ValueError, match=f"WEBHOOK_HOST / WEBHOOK_PORT: cannot listen on 127.0.0.1:{port}"):
            await WebhookSignalSource(handler, TOKEN, port=port).start()
    finally:
        await first.stop()
