"""Market-data room: the keyless ccxt client for Binance USDⓈ-M public data (klines, mark-price klines, funding
rates): its venue comes from marketdata/venue.py, its markets from the rules snapshot when it has them.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import ccxt

from marketdata import paths
from marketdata.cache import MarketDataError
from marketdata.rules import MarketRules
from marketdata.venue import select_venue


def make_exchange(api_url: str | None = None) -> Any:
    """A public (keyless) ``ccxt.async_support.binanceusdm``; ``api_url`` (BINANCE_API_URL) replaces the base of
    every USDⓈ-M endpoint (a stand-in server or a relay), as :func:`marketdata.venue.select_venue` does for the
    live client. MarketDataError for a bad URL. Close it with ``await exchange.close()``."""
    import ccxt.async_support as ccxt_async

    exchange = ccxt_async.binanceusdm({
        "enableRateLimit": True,
        "options": {"fetchCurrencies": False, "adjustForTimeDifference": False},
    })
    try:
        select_venue(exchange, demo=False, api_url=api_url)
    except ValueError as exc:
        raise MarketDataError(str(exc)) from None
    return exchange


@functools.lru_cache(maxsize=4)
def _snapshot(path: str, mtime_ns: int) -> MarketRules:
    return MarketRules.load(path)


def _offline_market(exchange: Any, ident: str, markets_file: Path | None) -> dict | None:
    """The market parsed from the rules snapshot's exchangeInfo entry, or None when the snapshot lacks it."""
    path = Path(markets_file) if markets_file else paths.market_rules_file()
    try:
        info = _snapshot(str(path), path.stat().st_mtime_ns).exchange_info(ident)
    except (OSError, ValueError):  # no snapshot there, or not JSON: ask the exchange
        return None
    return exchange.parse_market(info) if info else None


async def resolve_market(exchange: Any, symbol: str, markets_file: Path | None = None) -> dict:
    """The ccxt market of ``symbol`` (unified, ``BTC/USDT:USDT``): offline from the rules snapshot (``markets_file``,
    default :func:`marketdata.paths.market_rules_file`) when it has it, else via ``load_markets``. One exchange can
    serve many symbols in turn (each is added to its markets). MarketDataError when Binance has no such
    USDⓈ-M perpetual."""
    ident = symbol.split(":")[0].replace("/", "")
    if symbol not in (exchange.markets or {}):
        market = _offline_market(exchange, ident, markets_file)
        if market is not None and market.get("symbol") == symbol:
            exchange.set_markets([*(exchange.markets or {}).values(), market])
        else:
            await exchange.load_markets(reload=bool(exchange.markets))
    try:
        market = exchange.market(symbol)
    except ccxt.BadSymbol:
        raise MarketDataError(f"symbol: Binance USDⓈ-M has no market {symbol} ({ident}); check the spelling") from None
    if not (market.get("swap") and market.get("linear")):
        raise MarketDataError(f"symbol: {symbol} is not a USDⓈ-M perpetual")
    return market
