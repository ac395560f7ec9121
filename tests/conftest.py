"""Shared test fixtures: the market-rules snapshot, a simulated venue with accounts, the design document's signal."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from engine import Account, Signal, parse_signal
from marketdata.rules import MarketRules
from simulator.exchange import SimulatedVenue

BTC = "BTC/USDT:USDT"
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z


@pytest.fixture(scope="session")
def rules() -> MarketRules:
    """The data/market_rules.json snapshot (read-only: never mutate it in a test)."""
    return MarketRules.load()


@pytest.fixture
def venue(rules: MarketRules) -> SimulatedVenue:
    """A simulated venue with BTC at 50,000 at 2024-01-01 00:00 UTC."""
    v = SimulatedVenue(rules)
    v.set_price(BTC, 50_000.0, T0)
    return v


@pytest.fixture
def make_accounts(venue: SimulatedVenue) -> Callable[..., list[Account]]:
    """``make_accounts(1000, 5000, 500)`` → Account 1..n on the venue with those balances."""

    def make(*balances: float) -> list[Account]:
        return [Account(f"Account {i}", venue.add_account(f"Account {i}", b)) for i, b in enumerate(balances, 1)]

    return make


@pytest.fixture
def seed_signal() -> Signal:
    """The design document's example: BTC/USDT LONG, entry 50,000, SL 49,500, TP 51,000."""
    return parse_signal({"symbol": "BTC/USDT", "side": "long", "entry": 50_000, "sl": 49_500, "tp": 51_000,
                         "id": "seed-1"})
