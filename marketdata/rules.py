"""Market-data room: the market-rules snapshot (data/market_rules.json) read as ccxt markets and leverage tiers.

The snapshot (built by marketdata/rules_build.py, refreshed by ``fanout data markets``) holds every Binance
USDⓈ-M perpetual of one exchangeInfo with its leverage brackets, and says which day it is from. A symbol whose
brackets are the fallback table is listed by :meth:`MarketRules.fallback_note`; a symbol the snapshot lacks is
refused with its name and the snapshot's date (:meth:`MarketRules.check_symbols`, :meth:`MarketRules.market`).
Backtests and paper trading use it; live trading always loads the venue's current rules.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import ccxt

from marketdata import paths


class UnknownSymbolError(ValueError):
    """Symbols the snapshot has no rules for; the message names them, the snapshot and how to refresh it."""


@dataclass
class MarketRules:
    """ccxt-shaped markets and leverage tiers parsed from the snapshot, plus a ccxt helper for precision.

    snapshot: the parsed JSON; path: where it was read from (None when built in memory).
    """

    snapshot: dict = field(repr=False)
    path: Path | None = None

    @classmethod
    def load(cls, path: str | Path | None = None) -> MarketRules:
        """Read the snapshot at ``path``, by default :func:`marketdata.paths.market_rules_file` (FANOUT_DATA_DIR)."""
        p = Path(path) if path else paths.market_rules_file()
        try:
            return cls(json.loads(p.read_text()), p)
        except FileNotFoundError:
            raise FileNotFoundError(f"market rules snapshot not found: {p}") from None

    def __getstate__(self) -> dict:
        """Pickled as snapshot and path only (to backtest worker processes): the cached ccxt views are rebuilt."""
        return {"snapshot": self.snapshot, "path": self.path}

    # ---------------------------------------------------------------- what the snapshot is
    @property
    def meta(self) -> dict:
        """The snapshot's header (format, date, exchangeInfo and brackets sources); empty for format 1."""
        return self.snapshot.get("snapshot") or {}

    @property
    def date(self) -> str | None:
        """The day of the exchangeInfo the rules come from (``2024-10-20``); None for an undated snapshot."""
        return self.meta.get("date")

    @property
    def brackets_date(self) -> str | None:
        return (self.meta.get("brackets") or {}).get("date")

    @property
    def name(self) -> str:
        """``binance-usdm 2024-10-20 (brackets 2023-08-01)``: how runs name the snapshot they used."""
        if not self.date:
            return "binance-usdm, undated snapshot"
        brackets = f" (brackets {self.brackets_date})" if self.brackets_date and self.brackets_date != self.date else ""
        return f"{self.meta.get('venue', 'binance-usdm')} {self.date}{brackets}"

    def describe(self) -> dict:
        """What summary.json records about the snapshot a run used."""
        return {
            "name": self.name, "date": self.date, "brackets_date": self.brackets_date,
            "path": str(self.path) if self.path else None, "symbols": len(self.ids),
        }

    @cached_property
    def ids(self) -> frozenset[str]:
        """Binance market ids in the snapshot (``BTCUSDT``)."""
        return frozenset(self.snapshot.get("symbols", {}))

    @cached_property
    def fallback_ids(self) -> frozenset[str]:
        """Market ids whose leverage brackets are the fallback table (no real table was available)."""
        return frozenset(sid for sid, e in self.snapshot.get("symbols", {}).items() if e.get("brackets_fallback"))

    # ---------------------------------------------------------------- symbols
    @staticmethod
    def market_id(symbol: str) -> str:
        """``BTC/USDT:USDT`` or ``BTCUSDT`` → ``BTCUSDT``."""
        return symbol.split(":")[0].replace("/", "")

    def check_symbols(self, symbols: Iterable[str]) -> None:
        """UnknownSymbolError naming every symbol the snapshot lacks (and the snapshot's date and path)."""
        missing = sorted({s for s in symbols if self.market_id(s) not in self.ids})
        if missing:
            shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            raise UnknownSymbolError(
                f"{shown} {'is' if len(missing) == 1 else 'are'} not in the market-rules snapshot {self.name} ({self.path or 'in memory'}, "
                f"{len(self.ids)} perpetuals); a symbol listed after that day needs a newer snapshot: "
                f"`fanout data markets` refreshes it")
        return None

    def fallback_note(self, symbols: Iterable[str]) -> str | None:
        """A line naming the given symbols whose brackets are the fallback table, None when there are none."""
        ids = sorted({self.market_id(s) for s in symbols} & self.fallback_ids)
        if not ids:
            return None
        fb = (self.meta.get("brackets") or {}).get("fallback") or {}
        return (f"no leverage brackets for {', '.join(ids)} in snapshot {self.name}: using the fallback table "
                f"({fb.get('table_of', '?')}'s, the most common one); leverage limits and liquidation prices are "
                f"approximate for {'them' if len(ids) > 1 else 'it'}")

    # ---------------------------------------------------------------- ccxt views
    @cached_property
    def helper(self) -> ccxt.binanceusdm:
        """A network-less ccxt binanceusdm used only to parse markets and format amounts/prices exactly as live."""
        ex = ccxt.binanceusdm({"options": {"fetchCurrencies": False}})
        markets = [ex.parse_market(s["exchangeInfo"]) for s in self.snapshot["symbols"].values()]
        ex.set_markets(markets)
        return ex

    @property
    def markets(self) -> dict[str, dict]:
        return self.helper.markets

    def market(self, symbol: str) -> dict:
        """ccxt's market of ``symbol``; ccxt.BadSymbol naming the symbol and the snapshot when it is not there."""
        try:
            return self.helper.market(symbol)
        except ccxt.BadSymbol:
            try:
                self.check_symbols([symbol])
            except UnknownSymbolError as exc:
                raise ccxt.BadSymbol(f"binanceusdm {exc}") from None
            raise

    @cached_property
    def tiers(self) -> dict[str, list[dict]]:
        """ccxt leverage tiers (fetch_market_leverage_tiers shape) per unified symbol (all ~340 in ~20 ms)."""
        return {symbol: self.helper.parse_market_leverage_tiers(
                    {"symbol": market["id"], "brackets": self.raw_brackets(symbol)}, market)
                for symbol, market in self.markets.items()}

    def exchange_info(self, market_id: str) -> dict | None:
        """The exchangeInfo entry of ``market_id`` (``BTCUSDT``) as the snapshot keeps it, None when absent."""
        entry = self.snapshot.get("symbols", {}).get(market_id)
        return entry.get("exchangeInfo") if isinstance(entry, dict) else None

    def raw_brackets(self, symbol: str) -> list[dict]:
        """The GET /fapi/v1/leverageBracket table of ``symbol`` (the fallback table when it has none)."""
        entry = self.snapshot["symbols"][self.market(symbol)["id"]]
        if entry.get("brackets_fallback"):
            return self.meta["brackets"]["fallback"]["brackets"]
        return entry["leverageBracket"]["brackets"]
