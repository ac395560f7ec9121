"""Tests for the Discord notifier and alert formatting, against a local aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from engine.ports import NullNotifier
from engine.results import FAILED, SKIPPED, SUCCESS, AccountResult, SignalSummary
from engine.signal import parse_signal
from live import alerts_format as fmt
from live.discord import DiscordNotifier, build_notifier, redact_webhook

TOKEN = "tOkEn-SeCrEt_abcdef0123456789"
SIGNAL = parse_signal(
    {"symbol": "BTCUSDT", "side": "LONG", "entry": 50000, "sl": 49500, "tp": 51000, "id": "sig-1"}
)


@dataclass
class FakeDiscord:
    """A webhook endpoint that records bodies and answers from a script (then 204)."""

    script: list = field(default_factory=list)
    bodies: list = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.bodies.append(await request.json())
        if self.script:
            step = self.script.pop(0)
            if callable(step):
                return await step(request)
            return step
        return web.Response(status=204)


@pytest.fixture
async def discord() -> AsyncIterator[FakeDiscord]:
    fake = FakeDiscord()
    app = web.Application()
    app.router.add_post("/api/webhooks/{id}/{token}", fake.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    fake.url = f"http://127.0.0.1:{port}/api/webhooks/123456789/{TOKEN}"
    yield fake
    await runner.cleanup()


class FakeTime:
    """The notifier's clock and sleep: every wait is recorded and passes at once, moving the clock on."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(round(seconds, 9))
        self.now += seconds
        await asyncio.sleep(0)


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


async def without_waiting(awaitable):
    """Await ``awaitable`` with no suspension allowed: it must finish without waiting on anything (network,
    sleep, the queue); if it suspended, the zero timeout would cancel it and raise TimeoutError."""
    async with asyncio.timeout(0):
        return await awaitable


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ok(name: str, margin: float, notional: float, qty: float) -> AccountResult:
    return AccountResult(
        account=name, signal_id=SIGNAL.id, symbol=SIGNAL.symbol, side="LONG", status=SUCCESS, margin=margin,
        notional=notional, quantity=qty, leverage=20, fill_price=50000.0, stop_loss=49500.0,
        take_profit=51000.0,
        entry_order_id="1", stop_loss_order_id="2", take_profit_order_id="3", time=1_760_000_000_000,
    )


def _seed_results() -> list[AccountResult]:
    return [
        _ok("Account 1", 20, 400, 0.008), _ok("Account 2", 100, 2000, 0.04), _ok("Account 3", 10, 200, 0.004)
    ]


async def _run_signal(notifier, results: list[AccountResult]) -> SignalSummary:
    for r in results:
        await notifier.account_executed(SIGNAL, r)
    summary = SignalSummary(signal_id=SIGNAL.id, symbol=SIGNAL.symbol, side=SIGNAL.side, results=results)
    await notifier.signal_summary(SIGNAL, summary)
    return summary


def _titles(body: dict) -> list[str]:
    return [e["title"] for e in body["embeds"]]


# ---------------------------------------------------------------- delivery
async def test_seed_three_accounts_one_batch_then_summary(discord: FakeDiscord) -> None:
    notifier = DiscordNotifier(discord.url)
    await _run_signal(notifier, _seed_results())
    assert await notifier.aclose(timeout=5)
    assert len(discord.bodies) == 2
    assert _titles(discord.bodies[0]) == [f"🎯 Order Executed - Account {i}" for i in (1, 2, 3)]
    first = {f["name"]: f["value"] for f in discord.bodies[0]["embeds"][0]["fields"]}
    assert first == {
        "Symbol": "BTC/USDT", "Side": "LONG", "Entry": "$50,000", "Size": "$20 margin", "Notional": "$400",
        "Leverage": "20x", "Quantity": "0.008 BTC", "SL": "$49,500", "TP": "$51,000",
    }
    summary = discord.bodies[1]["embeds"]
    assert _titles(discord.bodies[1]) == ["📊 Multi-Account Execution Summary"]
    assert summary[0]["description"] == (
        "Signal: BTC/USDT LONG @ $50,000\n"
        "SL: $49,500 | TP: $51,000\n"
        "Success: 3/3\n"
        "\n"
        "✅ Account 1: $20\n"
        "✅ Account 2: $100\n"
        "✅ Account 3: $10\n"
        "\n"
        "Total Position: $130 ($2,600 notional with 20x)\n"
        "Total BTC: 0.052 BTC"
    )
    assert all(b["allowed_mentions"] == {"parse": []} for b in discord.bodies)
    assert notifier.sent == 2 and notifier.dropped == 0


