"""Tests room: the stand-in plus Binance USDⓈ-M public market data (24hr ticker, 1m klines) for paper recordings.

``MarketStandIn`` serves a fixed one-minute series at a clock the recorder sets (the same clock the public
client's ``milliseconds()`` reads, see tests/standin/cli_flows.py):

- ``GET /fapi/v1/klines``: Binance's 12-field arrays (shape of the real BTCUSDT body in
  shared/reference/binance-usdm/responses.ccxt-fixtures.json), candles with ``startTime <= open <= endTime``
  that have begun by 'now' (the still-open minute included, as Binance sends it), the oldest ``limit`` (500).
- ``GET /fapi/v1/ticker/24hr``: the docs example's fields; ``lastPrice`` is the open of the minute containing
  'now' (the series has no ticks), ``closeTime`` is 'now' (ccxt's ticker timestamp).
- ``GET /fapi/v1/ticker/price``: ``{"symbol", "price", "time"}``, the same last price.

Everything else (exchangeInfo, the signed endpoints) is the stand-in of tests/standin/server.py.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.standin.server import StandIn, StandInAccount, StandInError

MINUTE = 60_000
MARKET = {("GET", "/fapi/v1/klines"), ("GET", "/fapi/v1/ticker/24hr"), ("GET", "/fapi/v1/ticker/price")}
Candle = tuple[int, float, float, float, float]


def _volume(t: int) -> float:
    return round(10 + (t // MINUTE) % 7 * 1.25, 3)  # deterministic, varies a little per minute


class MarketStandIn(StandIn):
    """The stand-in with public market data for one symbol from ``candles`` (open ms, o, h, l, c)."""

    def __init__(self, *, symbol: str, candles: tuple[Candle, ...] | list[Candle], now: int, **kwargs: Any) -> None:
        self.symbol = symbol
        self.candles = sorted(candles)
        self.now = now
        super().__init__(prices={symbol: self.last_price()}, **kwargs)

    def set_now(self, now: int) -> None:
        self.now = now
        self.marks[self.symbol] = self.last_price()

    def last_price(self) -> float:
        begun = [c for c in self.candles if c[0] <= self.now]
        if not begun:
            raise ValueError(f"the candle series starts after now={self.now}")
        return begun[-1][1]

    def _authenticate(self, request: web.Request, raw_body: str,  # type: ignore[override]
                      *, signed: bool = True) -> StandInAccount | None:
        if (request.method, request.path) in MARKET:
            return None  # public market data: no key, no signature
        return super()._authenticate(request, raw_body, signed=signed)

    def _route(self, method: str, path: str, p: dict, acct: StandInAccount | None) -> tuple[int, Any]:
        if (method, path) == ("GET", "/fapi/v1/klines"):
            return 200, self._klines(p)
        if (method, path) == ("GET", "/fapi/v1/ticker/24hr"):
            return 200, self._ticker_24hr(p)
        if (method, path) == ("GET", "/fapi/v1/ticker/price"):
            self._check_symbol(p)
            return 200, {"symbol": self.symbol, "price": f"{self.last_price():.2f}", "time": self.now}
        return super()._route(method, path, p, acct)

    def _check_symbol(self, p: dict) -> None:
        if p.get("symbol") != self.symbol:
            raise StandInError(-1121)

    def _klines(self, p: dict) -> list[list]:
        self._check_symbol(p)
        if p.get("interval") != "1m":
            raise StandInError(-1121)  # only the one-minute series exists here
        start = int(p.get("startTime", 0))
        end = int(p.get("endTime", self.now))
        limit = min(int(p.get("limit", 500)), 1500)
        rows = [c for c in self.candles if start <= c[0] <= min(end, self.now)][:limit]
        out = []
        for t, o, h, low, c in rows:
            v = _volume(t)
            quote = (o + c) / 2 * v
            out.append([t, f"{o:.2f}", f"{h:.2f}", f"{low:.2f}", f"{c:.2f}", f"{v:.3f}", t + MINUTE - 1,
                        f"{quote:.5f}", int(v * 40), f"{v / 2:.3f}", f"{quote / 2:.5f}", "0"])
        return out

    def _ticker_24hr(self, p: dict) -> dict:
        self._check_symbol(p)
        day = [c for c in self.candles if self.now - 86_400_000 < c[0] <= self.now]
        first, last = day[0][1], self.last_price()
        volume = sum(_volume(c[0]) for c in day)
        quote = sum(_volume(c[0]) * (c[1] + c[4]) / 2 for c in day)
        return {
            "symbol": self.symbol, "priceChange": f"{last - first:.2f}",
            "priceChangePercent": f"{(last - first) / first * 100:.3f}",
            "weightedAvgPrice": f"{quote / volume:.2f}", "lastPrice": f"{last:.2f}", "lastQty": "0.002",
            "openPrice": f"{first:.2f}", "highPrice": f"{max(c[2] for c in day):.2f}",
            "lowPrice": f"{min(c[3] for c in day):.2f}", "volume": f"{volume:.3f}", "quoteVolume": f"{quote:.2f}",
            "openTime": day[0][0], "closeTime": self.now, "firstId": 5_000_000_000,
            "lastId": 5_000_000_000 + len(day) * 40, "count": len(day) * 40 + 1,
        }
