"""Simulator room: the simulator's records — positions, finished trades, and the ccxt-shaped order dicts it hands out.

Orders are kept as compact records (``MarketOrder``, ``TriggerOrder``) and handed out as fresh dicts in ccxt's
unified shape (``id``, ``status``, ``average``, ``info`` with Binance's raw fields …, built by :func:`market_order`
and :func:`trigger_order`), so the engine reads a simulated order exactly like a live one: a backtest places four
orders per trade, and a dict kept per order was most of a run's memory. The simulator's own view of a trigger order
adds one private key (``_kind``: stop_loss / take_profit), never in what the engine receives.
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
    funding: float = 0.0  # funding received (+) or paid (-) while open (fills.py rule 9)
    funded_at: int = 0  # the time of the last funding event it paid or received (each is applied once)


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
    funding: float = 0.0  # funding received (+) or paid (-) while open, already in ``pnl``


class Exit(NamedTuple):
    """What one candle did to one position: the level it crossed, the price it filled at, the closed trade.

    ``closed`` is None when the level's trigger order found no position to reduce (it expired instead).
    """

    level: Level
    price: float
    closed: ClosedPosition | None


@dataclass(slots=True)
class MarketOrder:
    """A filled market order, kept compact: :meth:`ccxt` is the dict ``create_order`` / ``fetch_order`` return."""

    id: str
    client_id: str
    time: int
    symbol: str
    side: str
    reduce_only: bool
    qty: float
    price: float
    cost: float
    fee: float
    status = "closed"  # a market order fills at once (a class constant: nothing changes it)

    @classmethod
    def from_ccxt(cls, order: dict) -> MarketOrder:
        """The record of a dict :meth:`ccxt` made (a saved state)."""
        return cls(order["id"], order["clientOrderId"], order["timestamp"], order["symbol"], order["side"],
                   order["reduceOnly"], order["amount"], order["average"], order["cost"], order["fee"]["cost"])

    def ccxt(self, private: bool = False) -> dict:
        return market_order(oid=self.id, cid=self.client_id, now=self.time, symbol=self.symbol, side=self.side,
                            reduce_only=self.reduce_only, qty=self.qty, fill=self.price, notional=self.cost,
                            fee=self.fee)


@dataclass(slots=True)
class TriggerOrder:
    """A stop-market / take-profit-market (algo) order, kept compact; :meth:`ccxt` is ccxt's dict of it now.

    status: open → closed (it fired: ``fill`` is the reduce-only market order it became), expired (it fired with
    no position left to reduce) or canceled; ``closed_at``: when it fired or expired.
    """

    id: str
    client_id: str
    time: int
    symbol: str
    market_id: str
    side: str
    reduce_only: bool
    qty: float
    trigger: float
    kind: str
    working_type: str
    status: str = "open"
    closed_at: int | None = None
    fill: MarketOrder | None = None

    @classmethod
    def from_ccxt(cls, order: dict, fills: dict[str, MarketOrder]) -> TriggerOrder:
        """The record of a dict :meth:`ccxt` made with ``private`` (a saved state); ``fills``: market orders by id."""
        info = order["info"]
        fill = fills.get(info.get("actualOrderId")) if order["status"] == "closed" else None
        return cls(order["id"], order["clientOrderId"], order["timestamp"], order["symbol"], info["symbol"],
                   order["side"], order["reduceOnly"], order["amount"], order["triggerPrice"], order["_kind"],
                   info["workingType"], order["status"], order["lastTradeTimestamp"], fill)

    def ccxt(self, private: bool = False) -> dict:
        """ccxt's dict of this order as it stands; ``private`` keeps the simulator's ``_kind`` key."""
        order = trigger_order(algo_id=self.id, cid=self.client_id, now=self.time, symbol=self.symbol,
                              market_id=self.market_id, side=self.side, reduce_only=self.reduce_only, qty=self.qty,
                              trigger=self.trigger, kind=self.kind, working_type=self.working_type)
        if not private:
            del order["_kind"]
        status = self.status
        if status == "open":
            return order
        info = order["info"]
        order["status"] = status
        if status == "closed":
            fill, now = self.fill, self.closed_at
            order.update(filled=fill.qty, remaining=0.0, average=fill.price, price=fill.price, cost=fill.cost,
                         lastTradeTimestamp=now, fee={"cost": fill.fee, "currency": "USDT"})
            info.update(algoStatus="FINISHED", actualOrderId=fill.id, triggerTime=now, updateTime=now)
        elif status == "expired":
            order["lastTradeTimestamp"] = self.closed_at
            info["algoStatus"] = "EXPIRED"
        else:
            info["algoStatus"] = "CANCELED"
        return order


TRADE_FIELDS = ("account", "signal_id", "symbol", "side", "entry_time", "entry_price", "quantity", "margin",
                "notional", "leverage", "stop_loss", "take_profit", "exit_time", "exit_price", "exit_reason", "fees",
                "pnl", "funding")  # funding last: trades.csv has it only when the run knew some symbol's funding
_TRADE_INDEX = {name: i for i, name in enumerate(TRADE_FIELDS)}


class TradeRow(tuple):
    """One trades.csv row: a tuple in :data:`TRADE_FIELDS` order that also reads by column name (``row["pnl"]``).

    A run keeps one per trade (half a million in a 1,000-account year): a tuple is a sixth of a dict's memory and
    pickles between worker processes several times faster.
    """

    __slots__ = ()

    def __getitem__(self, key):  # type: ignore[override]
        return tuple.__getitem__(self, _TRADE_INDEX[key] if type(key) is str else key)

    def as_dict(self) -> dict:
        return dict(zip(TRADE_FIELDS, self, strict=True))


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
