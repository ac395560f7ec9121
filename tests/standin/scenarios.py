"""Tests room: the cassette scenarios (accounts, signal, stand-in setup) and the run shared by recorder and tests.

Each scenario is one cassette, tests/cassettes/<name>.yaml. The recorder runs it against the stand-in (or the
demo venue) with vcrpy recording; the tests run the very same ``run_scenario`` against the cassette.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine import BracketWatcher, MultiAccountExecutor, parse_signal
from engine.ports import Account
from engine.results import SignalSummary
from engine.watcher import ReconcileReport
from tests.standin.server import LOST_REPLY, LOST_REQUEST, REJECT, UNKNOWN_STATUS, StandIn

SYMBOL_ID = "BTCUSDT"
SEED_SIGNAL = {"id": "seed-btc-long", "symbol": "BTCUSDT", "side": "LONG", "entry": 50000.0, "stop_loss": 49500.0,
               "take_profit": 51000.0}
SEED_BALANCES = (("Account 1", 1000.0), ("Account 2", 5000.0), ("Account 3", 500.0))
RETRY_DELAY = 0.05  # seconds; the engine's backoff between transient retries and lookups


@dataclass(frozen=True)
class DummyCredentials:
    """Stand-in keys: dummy values, never a real key (and filtered out of cassettes anyway)."""

    name: str
    api_key: str
    api_secret: str

    def __repr__(self) -> str:
        return f"DummyCredentials({self.name!r})"


def dummy_credentials(names: list[str]) -> list[DummyCredentials]:
    return [DummyCredentials(n, f"standin-dummy-key-{i}-000000000000", f"standin-dummy-secret-{i}-000000000000")
            for i, n in enumerate(names, 1)]


@dataclass(frozen=True)
class Scenario:
    """One cassette's story.

    balances: (account name, USDT balance) in order; unregistered: accounts whose key the stand-in rejects.
    faults: keyword arguments for :meth:`StandIn.fail`.
    advertised_min_notional: MIN_NOTIONAL the stand-in's exchangeInfo shows (it enforces the real one).
    mark_after_first_fill: the mark price jumps here right after the first entry fills (a fast market).
    watch_price: after execution, the mark moves here and the bracket watcher polls once.
    restart: after execution, Account 1's stop-loss disappears and Account 2's position is closed outside the
        bot; then a fresh watcher (a restarted process) reconciles every account.
    demo: also recordable against Binance demo trading (--live-demo).
    """

    name: str
    description: str
    balances: tuple[tuple[str, float], ...] = SEED_BALANCES
    signal: dict = field(default_factory=lambda: dict(SEED_SIGNAL))
    unregistered: tuple[str, ...] = ()
    faults: tuple[dict, ...] = ()
    advertised_min_notional: dict[str, str] = field(default_factory=dict)
    mark_after_first_fill: dict[str, float] = field(default_factory=dict)
    watch_price: float | None = None
    restart: bool = False
    timeout_ms: int = 10_000
    demo: bool = False

    @property
    def cassette(self) -> str:
        """tests/cassettes/<cassette>.yaml"""
        return f"live_{self.name}"

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.balances]


def _is(kind: str) -> Callable[[dict], bool]:
    return lambda params: params.get("type") == kind


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("seed", "seed signal on three accounts: entry, stop-loss and take-profit algo orders each", demo=True),
    Scenario("watcher", "seed signal, then the take-profit fills and the watcher cancels the stop-loss",
             watch_price=51000.0),
    Scenario("reconcile", "restart: a position without its stop gets one, orders without a position are "
                          "cancelled", restart=True),
    Scenario("insufficient_margin", "-2019 on Account 2's entry: that account fails, the others trade",
             faults=({"method": "POST", "path": "/fapi/v1/order", "code": -2019, "account": "Account 2"},)),
    Scenario("min_notional", "-4164: exchangeInfo shows the stale MIN_NOTIONAL 5, Binance enforces 100",
             balances=(("Account 1", 1000.0), ("Account 2", 200.0), ("Account 3", 5000.0)),
             advertised_min_notional={SYMBOL_ID: "5"}),
    Scenario("immediate_trigger", "-2021 on every stop-loss (price fell through it after the fill): closed at market",
             mark_after_first_fill={SYMBOL_ID: 49400.0}, demo=True),
    Scenario("rate_limit", "-1003 (HTTP 429) on Account 1's entry: retried with the same client order id",
             faults=({"method": "POST", "path": "/fapi/v1/order", "code": -1003, "account": "Account 1"},)),
    Scenario("bad_key", "-2015 (HTTP 401) for Account 3's key: that account fails, the others trade",
             unregistered=("Account 3",), demo=True),
    Scenario("leverage_rejected", "-4028 on Account 2's leverage: that account does not trade",
             faults=({"method": "POST", "path": "/fapi/v1/leverage", "code": -4028, "account": "Account 2"},)),
    Scenario("timeout", "timeouts: entry reply lost (found by client id), stop-loss -1007 (found), entry never "
                        "arrived (not found, sent once more)", timeout_ms=1000, faults=(
        {"method": "POST", "path": "/fapi/v1/order", "kind": LOST_REPLY, "seconds": 1.5, "account": "Account 1"},
        {"method": "POST", "path": "/fapi/v1/algoOrder", "kind": UNKNOWN_STATUS, "code": -1007,
         "account": "Account 2", "when": _is("STOP_MARKET")},
        {"method": "POST", "path": "/fapi/v1/order", "kind": LOST_REQUEST, "seconds": 1.5, "account": "Account 3"},
    )),
)}

assert all(f.get("kind", REJECT) in (REJECT, LOST_REPLY, LOST_REQUEST, UNKNOWN_STATUS)
           for s in SCENARIOS.values() for f in s.faults)


def break_brackets(standin: StandIn) -> None:
    """What the reconcile scenario does behind the bot's back (stand-in side)."""
    standin.cancel_algos("Account 1", "STOP_MARKET")
    standin.close_position("Account 2", SYMBOL_ID)


