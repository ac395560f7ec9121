"""Live room: Binance USDⓈ-M request weights per endpoint and the rate limits they count against.

Binance limits REST traffic two ways (``exchangeInfo.rateLimits``):

- ``REQUEST_WEIGHT``, 2,400 per minute **per IP**, shared by every API key behind that IP. Each endpoint costs a
  weight (below); the running total comes back in the ``X-MBX-USED-WEIGHT-1M`` header of every response.
- ``ORDERS``, 300 per 10 seconds and 1,200 per minute **per account**, counted by ``X-MBX-ORDER-COUNT-10S`` /
  ``-1M`` on order responses.

Weights are Binance's documented ones (developers.binance.com, USDⓈ-M "Weight" line of each endpoint), checked
against ccxt's ``binanceusdm`` ``api`` table where ccxt's cost is the weight. Placing an order costs no IP weight
(``0 on IP rate limit``) but one order on the account's order limits. For the algo-order endpoint (stop-loss /
take-profit) we charge 1 as well as one order, to be safe: the response headers correct any over-count within
the minute, an under-count would not be noticed until a 429. An endpoint missing from the table is charged
:data:`UNKNOWN_WEIGHT` and logged once, so a new call never runs unaccounted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger("fanout.live.weights")

WEIGHT_LIMIT_1M = 2400  # REQUEST_WEIGHT per minute per IP
ORDER_LIMIT_10S = 300  # ORDERS per 10 seconds per account
ORDER_LIMIT_1M = 1200  # ORDERS per minute per account
UNKNOWN_WEIGHT = 10


@dataclass(frozen=True, slots=True)
class Cost:
    """What one request costs.

    weight: with a ``symbol`` parameter (or for endpoints that take none).
    no_symbol: the weight without ``symbol`` (endpoints that then scan every symbol), else None.
    orders: how many orders it counts on the account's order limits.
    by_limit: ((largest ``limit``, weight), ...) ascending, for endpoints priced by their ``limit``.
    """

    weight: int
    no_symbol: int | None = None
    orders: int = 0
    by_limit: tuple[tuple[int, int], ...] = ()

    def of(self, params: dict) -> int:
        """The weight of a request with these query / body parameters."""
        if self.no_symbol is not None and not params.get("symbol"):
            return self.no_symbol
        if self.by_limit:
            try:
                limit = int(params.get("limit") or 500)
            except (TypeError, ValueError):
                limit = 500
            for top, weight in self.by_limit:
                if limit <= top:
                    return weight
            return self.by_limit[-1][1]
        return self.weight


_KLINES = Cost(1, by_limit=((99, 1), (499, 2), (1000, 5), (1500, 10)))
_LISTEN_KEY = Cost(1)

COSTS: dict[tuple[str, str], Cost] = {
    # market data (public)
    ("GET", "/fapi/v1/ping"): Cost(1),
    ("GET", "/fapi/v1/time"): Cost(1),
    ("GET", "/fapi/v1/exchangeInfo"): Cost(1),
    ("GET", "/fapi/v1/klines"): _KLINES,
    ("GET", "/fapi/v1/markPriceKlines"): _KLINES,
    ("GET", "/fapi/v1/ticker/24hr"): Cost(1, no_symbol=40),
    ("GET", "/fapi/v1/ticker/price"): Cost(1, no_symbol=2),
    ("GET", "/fapi/v2/ticker/price"): Cost(1, no_symbol=2),
    ("GET", "/fapi/v1/ticker/bookTicker"): Cost(2, no_symbol=5),
    ("GET", "/fapi/v1/premiumIndex"): Cost(1, no_symbol=10),
    ("GET", "/fapi/v1/depth"): Cost(2, by_limit=((50, 2), (100, 5), (500, 10), (1000, 20))),
    # account
    ("GET", "/fapi/v2/account"): Cost(5),
    ("GET", "/fapi/v3/account"): Cost(5),
    ("GET", "/fapi/v2/balance"): Cost(5),
    ("GET", "/fapi/v3/balance"): Cost(5),
    ("GET", "/fapi/v2/positionRisk"): Cost(5),
    ("GET", "/fapi/v3/positionRisk"): Cost(5),
    ("GET", "/fapi/v1/leverageBracket"): Cost(1),
    ("GET", "/fapi/v1/positionSide/dual"): Cost(30),
    ("GET", "/fapi/v1/multiAssetsMargin"): Cost(30),
    ("GET", "/fapi/v1/symbolConfig"): Cost(5),
    ("GET", "/fapi/v1/accountConfig"): Cost(5),
    ("GET", "/fapi/v1/commissionRate"): Cost(20),
    ("GET", "/fapi/v1/income"): Cost(30),
    ("GET", "/fapi/v1/userTrades"): Cost(5),
    ("POST", "/fapi/v1/marginType"): Cost(1),
    ("POST", "/fapi/v1/leverage"): Cost(1),
    # orders
    ("POST", "/fapi/v1/order"): Cost(0, orders=1),
    ("GET", "/fapi/v1/order"): Cost(1),
    ("DELETE", "/fapi/v1/order"): Cost(1),
    ("GET", "/fapi/v1/openOrders"): Cost(1, no_symbol=40),
    ("GET", "/fapi/v1/openOrder"): Cost(1),
    ("GET", "/fapi/v1/allOrders"): Cost(5),
    ("DELETE", "/fapi/v1/allOpenOrders"): Cost(1),
    ("POST", "/fapi/v1/batchOrders"): Cost(5, orders=5),
    ("POST", "/fapi/v1/algoOrder"): Cost(1, orders=1),
    ("GET", "/fapi/v1/algoOrder"): Cost(1),
    ("DELETE", "/fapi/v1/algoOrder"): Cost(1),
    ("GET", "/fapi/v1/openAlgoOrders"): Cost(1, no_symbol=40),
    ("GET", "/fapi/v1/allAlgoOrders"): Cost(5),
    ("DELETE", "/fapi/v1/algoOpenOrders"): Cost(1),
    # user-data stream
    ("POST", "/fapi/v1/listenKey"): _LISTEN_KEY,
    ("PUT", "/fapi/v1/listenKey"): _LISTEN_KEY,
    ("DELETE", "/fapi/v1/listenKey"): _LISTEN_KEY,
}

_unknown_seen: set[tuple[str, str]] = set()


def request_cost(method: str, path: str, params: dict) -> tuple[int, int]:
    """(IP weight, orders) of a request to ``path`` (``/fapi/v1/...``, any prefix before it is ignored)."""
    key = (method.upper(), _fapi_path(path))
    cost = COSTS.get(key)
    if cost is None:
        if key not in _unknown_seen:
            _unknown_seen.add(key)
            log.warning("no Binance weight known for %s %s; charging %d", key[0], key[1], UNKNOWN_WEIGHT)
        return UNKNOWN_WEIGHT, 0
    orders = cost.orders
    if key[1] == "/fapi/v1/batchOrders":
        orders = _batch_size(params) or orders
    return cost.of(params), orders


def _fapi_path(path: str) -> str:
    """``/prefix/fapi/v1/order`` → ``/fapi/v1/order`` (a relay or stand-in may put a prefix before it)."""
    for marker in ("/fapi/", "/futures/"):
        at = path.find(marker)
        if at >= 0:
            return path[at:]
    return path


def _batch_size(params: dict) -> int:
    text = str(params.get("batchOrders") or "")
    return text.count("{") if text else 0
