"""Tests room: a stateful Binance USDⓈ-M stand-in (aiohttp) that ccxt talks to, over HTTP and a websocket.

It answers the endpoints the live path uses with the bodies of tests/standin/bodies.py, checks the API key and
the HMAC signature like Binance, keeps per-account balance, isolated positions, market orders and algo (trigger)
orders, and can be told to fail: ``fail(...)`` queues a rejection with a Binance error code, a lost reply (the
order is placed, the answer arrives after the client's timeout), a lost request (never placed) or an
"execution status unknown" error after placing; and what a flaky network does: a 502 from the gateway (nothing
done), a 503 after the request was executed, a connection dropped after executing it, a 200 answer cut off in
the middle of its body. Faults queue per endpoint and account (``times``: once, a few, or ``ALWAYS``), so a
lost reply followed by failing lookups is two ``fail`` calls. It applies Binance's rate limits (tests/standin/limits.py:
request weight per IP, orders per account, 429 with Retry-After, 418 bans, the headers) on its ``clock``, and
pushes the user-data stream (tests/standin/user_data.py). ``latency_s`` delays every answer (benchmarks).
Cassettes are recorded against it; tests that need the websocket or the limits run it on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from tests.standin import bodies, user_data
from tests.standin.limits import IpLimits
from tests.standin.user_data import UserDataStreams

log = logging.getLogger("fanout.standin")

PUBLIC = {("GET", "/fapi/v1/exchangeInfo"), ("GET", "/fapi/v1/time")}
LISTEN_KEY = "/fapi/v1/listenKey"  # API key only, no signature (Binance's USER_STREAM security)
TAKER_FEE = 0.0005
DEFAULT_LEVERAGE = 20
REJECT, LOST_REPLY, LOST_REQUEST, UNKNOWN_STATUS = "reject", "lost_reply", "lost_request", "unknown_status"
# network faults: BAD_GATEWAY before acting; the others after the request was executed
BAD_GATEWAY, UNAVAILABLE_AFTER, DROPPED, TRUNCATED = "bad_gateway", "unavailable_after", "dropped", "truncated"
ALWAYS = 10**9  # ``times`` of a fault that never wears off


@dataclass
class Fault:
    """One queued failure for requests matching method, path, account and ``when(params)``."""

    method: str
    path: str
    kind: str
    code: int | None = None
    account: str | None = None
    times: int = 1
    seconds: float = 0.0
    when: Callable[[dict], bool] | None = None

    def matches(self, method: str, path: str, account: str, params: dict) -> bool:
        return (self.times > 0 and self.method == method and self.path == path
                and self.account in (None, account) and (self.when is None or self.when(params)))


@dataclass
class StandInAccount:
    name: str
    api_key: str
    api_secret: str
    wallet: float
    positions: dict[str, dict] = field(default_factory=dict)
    orders: dict[int, dict] = field(default_factory=dict)
    algos: dict[int, dict] = field(default_factory=dict)
    leverage: dict[str, int] = field(default_factory=dict)
    margin_type: dict[str, str] = field(default_factory=dict)
    update_time: int = 0


class StandInError(Exception):
    def __init__(self, code: int, **fmt: Any) -> None:
        self.status, self.body = bodies.error(code, **fmt)
        super().__init__(self.body["msg"])


class StandIn:
    """The stand-in venue: market rules, mark prices, accounts, queued faults and the aiohttp app."""

    def __init__(self, *, prices: dict[str, float], advertised_min_notional: dict[str, str] | None = None,
                 mark_after_first_fill: dict[str, float] | None = None, clock: Any = None,
                 latency_s: float = 0.0, limits: dict | None = None) -> None:
        self.rules = bodies.load_rules()
        self.marks = dict(prices)
        self.advertised_min_notional = advertised_min_notional or {}
        self.mark_after_first_fill = dict(mark_after_first_fill or {})
        self.accounts: dict[str, StandInAccount] = {}
        self.faults: list[Fault] = []
        self.log: list[tuple[str, str, str, dict]] = []  # (account, method, path, params without signature)
        self.unknown: list[str] = []
        self._ids = itertools.count(4_000_000_001)
        self._algo_ids = itertools.count(1_000_001)
        self.clock = clock or _WallClock()
        self.latency_s = latency_s
        self.limits = IpLimits(self.clock, **(limits or {}))
        self.streams = UserDataStreams(_now)
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------------ setup
    def add_account(self, name: str, api_key: str, api_secret: str, balance: float) -> None:
        self.accounts[api_key] = StandInAccount(name, api_key, api_secret, float(balance), update_time=_now())

    def fail(self, method: str, path: str, kind: str = REJECT, *, code: int | None = None, account: str | None = None,
             times: int = 1, seconds: float = 0.0, when: Callable[[dict], bool] | None = None) -> None:
        self.faults.append(Fault(method, path, kind, code, account, times, seconds, when))

    def account(self, name: str) -> StandInAccount:
        return next(a for a in self.accounts.values() if a.name == name)

    def cancel_algos(self, name: str, order_type: str) -> None:
        """Out-of-band: the account's open trigger orders of this type disappear (cancelled in the app)."""
        acct = self.account(name)
        for algo in acct.algos.values():
            if algo["algoStatus"] == "NEW" and algo["orderType"] == order_type:
                algo.update(algoStatus="CANCELED", updateTime=_now())
                self._push_algo(acct, algo)

    def deposit(self, name: str, amount: float) -> None:
        """Out-of-band: USDT arrives in the account (a transfer from spot); pushed as ACCOUNT_UPDATE, reason DEPOSIT."""
        acct = self.account(name)
        acct.wallet += amount
        acct.update_time = _now()
        isolated = sum(x["isolatedWallet"] for x in acct.positions.values())
        self.streams.push(acct.name, user_data.account_event(wallet=acct.wallet, cross=acct.wallet - isolated,
                                                             positions=[], now=_now(), reason="DEPOSIT"))

    def close_position(self, name: str, sid: str) -> None:
        """Out-of-band: the account's position is closed at market (e.g. by hand in the app)."""
        acct = self.account(name)
        pos = acct.positions[sid]
        self._market(acct, sid, "SELL" if pos["amt"] > 0 else "BUY", abs(pos["amt"]), True, None)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, backlog=2048)  # hundreds of accounts connect at once
        await site.start()
        bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://{host}:{bound}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # ------------------------------------------------------------------ market
    def _rule(self, sid: str) -> dict:
        try:
            return self.rules[sid]
        except KeyError:
            raise StandInError(-1121) from None

    def _filter(self, sid: str, kind: str) -> dict:
        return next(f for f in self._rule(sid)["exchangeInfo"]["filters"] if f["filterType"] == kind)

    def _decimals(self, sid: str) -> tuple[int, int]:
        info = self._rule(sid)["exchangeInfo"]
        return int(info["pricePrecision"]), int(info["quantityPrecision"])

    def _brackets(self, sid: str) -> list[dict]:
        return self._rule(sid)["leverageBracket"]["brackets"]

    def _bracket(self, sid: str, notional: float) -> dict:
        for b in self._brackets(sid):
            if float(b["notionalFloor"]) <= notional < float(b["notionalCap"]):
                return b
        return self._brackets(sid)[-1]

    def _max_notional(self, sid: str, leverage: int) -> float:
        return max(float(b["notionalCap"]) for b in self._brackets(sid) if int(b["initialLeverage"]) >= leverage)

    def set_price(self, sid: str, price: float) -> None:
        """Move the mark price; trigger orders it crosses fire as reduce-only market orders at that price."""
        self.marks[sid] = price
        for acct in self.accounts.values():
            for algo in list(acct.algos.values()):
                if algo["symbol"] != sid or algo["algoStatus"] != "NEW":
                    continue
                if _crossed(algo["orderType"], algo["side"], price, algo["triggerPrice"]):
                    algo.update(algoStatus="TRIGGERED", triggerTime=_now(), updateTime=_now())
                    self._push_algo(acct, algo)
                    try:
                        order = self._market(acct, sid, algo["side"], algo["quantity"], True, f"trig{algo['algoId']}")
                    except StandInError:
                        algo.update(algoStatus="EXPIRED", updateTime=_now())
                        self._push_algo(acct, algo)
                        continue
                    algo.update(algoStatus="FINISHED", actualOrderId=order["orderId"], actualPrice=order["avgPrice"],
                                updateTime=_now())
                    self._push_algo(acct, algo)

    # ------------------------------------------------------------------ http
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        method, path = request.method, request.path
        if method == "GET" and self.streams.is_stream(path):
            return await self.streams.serve(request)
        raw_body = await request.text()
        params = dict(parse_qsl(request.query_string, keep_blank_values=True))
        params.update(dict(parse_qsl(raw_body, keep_blank_values=True)))
        acct: StandInAccount | None = None
        claimed = self.accounts.get(request.headers.get("X-MBX-APIKEY", ""))
        verdict = self.limits.check(claimed.name if claimed else "-", method, path, params)
        headers = dict(verdict.headers)
        try:
            if verdict.status is not None:
                status, body = verdict.status, verdict.body
                raise _Answered()
            if (method, path) not in PUBLIC:
                acct = self._authenticate(request, raw_body, signed=path != LISTEN_KEY)
            self.log.append((acct.name if acct else "-", method, path,
                             {k: v for k, v in params.items() if k not in ("signature", "timestamp")}))
            fault = self._take_fault(method, path, acct.name if acct else "-", params)
            if fault is not None and fault.kind == REJECT:
                raise StandInError(fault.code)
            if fault is not None and fault.kind == LOST_REQUEST:
                await asyncio.sleep(fault.seconds)
                raise StandInError(-1007)
            if fault is not None and fault.kind == BAD_GATEWAY:
                return web.Response(status=502, text=_html(502, "Bad Gateway"), content_type="text/html")
            status, body = self._route(method, path, params, acct)
            if fault is not None and fault.kind in (UNAVAILABLE_AFTER, DROPPED, TRUNCATED):
                return await self._network_fault(request, fault.kind, status, body, headers)
            if fault is not None and fault.kind == LOST_REPLY:
                await asyncio.sleep(fault.seconds)
            if fault is not None and fault.kind == UNKNOWN_STATUS:
                raise StandInError(fault.code or -1007)
        except StandInError as exc:
            status, body = exc.status, exc.body
            if status == 429:
                headers["Retry-After"] = "1"
        except _Answered:
            pass
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        return web.Response(status=status, text=json.dumps(body, separators=(",", ":")),
                            content_type="application/json", headers=headers)

    @staticmethod
    async def _network_fault(request: web.Request, kind: str, status: int, body: Any,
                             headers: dict[str, str]) -> web.StreamResponse:
        """The request was executed; its answer is a 503, nothing (connection closed), or cut off mid-body."""
        if kind == UNAVAILABLE_AFTER:
            return web.Response(status=503, text=_html(503, "Service Unavailable"), content_type="text/html")
        transport = request.transport
        if kind == DROPPED:
            if transport is not None:
                transport.close()
            return web.Response(status=204)  # never reaches the client
        data = json.dumps(body, separators=(",", ":")).encode()
        response = web.StreamResponse(status=status, headers=headers)
        response.content_type = "application/json"
        response.content_length = len(data)
        await response.prepare(request)
        await response.write(data[: len(data) // 2])
        if transport is not None:
            transport.close()
        return response

    def _authenticate(self, request: web.Request, raw_body: str, *, signed: bool = True) -> StandInAccount:
        acct = self.accounts.get(request.headers.get("X-MBX-APIKEY", ""))
        if acct is None:
            raise StandInError(-2015)
        if not signed:
            return acct
        payload, signature = _unsigned(request.query_string), None
        for part in (request.query_string, raw_body):
            for k, v in parse_qsl(part, keep_blank_values=True):
                if k == "signature":
                    signature = v
        payload += _unsigned(raw_body)
        expected = hmac.new(acct.api_secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if signature is None or not hmac.compare_digest(signature, expected):
            raise StandInError(-1022)
        return acct

    def _take_fault(self, method: str, path: str, account: str, params: dict) -> Fault | None:
        for fault in self.faults:
            if fault.matches(method, path, account, params):
                fault.times -= 1
                return fault
        return None

    def _route(self, method: str, path: str, p: dict, acct: StandInAccount | None) -> tuple[int, Any]:
        handler = {
            ("GET", "/fapi/v1/exchangeInfo"): self._exchange_info,
            ("GET", "/fapi/v1/time"): lambda p, a: {"serverTime": _now()},
            ("GET", "/fapi/v1/leverageBracket"): self._leverage_bracket,
            ("GET", "/fapi/v3/account"): self._account,
            ("GET", "/fapi/v3/positionRisk"): self._position_risk,
            ("GET", "/fapi/v1/positionSide/dual"): lambda p, a: {"dualSidePosition": False},
            ("GET", "/fapi/v1/multiAssetsMargin"): lambda p, a: {"multiAssetsMargin": False},
            ("POST", "/fapi/v1/marginType"): self._margin_type,
            ("POST", "/fapi/v1/leverage"): self._leverage,
            ("POST", "/fapi/v1/order"): self._new_order,
            ("GET", "/fapi/v1/order"): self._query_order,
            ("DELETE", "/fapi/v1/order"): lambda p, a: (_ for _ in ()).throw(StandInError(-2011)),
            ("GET", "/fapi/v1/openOrders"): lambda p, a: [],
            ("POST", "/fapi/v1/algoOrder"): self._new_algo,
            ("GET", "/fapi/v1/algoOrder"): self._query_algo,
            ("DELETE", "/fapi/v1/algoOrder"): self._cancel_algo,
            ("GET", "/fapi/v1/openAlgoOrders"): self._open_algos,
            ("GET", "/fapi/v1/userTrades"): self._user_trades,
            ("POST", LISTEN_KEY): lambda p, a: self.streams.listen_key("POST", a.name),
            ("PUT", LISTEN_KEY): lambda p, a: self.streams.listen_key("PUT", a.name),
            ("DELETE", LISTEN_KEY): lambda p, a: self.streams.listen_key("DELETE", a.name),
        }.get((method, path))
        if handler is None:
            self.unknown.append(f"{method} {path}")
            log.error("stand-in: no handler for %s %s", method, path)
            return 404, {"code": -5000, "msg": f"stand-in has no {method} {path}"}
        return 200, handler(p, acct)

    # ------------------------------------------------------------------ public
    def _exchange_info(self, p: dict, acct: Any) -> dict:
        symbols = [bodies.symbol_entry(r["exchangeInfo"], min_notional=self.advertised_min_notional.get(sid))
                   for sid, r in self.rules.items()]
        return bodies.exchange_info(symbols, _now())

    def _leverage_bracket(self, p: dict, acct: StandInAccount) -> Any:
        if "symbol" in p:
            return bodies.brackets(self._rule(p["symbol"])["leverageBracket"])
        return [bodies.brackets(r["leverageBracket"]) for r in self.rules.values()]

    # ------------------------------------------------------------------ account
    def _pos_numbers(self, pos: dict) -> tuple[float, float, float]:
        mark = self.marks[pos["symbol"]]
        pnl = (mark - pos["entryPrice"]) * pos["amt"]
        initial = abs(pos["amt"]) * mark / pos["leverage"]
        return mark, pnl, initial

    def _account(self, p: dict, acct: StandInAccount) -> dict:
        isolated = sum(pos["isolatedWallet"] for pos in acct.positions.values())
        unrealized = initial = maint = 0.0
        rows = []
        for pos in acct.positions.values():
            mark, pnl, im = self._pos_numbers(pos)
            unrealized += pnl
            initial += im
            maint += pos["maintMargin"]
            rows.append({
                "symbol": pos["symbol"], "positionSide": "BOTH", "positionAmt": f"{pos['amt']:.{pos['qty_decimals']}f}",
                "unrealizedProfit": bodies.f8(pnl), "isolatedMargin": bodies.f8(pos["isolatedWallet"] + pnl),
                "notional": bodies.f8(pos["amt"] * mark), "isolatedWallet": bodies.f8(pos["isolatedWallet"]),
                "initialMargin": bodies.f8(im), "maintMargin": bodies.f8(pos["maintMargin"]),
                "updateTime": pos["updateTime"],
            })
        # Binance lists the symbols with positions or open orders; those with orders only, without contracts
        pending = {o["symbol"] for o in list(acct.orders.values()) + list(acct.algos.values())
                   if o.get("status", o.get("algoStatus")) == "NEW"} - set(acct.positions)
        for sid in sorted(pending):
            rows.append({"symbol": sid, "positionSide": "BOTH", "positionAmt": "0", "unrealizedProfit": "0",
                         "isolatedMargin": "0", "notional": "0", "isolatedWallet": "0", "initialMargin": "0",
                         "maintMargin": "0", "updateTime": acct.update_time})
        return bodies.account_v3(wallet=acct.wallet, isolated=isolated, unrealized=unrealized, initial=initial,
                                 maint=maint, positions=rows, update_time=acct.update_time)

    def _position_risk(self, p: dict, acct: StandInAccount) -> list[dict]:
        return [bodies.position_row(pos, self.marks[sid]) for sid, pos in acct.positions.items()
                if "symbol" not in p or p["symbol"] == sid]

    def _margin_type(self, p: dict, acct: StandInAccount) -> dict:
        sid, wanted = p["symbol"], p["marginType"]
        self._rule(sid)
        if acct.margin_type.get(sid, "CROSSED") == wanted:
            raise StandInError(-4046)
        if sid in acct.positions:
            raise StandInError(-4048)
        acct.margin_type[sid] = wanted
        return {"code": 200, "msg": "success"}

    def _leverage(self, p: dict, acct: StandInAccount) -> dict:
        sid, lev = p["symbol"], int(p["leverage"])
        top = max(int(b["initialLeverage"]) for b in self._brackets(sid))
        if not 1 <= lev <= top:
            raise StandInError(-4028)
        if acct.leverage.get(sid, DEFAULT_LEVERAGE) != lev:
            self.streams.push(acct.name, user_data.config_event(sid, lev, now=_now()))
        acct.leverage[sid] = lev
        cap = self._max_notional(sid, lev)
        return {"leverage": lev, "maxNotionalValue": str(int(cap)) if cap.is_integer() else str(cap), "symbol": sid}

    # ------------------------------------------------------------------ orders
    def _check_qty(self, sid: str, qty_text: str) -> float:
        qty = float(qty_text)
        lot = self._filter(sid, "MARKET_LOT_SIZE")
        step, min_qty, max_qty = float(lot["stepSize"]), float(lot["minQty"]), float(lot["maxQty"])
        if abs(qty / step - round(qty / step)) > 1e-9:
            raise StandInError(-1111)
        if qty < min_qty - 1e-12 or qty <= 0:
            raise StandInError(-4003)
        if qty > max_qty + 1e-12:
            raise StandInError(-4005)
        return qty

    def _new_order(self, p: dict, acct: StandInAccount) -> dict:
        sid, side, kind = p["symbol"], p["side"], p["type"]
        if kind in ("STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"):
            raise StandInError(-4120)
        if kind != "MARKET":
            raise StandInError(-1116)
        qty = self._check_qty(sid, p["quantity"])
        order = self._market(acct, sid, side, qty, p.get("reduceOnly") == "true", p.get("newClientOrderId"))
        return bodies.order_body(order)

    def _market(self, acct: StandInAccount, sid: str, side: str, qty: float, reduce_only: bool, cid: str | None) -> dict:
        mark = self.marks[sid]
        buy = side == "BUY"
        pos = acct.positions.get(sid)
        lev = acct.leverage.get(sid, DEFAULT_LEVERAGE)
        if reduce_only:
            if pos is None or (pos["amt"] > 0) == buy:
                raise StandInError(-2022)
            qty = min(qty, abs(pos["amt"]))
        notional = qty * mark
        fee = notional * TAKER_FEE
        if not reduce_only:
            enforced = float(self._filter(sid, "MIN_NOTIONAL")["notional"])
            if notional < enforced - 1e-9:
                raise StandInError(-4164, min=self._filter(sid, "MIN_NOTIONAL")["notional"])
            available = acct.wallet - sum(x["isolatedWallet"] for x in acct.positions.values())
            if available < notional / lev + fee - 1e-9:
                raise StandInError(-2019)
        now = _now()
        acct.wallet -= fee
        realized = 0.0
        if reduce_only:
            realized = self._reduce(acct, sid, qty, mark)
        else:
            self._open(acct, sid, qty if buy else -qty, mark, lev, now)
        price_dec, qty_dec = self._decimals(sid)
        oid = next(self._ids)
        order = {
            "orderId": oid, "symbol": sid, "status": "FILLED", "clientOrderId": cid or f"standin{oid}",
            "avgPrice": mark, "origQty": qty, "executedQty": qty, "cumQuote": notional, "reduceOnly": reduce_only,
            "side": side, "time": now, "updateTime": now, "price_decimals": price_dec, "qty_decimals": qty_dec,
            "commission": fee, "realized": realized,
        }
        acct.orders[oid] = order
        acct.update_time = now
        self._push_account(acct, sid)  # before the order's events, so a client that saw the fill saw the balance
        for event in user_data.order_events(order, fee=fee, realized=realized, now=now):
            self.streams.push(acct.name, event)
        if not reduce_only and sid in self.mark_after_first_fill:
            self.marks[sid] = self.mark_after_first_fill.pop(sid)
        return order

    def _open(self, acct: StandInAccount, sid: str, amt: float, price: float, lev: int, now: int) -> None:
        pos = acct.positions.get(sid)
        if pos is None:
            pos = acct.positions[sid] = {"symbol": sid, "amt": 0.0, "entryPrice": price, "isolatedWallet": 0.0,
                                         "leverage": lev, "qty_decimals": self._decimals(sid)[1]}
        total = pos["amt"] + amt
        pos["entryPrice"] = (pos["entryPrice"] * abs(pos["amt"]) + price * abs(amt)) / abs(total)
        pos["amt"] = total
        pos["isolatedWallet"] += abs(amt) * price / lev
        pos["updateTime"] = now
        self._refresh(pos)

    def _refresh(self, pos: dict) -> None:
        q, e = abs(pos["amt"]), pos["entryPrice"]
        b = self._bracket(pos["symbol"], q * e)
        mmr, cum = float(b["maintMarginRatio"]), float(b["cum"])
        side = 1 if pos["amt"] > 0 else -1
        pos["liquidationPrice"] = max((pos["isolatedWallet"] + cum - side * q * e) / (q * mmr - side * q), 0.0)
        pos["maintMargin"] = q * self.marks[pos["symbol"]] * mmr - cum
        pos["breakEven"] = e * (1 + side * 2 * TAKER_FEE)

    def _reduce(self, acct: StandInAccount, sid: str, qty: float, price: float) -> float:
        pos = acct.positions[sid]
        part = qty / abs(pos["amt"])
        pnl = (price - pos["entryPrice"]) * qty * (1 if pos["amt"] > 0 else -1)
        acct.wallet += pnl
        if part >= 1 - 1e-12:
            del acct.positions[sid]
            return pnl
        pos["isolatedWallet"] *= 1 - part
        pos["amt"] -= math.copysign(qty, pos["amt"])
        pos["updateTime"] = _now()
        self._refresh(pos)
        return pnl

    def _query_order(self, p: dict, acct: StandInAccount) -> dict:
        for o in acct.orders.values():
            if str(o["orderId"]) == p.get("orderId") or o["clientOrderId"] == p.get("origClientOrderId"):
                return bodies.order_body(o, with_time=True)
        raise StandInError(-2013)

    def _new_algo(self, p: dict, acct: StandInAccount) -> dict:
        sid, side, kind = p["symbol"], p["side"], p["type"]
        if p.get("algoType") != "CONDITIONAL" or kind not in ("STOP_MARKET", "TAKE_PROFIT_MARKET"):
            raise StandInError(-1116)
        qty = self._check_qty(sid, p["quantity"])
        trigger = float(p["triggerPrice"])
        if _crossed(kind, side, self.marks[sid], trigger):
            raise StandInError(-2021)
        cid = p.get("clientAlgoId")
        if cid and any(a["clientAlgoId"] == cid and a["algoStatus"] == "NEW" for a in acct.algos.values()):
            raise StandInError(-4116)
        price_dec, qty_dec = self._decimals(sid)
        now, aid = _now(), next(self._algo_ids)
        algo = {
            "algoId": aid, "clientAlgoId": cid or f"standin{aid}", "orderType": kind, "symbol": sid, "side": side,
            "quantity": qty, "algoStatus": "NEW", "triggerPrice": trigger, "workingType": p.get("workingType", "CONTRACT_PRICE"),
            "reduceOnly": p.get("reduceOnly") == "true", "actualOrderId": None, "actualPrice": 0.0,
            "createTime": now, "updateTime": now, "triggerTime": 0, "price_decimals": price_dec, "qty_decimals": qty_dec,
        }
        acct.algos[aid] = algo
        self._push_algo(acct, algo)
        return bodies.algo_body(algo)

    def _find_algo(self, p: dict, acct: StandInAccount) -> dict | None:
        for a in acct.algos.values():
            if str(a["algoId"]) == p.get("algoId") or a["clientAlgoId"] == p.get("clientAlgoId"):
                return a
        return None

    def _query_algo(self, p: dict, acct: StandInAccount) -> dict:
        algo = self._find_algo(p, acct)
        if algo is None:
            raise StandInError(-2013)
        return bodies.algo_body(algo, query=True)

    def _cancel_algo(self, p: dict, acct: StandInAccount) -> dict:
        algo = self._find_algo(p, acct)
        if algo is None or algo["algoStatus"] != "NEW":
            raise StandInError(-2011)
        algo.update(algoStatus="CANCELED", updateTime=_now())
        self._push_algo(acct, algo)
        return {"algoId": algo["algoId"], "clientAlgoId": algo["clientAlgoId"], "code": "200", "msg": "success"}

    # ------------------------------------------------------------------ user-data stream
    def _push_algo(self, acct: StandInAccount, algo: dict) -> None:
        self.streams.push(acct.name, user_data.algo_event(algo, now=_now()))

    def _push_account(self, acct: StandInAccount, sid: str) -> None:
        pos = acct.positions.get(sid)
        row = {"s": sid, "pa": "0", "ep": "0", "bep": "0", "cr": "0", "up": "0", "mt": "isolated", "iw": "0",
               "ps": "BOTH", "ma": "USDT"}
        if pos is not None:
            mark, pnl, _ = self._pos_numbers(pos)
            row.update(pa=f"{pos['amt']:.{pos['qty_decimals']}f}", ep=f"{pos['entryPrice']:.1f}",
                       bep=f"{pos['breakEven']:.8f}", up=bodies.f8(pnl), iw=bodies.f8(pos["isolatedWallet"]))
        isolated = sum(x["isolatedWallet"] for x in acct.positions.values())
        self.streams.push(acct.name, user_data.account_event(wallet=acct.wallet, cross=acct.wallet - isolated,
                                                             positions=[row], now=_now()))

    def _user_trades(self, p: dict, acct: StandInAccount) -> list[dict]:
        """GET /fapi/v1/userTrades: one trade per filled market order of the symbol (or of the orderId)."""
        return [{"buyer": o["side"] == "BUY", "commission": f"{o['commission']:.8f}", "commissionAsset": "USDT",
                 "id": o["orderId"] + 7_000_000_000, "maker": False, "orderId": o["orderId"],
                 "price": f"{o['avgPrice']:.{max(o['price_decimals'], 1)}f}",
                 "qty": f"{o['executedQty']:.{o['qty_decimals']}f}", "quoteQty": bodies.f8(o["cumQuote"]),
                 "realizedPnl": f"{o['realized']:.8f}", "side": o["side"], "positionSide": "BOTH",
                 "symbol": o["symbol"], "time": o["time"]}
                for o in acct.orders.values()
                if o["symbol"] == p["symbol"] and p.get("orderId") in (None, str(o["orderId"]))]

    def _open_algos(self, p: dict, acct: StandInAccount) -> list[dict]:
        return [bodies.algo_body(a, query=True) for a in acct.algos.values()
                if a["algoStatus"] == "NEW" and p.get("symbol") in (None, a["symbol"])]


class _Answered(Exception):
    """The rate limits answered the request already (429 / 418)."""


class _WallClock:
    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def _crossed(order_type: str, side: str, price: float, trigger: float) -> bool:
    """A sell stop fires at price <= trigger, a sell take-profit at price >= trigger (mirrored for buys)."""
    down = (order_type == "STOP_MARKET") == (side == "SELL")
    return price <= trigger if down else price >= trigger


def _html(status: int, reason: str) -> str:
    return f"<html><head><title>{status} {reason}</title></head><body><center><h1>{status} {reason}</h1></center></body></html>"


def _unsigned(part: str) -> str:
    return "&".join(kv for kv in part.split("&") if kv and not kv.startswith("signature="))


def _now() -> int:
    return int(time.time() * 1000)
