"""The crash harness (issue 11): `fanout run --once` killed at every crash point of a signal's life
(storage/crash_points.py, ``FANOUT_CRASH_AT``: ``os._exit`` at that moment, like ``kill -9``), in paper and live
(on the Binance stand-in of tests/standin/, three accounts), then started again. After the restart:

- 0 lost: the signal is done and every account has a final outcome in the journal;
- 0 duplicated: at the venue (stand-in / saved simulator) each client order id (entry, stop, target, close) names
  at most one order, and an account's position is exactly its entry's quantity;
- 0 naked: every open position has a reduce-only stop at the signal's stop for its whole quantity, and no
  reduce-only order is left on a symbol without a position.

Per-account points crash on Account 2 while Accounts 1 and 3 trade beside it. Points that only a misbehaving
venue reaches (a lost reply, a refusal, the emergency close) get that fault on Account 2, once: the stand-in's
queued faults in live, the bot's simulated exchange in paper (tests/crash/bots.py). The bots are forked from one
server process (tests/crash/bots.py) so that the 2 × 25 crash-and-restart cases take seconds each, not more.
The journal is SQLite; a few moments are repeated on PostgreSQL.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import pytest

from engine.ids import client_order_id
from marketdata.rules import MarketRules
from simulator.paper_session import resume_venue
from storage.crash_points import CRASH_EXIT_CODE, POINTS
from storage.journal import Journal
from tests.crash.bots import BotServer
from tests.standin import cli_flows as flows
from tests.standin.cli_record import serving
from tests.standin.limits import IpLimits
from tests.standin.public_market import MINUTE, MarketStandIn
from tests.standin.server import ALWAYS, BAD_GATEWAY, REJECT, UNKNOWN_STATUS, StandIn

NAMES = flows.NAMES
VICTIM = "Account 2"
SIGNAL = {"symbol": "BTCUSDT", "side": "LONG", "entry": 50_000.0, "stop_loss": 49_500.0, "take_profit": 51_000.0}
SIGNAL_POINTS = ("received", "claimed", "summary", "done")  # moments of the signal, not of one account
# the faults (on Account 2, once) that make the bot reach a point; a lost reply = the order placed, the reply lost
LOST = ("lost_reply", None)
SL_REFUSED = ("SL", "reject", -2021)  # the price fell through the stop: the emergency close follows
FAULTS: dict[str, tuple[tuple, ...]] = {
    "E.sent": (("E", *LOST),), "E.failed": (("E", "reject", -2019),),
    "SL.sent": (("SL", *LOST),), "SL.failed": (SL_REFUSED,),
    "TP.sent": (("TP", *LOST),), "TP.failed": (("TP", "reject", -2021),),
    "X.intent": (SL_REFUSED,), "X.sending": (SL_REFUSED,), "X.acknowledged": (SL_REFUSED,),
    "X.sent": (SL_REFUSED, ("X", *LOST)), "X.failed": (SL_REFUSED, ("X", "reject", -2022)),
}
CASES = [(p, FAULTS.get(p, ())) for p in POINTS]


def _when(leg: str):
    if leg == "E":
        return lambda p: p.get("newClientOrderId", "").endswith("-E")
    if leg == "X":
        return lambda p: p.get("newClientOrderId", "").endswith("-X")
    return lambda p: p.get("clientAlgoId", "").endswith(f"-{leg}")


def _standin_fault(venue: StandIn, leg: str, kind: str, code: int | None) -> None:
    path = "/fapi/v1/algoOrder" if leg in ("SL", "TP") else "/fapi/v1/order"
    venue.fail("POST", path, UNKNOWN_STATUS if kind == "lost_reply" else REJECT, code=code or -1007,
               account=VICTIM, when=_when(leg))


@pytest.fixture(scope="module")
def bots():
    server = BotServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def venue():
    """One stand-in for every case, with public BTCUSDT market data (flat one-minute candles around the real
    clock, last price 50,000: paper prices, the resume's price check); live accounts and the IP's request weight
    are reset per case (dozens of bots start within a minute; each case alone stays far below the limits)."""
    now = int(time.time() * 1000)
    start = (now // MINUTE - 5) * MINUTE
    candles = [(start + k * MINUTE, 50_000.0, 50_010.0, 49_990.0, 50_000.0) for k in range(120)]
    standin = MarketStandIn(symbol="BTCUSDT", candles=candles, now=now)
    with serving(standin, 0) as url:
        standin.url = url
        yield standin


def _reset(venue: StandIn) -> None:
    venue.accounts.clear()
    venue.faults.clear()
    venue.log.clear()
    venue.limits = IpLimits(venue.clock)
    for c, balance in zip(flows.credentials(), flows.BALANCES.split(","), strict=True):
        venue.add_account(c.name, c.api_key, c.api_secret, float(balance))


@pytest.mark.parametrize("mode", ["live", "paper"])
@pytest.mark.parametrize(("point", "faults"), CASES, ids=[p for p, _ in CASES])
def test_a_crash_at_any_point_loses_nothing_duplicates_nothing_leaves_nothing_naked(
        mode, point, faults, tmp_path, bots, venue):
    _crash_and_restart(mode, point, faults, tmp_path, bots, venue, f"sqlite:///{tmp_path / 'journal.db'}")


@pytest.mark.postgres
@pytest.mark.parametrize("mode", ["live", "paper"])
@pytest.mark.parametrize("point", ["E.sending", "E.acknowledged", "TP.intent", "summary"])
def test_a_crash_with_the_journal_on_postgresql(mode, point, tmp_path, bots, venue, postgres_url):
    """The same on PostgreSQL, at the moments where the journal and the venue disagree most."""
    _crash_and_restart(mode, point, (), tmp_path, bots, venue, postgres_url)


@pytest.mark.parametrize("leg", ["E", "SL", "TP"])
def test_a_crash_after_a_lost_reply_whose_lookups_keep_failing_after_the_restart(leg, tmp_path, bots, venue):
    """Live: the order was placed, its reply lost, the bot died (``<leg>.sent``), and after the restart looking it
    up by client order id still fails (502 every time): the position and the open orders settle it."""
    _crash_and_restart("live", f"{leg}.sent", FAULTS[f"{leg}.sent"], tmp_path, bots, venue,
                       f"sqlite:///{tmp_path / 'journal.db'}", lookups_fail=leg)


def _crash_and_restart(mode: str, point: str, faults: tuple, tmp_path: Path, bots: BotServer, venue: StandIn,
                       db_url: str, *, lookups_fail: str | None = None) -> None:
    signal_id = f"crash-{mode}-{point.replace('.', '-')}"
    paper_faults = None
    if mode == "live":
        _reset(venue)
        for fault in faults:
            _standin_fault(venue, *fault)
        if lookups_fail is not None:
            algo = lookups_fail in ("SL", "TP")
            key = "clientAlgoId" if algo else "origClientOrderId"
            venue.fail("GET", "/fapi/v1/algoOrder" if algo else "/fapi/v1/order", BAD_GATEWAY, times=ALWAYS,
                       account=VICTIM, when=lambda p: p.get(key, "").endswith(f"-{lookups_fail}"))
        env_file = flows.write_env(tmp_path / "bot.env", mode="live", database=db_url, api_url=venue.url)
    else:
        env_file = flows.write_env(tmp_path / "bot.env", mode="paper", database=db_url, api_url=venue.url,
                                   paper_balances=flows.BALANCES)
        paper_faults = [{"account": VICTIM, "leg": leg, "kind": kind, "code": code} for leg, kind, code in faults]
    signals = tmp_path / "signals.csv"
    signals.write_text("id,symbol,side,entry,stop_loss,take_profit\n"
                       f"{signal_id},{SIGNAL['symbol']},{SIGNAL['side']},{SIGNAL['entry']},{SIGNAL['stop_loss']},"
                       f"{SIGNAL['take_profit']}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(flows.ENV_PREFIXES)}
    argv = ["run", "--mode", mode, "--once", "--signals", str(signals), "--env-file", str(env_file)]
    crash_at = point if point in SIGNAL_POINTS else f"{point}@{VICTIM}"

    crashed = bots.run(argv, env=dict(env, FANOUT_CRASH_AT=crash_at), cwd=tmp_path, paper_faults=paper_faults)
    assert crashed.code == CRASH_EXIT_CODE, crashed.output
    assert f"💥 crash point {point}" in crashed.output
    restarted = bots.run(argv, env=env, cwd=tmp_path)
    assert restarted.code == 0, restarted.output
    assert "Traceback" not in crashed.output + restarted.output

    journal = Journal(db_url)
    try:
        # 0 lost: done, one final outcome per account
        assert journal.unfinished_signals(mode) == []
        rows = {r["account"]: r for r in journal.outcomes(signal_id)}
        assert sorted(rows) == sorted(NAMES), restarted.output
        venue_state = _venue_state(mode, journal, venue)
    finally:
        journal.close()
    for name in NAMES:
        row, state = rows[name], venue_state[name]
        cids = {leg: client_order_id(signal_id, name, leg) for leg in ("E", "SL", "TP", "X")}
        # 0 duplicated
        assert all(n == 1 for n in state["cids"].values()), (name, state["cids"])
        assert state["cids"][cids["E"]] == 1, (name, row, restarted.output)
        # 0 naked, 0 orphans
        assert not state["orphans"], (name, state)
        if state["position"]:
            assert state["stops"] == [(SIGNAL["stop_loss"], state["position"])], (name, state)
        # the outcome says what the venue holds
        if name != VICTIM or point not in FAULTS or FAULTS[point][0] != SL_REFUSED:
            assert (row["status"], row["stop_loss"], row["take_profit"]) == ("success", 49_500.0, 51_000.0), row
        if row["status"] == "success":
            assert state["position"] == row["quantity"] > 0, (name, row, state)
            assert row["stop_loss_order_id"] and row["take_profit_order_id"], row
            assert state["targets"] == [(SIGNAL["take_profit"], state["position"])], (name, state)
        else:  # the stop was refused and the position closed at market: nothing left behind
            assert (row["status"], state["position"]) == ("failed", 0), (name, row, state)
            assert "closed at market" in row["reason"], row
            assert state["cids"][cids["X"]] == 1


def _venue_state(mode: str, journal: Journal, standin: StandIn) -> dict[str, dict]:
    """Per account: orders by client order id (how many), position size, open stops and targets (price, size) and
    reduce-only orders on a symbol without a position."""
    out = {}
    if mode == "live":
        for name in NAMES:
            acct = standin.account(name)
            cids = Counter([o["clientOrderId"] for o in acct.orders.values()]
                           + [a["clientAlgoId"] for a in acct.algos.values()])
            position = abs(acct.positions["BTCUSDT"]["amt"]) if "BTCUSDT" in acct.positions else 0
            live_algos = [a for a in acct.algos.values() if a["algoStatus"] == "NEW"]
            out[name] = {
                "cids": cids, "position": position,
                "stops": [(a["triggerPrice"], a["quantity"]) for a in live_algos if a["orderType"] == "STOP_MARKET"],
                "targets": [(a["triggerPrice"], a["quantity"]) for a in live_algos
                            if a["orderType"] == "TAKE_PROFIT_MARKET"],
                "orphans": [a for a in live_algos if a["reduceOnly"] and a["symbol"] not in acct.positions],
            }
        return out
    venue = resume_venue(journal, MarketRules.load(), {})
    symbol = "BTC/USDT:USDT"
    for name in NAMES:
        ex = venue.accounts[name]
        orders = list(ex.orders.values()) + list(ex.algo_orders.values())
        cids = Counter(o["clientOrderId"] for o in orders)
        pos = ex.positions.get(symbol)
        position = pos.contracts if pos is not None else 0
        open_algos = [o for o in ex.algo_orders.values() if o["status"] == "open"]
        out[name] = {
            "cids": cids, "position": position,
            "stops": [(o["triggerPrice"], o["amount"]) for o in open_algos if o.get("stopLossPrice") is not None],
            "targets": [(o["triggerPrice"], o["amount"]) for o in open_algos if o.get("takeProfitPrice") is not None],
            "orphans": [o for o in open_algos if o.get("reduceOnly") and o["symbol"] not in ex.positions],
        }
    return out
