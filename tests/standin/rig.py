"""Tests room: the stand-in on 127.0.0.1 with live accounts (real ccxt over HTTP and the websocket) around it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from engine.ports import Account
from live.budget import WeightBudget
from live.budget_config import BudgetConfig
from live.exchange import close_all, create_live_exchanges
from tests.standin.scenarios import SYMBOL_ID, dummy_credentials
from tests.standin.server import StandIn


class Alerts:
    """A notifier that keeps every event (ban alerts) and ignores the per-signal messages."""

    enabled = True

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    async def account_executed(self, signal: Any, result: Any) -> None:
        return None

    async def signal_summary(self, signal: Any, summary: Any) -> None:
        return None

    async def event(self, title: str, text: str) -> None:
        self.events.append((title, text))


@dataclass
class Rig:
    standin: StandIn
    accounts: list[Account]
    budget: WeightBudget
    url: str

    def exchange(self, name: str) -> Any:
        return next(a.exchange for a in self.accounts if a.name == name)

    async def cut_stream(self, stream: Any, timeout_s: float = 20.0) -> None:
        """Drop ``stream``'s connection and refuse new ones (until ``standin.streams.block(False)``); returns once
        the stream knows it is down (``timeout_s`` only bounds a broken test)."""
        self.standin.streams.block(True)
        self.standin.streams.cut(stream.name)
        await asyncio.wait_for(stream.gone.wait(), timeout_s)


@contextlib.asynccontextmanager
async def live_rig(balances: list[float], *, prices: dict[str, float] | None = None, clock: Any = None,
                   latency_s: float = 0.0,
                   limits: dict | None = None, budget: BudgetConfig | None = None,
                   notifier: Any = None) -> AsyncIterator[Rig]:
    """Accounts ``Account 1..n`` with these USDT balances on a fresh stand-in (BTCUSDT at 50,000 unless ``prices``
    says otherwise); the budget, stand-in and accounts share ``clock``; everything is closed afterwards."""
    names = [f"Account {i}" for i in range(1, len(balances) + 1)]
    creds = dummy_credentials(names)
    standin = StandIn(prices=prices or {SYMBOL_ID: 50_000.0}, clock=clock, latency_s=latency_s, limits=limits)
    for c, balance in zip(creds, balances, strict=True):
        standin.add_account(c.name, c.api_key, c.api_secret, balance)
    url = await standin.start()
    shared = WeightBudget(budget, clock=clock, notifier=notifier)
    accounts: list[Account] = []
    try:
        accounts = await create_live_exchanges(creds, api_url=url, budget=shared)
        yield Rig(standin, accounts, shared, url)
    finally:
        await close_all(accounts)
        await shared.close()
        await standin.stop()
