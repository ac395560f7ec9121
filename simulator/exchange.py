"""Simulator room: ``SimulatedExchange``, one simulated Binance USDⓈ-M account speaking ccxt's unified async API.

It implements the engine's Exchange port with ccxt's method names, arguments and return shapes, and rejects what
Binance rejects with the same ccxt exception classes and Binance error bodies. Markets and precision come from the
ccxt parser itself (see marketdata/rules.py, simulator/precision.py), so amounts are formatted exactly as live.
The account's state and what fills do to it: simulator/account.py; the shared venue: simulator/venue.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import ccxt

from simulator.account import SimulatedAccount
from simulator.fills import STOP_LOSS, TAKE_PROFIT
from simulator.records import TriggerOrder, binance_error, iso

if TYPE_CHECKING:
    from simulator.venue import SimulatedVenue


class SimulatedExchange(SimulatedAccount):
    """One simulated account on the venue, speaking ccxt's unified async API (the engine's Exchange port)."""

    id = "binanceusdm"

    def __init__(self, venue: SimulatedVenue, name: str, balance: float) -> None:
        super().__init__(venue, name, balance)
        self._faults: dict[str, list[tuple[Exception, bool]]] = {}

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
        return self._lookups.market(symbol)

    def amount_to_precision(self, symbol: str, amount: float) -> str:
        return self._lookups.amount_to_precision(symbol, amount)

    def price_to_precision(self, symbol: str, price: float) -> str:
        return self._lookups.price_to_precision(symbol, price)

    def milliseconds(self) -> int:
        return self.venue.now_ms

    # ---------------------------------------------------------------- account
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
            "timestamp": ts, "datetime": iso(ts),
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
            mmr = self._lookups.tier(pos.symbol, notional)["maintenanceMarginRate"]
            out.append({
                "info": {"symbol": self.market(pos.symbol)["id"], "positionAmt": str(pos.contracts * (1 if pos.long else -1)),
                         "entryPrice": str(pos.entry_price), "marginType": "isolated", "isolatedMargin": str(pos.margin)},
                "symbol": pos.symbol, "contracts": pos.contracts, "contractSize": 1.0,
                "side": "long" if pos.long else "short", "entryPrice": pos.entry_price, "markPrice": mark,
                "notional": notional, "leverage": pos.leverage, "collateral": pos.margin,
                "initialMargin": pos.margin, "maintenanceMargin": notional * mmr, "maintenanceMarginPercentage": mmr,
                "unrealizedPnl": (mark - pos.entry_price) * pos.contracts * (1 if pos.long else -1),
                "liquidationPrice": pos.liquidation_price, "marginMode": "isolated", "hedged": False,
                "timestamp": self.venue.now_ms, "datetime": iso(self.venue.now_ms),
            })
        return out

    async def fetch_market_leverage_tiers(self, symbol: str, params: dict | None = None) -> list[dict]:
        self._fault("fetch_market_leverage_tiers", False)
        self.market(symbol)
        return self.venue.rules.tiers[symbol]

    async def set_margin_mode(self, marginMode: str, symbol: str | None = None, params: dict | None = None) -> dict:
        self._fault("set_margin_mode", False)
        mode = (marginMode or "").lower()
        if mode not in ("isolated", "cross"):
            raise ccxt.BadRequest(f"binanceusdm marginMode must be either isolated or cross, got {marginMode!r}")
        self.market(symbol)
        if symbol in self.positions and self.margin_mode.get(symbol, "cross") != mode:
            raise binance_error(ccxt.ExchangeError, -4048, "Margin type cannot be changed if there exists position.")
        self.margin_mode[symbol] = mode
        return {"code": 200, "msg": "success"}

    async def set_leverage(self, leverage: int, symbol: str | None = None, params: dict | None = None) -> dict:
        self._fault("set_leverage", False)
        market = self.market(symbol)
        tiers = self.venue.rules.tiers[symbol]
        max_lev = max(t["maxLeverage"] for t in tiers)
        if int(leverage) != leverage or not 1 <= leverage <= max_lev:
            raise binance_error(ccxt.BadRequest, -4028, f"Leverage {leverage} is not valid")
        pos = self.positions.get(symbol)
        if pos is not None:
            cap = self._lookups.max_notional(symbol, int(leverage))
            if pos.contracts * pos.entry_price > cap:
                raise binance_error(ccxt.OperationRejected, -2027,
                                    "Exceeded the maximum allowable position at current leverage.")
        self.leverage[symbol] = int(leverage)
        return {"leverage": int(leverage), "maxNotionalValue": str(self._lookups.max_notional(symbol, int(leverage))),
                "symbol": market["id"]}

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
            raise binance_error(ccxt.InvalidOrder, -4003, "Quantity less than or equal to zero.")
        max_qty = (limits.get("market") or {}).get("max") or limits["amount"]["max"]
        if max_qty and qty > max_qty + 1e-12:
            raise binance_error(ccxt.InvalidOrder, -4005, "Quantity greater than max quantity.")
        cid = params.get("clientOrderId")
        if cid is not None:
            known = self._by_client_id.get(cid)
            if known is not None and known.status == "open":
                raise binance_error(ccxt.InvalidOrder, -4116, "ClientOrderId is duplicated.")
        reduce_only = bool(params.get("reduceOnly"))
        sl, tp = params.get("stopLossPrice"), params.get("takeProfitPrice")
        if sl is not None or tp is not None:
            order = self._create_trigger(symbol, side, qty, float(sl if sl is not None else tp),
                                         STOP_LOSS if sl is not None else TAKE_PROFIT, reduce_only, cid, params)
        else:
            order = self._fill_market(symbol, side, qty, reduce_only, cid).ccxt()
        if self._faults:
            self._fault("create_order", True)
        return order

    def _create_trigger(self, symbol: str, side: str, qty: float, trigger: float, kind: str, reduce_only: bool,
                        cid: str | None, params: dict) -> dict:
        trigger = float(self.price_to_precision(symbol, trigger))
        pos = self.positions.get(symbol)
        closes_long = side == "sell"
        if reduce_only and (pos is None or pos.long != closes_long):
            raise binance_error(ccxt.InvalidOrder, -2022, "ReduceOnly Order is rejected.")
        mark = self.venue.price(symbol)
        # a sell stop triggers at price <= trigger, a sell target at price >= trigger (mirrored for buys)
        down = (kind == STOP_LOSS) == closes_long
        if (mark <= trigger) if down else (mark >= trigger):
            raise binance_error(ccxt.OrderImmediatelyFillable, -2021, "Order would immediately trigger.")
        if self._open_triggers_on(symbol, 10) >= 10:
            raise binance_error(ccxt.InvalidOrder, -4045, "Reach max stop order limit.")
        algo_id = self.venue.next_algo_id()
        cid = cid or f"sim{algo_id}"
        order = TriggerOrder(algo_id, cid, self.venue.now_ms, symbol, self.market(symbol)["id"], side, reduce_only,
                             qty, trigger, kind, params.get("workingType", "CONTRACT_PRICE"))
        self._add_trigger(order)
        return order.ccxt()

    # ---------------------------------------------------------------- queries
    async def fetch_order(self, id: str | None, symbol: str | None = None, params: dict | None = None) -> dict:
        self._fault("fetch_order", False)
        params = params or {}
        cid = params.get("clientOrderId") or params.get("origClientOrderId") or params.get("clientAlgoId")
        book = self._algo_orders if params.get("trigger") else self._orders
        order = None
        if cid is not None:
            candidate = self._by_client_id.get(cid)
            if candidate is not None and book.get(candidate.id) is candidate:
                order = candidate
        elif id is not None:
            order = book.get(str(id))
        if order is None or (symbol is not None and order.symbol != symbol):
            raise binance_error(ccxt.OrderNotFound, -2013, "Order does not exist.")
        return order.ccxt()

    async def cancel_order(self, id: str, symbol: str | None = None, params: dict | None = None) -> dict:
        if self._faults:
            self._fault("cancel_order", False)
        params = params or {}
        book = self._algo_orders if params.get("trigger") else self._orders
        order = book.get(str(id))
        if order is None or order.status != "open" or (symbol is not None and order.symbol != symbol):
            raise binance_error(ccxt.OrderNotFound, -2011, "Unknown order sent.")
        order.status = "canceled"  # only trigger orders are ever open
        self._unfilled.append(order)
        return order.ccxt()

    async def fetch_open_orders(self, symbol: str | None = None, since: int | None = None, limit: int | None = None,
                                params: dict | None = None) -> list[dict]:
        self._fault("fetch_open_orders", False)
        params = params or {}
        book = self._algo_orders if params.get("trigger") else self._orders
        out = [o.ccxt() for o in book.values() if o.status == "open" and (symbol is None or o.symbol == symbol)]
        return out[-limit:] if limit else out

    async def fetch_ticker(self, symbol: str, params: dict | None = None) -> dict:
        """The venue's last price of ``symbol`` (ccxt's ticker shape, the fields the engine reads)."""
        self._fault("fetch_ticker", False)
        price = self.venue.price(symbol)
        ts = self.venue.now_ms
        return {"symbol": symbol, "last": price, "close": price, "timestamp": ts, "datetime": iso(ts)}

    async def close(self) -> None:
        return None