def build_standin(scenario: Scenario, credentials: list[DummyCredentials]) -> StandIn:
    price = float(scenario.signal["entry"])
    standin = StandIn(prices={SYMBOL_ID: price}, advertised_min_notional=scenario.advertised_min_notional,
                      mark_after_first_fill=scenario.mark_after_first_fill)
    balances = dict(scenario.balances)
    for c in credentials:
        if c.name not in scenario.unregistered:
            standin.add_account(c.name, c.api_key, c.api_secret, balances[c.name])
    for fault in scenario.faults:
        standin.fail(**fault)
    return standin


@dataclass
class Outcome:
    summary: SignalSummary
    executor: MultiAccountExecutor
    fills_seen: int | None = None
    reports: list[ReconcileReport] = field(default_factory=list)

    def result(self, name: str) -> Any:
        return next(r for r in self.summary.results if r.account == name)


async def run_scenario(scenario: Scenario, accounts: list[Account], signal: dict | None = None, *,
                       move_price: Callable[[float], None] | None = None,
                       break_brackets: Callable[[], Any] | None = None) -> Outcome:
    """Execute the scenario's signal on ``accounts``; then, per scenario, let the watcher poll after the price
    moved (``move_price``, venue side) or reconcile after a restart (``break_brackets``, venue side).
    The venue-side hooks are only given when recording or simulating; a replay finds their effects in the
    cassette."""
    # the stand-in has no queue: a request it did not answer never lands, so "not found" is final at once
    executor = MultiAccountExecutor(accounts, retry_delay=RETRY_DELAY, receive_window=0)
    summary = await executor.execute(parse_signal(dict(signal or scenario.signal)))
    outcome = Outcome(summary, executor)
    if scenario.watch_price is not None:
        if move_price is not None:
            move_price(scenario.watch_price)
        outcome.fills_seen = await executor.watcher.poll()
    if scenario.restart:
        if break_brackets is not None and inspect.isawaitable(done := break_brackets()):
            await done
        watcher = BracketWatcher(accounts)  # a restarted process that lost its brackets, not the symbol traded
        outcome.reports = [await watcher.reconcile(a, symbols=[summary.results[0].symbol]) for a in accounts]
    return outcome
