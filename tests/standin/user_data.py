"""Tests room: the stand-in's user-data stream: listen keys and the websocket that pushes account events.

Binance USDⓈ-M: ``POST /fapi/v1/listenKey`` (API key, no signature) returns the account's key (the same one
while it is valid), ``PUT`` keeps it alive for another 60 minutes, ``DELETE`` closes it. The stream is
``GET <ws base>/private/ws?listenKey=KEY`` (ccxt's linear private URL; ``/ws/KEY`` works too). Events, in the
shapes of Binance's docs (ccxt.pro parses them):

- ``ORDER_TRADE_UPDATE``: a market order NEW, then its TRADE / FILLED with commission ``n`` and realised ``rp``;
- ``ALGO_UPDATE``: a trigger order NEW, CANCELED, TRIGGERED (sent to the matching engine), FINISHED (filled),
  EXPIRED;
- ``ACCOUNT_UPDATE``: wallet (``wb``, ``cw``) and positions after every fill;
- ``ACCOUNT_CONFIG_UPDATE``: leverage changed;
- ``listenKeyExpired``: the key is gone; the client must get a new one.

Controls for tests: ``cut(account)`` closes the account's connections (events meanwhile are lost, as on
Binance), ``block(True)`` refuses new connections until ``block(False)``, ``expire(account)`` expires the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

log = logging.getLogger("fanout.standin.stream")
KEY_VALIDITY_MS = 60 * 60 * 1000


@dataclass
class _Connection:
    account: str
    ws: web.WebSocketResponse
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)


class UserDataStreams:
    def __init__(self, now_ms: Any) -> None:
        self._now_ms = now_ms
        self.keys: dict[str, str] = {}  # listen key → account name
        self.key_of: dict[str, str] = {}  # account name → listen key
        self.expires: dict[str, int] = {}  # listen key → ms
        self.connections: list[_Connection] = []
        self.blocked = False
        self.connects: dict[str, int] = {}  # account → connections accepted
        self.sent: dict[str, list[dict]] = {}  # account → events pushed (tests read them)
        self._ids = itertools.count(1)
        self.connected = asyncio.Condition()

    # ------------------------------------------------------------------ listen keys
    def listen_key(self, method: str, account: str) -> dict:
        now = self._now_ms()
        key = self.key_of.get(account)
        if method == "DELETE":
            if key:
                self._drop_key(key)
            return {}
        if key is None or self.expires.get(key, 0) < now:
            if key:
                self._drop_key(key)
            key = f"standinlistenkey{next(self._ids):08d}{'x' * 40}"[:64]
            self.keys[key], self.key_of[account] = account, key
        self.expires[key] = now + KEY_VALIDITY_MS
        return {"listenKey": key}

    def _drop_key(self, key: str) -> None:
        account = self.keys.pop(key, None)
        self.expires.pop(key, None)
        if account is not None and self.key_of.get(account) == key:
            del self.key_of[account]

    def expire(self, account: str) -> None:
        key = self.key_of.get(account)
        if key is None:
            return
        self.push(account, {"e": "listenKeyExpired", "E": self._now_ms(), "listenKey": key})
        self._drop_key(key)
        self.cut(account)

    # ------------------------------------------------------------------ the websocket
    def is_stream(self, path: str) -> bool:
        return path.endswith("/ws") or "/ws/" in path

    async def serve(self, request: web.Request) -> web.StreamResponse:
        key = request.query.get("listenKey") or request.path.rsplit("/", 1)[-1]
        account = self.keys.get(key)
        if self.blocked or account is None or self.expires.get(key, 0) < self._now_ms():
            return web.json_response({"code": -1125, "msg": "This listenKey does not exist."}, status=400)
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        conn = _Connection(account, ws)
        self.connections.append(conn)
        self.connects[account] = self.connects.get(account, 0) + 1
        async with self.connected:
            self.connected.notify_all()
        sender = asyncio.get_running_loop().create_task(self._send_loop(conn))
        try:
            async for msg in ws:  # the client sends nothing we need; pings are answered by aiohttp
                if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                    break
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            if conn in self.connections:
                self.connections.remove(conn)
        return ws

    async def _send_loop(self, conn: _Connection) -> None:
        while True:
            event = await conn.queue.get()
            if event is None:
                await conn.ws.close()
                return
            await conn.ws.send_str(json.dumps(event, separators=(",", ":")))

    def push(self, account: str, event: dict) -> None:
        self.sent.setdefault(account, []).append(event)
        for conn in self.connections:
            if conn.account == account:
                conn.queue.put_nowait(event)

    def cut(self, account: str | None = None) -> None:
        """Close the account's (or every) stream connection from the server side."""
        for conn in list(self.connections):
            if account is None or conn.account == account:
                conn.queue.put_nowait(None)
                self.connections.remove(conn)

    def block(self, blocked: bool) -> None:
        self.blocked = blocked

    def live(self, account: str) -> bool:
        return any(c.account == account for c in self.connections)

    async def wait_connected(self, account: str, connects: int) -> None:
        """Until ``account`` has been connected ``connects`` times in total (tests await reconnection)."""
        async with self.connected:
            await self.connected.wait_for(lambda: self.connects.get(account, 0) >= connects)


