"""The simulated Binance USDⓈ-M exchange: a shared venue (rules, clock, prices) and one exchange per account.

``SimulatedExchange`` implements the engine's Exchange port with ccxt's method names, arguments and return
shapes, and rejects what Binance rejects with the same ccxt exception classes and Binance error bodies. Markets
and precision come from the ccxt parser itself (see marketdata/rules.py), so amounts are formatted exactly as live.
Fill rules: simulator/fills.py.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import ccxt

from marketdata.rules import MarketRules
from simulator.fills import (
    LIQUIDATION,
    MAKER_FEE,
    STOP_LOSS,
    TAKE_PROFIT,
    TAKER_FEE,
    Level,
    first_hit,
    levels_for,
    slipped,
)

OrderListener = Callable[[str, dict], None]


def _binance_error(cls: type[Exception], code: int, msg: str) -> Exception:
    return cls("binanceusdm " + json.dumps({"code": code, "msg": msg}, separators=(",", ":")))


@functools.lru_cache(maxsize=4096, typed=True)  # accounts acting on one candle share its timestamp
def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


@dataclass(slots=True)
class Position:
    """An isolated one-way position."""

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
    """A finished position: what the backtest writes to trades.csv."""

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


@dataclass
class SimulatedVenue:
    """State shared by all simulated accounts: market rules, clock, last prices, fees, slippage, listeners."""

    rules: MarketRules
    taker_fee: float = TAKER_FEE
    maker_fee: float = MAKER_FEE
    slippage_bps: float = 0.0
    now_ms: int = 0
    prices: dict[str, float] = field(default_factory=dict)
    accounts: dict[str, SimulatedExchange] = field(default_factory=dict)
    listeners: list[OrderListener] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1_000_001))
    _algo_ids: itertools.count = field(default_factory=lambda: itertools.count(3_000_000_001))
    # ccxt lookups are pure functions of the rules: memoised (accounts on one signal ask the same questions)
    _markets: dict[str, dict] = field(default_factory=dict, repr=False, compare=False)
    _amounts: dict[str, _TruncationMemo] = field(default_factory=dict, repr=False, compare=False)
    _prices: dict[tuple[str, float], str] = field(default_factory=dict, repr=False, compare=False)
    _caps: dict[tuple[str, int], float] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name, value in (("taker_fee", self.taker_fee), ("maker_fee", self.maker_fee),
                            ("slippage_bps", self.slippage_bps)):
            if not 0 <= value < (1 if name != "slippage_bps" else 10_000):
                raise ValueError(f"venue field '{name}' out of range: {value!r}")

    @classmethod
    def from_snapshot(cls, path: str | None = None, **kwargs: Any) -> SimulatedVenue:
        return cls(MarketRules.load(path), **kwargs)

    def add_account(self, name: str, balance: float) -> SimulatedExchange:
        if name in self.accounts:
            raise ValueError(f"duplicate simulated account name {name!r}")
        if not balance >= 0:
            raise ValueError(f"balance of {name!r} must be >= 0, got {balance!r}")
        ex = SimulatedExchange(self, name, float(balance))
        self.accounts[name] = ex
        return ex

    def set_price(self, symbol: str, price: float, time_ms: int | None = None) -> None:
        """Set the last/mark price of a symbol (and optionally advance the clock)."""
        if not price > 0:
            raise ValueError(f"price for {symbol} must be > 0, got {price!r}")
        self.prices[symbol] = float(price)
        if time_ms is not None:
            self.now_ms = int(time_ms)

    def price(self, symbol: str) -> float:
        try:
            return self.prices[symbol]
        except KeyError:
            raise ccxt.ExchangeNotAvailable(f"simulator has no price for {symbol} yet") from None

    def market(self, symbol: str) -> dict:
        """ccxt's market dict (the same object ccxt returns); BadSymbol for an unknown symbol."""
        market = self._markets.get(symbol)
        if market is None:
            market = self._markets[symbol] = self.rules.helper.market(symbol)
        return market

    def amount_to_precision(self, symbol: str, amount: float) -> str:
        memo = self._amounts.get(symbol)
        if memo is None:
            memo = self._amounts[symbol] = _TruncationMemo(symbol, self.rules.helper.amount_to_precision)
        return memo(amount)

    def price_to_precision(self, symbol: str, price: float) -> str:
        return _memo(self._prices, self.rules.helper.price_to_precision, symbol, price)

    def next_id(self) -> str:
        return str(next(self._ids))

    def next_algo_id(self) -> str:
        return str(next(self._algo_ids))

    def emit(self, account: str, order: dict) -> None:
        for listener in self.listeners:
            listener(account, order)

    def process_candle(self, symbol: str, time_ms: int, o: float, h: float, low: float, c: float) -> list[ClosedPosition]:
        """Paper/step mode: apply one candle to every account's position on ``symbol`` (fills.py rules)."""
        self.now_ms = int(time_ms)
        closed = []
        for ex in self.accounts.values():
            pos = ex.positions.get(symbol)
            if pos is None:
                continue
            hit = first_hit(pos.long, ex.position_levels(symbol), o, h, low)
            if hit is not None:
                closed.append(ex.apply_level(symbol, hit[0], hit[1], time_ms))
        self.prices[symbol] = float(c)
        return [c_ for c_ in closed if c_ is not None]