async def test_fifty_accounts_five_batches_of_ten_then_summary(discord: FakeDiscord) -> None:
    notifier = DiscordNotifier(discord.url)
    results = [_ok(f"Account {i}", 20, 400, 0.008) for i in range(1, 51)]
    await _run_signal(notifier, results)
    assert await notifier.aclose(timeout=5)
    assert [len(b["embeds"]) for b in discord.bodies] == [10, 10, 10, 10, 10, 1]
    sent = [t for b in discord.bodies[:5] for t in _titles(b)]
    assert sent == [f"🎯 Order Executed - Account {i}" for i in range(1, 51)]
    for body in discord.bodies:
        assert sum(fmt.embed_chars(e) for e in body["embeds"]) <= fmt.MESSAGE_CHARS_LIMIT
    desc = discord.bodies[-1]["embeds"][0]["description"]
    assert "Success: 50/50" in desc and "✅ Account 50: $20" in desc
    assert "Total Position: $1,000 ($20,000 notional with 20x)" in desc
    assert "Total BTC: 0.4 BTC" in desc


async def test_full_batches_leave_before_the_summary(discord: FakeDiscord) -> None:
    notifier = DiscordNotifier(discord.url)
    for i in range(1, 13):
        await notifier.account_executed(SIGNAL, _ok(f"Account {i}", 20, 400, 0.008))
    await notifier.flush(timeout=5)
    # the first ten leave as soon as they are buffered; flush() also sends an unfinished signal's rest
    assert [len(b["embeds"]) for b in discord.bodies] == [10, 2]
    await notifier.aclose()


async def test_failed_and_skipped_accounts(discord: FakeDiscord) -> None:
    notifier = DiscordNotifier(discord.url)
    binance = '{"code":-2019,"msg":"Margin is insufficient."}'
    failed = AccountResult(
        account="Account 3", signal_id=SIGNAL.id, symbol=SIGNAL.symbol, side="LONG", status=FAILED,
        reason=f"entry order failed: InsufficientFunds: binanceusdm {binance}",
    )
    skipped = AccountResult(
        account="Account 4", signal_id=SIGNAL.id, symbol=SIGNAL.symbol, side="LONG", status=SKIPPED,
        reason="balance $5.00 below minimum $10.00",
    )
    results = [*_seed_results()[:2], failed, skipped]
    await _run_signal(notifier, results)
    assert await notifier.aclose(timeout=5)
    assert _titles(discord.bodies[0]) == [
        "🎯 Order Executed - Account 1", "🎯 Order Executed - Account 2",
        "❌ Order Failed - Account 3", "⏭️ Order Skipped - Account 4",
    ]
    assert discord.bodies[0]["embeds"][2]["description"] == failed.reason
    desc = discord.bodies[1]["embeds"][0]["description"]
    assert "Success: 2/4" in desc
    assert "❌ Account 3: Margin is insufficient." in desc
    assert "⏭️ Account 4: balance $5.00 below minimum $10.00" in desc
    assert "Total Position: $120 ($2,400 notional with 20x)" in desc
    assert discord.bodies[1]["embeds"][0]["color"] == fmt.ORANGE


async def test_event_is_sent_at_once(discord: FakeDiscord) -> None:
    notifier = DiscordNotifier(discord.url)
    await notifier.event("🚨 Stop-loss failed - Account 1", "stop-loss rejected, position closed at market")
    assert await notifier.aclose(timeout=5)
    assert discord.bodies == [{
        "embeds": [{"title": "🚨 Stop-loss failed - Account 1",
                    "description": "stop-loss rejected, position closed at market", "color": fmt.ORANGE}],
        "allowed_mentions": {"parse": []},
    }]


# ---------------------------------------------------------------- rate limits and failures
async def test_429_retry_after_body_is_honoured(discord: FakeDiscord, fake_time: FakeTime) -> None:
    limited = {"message": "rate limited", "retry_after": 0.2, "global": False}
    discord.script = [web.json_response(limited, status=429)]
    notifier = DiscordNotifier(discord.url, backoff=5.0, sleep=fake_time.sleep, clock=fake_time.clock)
    await notifier.event("t", "x")
    assert await notifier.aclose(timeout=5)
    assert len(discord.bodies) == 2 and discord.bodies[0] == discord.bodies[1]
    assert fake_time.waits == [0.2]  # Discord's retry_after, not the 5 s backoff
    assert notifier.sent == 1


