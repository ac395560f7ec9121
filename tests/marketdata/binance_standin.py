"""Test helper: a small aiohttp stand-in for Binance USDⓈ-M public endpoints, used only to (re-)record cassettes.

It answers ``GET /fapi/v1/klines`` with Binance's 12-field arrays (shape of the real body in
``shared/reference/binance-usdm/responses.ccxt-fixtures.json``, fetchOHLCV) built from the real 1m candles in
``shared/data`` (aggregated for longer timeframes), ``GET /fapi/v1/exchangeInfo`` from the exchangeInfo entries of
the stand-in symbols in ``data/market_rules.json`` (or a given body), the signed ``GET /fapi/v1/leverageBracket``
from a given body, ``GET /fapi/v1/markPriceKlines`` (the klines' prices shifted 0.05%) and ``GET /fapi/v1/fundingRate``
from the shared funding history. Paging follows Binance: with ``startTime`` the oldest ``limit`` candles from
it, with only ``endTime`` the newest ``limit`` up to it. Re-record: see tests/marketdata/test_download.py.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path

from aiohttp import web

from tests.standin.bodies import load_rules

SHARED_CSV = Path(__file__).resolve().parents[3] / "shared" / "data" / "BTCUSDT-1m-2023-03-01--2023-03-21.binanceus.csv"
SHARED_FUNDING = SHARED_CSV.parent / "funding"
_STEPS = {"1m": 1, "3m": 3, "5m": 5, "15m": 15, "30m": 30, "1h": 60, "2h": 120, "4h": 240, "1d": 1440}
_MINUTE = 60_000
_compact = partial(json.dumps, separators=(",", ":"))  # as Binance sends it
DISCONNECTED = {"code": -1001, "msg": "Internal error; unable to process your request. Please try again."}


def load_minutes(path: Path = SHARED_CSV, rows: int = 7_200) -> list[tuple[int, str, str, str, str, str]]:
    """The first ``rows`` one-minute candles of the shared CSV as (open ms, open, high, low, close, volume)."""
    out = []
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        for row in reader:
            out.append((int(datetime.fromisoformat(row[0]).timestamp() * 1000), *row[1:6]))
            if len(out) >= rows:
                break
    return out


def load_funding_rows(symbol: str = "BTCUSDT") -> list[dict]:
    """The shared funding history of ``symbol`` (2020–2023) as ``GET /fapi/v1/fundingRate`` entries (markPrice ""
    as Binance sent it before it added the field)."""
    path = next(SHARED_FUNDING.glob(f"{symbol}-fundingRate-*.csv"))
    with path.open(newline="") as fh:
        return [{"symbol": r["symbol"], "fundingTime": int(r["fundingTime"]), "fundingRate": r["fundingRate"],
                 "markPrice": r["markPrice"]} for r in csv.DictReader(fh)]


def _aggregate(minutes: list[tuple], step_minutes: int) -> list[tuple[int, float, float, float, float, float]]:
    bars: dict[int, list[float]] = {}
    size = step_minutes * _MINUTE
    for ms, o, h, low, c, v in minutes:
        key = ms // size * size
        o, h, low, c, v = float(o), float(h), float(low), float(c), float(v)
        bar = bars.get(key)
        if bar is None:
            bars[key] = [o, h, low, c, v]
        else:
            bar[1], bar[2], bar[3], bar[4] = max(bar[1], h), min(bar[2], low), c, bar[4] + v
    return [(ms, *vals) for ms, vals in sorted(bars.items())]


@dataclass
class StandIn:
    """Scenario knobs: ``missing`` open times never served (an exchange outage), ``fail_start`` startTimes answered
    with HTTP 503 and Binance's -1001 body (each entry consumed by one failure), ``symbols`` served by klines."""

    minutes: list[tuple]
    missing: set[int] = field(default_factory=set)
    fail_start: list[int] = field(default_factory=list)
    symbols: tuple[str, ...] = ("BTCUSDT",)
    requests: list[dict] = field(default_factory=list)
    funding: dict[str, list[dict]] = field(default_factory=dict)  # fundingRate entries by symbol
    exchange_info: dict | None = None  # the exchangeInfo body to serve (default: the stand-in symbols' rules)
    brackets: list | None = None  # the leverageBracket body, served to signed requests only

    def klines(self, interval: str) -> list[list]:
        step = _STEPS[interval] * _MINUTE
        out = []
        for ms, o, h, low, c, v in _aggregate(self.minutes, _STEPS[interval]):
            if ms in self.missing:
                continue
            quote = (o + c) / 2 * v
            out.append([
                ms, f"{o:.2f}", f"{h:.2f}", f"{low:.2f}", f"{c:.2f}", repr(round(v, 6)), ms + step - 1,
                f"{quote:.5f}", max(1, int(v * 40)), repr(round(v / 2, 6)), f"{quote / 2:.5f}", "0",
            ])
        return out

    async def _klines(self, request: web.Request) -> web.Response:
        q = request.query
        self.requests.append({"path": request.path, **q})
        mark = request.path.endswith("/markPriceKlines")
        if q.get("symbol") not in self.symbols:
            return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400, dumps=_compact)
        start = int(q["startTime"]) if "startTime" in q else None
        if start is not None and start in self.fail_start:
            self.fail_start.remove(start)
            return web.json_response(DISCONNECTED, status=503, dumps=_compact)
        end = int(q["endTime"]) if "endTime" in q else None
        limit = int(q.get("limit", 500))
        rows = [k for k in self.klines(q["interval"])
                if (start is None or k[0] >= start) and (end is None or k[0] <= end)]
        rows = rows[:limit] if start is not None else rows[-limit:]
        if mark:  # markPriceKlines: the trade candle's prices shifted 0.05% (a distinct series), no volumes
            rows = [[k[0], *(f"{float(v) * 1.0005:.2f}" for v in k[1:5]), "0", k[6], "0", len(k), "0", "0", "0"]
                    for k in rows]
        return web.json_response(rows, dumps=_compact)

    async def _funding_rate(self, request: web.Request) -> web.Response:
        """Binance's paging: from startTime, at most ``limit`` (default 100, max 1000), up to endTime."""
        q = request.query
        self.requests.append({"path": request.path, **q})
        events = self.funding.get(q.get("symbol", ""))
        if events is None:
            return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400, dumps=_compact)
        start = int(q.get("startTime", 0))
        end = int(q["endTime"]) if "endTime" in q else None
        limit = min(int(q.get("limit", 100)), 1000)
        rows = [e for e in events if e["fundingTime"] >= start and (end is None or e["fundingTime"] <= end)]
        return web.json_response(rows[:limit], dumps=_compact)

    async def _exchange_info(self, request: web.Request) -> web.Response:
        self.requests.append({"path": request.path})
        if self.exchange_info is not None:
            return web.json_response(self.exchange_info, dumps=_compact)
        rules = load_rules()
        return web.json_response({
            "timezone": "UTC", "serverTime": 1678000000000, "futuresType": "U_MARGINED",
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
                {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
            ],
            "exchangeFilters": [], "assets": [],
            "symbols": [entry["exchangeInfo"] for entry in rules.values()],
        }, dumps=_compact)

    async def _leverage_bracket(self, request: web.Request) -> web.Response:
        """Signed like Binance's USER_DATA endpoints: an API key header and a signature, else -2014 / -1022."""
        self.requests.append({"path": request.path, "keyed": "X-MBX-APIKEY" in request.headers})
        if "X-MBX-APIKEY" not in request.headers:
            return web.json_response({"code": -2014, "msg": "API-key format invalid."}, status=401, dumps=_compact)
        if "signature" not in request.query or "timestamp" not in request.query:
            return web.json_response({"code": -1022, "msg": "Signature for this request is not valid."}, status=400,
                                     dumps=_compact)
        return web.json_response(self.brackets or [], dumps=_compact)

    async def start(self) -> str:
        """Serve on 127.0.0.1 (a free port); returns the origin to use as ``api_url``."""
        app = web.Application()
        app.router.add_get("/fapi/v1/klines", self._klines)
        app.router.add_get("/fapi/v1/exchangeInfo", self._exchange_info)
        app.router.add_get("/fapi/v1/leverageBracket", self._leverage_bracket)
        app.router.add_get("/fapi/v1/markPriceKlines", self._klines)
        app.router.add_get("/fapi/v1/fundingRate", self._funding_rate)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        await self._runner.cleanup()