class SimulatedExchange:
    """One simulated account on the venue, speaking ccxt's unified async API (the engine's Exchange port)."""

    id = "binanceusdm"

    def __init__(self, venue: SimulatedVenue, name: str, balance: float) -> None:
        self.venue = venue
        self.name = name
        self.wallet = balance
        self.positions: dict[str, Position] = {}
        self.orders: dict[str, dict] = {}  # regular orders by id
        self.algo_orders: dict[str, dict] = {}  # trigger orders by algo id
        self.by_client_id: dict[str, dict] = {}
        self.leverage: dict[str, int] = {}
        self.margin_mode: dict[str, str] = {}
        self.closed: list[ClosedPosition] = []
        self.realized_pnl = 0.0
        self.fees_paid = 0.0
        self._faults: dict[str, list[tuple[Exception, bool]]] = {}
        # ids of possibly-open trigger orders in creation order, over the algo_orders dict it was built from
        self._open_ids: dict[str, None] = {}
        self._indexed: tuple[int, int] = (0, -1)  # (id(algo_orders), len) when the index was last in sync

    def __repr__(self) -> str:
        return f"SimulatedExchange({self.name!r}, wallet={self.wallet:.2f})"

    # ---------------------------------------------------------------- testing hooks
    def fail_next(self, method: str, exc: Exception, *, after_effect: bool = False) -> None:
        """Make the next call of ``method`` raise ``exc`` — before acting, or after (a lost reply)."""
        self._faults.setdefault(method, []).append((exc, after_effect))

    def _fault(self, method: str, after: bool) -> None:
        queue = self._faults.get(method)
        if queue and queue[0][1] == after:
            raise queue.pop(0)[0]

    # ---------------------------------------------------------------- sync helpers
    def market(self, symbol: str) -> dict:
        return self.venue.market(symbol)

    def amount_to_precision(self, symbol: str, amount: float) -> str:
        return self.venue.amount_to_precision(symbol, amount)

    def price_to_precision(self, symbol: str, price: float) -> str:
        return self.venue.price_to_precision(symbol, price)

    def milliseconds(self) -> int:
        return self.venue.now_ms

    # ---------------------------------------------------------------- account
    def used_margin(self) -> float:
        return sum(p.margin for p in self.positions.values())

    def unrealized(self, symbol: str | None = None) -> float:
        total = 0.0
        for pos in self.positions.values():
            if symbol is not None and pos.symbol != symbol:
                continue
            mark = self.venue.prices.get(pos.symbol, pos.entry_price)
            total += (mark - pos.entry_price) * pos.contracts * (1 if pos.long else -1)
        return total

    async def fetch_balance(self, params: dict | None = None) -> dict:
        if self._faults:
            self._fault("fetch_balance", False)
        wallet = self.wallet
        if self.positions:
            used = self.used_margin()
            free = wallet - used
            total = wallet + self.unrealized()
        else:  # what the lines above give with no position
            used = 0
            free = wallet - used
            total = wallet + 0.0
        usdt = {"free": free, "used": used, "total": total}
        ts = self.venue.now_ms
        return {
            "info": {"assets": [{"asset": "USDT", "walletBalance": f"{wallet:.8f}",
                                 "availableBalance": f"{free:.8f}", "marginBalance": f"{total:.8f}",
                                 "updateTime": ts}]},
            "USDT": usdt, "free": {"USDT": free}, "used": {"USDT": used}, "total": {"USDT": total},
            "timestamp": ts, "datetime": _iso(ts),
        }

    async def fetch_positions(self, symbols: list[str] | None = None, params: dict | None = None) -> list[dict]:
        if self._faults:
            self._fault("fetch_positions", False)
        out = []
        for pos in self.positions.values():
            if symbols and pos.symbol not in symbols:
                continue
            mark = self.venue.prices.get(pos.symbol, pos.entry_price)
            notional = pos.contracts * mark
            mmr = self._tier(pos.symbol, notional)["maintenanceMarginRate"]
            out.append({
                "info": {"symbol": self.market(pos.symbol)["id"], "positionAmt": str(pos.contracts * (1 if pos.long else -1)),
                         "entryPrice": str(pos.entry_price), "marginType": "isolated", "isolatedMargin": str(pos.margin)},
                "symbol": pos.symbol, "contracts": pos.contracts, "contractSize": 1.0,
                "side": "long" if pos.long else "short", "entryPrice": pos.entry_price, "markPrice": mark,
                "notional": notional, "leverage": pos.leverage, "collateral": pos.margin,
                "initialMargin": pos.margin, "maintenanceMargin": notional * mmr, "maintenanceMarginPercentage": mmr,
                "unrealizedPnl": (mark - pos.entry_price) * pos.contracts * (1 if pos.long else -1),
                "liquidationPrice": pos.liquidation_price, "marginMode": "isolated", "hedged": False,
                "timestamp": self.venue.now_ms, "datetime": _iso(self.venue.now_ms),
            })
        return out

    async def fetch_market_leverage_tiers(self, symbol: str, params: dict | None = None) -> list[dict]:
        self._fault("fetch_market_leverage_tiers", False)
        self.market(symbol)
        return self.venue.rules.tiers[symbol]

    def _tier(self, symbol: str, notional: float) -> dict:
        tiers = self.venue.rules.tiers[symbol]
        for t in tiers:
            if notional < (t["maxNotional"] or float("inf")):
                return t
        return tiers[-1]

    async def set_margin_mode(self, marginMode: str, symbol: str | None = None, params: dict | None = None) -> dict:
        self._fault("set_margin_mode", False)
        mode = (marginMode or "").lower()
        if mode not in ("isolated", "cross"):
            raise ccxt.BadRequest(f"binanceusdm marginMode must be either isolated or cross, got {marginMode!r}")
        self.market(symbol)
        if symbol in self.positions and self.margin_mode.get(symbol, "cross") != mode:
            raise _binance_error(ccxt.ExchangeError, -4048, "Margin type cannot be changed if there exists position.")
        self.margin_mode[symbol] = mode
        return {"code": 200, "msg": "success"}

    async def set_leverage(self, leverage: int, symbol: str | None = None, params: dict | None = None) -> dict:
        self._fault("set_leverage", False)
        market = self.market(symbol)
        tiers = self.venue.rules.tiers[symbol]
        max_lev = max(t["maxLeverage"] for t in tiers)
        if int(leverage) != leverage or not 1 <= leverage <= max_lev:
            raise _binance_error(ccxt.BadRequest, -4028, f"Leverage {leverage} is not valid")
        pos = self.positions.get(symbol)
        if pos is not None:
            cap = self._max_notional(symbol, int(leverage))
            if pos.contracts * pos.entry_price > cap:
                raise _binance_error(ccxt.OperationRejected, -2027,
                                     "Exceeded the maximum allowable position at current leverage.")
        self.leverage[symbol] = int(leverage)
        return {"leverage": int(leverage), "maxNotionalValue": str(self._max_notional(symbol, int(leverage))),
                "symbol": market["id"]}

    def _max_notional(self, symbol: str, leverage: int) -> float:
        memo = self.venue._caps  # a pure function of the rules: memoised per (symbol, leverage)
        key = (symbol, leverage)
        cap = memo.get(key)
        if cap is None:
            caps = [t["maxNotional"] for t in self.venue.rules.tiers[symbol] if t["maxLeverage"] >= leverage]
            cap = memo[key] = max(caps) if caps else 0.0
        return cap

    # ---------------------------------------------------------------- orders
    async def create_order(self, symbol: str, type: str, side: str, amount: float, price: float | None = None,
                           params: dict | None = None) -> dict:
        if self._faults:  # (testing hooks: nothing queued in a backtest)
            self._fault("create_order", False)
        params = params or {}  # read only
        market = self.market(symbol)
        side = (side or "").lower()
        if side not in ("buy", "sell"):
            raise ccxt.InvalidOrder(f"binanceusdm side must be buy or sell, got {side!r}")
        if (type or "").lower() != "market":
            raise ccxt.NotSupported("simulator: only market and stop/take-profit market orders are supported")
        qty = float(self.amount_to_precision(symbol, amount))
        limits = market["limits"]
        if qty <= 0 or qty < (limits["amount"]["min"] or 0) - 1e-12:
            raise _binance_error(ccxt.InvalidOrder, -4003, "Quantity less than or equal to zero.")
        max_qty = (limits.get("market") or {}).get("max") or limits["amount"]["max"]
        if max_qty and qty > max_qty + 1e-12:
            raise _binance_error(ccxt.InvalidOrder, -4005, "Quantity greater than max quantity.")
        cid = params.get("clientOrderId")
        if cid is not None:
            known = self.by_client_id.get(cid)
            if known is not None and known["status"] == "open":
                raise _binance_error(ccxt.InvalidOrder, -4116, "ClientOrderId is duplicated.")
        reduce_only = bool(params.get("reduceOnly"))
        sl, tp = params.get("stopLossPrice"), params.get("takeProfitPrice")
        if sl is not None or tp is not None:
            order = self._create_trigger(symbol, side, qty, float(sl if sl is not None else tp),
                                         STOP_LOSS if sl is not None else TAKE_PROFIT, reduce_only, cid, params)
        else:
            order = self._fill_market(symbol, side, qty, reduce_only, cid)
        if self._faults:
            self._fault("create_order", True)
        return order

    def _create_trigger(self, symbol: str, side: str, qty: float, trigger: float, kind: str, reduce_only: bool,
                        cid: str | None, params: dict) -> dict:
        trigger = float(self.price_to_precision(symbol, trigger))
        pos = self.positions.get(symbol)
        closes_long = side == "sell"
        if reduce_only and (pos is None or pos.long != closes_long):
            raise _binance_error(ccxt.InvalidOrder, -2022, "ReduceOnly Order is rejected.")
        mark = self.venue.price(symbol)
        # a sell stop triggers at price <= trigger, a sell target at price >= trigger (mirrored for buys)
        down = (kind == STOP_LOSS) == closes_long
        if (mark <= trigger) if down else (mark >= trigger):
            raise _binance_error(ccxt.OrderImmediatelyFillable, -2021, "Order would immediately trigger.")
        book = self.algo_orders
        if self._indexed == (id(book), len(book)) and len(self._open_ids) < 10:
            open_algo = 0  # the index holds every open trigger order: fewer than 10 on any symbol
        else:
            open_algo = sum(1 for o in self._open_algo() if o["symbol"] == symbol)
        if open_algo >= 10:
            raise _binance_error(ccxt.InvalidOrder, -4045, "Reach max stop order limit.")
        algo_id = self.venue.next_algo_id()
        cid = cid or f"sim{algo_id}"
        now = self.venue.now_ms
        raw_type = "STOP_MARKET" if kind == STOP_LOSS else "TAKE_PROFIT_MARKET"
        order = {
            "id": algo_id, "clientOrderId": cid, "timestamp": now, "datetime": _iso(now),
            "lastTradeTimestamp": None, "symbol": symbol, "type": "market", "timeInForce": "GTC",
            "postOnly": False, "reduceOnly": reduce_only, "side": side, "price": None, "triggerPrice": trigger,
            "stopLossPrice": trigger if kind == STOP_LOSS else None,
            "takeProfitPrice": trigger if kind == TAKE_PROFIT else None,
            "amount": qty, "cost": 0.0, "average": None, "filled": 0.0, "remaining": qty, "status": "open",
            "fee": None, "trades": [], "fees": [],
            "info": {"algoId": algo_id, "clientAlgoId": cid, "algoType": "CONDITIONAL", "orderType": raw_type,
                     "symbol": self.market(symbol)["id"], "side": side.upper(), "positionSide": "BOTH",
                     "quantity": str(qty), "algoStatus": "NEW", "triggerPrice": str(trigger),
                     "workingType": params.get("workingType", "CONTRACT_PRICE"), "reduceOnly": reduce_only,
                     "createTime": now, "updateTime": now, "triggerTime": 0},
            "_kind": kind,
        }
        self.algo_orders[algo_id] = order
        self.by_client_id[cid] = order
        if self._indexed == (id(self.algo_orders), len(self.algo_orders) - 1):
            self._open_ids[algo_id] = None
            self._indexed = (id(self.algo_orders), len(self.algo_orders))
        return _public(order)

    def _fill_market(self, symbol: str, side: str, qty: float, reduce_only: bool, cid: str | None,
                     price: float | None = None, reason: str | None = None) -> dict:
        buy = side == "buy"
        fill = price if price is not None else slipped(self.venue.price(symbol), buy, self.venue.slippage_bps)
        pos = self.positions.get(symbol)
        if reduce_only:
            if pos is None or pos.long == buy:
                raise _binance_error(ccxt.InvalidOrder, -2022, "ReduceOnly Order is rejected.")
            qty = min(qty, pos.contracts)
        elif pos is not None and pos.long != buy:
            raise ccxt.NotSupported("simulator: flipping a position with a non-reduce-only order is not supported")
        notional = qty * fill
        fee = notional * self.venue.taker_fee
        if not reduce_only:
            min_notional = self.market(symbol)["limits"]["cost"]["min"] or 0
            if notional < min_notional - 1e-9:
                raise _binance_error(ccxt.InvalidOrder, -4164,
                                     f"Order's notional must be no smaller than {min_notional:g} (unless you choose reduce only).")
            leverage = self.leverage.get(symbol, 20)
            total_notional = notional + (pos.contracts * pos.entry_price if pos else 0.0)
            if total_notional > self._max_notional(symbol, leverage):
                raise _binance_error(ccxt.OperationRejected, -2027,
                                     "Exceeded the maximum allowable position at current leverage.")
            margin = notional / leverage
            if self.wallet - self.used_margin() < margin + fee - 1e-9:
                raise _binance_error(ccxt.InsufficientFunds, -2019, "Margin is insufficient.")
        oid = self.venue.next_id()
        now = self.venue.now_ms
        cid = cid or f"sim{oid}"
        self.wallet -= fee
        self.fees_paid += fee
        if reduce_only:
            self._reduce(symbol, qty, fill, fee, now, reason or "close")
        else:
            self._open(symbol, buy, qty, fill, fee, now, oid, cid)
        order = {
            "id": oid, "clientOrderId": cid, "timestamp": now, "datetime": _iso(now), "lastTradeTimestamp": now,
            "symbol": symbol, "type": "market", "timeInForce": "GTC", "postOnly": False,
            "reduceOnly": reduce_only, "side": side, "price": fill, "triggerPrice": None, "stopLossPrice": None,
            "takeProfitPrice": None, "amount": qty, "cost": notional, "average": fill, "filled": qty,
            "remaining": 0.0, "status": "closed", "fee": {"cost": fee, "currency": "USDT"},
            "trades": [], "fees": [{"cost": fee, "currency": "USDT"}],
            "info": {"orderId": oid, "clientOrderId": cid, "status": "FILLED", "type": "MARKET",
                     "avgPrice": str(fill), "executedQty": str(qty), "side": side.upper(),
                     "reduceOnly": reduce_only, "updateTime": now},
        }
        self.orders[oid] = order
        self.by_client_id[cid] = order
        return order

    def _open(self, symbol: str, buy: bool, qty: float, fill: float, fee: float, now: int, oid: str, cid: str) -> None:
        leverage = self.leverage.get(symbol, 20)
        pos = self.positions.get(symbol)
        if pos is None:
            pos = Position(symbol, buy, 0.0, fill, 0.0, leverage, 0.0, now, oid, cid)
            self.positions[symbol] = pos
        total = pos.contracts + qty
        pos.entry_price = (pos.entry_price * pos.contracts + fill * qty) / total
        pos.contracts = total
        pos.margin += qty * fill / leverage
        pos.fees += fee
        pos.version += 1
        tier = self._tier(symbol, pos.contracts * pos.entry_price)
        cum = float((tier.get("info") or {}).get("cum") or 0)
        mmr = tier["maintenanceMarginRate"]
        if pos.long:
            liq = (pos.contracts * pos.entry_price - pos.margin - cum) / (pos.contracts * (1 - mmr))
        else:
            liq = (pos.contracts * pos.entry_price + pos.margin + cum) / (pos.contracts * (1 + mmr))
        pos.liquidation_price = max(liq, 0.0)

    def _reduce(self, symbol: str, qty: float, fill: float, fee: float, now: int, reason: str) -> ClosedPosition | None:
        pos = self.positions[symbol]
        part = qty / pos.contracts
        margin = pos.margin * part
        pnl = (fill - pos.entry_price) * qty * (1 if pos.long else -1)
        if reason == LIQUIDATION:
            pnl = -margin  # the whole isolated margin is lost
        self.wallet += pnl
        self.realized_pnl += pnl
        pos.fees += fee
        entry_fee = pos.fees * part if part < 1 else pos.fees
        closed = ClosedPosition(
            account=self.name, symbol=symbol, side="LONG" if pos.long else "SHORT", entry_time=pos.opened_at,
            entry_price=pos.entry_price, quantity=qty, margin=margin, leverage=pos.leverage, exit_time=now,
            exit_price=fill, exit_reason=reason, fees=entry_fee, pnl=pnl - entry_fee,
            entry_order_id=pos.entry_order_id, entry_client_id=pos.entry_client_id,
        )
        self.closed.append(closed)
        if part >= 1 - 1e-12:
            del self.positions[symbol]
        else:
            pos.contracts -= qty
            pos.margin -= margin
            pos.fees -= entry_fee
            pos.version += 1
        return closed

    # ---------------------------------------------------------------- triggers (driven by replay / paper)
    def _open_algo(self) -> list[dict]:
        """Open trigger orders in creation order, without walking every order ever placed.

        An index of possibly-open ids, pruned lazily (an order never reopens); rebuilt from ``algo_orders`` when
        that dict was replaced (paper state restore) or grew behind the index's back.
        """
        book = self.algo_orders
        if self._indexed != (id(book), len(book)):
            self._open_ids = {oid: None for oid, o in book.items() if o["status"] == "open"}
            self._indexed = (id(book), len(book))
        out, stale = [], []
        for oid in self._open_ids:
            o = book.get(oid)
            if o is not None and o["status"] == "open":
                out.append(o)
            else:
                stale.append(oid)
        for oid in stale:
            del self._open_ids[oid]
        return out

    def position_levels(self, symbol: str) -> list[Level]:
        """Levels that can end the position on ``symbol``: its open reduce-only triggers and its liquidation."""
        pos = self.positions[symbol]
        sls, tps = [], []
        for o in self._open_algo():
            if o["symbol"] != symbol or (o["side"] == "sell") != pos.long:
                continue
            (sls if o["_kind"] == STOP_LOSS else tps).append((o["triggerPrice"], o["id"]))
        return levels_for(pos.long, stop_loss=sls, take_profit=tps, liquidation=pos.liquidation_price)

    def apply_level(self, symbol: str, level: Level, price: float, time_ms: int) -> ClosedPosition | None:
        """Execute what crossing ``level`` means: a trigger order fills, or the position is liquidated."""
        self.venue.now_ms = int(time_ms)
        if level.kind == LIQUIDATION:
            return self.liquidate(symbol, level.price, time_ms)
        return self.fill_trigger(level.order_id, price, time_ms)

    def fill_trigger(self, algo_id: str, price: float, time_ms: int) -> ClosedPosition | None:
        """A trigger order fires: a reduce-only market order at ``price`` (± slippage); listeners are told."""
        order = self.algo_orders[algo_id]
        symbol, side = order["symbol"], order["side"]
        pos = self.positions.get(symbol)
        now = int(time_ms)
        if pos is None or pos.long != (side == "sell"):
            order.update(status="expired", lastTradeTimestamp=now)
            order["info"]["algoStatus"] = "EXPIRED"
            self.venue.emit(self.name, _public(order))
            return None
        before = len(self.closed)
        fill = slipped(price, side == "buy", self.venue.slippage_bps)
        market = self._fill_market(symbol, side, order["amount"], True, None, price=fill, reason=order["_kind"])
        order.update(status="closed", filled=market["filled"], remaining=0.0, average=fill, price=fill,
                     cost=market["cost"], lastTradeTimestamp=now, fee=market["fee"])
        order["info"].update(algoStatus="FINISHED", actualOrderId=market["id"], triggerTime=now, updateTime=now)
        self.venue.emit(self.name, _public(order))
        return self.closed[-1] if len(self.closed) > before else None

    def liquidate(self, symbol: str, price: float, time_ms: int) -> ClosedPosition:
        """Isolated liquidation: the margin is lost and the symbol's open orders are cancelled by the exchange."""
        pos = self.positions[symbol]
        closed = self._reduce(symbol, pos.contracts, price, 0.0, int(time_ms), LIQUIDATION)
        for o in self._open_algo():
            if o["symbol"] == symbol:
                o["status"] = "canceled"
                o["info"]["algoStatus"] = "CANCELED"
                self.venue.emit(self.name, _public(o))
        return closed

    # ---------------------------------------------------------------- queries
    async def fetch_order(self, id: str | None, symbol: str | None = None, params: dict | None = None) -> dict:
        self._fault("fetch_order", False)
        params = params or {}
        cid = params.get("clientOrderId") or params.get("origClientOrderId") or params.get("clientAlgoId")
        book = self.algo_orders if params.get("trigger") else self.orders
        order = None
        if cid is not None:
            candidate = self.by_client_id.get(cid)
            if candidate is not None and candidate["id"] in book:
                order = candidate
        elif id is not None:
            order = book.get(str(id))
        if order is None or (symbol is not None and order["symbol"] != symbol):
            raise _binance_error(ccxt.OrderNotFound, -2013, "Order does not exist.")
        return _public(order)

    async def cancel_order(self, id: str, symbol: str | None = None, params: dict | None = None) -> dict:
        if self._faults:
            self._fault("cancel_order", False)
        params = params or {}
        book = self.algo_orders if params.get("trigger") else self.orders
        order = book.get(str(id))
        if order is None or order["status"] != "open" or (symbol is not None and order["symbol"] != symbol):
            raise _binance_error(ccxt.OrderNotFound, -2011, "Unknown order sent.")
        order["status"] = "canceled"
        order["info"]["algoStatus" if params.get("trigger") else "status"] = "CANCELED"
        return _public(order)

    async def fetch_open_orders(self, symbol: str | None = None, since: int | None = None, limit: int | None = None,
                                params: dict | None = None) -> list[dict]:
        self._fault("fetch_open_orders", False)
        params = params or {}
        book = self.algo_orders if params.get("trigger") else self.orders
        out = [_public(o) for o in book.values() if o["status"] == "open" and (symbol is None or o["symbol"] == symbol)]
        return out[-limit:] if limit else out

    async def close(self) -> None:
        return None


