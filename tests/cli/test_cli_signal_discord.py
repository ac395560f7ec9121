"""`fanout signal` posts Discord alerts whenever DISCORD_WEBHOOK_URL is set; backtests never do."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from aiohttp import web

from fanout.cli import main

TOKEN = "tok3n-not-to-be-shown"


class Webhook:
    """A Discord stand-in on 127.0.0.1 collecting posted messages (served from its own thread)."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def post(request: web.Request) -> web.Response:
            self.messages.append(await request.json())
            return web.Response(status=204)

        async def start() -> None:
            app = web.Application()
            app.router.add_post("/api/webhooks/1/{token}", post)
            self.runner = web.AppRunner(app)
            await self.runner.setup()
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]
            self.ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()

    def __enter__(self) -> Webhook:
        self.thread.start()
        self.ready.wait(5)
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/webhooks/1/{TOKEN}"


@pytest.fixture()
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for var in ("DISCORD_WEBHOOK_URL", "TRADING_MODE", "BINANCE_API_KEY", "BINANCE_API_SECRET"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def test_offline_signal_sends_account_alerts_then_the_summary(workdir, capsys):
    with Webhook() as hook:
        (workdir / "production.env").write_text(f"DISCORD_WEBHOOK_URL={hook.url}\n")
        code = main(["signal", "BTC/USDT", "long", "--entry", "50000", "--sl", "49500", "--tp", "51000",
                     "--balances", "1000,5000,500"])
    assert code == 0
    titles = [e["title"] for m in hook.messages for e in m["embeds"]]
    assert titles == ["🎯 Order Executed - Account 1", "🎯 Order Executed - Account 2", "🎯 Order Executed - Account 3",
                      "📊 Multi-Account Execution Summary"]
    summary = json.dumps(hook.messages[-1], ensure_ascii=False)
    for text in ("3/3", "✅ Account 1: $20", "✅ Account 2: $100", "✅ Account 3: $10", "$130", "0.052"):
        assert text in summary
    out = capsys.readouterr()
    assert TOKEN not in out.out + out.err
    assert TOKEN not in json.dumps(hook.messages)


def test_backtest_stays_silent(workdir):
    with Webhook() as hook:
        (workdir / "production.env").write_text(f"DISCORD_WEBHOOK_URL={hook.url}\n")
        assert main(["backtest", "--out", str(workdir / "run"), "--no-plot", "--no-progress"]) == 0
    assert hook.messages == []
