"""Tests room: parity — the executor makes the same exchange calls against the simulator and against ccxt-live.

For each scenario the same signal and balances run through engine.MultiAccountExecutor twice: on
SimulatedExchange accounts, and on LiveExchange (ccxt binanceusdm) accounts replayed from the scenario's
cassette. Both sides are wrapped in RecordingExchange, which logs every port call (method, arguments, params)
with exchange-assigned order ids masked; the per-account sequences must be equal. Failures are injected on the
simulated side with ``fail_next`` where the stand-in injected them when the cassette was recorded.
"""

from __future__ import annotations

import ccxt
import pytest

from engine.ports import Account
from simulator.venue import SimulatedVenue
from tests.live.cassette_support import RecordingExchange, replay
from tests.standin.scenarios import SCENARIOS, run_scenario

T0 = 1_704_067_200_000


def _binance(cls: type[Exception], code: int, msg: str) -> Exception:
    return cls(f'binanceusdm {{"code":{code},"msg":"{msg}"}}')


# scenario -> {account position: [(method, exception)]}: what the stand-in did, as simulator faults
FAULTS = {
    "seed": {},
    "watcher": {},
    "reconcile": {},
    "insufficient_margin": {1: [("create_order", _binance(ccxt.InsufficientFunds, -2019,
                                                                     "Margin is insufficient."))]},
    "rate_limit": {},  # live: the exchange resends a 429-refused order after the pause; the simulator never 429s
    "bad_key": {-1: [("fetch_balance", _binance(ccxt.AuthenticationError, -2015,
                                                          "Invalid API-key, IP, or permissions for action."))]},
    "leverage_rejected": {1: [("set_leverage", _binance(ccxt.BadRequest, -4028,
                                                                   "Leverage 20 is not valid"))]},
}


async def simulate(name: str, meta: dict) -> dict[str, RecordingExchange]:
    scenario = SCENARIOS[name]
    venue = SimulatedVenue.from_snapshot()
    symbol = "BTC/USDT:USDT"
    entry = float(meta["signal"]["entry"])
    venue.set_price(symbol, entry, T0)
    accounts = []
    names = meta["accounts"]
    faults = {names[i]: f for i, f in FAULTS[name].items()}
    for account in names:
        ex = venue.add_account(account, balance=meta["balances"][account])
        for method, exc in faults.get(account, []):
            ex.fail_next(method, exc)
        accounts.append(Account(account, RecordingExchange(ex)))

    def move(price: float) -> None:  # one candle from the entry to the watcher's price
        venue.apply_candle(symbol, T0 + 60_000, entry, max(entry, price), min(entry, price), price)

    async def break_brackets() -> None:  # the simulator side of scenarios.break_brackets (not recorded)
        one, two = venue.accounts[names[0]], venue.accounts[names[1]]
        stop = next(o for o in await one.fetch_open_orders(symbol, None, None, {"trigger": True})
                    if o["stopLossPrice"] is not None)
        await one.cancel_order(stop["id"], symbol, {"trigger": True})
        position = (await two.fetch_positions([symbol]))[0]
        await two.create_order(symbol, "market", "sell", position["contracts"], None, {"reduceOnly": True})

    await run_scenario(scenario, accounts, meta["signal"], move_price=move, break_brackets=break_brackets)
    return {a.name: a.exchange for a in accounts}


@pytest.mark.parametrize("name", list(FAULTS))
async def test_same_calls_against_simulator_and_live(name):
    live = await replay(name)
    sim = await simulate(name, live.meta)
    assert list(sim) == list(live.exchanges)
    for account in live.exchanges:
        live_calls, sim_calls = live.exchanges[account].calls, sim[account].calls
        assert sim_calls == live_calls, f"{name} / {account}: call sequences differ"
        assert [m for m, _ in sim[account].errors] == [m for m, _ in live.exchanges[account].errors]
        assert [type(e) for _, e in sim[account].errors] == [type(e) for _, e in live.exchanges[account].errors]


async def test_parity_sequence_is_the_whole_bracket():
    live = await replay("watcher")
    methods = [c[0] for c in live.exchanges["Account 1"].calls]
    orders = [c for c in live.exchanges["Account 1"].calls if c[0] == "create_order"]
    assert [dict(c[1][5]).get("stopLossPrice") for c in orders] == [None, 49500.0, None]
    assert [dict(c[1][5]).get("takeProfitPrice") for c in orders] == [None, None, 51000.0]
    assert methods[-3:] == ["fetch_open_orders", "fetch_order", "cancel_order"]
    assert live.exchanges["Account 1"].calls[-1] == (
        "cancel_order", ("<id>", "BTC/USDT:USDT", (("trigger", True),)), ())


async def test_recorded_markets_match_the_simulator_rules(rules):
    """The stand-in answered exchangeInfo and leverageBracket from data/market_rules.json; if the snapshot
    changes, re-record the cassettes (docs/cassettes.md) or this and the parity tests fail."""
    live = await replay("seed")
    ex = live.exchanges["Account 1"]._inner
    if live.meta["venue"] != "stand-in":
        pytest.skip("cassette recorded against the demo venue: its rules are Binance's of that day")
    assert len(ex.markets) >= 7 and set(ex.markets) <= set(rules.markets)  # the stand-in lists a few of them
    for symbol, recorded in ex.markets.items():
        market = rules.markets[symbol]
        assert recorded["precision"] == market["precision"], symbol
        assert recorded["limits"] == market["limits"], symbol
