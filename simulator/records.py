"""Simulator room: the simulator's records — positions, finished trades, and the ccxt-shaped order dicts it hands out.

Order dicts have ccxt's unified shape (``id``, ``status``, ``average``, ``info`` with Binance's raw fields …) so the
engine reads a simulated order exactly like a live one. The simulator keeps one private key in its own copies
(``_kind``: stop_loss / take_profit); :func:`public` strips it from every dict that leaves the simulator.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

from simulator.fills import STOP_LOSS, TAKE_PROFIT, Level


@dataclass(slots=True)
class Position:
    """An isolated one-way position. ``version`` changes whenever its size, orders or liquidation price may."""

    symbol: str
    long: bool
    contracts: float
    entry_price: float
    margin: float
    leverage: int
    liquidation_price: float
    opened_at: int
    entry_order_id: str
    entry_client_id: str | None
    fees: float = 0.0
    version: int = 0


@dataclass(slots=True)
class ClosedPosition:
    """A finished position (or the closed part of one): what the backtest writes to trades.csv."""

    account: str
    symbol: str
    side: str
    entry_time: int
    entry_price: float
    quantity: float
    margin: float
    leverage: int
    exit_time: int
    exit_price: float
    exit_reason: str
    fees: float
    pnl: float
    entry_order_id: str
    entry_client_id: str | None


class Exit(NamedTuple):
    """What one candle did to one position: the level it crossed, the price it filled at, the closed trade.

    ``closed`` is None when the level's trigger order found no position to reduce (it expired instead).
    """

    level: Level
    price: float
    closed: ClosedPosition | None


def binance_error(cls: type[Exception], code: int, msg: str) -> Exception:
    """A ccxt exception carrying Binance's error body, as ccxt raises it for a live rejection."""
    return cls("binanceusdm " + json.dumps({"code": code, "msg": msg}, separators=(",", ":")))


@functools.lru_cache(maxsize=4096, typed=True)  # accounts acting on one candle share its timestamp
def iso(ms: int) -> str:
    """ccxt's ``datetime`` field: ISO 8601 with milliseconds, UTC."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def market_order(*, oid: str, cid: str, now: int, symbol: str, side: str, reduce_only: bool, qty: float,
                 fill: float, notional: float, fee: float) -> dict:
    """A filled market order, as ccxt's ``create_order`` / ``fetch_order`` return it."""
    return {
        "id": oid, "clientOrderId": cid, "timestamp": now, "datetime": iso(now), "lastTradeTimestamp": now,
        "symbol": symbol, "type": "market", "timeInForce": "GTC", "postOnly": False,
        "reduceOnly": reduce_only, "side": side, "price": fill, "triggerPrice": None, "stopLossPrice": None,
        "takeProfitPrice": None, "amount": qty, "cost": notional, "average": fill, "filled": qty,
        "remaining": 0.0, "status": "closed", "fee": {"cost": fee, "currency": "USDT"},
        "trades": [], "fees": [{"cost": fee, "currency": "USDT"}],
        "info": {"orderId": oid, "clientOrderId": cid, "status": "FILLED", "type": "MARKET",
                 "avgPrice": str(fill), "executedQty": str(qty), "side": side.upper(),
                 "reduceOnly": reduce_only, "updateTime": now},
    }


def trigger_order(*, algo_id: str, cid: str, now: int, symbol: str, market_id: str, side: str, reduce_only: bool,
                  qty: float, trigger: float, kind: str, working_type: str) -> dict:
    """An open stop-market / take-profit-market (algo) order, with the simulator's private ``_kind``."""
    raw_type = "STOP_MARKET" if kind == STOP_LOSS else "TAKE_PROFIT_MARKET"
    return {
        "id": algo_id, "clientOrderId": cid, "timestamp": now, "datetime": iso(now),
        "lastTradeTimestamp": None, "symbol": symbol, "type": "market", "timeInForce": "GTC",
        "postOnly": False, "reduceOnly": reduce_only, "side": side, "price": None, "triggerPrice": trigger,
        "stopLossPrice": trigger if kind == STOP_LOSS else None,
        "takeProfitPrice": trigger if kind == TAKE_PROFIT else None,
        "amount": qty, "cost": 0.0, "average": None, "filled": 0.0, "remaining": qty, "status": "open",
        "fee": None, "trades": [], "fees": [],
        "info": {"algoId": algo_id, "clientAlgoId": cid, "algoType": "CONDITIONAL", "orderType": raw_type,
                 "symbol": market_id, "side": side.upper(), "positionSide": "BOTH",
                 "quantity": str(qty), "algoStatus": "NEW", "triggerPrice": str(trigger),
                 "workingType": working_type, "reduceOnly": reduce_only,
                 "createTime": now, "updateTime": now, "triggerTime": 0},
        "_kind": kind,
    }


PRIVATE_KEYS = ("_kind",)  # every key the simulator adds to its order dicts for itself


def public(order: dict) -> dict:
    """A copy without simulator-private keys (the caller may keep or mutate it)."""
    out = order.copy()
    for key in PRIVATE_KEYS:
        out.pop(key, None)
    out["info"] = dict(order["info"])
    return out
