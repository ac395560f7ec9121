"""Market-data room: Binance USDⓈ-M market rules: build the data/market_rules.json snapshot and load it as ccxt markets and tiers.

Build (from the reference material, not from memory)::

    python -m marketdata.rules ../shared/reference/binance-usdm data/market_rules.json

The snapshot holds, per symbol, the raw exchangeInfo symbol entry (as Binance sends it, numbers as strings the way
ccxt's fixture stored them) and the GET /fapi/v1/leverageBracket entry. Corrections to the fixture are listed in
the snapshot's ``_source``: BTCUSDT MIN_NOTIONAL 100 and ETHUSDT 20 (real -4164 rejections), brackets for symbols
without a real table derived from ccxt's [notionalFloor, maintMarginRatio] pairs (cum by Binance's formula,
initialLeverage = the largest of Binance's ladder (125, 100, 75, 50, 25, 20, 10, …) not above
1 / (2 × maintMarginRatio), which reproduces every BTCUSDT bracket).
"""

from __future__ import annotations

import copy
import json
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import ccxt

from marketdata import paths

MIN_NOTIONAL_OBSERVED = {"BTCUSDT": "100", "ETHUSDT": "20"}


_LEVERAGE_STEPS = (125, 100, 75, 50, 25, 20, 10, 5, 4, 3, 2, 1)


def _standard_leverage(ceiling: float) -> int:
    """Binance's bracket leverages are from a fixed ladder; take the largest not above the ceiling."""
    return next((lev for lev in _LEVERAGE_STEPS if lev <= ceiling + 1e-9), 1)


def _derive_brackets(pairs: list[list[str]]) -> list[dict]:
    brackets, cum, prev_mmr = [], 0.0, 0.0
    for i, (floor, mmr) in enumerate(pairs):
        floor_f, mmr_f = float(floor), float(mmr)
        cum += floor_f * (mmr_f - prev_mmr)
        cap = float(pairs[i + 1][0]) if i + 1 < len(pairs) else floor_f * 2 or 1e9
        brackets.append({
            "bracket": i + 1, "initialLeverage": _standard_leverage(1 / (2 * mmr_f)), "notionalCap": cap,
            "notionalFloor": floor_f, "maintMarginRatio": mmr_f, "cum": round(cum, 8),
        })
        prev_mmr = mmr_f
    return brackets


def build_snapshot(reference: Path) -> dict:
    """Assemble the snapshot from ../shared/reference/binance-usdm."""
    markets = json.loads((reference / "markets.ccxt-fixtures.json").read_text())["markets"]
    responses = json.loads((reference / "responses.ccxt-fixtures.json").read_text())
    rules = json.loads((reference / "market-rules.json").read_text())
    pairs = responses["options"]["leverageBrackets"]
    symbols: dict[str, Any] = {}
    for unified, market in markets.items():
        if "info" not in market:
            continue  # the expired BTC 231229 future stub has no raw entry
        info = copy.deepcopy(market["info"])
        if info.get("contractType") != "PERPETUAL" or not unified.endswith("/USDT:USDT"):
            continue
        sid = info["symbol"]
        for f in info["filters"]:
            if f["filterType"] == "MIN_NOTIONAL" and sid in MIN_NOTIONAL_OBSERVED:
                f["notional"] = MIN_NOTIONAL_OBSERVED[sid]
        if sid == "BTCUSDT":
            raw = rules["BTCUSDT"]["leverage_brackets"]["fapi_v1_leverageBracket_2024_10"]["brackets"]
            brackets = [{k: float(v) if k in ("notionalCap", "notionalFloor", "maintMarginRatio", "cum") else int(v)
                         for k, v in b.items()} for b in raw]
            origin = "real (freqtrade capture of GET /fapi/v1/leverageBracket, 2024-10)"
        elif unified in pairs:
            brackets = _derive_brackets(pairs[unified])
            origin = "derived from ccxt fixture [notionalFloor, maintMarginRatio] pairs"
        else:
            # no table at all: Binance's common small-cap schedule shape, from the LTC/ADA pairs
            brackets = _derive_brackets(pairs["LTC/USDT:USDT"])
            origin = "no table in the reference; LTCUSDT's derived table used"
        symbols[sid] = {
            "exchangeInfo": info,
            "leverageBracket": {"symbol": sid, "brackets": brackets},
            "bracket_origin": origin,
        }
    return {
        "_source": {
            "built_by": "python -m marketdata.rules <reference dir> data/market_rules.json",
            "reference": "shared/reference/binance-usdm (ccxt fixtures, Binance docs, public captures)",
            "corrections": {
                "MIN_NOTIONAL": "BTCUSDT 100, ETHUSDT 20: real -4164 rejections (errors.json); fixture said 5",
                "brackets": "BTCUSDT real 2024-10 table; others derived (see bracket_origin per symbol)",
            },
        },
        "symbols": symbols,
    }


@dataclass
class MarketRules:
    """ccxt-shaped markets and leverage tiers parsed from the snapshot, plus a ccxt helper for precision."""

    snapshot: dict

    @classmethod
    def load(cls, path: str | Path | None = None) -> MarketRules:
        """Read the snapshot at ``path``, by default :func:`marketdata.paths.market_rules_file` (FANOUT_DATA_DIR)."""
        p = Path(path) if path else paths.market_rules_file()
        try:
            return cls(json.loads(p.read_text()))
        except FileNotFoundError:
            raise FileNotFoundError(f"market rules snapshot not found: {p}") from None

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

    @cached_property
    def tiers(self) -> dict[str, list[dict]]:
        """ccxt leverage tiers (fetch_market_leverage_tiers shape) per unified symbol."""
        out = {}
        for sid, entry in self.snapshot["symbols"].items():
            market = self.helper.markets_by_id[sid][0]
            out[market["symbol"]] = self.helper.parse_market_leverage_tiers(entry["leverageBracket"], market)
        return out

    def exchange_info(self, market_id: str) -> dict | None:
        """The raw exchangeInfo entry of ``market_id`` (``BTCUSDT``) as Binance sends it, None when not in the snapshot."""
        entry = self.snapshot.get("symbols", {}).get(market_id)
        return entry.get("exchangeInfo") if isinstance(entry, dict) else None

    def raw_brackets(self, symbol: str) -> list[dict]:
        return self.snapshot["symbols"][self.helper.market(symbol)["id"]]["leverageBracket"]["brackets"]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m marketdata.rules REFERENCE_DIR OUT_JSON", file=sys.stderr)
        return 2
    snap = build_snapshot(Path(argv[0]))
    Path(argv[1]).write_text(json.dumps(snap, indent=1, sort_keys=False) + "\n")
    print(f"wrote {argv[1]}: {', '.join(snap['symbols'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
