"""The fault suite (issue 11): each single and compound network fault on each order endpoint of one account among
three, against the Binance stand-in on 127.0.0.1 (real ccxt over HTTP, tests/standin/rig.py). After the signal and
one watcher round (the sweep of watched symbols):

- the other accounts are untouched: each traded once, its stop and target in place;
- 0 duplicates: each client order id of the faulty account names at most one order at the venue;
- 0 naked positions: a position has a reduce-only stop at the signal's stop for its whole size;
- 0 orphans: no reduce-only order is open on a symbol without a position.

Endpoints, by order leg: the entry (POST /fapi/v1/order), the stop-loss and take-profit (POST /fapi/v1/algoOrder)
and the emergency close (POST /fapi/v1/order, reduce-only, after the stop was refused). Faults (tests/standin/
server.py): a 502 before acting, once and always; after executing: a 503, a dropped connection, a body cut in the
middle; and compound: the reply lost (-1007) then every lookup 502, the reply timed out then the first lookup
timed out too and the rest 502.
"""

from __future__ import annotations

import pytest

from engine import MultiAccountExecutor, parse_signal
from engine.ids import client_order_id
from tests.standin.rig import live_rig
from tests.standin.server import (
    ALWAYS,
    BAD_GATEWAY,
    DROPPED,
    LOST_REPLY,
    REJECT,
    TRUNCATED,
    UNAVAILABLE_AFTER,
    UNKNOWN_STATUS,
    StandIn,
)

VICTIM = "Account 2"
NAMES = ("Account 1", "Account 2", "Account 3")
SIGNAL = {"id": "fault-1", "symbol": "BTCUSDT", "side": "LONG", "entry": 50_000, "stop_loss": 49_500,
          "take_profit": 51_000}
TIMEOUT_MS = 600  # the client's timeout in these tests; a lost reply arrives after LATE_S
LATE_S = 0.9
# fault name -> [(on the order request | on its lookup, fail() keywords)]
FAULTS: dict[str, list[tuple[str, dict]]] = {
    "502-once": [("send", {"kind": BAD_GATEWAY})],
    "502-always": [("send", {"kind": BAD_GATEWAY, "times": ALWAYS})],
    "503-after-executing": [("send", {"kind": UNAVAILABLE_AFTER})],
    "dropped-after-executing": [("send", {"kind": DROPPED})],
    "truncated-body": [("send", {"kind": TRUNCATED})],
    "lost-reply-then-lookups-502": [("send", {"kind": UNKNOWN_STATUS, "code": -1007}),
                                    ("lookup", {"kind": BAD_GATEWAY, "times": ALWAYS})],
    "timeout-then-lookup-timeout-and-502": [("send", {"kind": LOST_REPLY, "seconds": LATE_S}),
                                            ("lookup", {"kind": LOST_REPLY, "seconds": LATE_S}),
                                            ("lookup", {"kind": BAD_GATEWAY, "times": ALWAYS})],
}
LEGS = ("E", "SL", "TP", "X")


def _inject(venue: StandIn, leg: str, fault: list[tuple[str, dict]]) -> None:
    algo = leg in ("SL", "TP")
    key = "clientAlgoId" if algo else "newClientOrderId"
    if leg == "X":  # the emergency close follows a refused stop-loss (the price fell through it)
        venue.fail("POST", "/fapi/v1/algoOrder", REJECT, code=-2021, account=VICTIM,
                   when=lambda p: p.get("clientAlgoId", "").endswith("-SL"))
    for where, kwargs in fault:
        if where == "send":
            venue.fail("POST", "/fapi/v1/algoOrder" if algo else "/fapi/v1/order", account=VICTIM,
                       when=lambda p, k=key: p.get(k, "").endswith(f"-{leg}"), **kwargs)
        else:  # looked up by client order id
            lookup_key = "clientAlgoId" if algo else "origClientOrderId"
            venue.fail("GET", "/fapi/v1/algoOrder" if algo else "/fapi/v1/order", account=VICTIM,
                       when=lambda p, k=lookup_key: p.get(k, "").endswith(f"-{leg}"), **kwargs)