_PRIVATE_KEYS = ("_kind",)  # every key the simulator adds to its order dicts for itself


def _public(order: dict) -> dict:
    """A copy without simulator-private keys (the caller may keep or mutate it)."""
    out = order.copy()
    for key in _PRIVATE_KEYS:
        out.pop(key, None)
    out["info"] = dict(order["info"])
    return out


_MEMO_LIMIT = 100_000


class _TruncationMemo:
    """ccxt's ``amount_to_precision(symbol, amount)`` for one symbol, answered without ccxt where it is known.

    Truncating to the step is monotone in the amount and its string depends only on the truncated value, so an
    amount lying between two amounts that gave the same string gives that string too. Sizing asks for a new
    amount on every account and signal; after a few ccxt calls per step almost all are answered here.
    Non-float, non-positive and non-finite amounts, and amounts ccxt rejects, always go to ccxt.
    """

    __slots__ = ("symbol", "fn", "xs", "outs")

    def __init__(self, symbol: str, fn: Callable[[str, Any], str]) -> None:
        self.symbol, self.fn = symbol, fn
        self.xs: list[float] = []  # amounts asked, ascending
        self.outs: list[str] = []  # ccxt's answer for each

    def __call__(self, amount: Any) -> str:
        if type(amount) is not float or not 0 < amount < math.inf:
            return self.fn(self.symbol, amount)
        xs, outs = self.xs, self.outs
        i = bisect.bisect_left(xs, amount)
        if i < len(xs) and (xs[i] == amount or (i > 0 and outs[i - 1] == outs[i])):
            return outs[i]
        out = self.fn(self.symbol, amount)
        if len(xs) >= _MEMO_LIMIT:
            xs.clear()
            outs.clear()
            i = 0
        xs.insert(i, amount)
        outs.insert(i, out)
        return out


def _memo(cache: dict, fn: Callable[[str, Any], str], symbol: str, value: Any) -> str:
    """``fn(symbol, value)`` memoised for non-zero floats (0.0 and -0.0 compare equal; other types pass through)."""
    if type(value) is not float or value == 0:
        return fn(symbol, value)
    key = (symbol, value)
    out = cache.get(key)
    if out is None:
        if len(cache) >= _MEMO_LIMIT:
            cache.clear()
        out = cache[key] = fn(symbol, value)
    return out