# ---------------------------------------------------------------------------------------------- event bodies
def order_events(order: dict, *, fee: float, realized: float, now: int) -> list[dict]:
    """ORDER_TRADE_UPDATE NEW and TRADE/FILLED for a filled market order (the stand-in's order record)."""
    p, q = order["price_decimals"], order["qty_decimals"]
    base = {
        "s": order["symbol"], "c": order["clientOrderId"], "S": order["side"], "o": "MARKET", "f": "GTC",
        "q": f"{order['origQty']:.{q}f}", "p": "0", "sp": "0", "i": order["orderId"], "N": "USDT",
        "T": now, "b": "0", "a": "0", "m": False, "R": order["reduceOnly"], "wt": "CONTRACT_PRICE",
        "ot": "MARKET", "ps": "BOTH", "cp": False, "pP": False, "si": 0, "ss": 0, "V": "EXPIRE_MAKER",
        "pm": "NONE", "gtd": 0,
    }
    new = base | {"ap": "0", "x": "NEW", "X": "NEW", "l": "0", "z": "0", "L": "0", "n": "0", "t": 0, "rp": "0"}
    trade = base | {
        "ap": f"{order['avgPrice']:.{max(p, 1)}f}", "x": "TRADE", "X": "FILLED", "l": f"{order['executedQty']:.{q}f}",
        "z": f"{order['executedQty']:.{q}f}", "L": f"{order['avgPrice']:.{max(p, 1)}f}", "n": f"{fee:.8f}",
        "t": order["orderId"] + 7_000_000_000, "rp": f"{realized:.8f}",
    }
    return [{"e": "ORDER_TRADE_UPDATE", "E": now, "T": now, "o": o} for o in (new, trade)]


def algo_event(algo: dict, *, now: int) -> dict:
    """ALGO_UPDATE for the stand-in's algo record in its current status."""
    p, q = algo["price_decimals"], algo["qty_decimals"]
    filled = algo["algoStatus"] == "FINISHED"
    return {"e": "ALGO_UPDATE", "T": now, "E": now, "o": {
        "caid": algo["clientAlgoId"], "aid": algo["algoId"], "at": "CONDITIONAL", "o": algo["orderType"],
        "s": algo["symbol"], "S": algo["side"], "ps": "BOTH", "f": "GTC", "q": f"{algo['quantity']:.{q}f}",
        "X": algo["algoStatus"], "ai": str(algo["actualOrderId"] or ""),
        "ap": f"{algo['actualPrice']:.5f}", "aq": f"{algo['quantity'] if filled else 0:.{q}f}",
        "act": "MARKET" if algo["actualOrderId"] else "0", "tp": f"{algo['triggerPrice']:.{p}f}", "p": "0",
        "V": "EXPIRE_MAKER", "wt": algo["workingType"], "pm": "NONE", "cp": False, "pP": False,
        "R": algo["reduceOnly"], "tt": algo["triggerTime"], "gtd": 0,
    }}


def account_event(*, wallet: float, cross: float, positions: list[dict], now: int, reason: str = "ORDER") -> dict:
    """ACCOUNT_UPDATE with the USDT wallet and the given position rows (``pa`` 0 for a closed one)."""
    return {"e": "ACCOUNT_UPDATE", "E": now, "T": now, "a": {
        "m": reason, "B": [{"a": "USDT", "wb": f"{wallet:.8f}", "cw": f"{cross:.8f}", "bc": "0"}], "P": positions}}


def config_event(symbol: str, leverage: int, *, now: int) -> dict:
    return {"e": "ACCOUNT_CONFIG_UPDATE", "E": now, "T": now, "ac": {"s": symbol, "l": leverage}}