async def test_429_retry_after_header_is_honoured(discord: FakeDiscord, fake_time: FakeTime) -> None:
    discord.script = [web.Response(status=429, headers={"Retry-After": "0.05"}, text="slow down")]
    notifier = DiscordNotifier(discord.url, backoff=5.0, sleep=fake_time.sleep, clock=fake_time.clock)
    await notifier.event("t", "x")
    assert await notifier.aclose(timeout=5)
    assert len(discord.bodies) == 2
    assert fake_time.waits == [0.05]


async def test_retry_after_is_capped(discord: FakeDiscord, fake_time: FakeTime) -> None:
    discord.script = [web.json_response({"retry_after": 3600}, status=429)]
    notifier = DiscordNotifier(discord.url, max_retry_after=0.05, sleep=fake_time.sleep, clock=fake_time.clock)
    await notifier.event("t", "x")
    assert await notifier.aclose(timeout=5)
    assert len(discord.bodies) == 2
    assert fake_time.waits == [0.05]


async def test_empty_bucket_waits_for_reset(discord: FakeDiscord, fake_time: FakeTime) -> None:
    discord.script = [web.Response(status=204, headers={"X-RateLimit-Remaining": "0",
                                                        "X-RateLimit-Reset-After": "0.2"})]
    notifier = DiscordNotifier(discord.url, sleep=fake_time.sleep, clock=fake_time.clock)
    await notifier.event("a", "x")
    await notifier.event("b", "x")
    assert await notifier.aclose(timeout=5)
    assert len(discord.bodies) == 2
    assert fake_time.waits == [0.2]  # before the second post, none before the first


async def test_5xx_retries_then_drops_without_raising(discord: FakeDiscord, fake_time: FakeTime, caplog) -> None:
    discord.script = [web.Response(status=500, text="oops") for _ in range(10)]
    notifier = DiscordNotifier(discord.url, max_retries=2, backoff=0.01, sleep=fake_time.sleep, clock=fake_time.clock)
    await without_waiting(_run_signal(notifier, _seed_results()))
    assert await notifier.aclose(timeout=5)
    assert len(discord.bodies) == 6  # two messages, three attempts each
    assert fake_time.waits == [0.01, 0.02, 0.01, 0.02]  # exponential backoff between attempts, none after the last
    assert notifier.sent == 0 and notifier.dropped == 2


async def test_5xx_then_success(discord: FakeDiscord) -> None:
    discord.script = [web.Response(status=502), web.Response(status=503)]
    notifier = DiscordNotifier(discord.url, backoff=0.01)
    await notifier.event("t", "x")
    assert await notifier.aclose(timeout=5)
    assert len(discord.bodies) == 3 and notifier.sent == 1


async def test_4xx_is_dropped_without_retry(discord: FakeDiscord) -> None:
    discord.script = [web.json_response({"message": "Invalid Form Body", "code": 50035}, status=400)]
    notifier = DiscordNotifier(discord.url, backoff=0.01)
    await notifier.event("t", "x")
    await notifier.event("u", "y")
    assert await notifier.aclose(timeout=5)
    assert len(discord.bodies) == 2  # the first dropped after one try, the second sent
    assert notifier.sent == 1 and notifier.dropped == 1


async def test_server_down_never_raises_and_returns_at_once(fake_time: FakeTime, caplog) -> None:
    url = f"http://127.0.0.1:{_free_port()}/api/webhooks/123456789/{TOKEN}"
    notifier = DiscordNotifier(url, max_retries=1, backoff=0.01, request_timeout=1, sleep=fake_time.sleep,
                               clock=fake_time.clock)
    with caplog.at_level(logging.DEBUG):
        await without_waiting(_run_signal(notifier, _seed_results()))
        await without_waiting(notifier.event("🚨 x", "y"))
        assert await notifier.aclose(timeout=5)
    assert notifier.dropped == 3
    assert "Discord unreachable" in caplog.text
    assert TOKEN not in caplog.text


