"""Tests room: Binance USDⓈ-M response bodies in the shapes of shared/reference/binance-usdm (stand-in only).

Field sets and types follow the reference: exchangeInfo symbol entries from data/market_rules.json with the
numeric fields Binance sends as numbers turned back into numbers (the ccxt fixture stringified them); order
bodies like the real ``createOrders`` fixture (newOrderRespType=RESULT); algo bodies like the docs / SDK
examples of ``/fapi/v1/algoOrder``; v3 account and positionRisk like the docs examples; error bodies and HTTP
statuses from errors.json.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MARKET_RULES = ROOT / "data" / "market_rules.json"

# errors.json: exact messages and the HTTP status each arrives with
ERRORS: dict[int, tuple[int, str]] = {
    -1003: (429, "Too many requests; current limit is 2400 requests per minute. Please use the websocket for "
                 "live updates to avoid polling the API."),
    -1007: (408, "Timeout waiting for response from backend server. Send status unknown; execution status unknown."),
    -1022: (400, "Signature for this request is not valid."),
    -1111: (400, "Precision is over the maximum defined for this asset."),
    -1116: (400, "Invalid orderType."),
    -1121: (400, "Invalid symbol."),
    -2011: (400, "Unknown order sent."),
    -2013: (400, "Order does not exist."),
    -2015: (401, "Invalid API-key, IP, or permissions for action."),
    -2019: (400, "Margin is insufficient."),
    -2021: (400, "Order would immediately trigger."),
    -2022: (400, "ReduceOnly Order is rejected."),
    -4028: (400, "Leverage 20 is not valid"),
    -4003: (400, "Quantity less than or equal to zero."),
    -4005: (400, "Quantity greater than max quantity."),
    -4046: (400, "No need to change margin type."),
    -4048: (400, "Margin type cannot be changed if there exists position."),
    -4116: (400, "ClientOrderId is duplicated."),
    -4120: (400, "Order type not supported for this endpoint. Please use the Algo Order API endpoints instead."),
    -4164: (400, "Order's notional must be no smaller than {min} (unless you choose reduce only)."),
}

_INT_FIELDS = ("deliveryDate", "onboardDate", "pricePrecision", "quantityPrecision", "baseAssetPrecision",
               "quotePrecision", "settlePlan", "maxMoveOrderLimit")


def error(code: int, **fmt: Any) -> tuple[int, dict]:
    status, msg = ERRORS[code]
    return status, {"code": code, "msg": msg.format(**fmt) if fmt else msg}


STANDIN_SYMBOLS = ("BTCUSDT", "ETHUSDT", "LTCUSDT", "ADAUSDT", "XRPUSDT", "DOGEUSDT", "TRXUSDT")
"""The perpetuals the stand-in lists: a few, so each recorded exchangeInfo body stays small (the snapshot has ~340)."""


def load_rules(path: Path = MARKET_RULES) -> dict[str, dict]:
    """{symbol id: {'exchangeInfo': raw entry, 'leverageBracket': raw entry}} of :data:`STANDIN_SYMBOLS` from
    data/market_rules.json (each has a real bracket table there)."""
    symbols = json.loads(path.read_text())["symbols"]
    return {sid: symbols[sid] for sid in STANDIN_SYMBOLS}


def symbol_entry(raw: dict, *, min_notional: str | None = None) -> dict:
    """An exchangeInfo symbol entry with Binance's number types; optionally a different MIN_NOTIONAL."""
    entry = copy.deepcopy(raw)
    for key in _INT_FIELDS:
        if key in entry:
            entry[key] = int(entry[key])
    for f in entry["filters"]:
        if f["filterType"] in ("MAX_NUM_ORDERS", "MAX_NUM_ALGO_ORDERS"):
            f["limit"] = int(f["limit"])
        if f["filterType"] == "PERCENT_PRICE":
            f["multiplierDecimal"] = int(f["multiplierDecimal"])
        if f["filterType"] == "MIN_NOTIONAL" and min_notional is not None:
            f["notional"] = min_notional
    return entry


