"""Market-data room: the keyless ccxt client for Binance USDⓈ-M public data (klines today; funding and mark prices
use the same client): its venue comes from marketdata/venue.py, its markets from the rules snapshot when it has them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ccxt

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


def _offline_market(exchange: Any, ident: str, markets_file: Path | None) -> dict | None:
    """The market parsed from the rules snapshot's exchangeInfo entry, or None when the snapshot lacks it."""
    try:
        info = MarketRules.load(markets_file).exchange_info(ident)
    except (OSError, ValueError):  # no snapshot there, or not JSON: ask the exchange
        return None
    return exchange.parse_market(info) if info else None


async def resolve_market(exchange: Any, symbol: str, markets_file: Path | None = None) -> dict:
    """The ccxt market of ``symbol`` (unified, ``BTC/USDT:USDT``): offline from the rules snapshot (``markets_file``,
    default :func:`marketdata.paths.market_rules_file`) when it has it, else via ``load_markets``.
    MarketDataError when Binance has no such USDⓈ-M perpetual."""
    ident = symbol.split(":")[0].replace("/", "")
    if not exchange.markets:
        market = _offline_market(exchange, ident, markets_file)
        if market is not None and market.get("symbol") == symbol:
            exchange.set_markets([market])
        else:
            await exchange.load_markets()
    try:
        market = exchange.market(symbol)
    except ccxt.BadSymbol:
        raise MarketDataError(f"symbol: Binance USDⓈ-M has no market {symbol} ({ident}); check the spelling") from None
    if not (market.get("swap") and market.get("linear")):
        raise MarketDataError(f"symbol: {symbol} is not a USDⓈ-M perpetual")
    return market