async def test_hung_server_flush_is_bounded(discord: FakeDiscord) -> None:
    in_flight, release = asyncio.Event(), asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        in_flight.set()
        await release.wait()  # answers only when the test ends
        return web.Response(status=204)

    discord.script = [hang]
    notifier = DiscordNotifier(discord.url, request_timeout=3600)
    await without_waiting(notifier.event("t", "x"))
    await in_flight.wait()
    await without_waiting(_run_signal(notifier, _seed_results()))  # queued behind the hung post, not waiting on it
    try:
        assert await notifier.aclose(timeout=0.2) is False  # gives up on the drain instead of hanging
    finally:
        release.set()
    assert notifier.dropped == 3 and notifier.sent == 0  # the one in flight and the two queued


async def test_works_behind_the_executor_timeout(discord: FakeDiscord) -> None:
    """The engine bounds each call by notify_timeout; ours return before any network I/O, so never reach it."""
    discord.script = [web.Response(status=500) for _ in range(3)]
    notifier = DiscordNotifier(discord.url, backoff=0.2, max_retries=2)
    for r in _seed_results():
        await without_waiting(notifier.account_executed(SIGNAL, r))
    await notifier.aclose(timeout=0.01)


# ---------------------------------------------------------------- secrets
async def test_token_never_in_logs_or_repr(discord: FakeDiscord, caplog) -> None:
    discord.script = [
        web.Response(status=500, text=f"echo {discord.url}"),
        web.Response(status=400, text=f"bad token {TOKEN}"),
    ]
    notifier = DiscordNotifier(discord.url, backoff=0.01)
    with caplog.at_level(logging.DEBUG):
        await notifier.event("t", "x")
        await notifier.aclose(timeout=5)
    assert "HTTP 500" in caplog.text and "HTTP 400" in caplog.text
    assert TOKEN not in caplog.text
    for text in (repr(notifier), str(notifier)):
        assert TOKEN not in text and "/api/webhooks/123456789/***" in text


def test_redaction_helpers() -> None:
    url = f"https://discord.com/api/webhooks/42/{TOKEN}"
    assert redact_webhook(url) == "https://discord.com/api/webhooks/42/***"
    assert TOKEN not in fmt.redact(f"failed posting to {url}?wait=true")
    text = fmt.redact("GET https://fapi.binance.com/fapi/v1/order?symbol=BTCUSDT&signature=abc123 ")
    assert "abc123" not in text and "symbol=BTCUSDT" in text
    assert "k3y" not in fmt.redact("headers {'X-MBX-APIKEY': 'k3y'}")


async def test_secret_in_reason_never_reaches_discord(discord: FakeDiscord) -> None:
    notifier = DiscordNotifier(discord.url)
    bad = AccountResult(
        account="Account 1", signal_id=SIGNAL.id, symbol=SIGNAL.symbol, side="LONG", status=FAILED,
        reason="NetworkError: POST https://fapi.binance.com/fapi/v1/order?signature=deadbeefcafe failed",
    )
    await _run_signal(notifier, [bad])
    await notifier.aclose(timeout=5)
    assert "deadbeefcafe" not in json.dumps(discord.bodies)


# ---------------------------------------------------------------- formatting (pure)
def test_number_formats() -> None:
    assert fmt.usd(20) == "$20" and fmt.usd(2600.0) == "$2,600" and fmt.usd(20.5) == "$20.5"
    assert fmt.usd(130.000000001) == "$130" and fmt.usd(1234.567) == "$1,234.57"
    assert fmt.price(50000.0) == "$50,000" and fmt.price(0.00001234) == "$0.00001234"
    assert fmt.price(None) == "—"
    assert fmt.quantity(0.008 + 0.04 + 0.004) == "0.052" and fmt.quantity(1500000.0) == "1,500,000"


def test_short_reason() -> None:
    raw = 'InsufficientFunds: binanceusdm {"code":-2019,"msg":"Margin is insufficient."}'
    assert fmt.short_reason(raw) == "InsufficientFunds: Margin is insufficient."
    assert len(fmt.short_reason("x" * 500)) == fmt.SHORT_REASON_LIMIT
    assert fmt.short_reason("") == "no reason given"


def test_warning_shown_on_success() -> None:
    r = _ok("Account 1", 20, 400, 0.008)
    r.reason = "take-profit not placed (stop-loss is in place): ExchangeError: nope"
    embed = fmt.account_embed(SIGNAL, r)
    assert embed["fields"][-1]["name"] == "⚠️ Warning"
    assert fmt.account_line(r).startswith("✅ Account 1: $20 ⚠️ take-profit not placed")


