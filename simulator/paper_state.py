"""Saving and restoring the simulated venue's accounts as JSON (paper mode resumes exactly where it stopped)."""

from __future__ import annotations

import itertools
from dataclasses import asdict, fields

from simulator.exchange import ClosedPosition, Position, SimulatedExchange, SimulatedVenue

VERSION = 1


def dump_venue(venue: SimulatedVenue) -> dict:
    """Everything needed to resume: wallets, positions, orders, closed trades, leverage, prices, clock."""
    accounts = {}
    for name, ex in venue.accounts.items():
        accounts[name] = {
            "wallet": ex.wallet,
            "positions": [asdict(p) for p in ex.positions.values()],
            "orders": list(ex.orders.values()),
            "algo_orders": list(ex.algo_orders.values()),
            "leverage": ex.leverage,
            "margin_mode": ex.margin_mode,
            "closed": [asdict(c) for c in ex.closed],
            "realized_pnl": ex.realized_pnl,
            "fees_paid": ex.fees_paid,
        }
    ids = [int(o["id"]) for a in accounts.values() for o in a["orders"]]
    algo = [int(o["id"]) for a in accounts.values() for o in a["algo_orders"]]
    return {
        "version": VERSION, "now_ms": venue.now_ms, "prices": venue.prices, "accounts": accounts,
        "next_id": max(ids, default=1_000_000) + 1, "next_algo_id": max(algo, default=3_000_000_000) + 1,
    }


def restore_venue(venue: SimulatedVenue, data: dict) -> None:
    """Load a :func:`dump_venue` document into an empty venue (accounts are created)."""
    if data.get("version") != VERSION:
        raise ValueError(f"paper state version {data.get('version')!r} not supported (expected {VERSION})")
    venue.now_ms = int(data["now_ms"])
    venue.prices.update({k: float(v) for k, v in data["prices"].items()})
    venue._ids = itertools.count(int(data["next_id"]))
    venue._algo_ids = itertools.count(int(data["next_algo_id"]))
    pos_fields = {f.name for f in fields(Position)}
    closed_fields = {f.name for f in fields(ClosedPosition)}
    for name, a in data["accounts"].items():
        ex: SimulatedExchange = venue.accounts.get(name) or venue.add_account(name, 0.0)
        ex.wallet = float(a["wallet"])
        ex.positions = {p["symbol"]: Position(**{k: v for k, v in p.items() if k in pos_fields}) for p in a["positions"]}
        ex.orders = {o["id"]: o for o in a["orders"]}
        ex.algo_orders = {o["id"]: o for o in a["algo_orders"]}
        ex.by_client_id = {o["clientOrderId"]: o for o in [*a["orders"], *a["algo_orders"]] if o.get("clientOrderId")}
        ex.leverage = {k: int(v) for k, v in a["leverage"].items()}
        ex.margin_mode = dict(a["margin_mode"])
        ex.closed = [ClosedPosition(**{k: v for k, v in c.items() if k in closed_fields}) for c in a["closed"]]
        ex.realized_pnl = float(a["realized_pnl"])
        ex.fees_paid = float(a["fees_paid"])
