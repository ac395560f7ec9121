"""Tests room: the stand-in's rate limits, as Binance applies them (request weight per IP, orders per account).

- Every request costs its endpoint's weight (the server's own table below, Binance's documented numbers) in
  the current clock minute; ``X-MBX-USED-WEIGHT-1M`` reports the minute's total. A request that would pass
  ``weight_limit`` is answered 429 (-1003) with ``Retry-After`` = seconds to the next minute.
- Order endpoints count per account in 10-second and one-minute windows (``X-MBX-ORDER-COUNT-10S`` / ``-1M``);
  over either limit the order gets 429 (-1015).
- Requests that keep coming during a 429's back-off (after ``grace_s``, which covers requests already in
  flight when the 429 went out) are violations; the ``ban_after``-th gets the IP banned: HTTP 418 with
  "banned until <ms>" and ``Retry-After``, for ``ban_s`` seconds, to every request until then.
- ``foreign(weight)`` adds another program's weight on the same IP to this minute; ``ban(seconds)`` bans the
  IP outright.

``decisions`` keeps (time, status, account, method, path) of every 429 and 418, for the tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

WEIGHTS: dict[tuple[str, str], tuple[int, int | None]] = {  # (weight with symbol / without parameters, no symbol)
    ("GET", "/fapi/v1/exchangeInfo"): (1, None),
    ("GET", "/fapi/v1/time"): (1, None),
    ("GET", "/fapi/v1/klines"): (2, None),  # limit 500
    ("GET", "/fapi/v1/ticker/24hr"): (1, 40),
    ("GET", "/fapi/v1/ticker/price"): (1, 2),
    ("GET", "/fapi/v1/leverageBracket"): (1, None),
    ("GET", "/fapi/v3/account"): (5, None),
    ("GET", "/fapi/v3/positionRisk"): (5, None),
    ("GET", "/fapi/v1/positionSide/dual"): (30, None),
    ("GET", "/fapi/v1/multiAssetsMargin"): (30, None),
    ("POST", "/fapi/v1/marginType"): (1, None),
    ("POST", "/fapi/v1/leverage"): (1, None),
    ("POST", "/fapi/v1/order"): (0, None),
    ("GET", "/fapi/v1/order"): (1, None),
    ("DELETE", "/fapi/v1/order"): (1, None),
    ("GET", "/fapi/v1/openOrders"): (1, 40),
    ("POST", "/fapi/v1/algoOrder"): (1, None),
    ("GET", "/fapi/v1/algoOrder"): (1, None),
    ("DELETE", "/fapi/v1/algoOrder"): (1, None),
    ("GET", "/fapi/v1/openAlgoOrders"): (1, 40),
    ("GET", "/fapi/v1/userTrades"): (5, None),
    ("POST", "/fapi/v1/listenKey"): (1, None),
    ("PUT", "/fapi/v1/listenKey"): (1, None),
    ("DELETE", "/fapi/v1/listenKey"): (1, None),
}
ORDER_PATHS = {("POST", "/fapi/v1/order"), ("POST", "/fapi/v1/algoOrder")}


@dataclass
class Verdict:
    """What the limits say about one request: an HTTP status to answer instead (or None) and headers to add."""

    status: int | None = None
    body: dict | None = None
    headers: dict[str, str] = field(default_factory=dict)


class IpLimits:
    def __init__(self, clock: Any, *, weight_limit: int = 2400, order_limit_10s: int = 300,
                 order_limit_1m: int = 1200, grace_s: float = 1.0, ban_after: int = 5, ban_s: float = 120.0) -> None:
        self.clock = clock
        self.weight_limit, self.order_limit_10s, self.order_limit_1m = weight_limit, order_limit_10s, order_limit_1m
        self.grace_s, self.ban_after, self.ban_s = grace_s, ban_after, ban_s
        self.weight_by_minute: dict[int, int] = {}
        self._orders: dict[tuple[str, int, int], int] = {}  # (account, length, window) → orders
        self.backoff_from = self.backoff_until = 0.0
        self.violations = 0
        self.banned_until = 0.0
        self.decisions: list[tuple[float, int, str, str, str]] = []

    def minute(self) -> int:
        return math.floor(self.clock.time() / 60)

    def foreign(self, weight: int) -> None:
        """Another program on the same IP spends ``weight`` this minute."""
        m = self.minute()
        self.weight_by_minute[m] = self.weight_by_minute.get(m, 0) + weight

    def ban(self, seconds: float) -> None:
        self.banned_until = self.clock.time() + seconds

    def check(self, account: str, method: str, path: str, params: dict) -> Verdict:
        now = self.clock.time()
        if now < self.banned_until:
            return self._banned(now, account, method, path)
        if now < self.backoff_until and now > self.backoff_from + self.grace_s:
            self.violations += 1
            if self.violations >= self.ban_after:
                self.banned_until = now + self.ban_s
                return self._banned(now, account, method, path)
        weight, no_symbol = WEIGHTS.get((method, path), (1, None))
        if no_symbol is not None and not params.get("symbol"):
            weight = no_symbol
        m = self.minute()
        used = self.weight_by_minute.get(m, 0) + weight
        if used > self.weight_limit:
            retry = math.ceil((m + 1) * 60 - now)
            if now >= self.backoff_until:
                self.backoff_from, self.violations = now, 0
            self.backoff_until = max(self.backoff_until, now + retry)
            return self._reject(now, 429, -1003, account, method, path, retry,
                                "Too many requests; current limit is 2400 requests per minute.")
        self.weight_by_minute[m] = used
        verdict = Verdict(headers={"X-MBX-USED-WEIGHT-1M": str(used)})
        if (method, path) in ORDER_PATHS and account != "-":
            counts = {}
            for length, limit in ((10, self.order_limit_10s), (60, self.order_limit_1m)):
                key = (account, length, math.floor(now / length))
                counts[length] = self._orders.get(key, 0) + 1
                if counts[length] > limit:
                    retry = math.ceil((key[2] + 1) * length - now)
                    rejected = self._reject(now, 429, -1015, account, method, path, retry,
                                            f"Too many new orders; current limit is {limit} orders per {length}s.")
                    rejected.headers.update(verdict.headers)
                    return rejected
            for length, count in counts.items():
                self._orders[(account, length, math.floor(now / length))] = count
                verdict.headers[f"X-MBX-ORDER-COUNT-{'10S' if length == 10 else '1M'}"] = str(count)
        return verdict

    def _banned(self, now: float, account: str, method: str, path: str) -> Verdict:
        until_ms = int(self.banned_until * 1000)
        return self._reject(now, 418, -1003, account, method, path, math.ceil(self.banned_until - now),
                            f"Way too much request weight used; IP banned until {until_ms}. Please use the "
                            f"websocket for live updates to avoid bans.")

    def _reject(self, now: float, status: int, code: int, account: str, method: str, path: str, retry: int,
                msg: str) -> Verdict:
        self.decisions.append((now, status, account, method, path))
        return Verdict(status, {"code": code, "msg": msg}, {"Retry-After": str(max(1, retry))})

    def count(self, status: int) -> int:
        return sum(1 for d in self.decisions if d[1] == status)