def test_fill_price_differs_from_signal() -> None:
    r = _ok("Account 1", 20, 400, 0.008)
    r.fill_price = 50010.5
    fields = {f["name"]: f["value"] for f in fmt.account_embed(SIGNAL, r)["fields"]}
    assert fields["Entry"] == "$50,010.5 (signal $50,000)"


def test_embed_limits_are_enforced() -> None:
    embed = fmt.fit_embed({
        "title": "t" * 300, "description": "d" * 5000, "footer": {"text": "f" * 3000},
        "fields": [{"name": "n" * 300, "value": "v" * 2000} for _ in range(30)],
    })
    assert len(embed["title"]) == fmt.TITLE_LIMIT and len(embed["description"]) <= fmt.DESCRIPTION_LIMIT
    assert len(embed["fields"]) <= fmt.FIELDS_LIMIT
    assert all(len(f["name"]) <= 256 and len(f["value"]) <= 1024 for f in embed["fields"])
    assert fmt.embed_chars(embed) <= fmt.MESSAGE_CHARS_LIMIT


def test_pack_respects_embed_count_and_characters() -> None:
    big = [{"title": str(i), "description": "x" * 1999} for i in range(7)]
    batches = fmt.pack_embeds(big)
    assert [len(b) for b in batches] == [3, 3, 1]
    small = [{"title": "x"} for _ in range(23)]
    assert [len(b) for b in fmt.pack_embeds(small)] == [10, 10, 3]


def test_summary_with_many_long_lines_fits() -> None:
    results = [
        AccountResult(account=f"A very long account label number {i:03d}", signal_id="s",
                      symbol=SIGNAL.symbol, side="LONG", status=FAILED, reason="ExchangeError: " + "z" * 300)
        for i in range(200)
    ]
    summary = SignalSummary(signal_id="s", symbol=SIGNAL.symbol, side="LONG", results=results)
    embed = fmt.summary_embed(SIGNAL, summary)
    assert len(embed["description"]) <= fmt.DESCRIPTION_LIMIT
    assert "more accounts" in embed["description"]
    assert embed["description"].endswith("Total BTC: 0 BTC")
    assert "Success: 0/200" in embed["description"] and embed["color"] == fmt.RED


async def test_long_account_names_respect_message_limit(discord: FakeDiscord) -> None:
    notifier = DiscordNotifier(discord.url)
    results = []
    for i in range(12):
        r = _ok(f"Account {i} " + "label" * 40, 20, 400, 0.008)
        r.reason = "take-profit not placed: " + "w" * 1500
        results.append(r)
    await _run_signal(notifier, results)
    assert await notifier.aclose(timeout=5)
    for body in discord.bodies:
        assert len(body["embeds"]) <= 10
        assert sum(fmt.embed_chars(e) for e in body["embeds"]) <= fmt.MESSAGE_CHARS_LIMIT
    assert sum(len(b["embeds"]) for b in discord.bodies) == 13


# ---------------------------------------------------------------- factory
def test_build_notifier() -> None:
    assert isinstance(build_notifier({}), NullNotifier)
    assert isinstance(build_notifier({"DISCORD_WEBHOOK_URL": "  "}), NullNotifier)
    n = build_notifier({"DISCORD_WEBHOOK_URL": f"https://discord.com/api/webhooks/1/{TOKEN}"}, max_embeds=5)
    assert isinstance(n, DiscordNotifier) and n.max_embeds == 5
    with pytest.raises(ValueError, match="DISCORD_WEBHOOK_URL") as err:
        build_notifier({"DISCORD_WEBHOOK_URL": TOKEN})
    assert TOKEN not in str(err.value)
    with pytest.raises(ValueError, match="max_embeds"):
        DiscordNotifier("https://discord.com/api/webhooks/1/x", max_embeds=11)


def test_new_event_loop_starts_afresh() -> None:
    """A notifier reused across two asyncio.run() calls (CLI) still works."""
    fake = FakeDiscord()

    async def one_run() -> int:
        app = web.Application()
        app.router.add_post("/api/webhooks/{id}/{token}", fake.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        try:
            await notifier.event("t", "x")
            return int(await notifier.flush(timeout=5))
        finally:
            await runner.cleanup()

    port = _free_port()
    notifier = DiscordNotifier(f"http://127.0.0.1:{port}/api/webhooks/1/{TOKEN}")
    assert asyncio.run(one_run()) == 1
    assert asyncio.run(one_run()) == 1
    assert len(fake.bodies) == 2