def exchange_info(symbols: list[dict], now: int) -> dict:
    return {
        "timezone": "UTC",
        "serverTime": now,
        "futuresType": "U_MARGINED",
        "rateLimits": [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
            {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
        ],
        "exchangeFilters": [],
        "assets": [
            {"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"},
            {"asset": "USDC", "marginAvailable": True, "autoAssetExchange": "-10000"},
            {"asset": "BNB", "marginAvailable": True, "autoAssetExchange": "-10"},
        ],
        "symbols": symbols,
    }


def brackets(raw: dict) -> dict:
    """GET /fapi/v1/leverageBracket entry: bracket/initialLeverage as integers, the rest as numbers."""
    out = {"symbol": raw["symbol"], "notionalCoef": 1.0, "brackets": []}
    for b in raw["brackets"]:
        out["brackets"].append({
            "bracket": int(b["bracket"]), "initialLeverage": int(b["initialLeverage"]),
            "notionalCap": _num(b["notionalCap"]), "notionalFloor": _num(b["notionalFloor"]),
            "maintMarginRatio": float(b["maintMarginRatio"]), "cum": float(b["cum"]),
        })
    return out


def _num(v: Any) -> int | float:
    f = float(v)
    return int(f) if f.is_integer() else f


def f8(x: float) -> str:
    return f"{x:.8f}"


def order_body(o: dict, *, with_time: bool = False) -> dict:
    """A /fapi/v1/order body (RESULT response type) from the stand-in's order record."""
    p, q = o["price_decimals"], o["qty_decimals"]
    body = {
        "orderId": o["orderId"], "symbol": o["symbol"], "status": o["status"], "clientOrderId": o["clientOrderId"],
        "price": f"{0:.{p}f}", "avgPrice": f"{o['avgPrice']:.5f}", "origQty": f"{o['origQty']:.{q}f}",
        "executedQty": f"{o['executedQty']:.{q}f}", "cumQty": f"{o['executedQty']:.{q}f}",
        "cumQuote": f"{o['cumQuote']:.5f}", "timeInForce": "GTC", "type": "MARKET",
        "reduceOnly": o["reduceOnly"], "closePosition": False, "side": o["side"], "positionSide": "BOTH",
        "stopPrice": f"{0:.{p}f}", "workingType": "CONTRACT_PRICE", "priceProtect": False, "origType": "MARKET",
        "priceMatch": "NONE", "selfTradePreventionMode": "EXPIRE_MAKER", "goodTillDate": 0,
        "updateTime": o["updateTime"],
    }
    if with_time:
        body["time"] = o["time"]
        del body["cumQty"]  # the query shape has no cumQty (docs GET /fapi/v1/order)
    return body


def algo_body(a: dict, *, query: bool = False) -> dict:
    """A /fapi/v1/algoOrder body: the create shape, or the query shape (adds actualOrderId / actualPrice …)."""
    p, q = a["price_decimals"], a["qty_decimals"]
    body = {
        "algoId": a["algoId"], "clientAlgoId": a["clientAlgoId"], "algoType": "CONDITIONAL",
        "orderType": a["orderType"], "symbol": a["symbol"], "side": a["side"], "positionSide": "BOTH",
        "timeInForce": "GTC", "quantity": f"{a['quantity']:.{q}f}", "algoStatus": a["algoStatus"],
        "triggerPrice": f"{a['triggerPrice']:.{p}f}", "price": f"{0:.{p}f}", "icebergQuantity": None,
        "selfTradePreventionMode": "EXPIRE_MAKER", "workingType": a["workingType"], "priceMatch": "NONE",
        "closePosition": False, "priceProtect": False, "reduceOnly": a["reduceOnly"],
    }
    if query:
        body.update({
            "actualOrderId": str(a["actualOrderId"] or ""), "actualPrice": f"{a['actualPrice']:.5f}",
            "tpTriggerPrice": "0.000", "tpPrice": "0.000", "slTriggerPrice": "0.000", "slPrice": "0.000",
            "tpOrderType": "",
        })
    else:
        body.update({"activatePrice": "", "callbackRate": ""})
    body.update({"createTime": a["createTime"], "updateTime": a["updateTime"], "triggerTime": a["triggerTime"],
                 "goodTillDate": 0})
    return body


def position_row(pos: dict, mark: float) -> dict:
    """GET /fapi/v3/positionRisk row (one-way mode, isolated)."""
    amt, entry = pos["amt"], pos["entryPrice"]
    pnl = (mark - entry) * amt
    notional = amt * mark
    return {
        "symbol": pos["symbol"], "positionSide": "BOTH", "positionAmt": f"{amt:.{pos['qty_decimals']}f}",
        "entryPrice": f"{entry:.1f}", "breakEvenPrice": f"{pos['breakEven']:.8f}".rstrip("0").rstrip("."),
        "markPrice": f8(mark), "unRealizedProfit": f8(pnl), "liquidationPrice": f8(pos["liquidationPrice"]),
        "isolatedMargin": f8(pos["isolatedWallet"] + pnl), "notional": f8(notional), "marginAsset": "USDT",
        "isolatedWallet": f8(pos["isolatedWallet"]), "initialMargin": f8(abs(notional) / pos["leverage"]),
        "maintMargin": f8(pos["maintMargin"]), "positionInitialMargin": f8(abs(notional) / pos["leverage"]),
        "openOrderInitialMargin": "0", "adl": 0, "bidNotional": "0", "askNotional": "0",
        "updateTime": pos["updateTime"],
    }


def account_v3(*, wallet: float, isolated: float, unrealized: float, initial: float, maint: float,
               positions: list[dict], update_time: int) -> dict:
    """GET /fapi/v3/account, single-asset mode. USDC is an untouched asset (updateTime 0), as Binance sends it."""
    available = wallet - isolated
    margin_balance = wallet + unrealized
    usdt = {
        "asset": "USDT", "walletBalance": f8(wallet), "unrealizedProfit": f8(unrealized),
        "marginBalance": f8(margin_balance), "maintMargin": f8(maint), "initialMargin": f8(initial),
        "positionInitialMargin": f8(initial), "openOrderInitialMargin": f8(0), "crossWalletBalance": f8(available),
        "crossUnPnl": f8(0), "availableBalance": f8(available), "maxWithdrawAmount": f8(available),
        "updateTime": update_time,
    }
    usdc = {k: (f8(0) if isinstance(v, str) else v) for k, v in usdt.items()} | {"asset": "USDC", "updateTime": 0}
    return {
        "totalInitialMargin": f8(initial), "totalMaintMargin": f8(maint), "totalWalletBalance": f8(wallet),
        "totalUnrealizedProfit": f8(unrealized), "totalMarginBalance": f8(margin_balance),
        "totalPositionInitialMargin": f8(initial), "totalOpenOrderInitialMargin": f8(0),
        "totalCrossWalletBalance": f8(available), "totalCrossUnPnl": f8(0), "availableBalance": f8(available),
        "maxWithdrawAmount": f8(available), "assets": [usdt, usdc], "positions": positions,
    }