def _book(venue: StandIn, name: str) -> dict:
    acct = venue.account(name)
    cids = [o["clientOrderId"] for o in acct.orders.values()] + [a["clientAlgoId"] for a in acct.algos.values()]
    open_algos = [a for a in acct.algos.values() if a["algoStatus"] == "NEW"]
    pos = acct.positions.get("BTCUSDT")
    return {
        "cids": cids, "position": abs(pos["amt"]) if pos else 0.0,
        "stops": [(a["triggerPrice"], a["quantity"]) for a in open_algos
                  if a["orderType"] == "STOP_MARKET" and a["reduceOnly"]],
        "targets": [(a["triggerPrice"], a["quantity"]) for a in open_algos if a["orderType"] == "TAKE_PROFIT_MARKET"],
        "orphans": [a["clientAlgoId"] for a in open_algos if a["reduceOnly"] and a["symbol"] not in acct.positions],
    }


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("leg", LEGS)
async def test_a_fault_on_one_accounts_order_endpoint_leaves_no_duplicate_no_naked_position_no_orphan(leg, fault):
    async with live_rig([1_000.0, 5_000.0, 500.0]) as rig:
        for account in rig.accounts:
            account.exchange.timeout = TIMEOUT_MS
        _inject(rig.standin, leg, FAULTS[fault])
        executor = MultiAccountExecutor(rig.accounts, retry_delay=0.02, receive_window=0)
        signal = parse_signal(dict(SIGNAL))
        summary = await executor.execute(signal)
        await executor.watcher.sweep()  # one watcher round
        results = {r.account: r for r in summary.results}
        untaken = [(f.method, f.path, f.kind) for f in rig.standin.faults if f.times in (1, ALWAYS)]
        books = {name: _book(rig.standin, name) for name in NAMES}

    assert not untaken, f"faults never reached: {untaken}"
    for name in NAMES:
        book, result = books[name], results[name]
        assert len(book["cids"]) == len(set(book["cids"])), (name, book["cids"])  # 0 duplicates
        assert not book["orphans"], (name, book)
        if book["position"]:
            assert book["stops"] == [(49_500.0, book["position"])], (name, book, result)  # 0 naked
        if name != VICTIM:  # untouched
            assert result.status == "success", result
            assert book["cids"] == [client_order_id(signal.id, name, leg) for leg in ("E", "SL", "TP")]
            assert book["targets"] == [(51_000.0, book["position"])] and book["position"] > 0
    victim, book = results[VICTIM], books[VICTIM]
    entry = client_order_id(signal.id, VICTIM, "E")
    assert book["cids"].count(entry) == (1 if victim.entry_sent and (book["position"] or victim.closed) else
                                         book["cids"].count(entry))
    if victim.status == "success":
        assert book["position"] == victim.quantity > 0 and victim.stop_loss_order_id, (victim, book)
    if leg == "X":  # the outcome says whether the emergency close went through, lost reply or not
        assert victim.closed == (book["position"] == 0), (victim, book)


async def test_a_take_profit_whose_reply_was_lost_is_no_orphan_once_the_stop_fills():
    """The take-profit was placed but its reply lost and every lookup failed (no id); the stop-loss fills later:
    the watcher cancels the take-profit left on the flat symbol in the same round."""
    async with live_rig([1_000.0, 5_000.0, 500.0]) as rig:
        _inject(rig.standin, "TP", FAULTS["lost-reply-then-lookups-502"])
        executor = MultiAccountExecutor(rig.accounts, retry_delay=0.02, receive_window=0)
        summary = await executor.execute(parse_signal(dict(SIGNAL)))
        assert [r.status for r in summary.results] == ["success"] * 3
        assert _book(rig.standin, VICTIM)["targets"] == [(51_000.0, 0.04)]  # it exists, the bot has no id
        rig.standin.set_price("BTCUSDT", 49_400.0)  # every stop-loss fills
        assert await executor.watcher.poll() == 3
        await executor.watcher.sweep()
        books = {name: _book(rig.standin, name) for name in NAMES}
    assert all(b["position"] == 0 and not b["orphans"] for b in books.values()), books


@pytest.mark.parametrize("fault", ["502-once", "503-after-executing", "dropped-after-executing", "truncated-body"])
async def test_a_fault_on_cancelling_the_sibling_leaves_no_orphan_after_one_round(fault):
    """The take-profit fills; cancelling the stop-loss (DELETE /fapi/v1/algoOrder) fails for one account: the
    watcher watches the symbol and the same round's sweep cancels the orphan (or finds it cancelled)."""
    async with live_rig([1_000.0, 5_000.0, 500.0]) as rig:
        ((_, kwargs),) = FAULTS[fault]
        rig.standin.fail("DELETE", "/fapi/v1/algoOrder", account=VICTIM, **kwargs)
        executor = MultiAccountExecutor(rig.accounts, retry_delay=0.02, receive_window=0)
        summary = await executor.execute(parse_signal(dict(SIGNAL)))
        assert [r.status for r in summary.results] == ["success"] * 3
        rig.standin.set_price("BTCUSDT", 51_000.0)  # every take-profit fills
        await executor.watcher.poll()
        await executor.watcher.sweep()
        books = {name: _book(rig.standin, name) for name in NAMES}
        assert all(f.times == 0 for f in rig.standin.faults), "the fault never fired"
    assert all(b["position"] == 0 and not b["orphans"] for b in books.values()), books
