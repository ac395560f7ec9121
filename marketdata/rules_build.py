"""Market-data room: build the market-rules snapshot (data/market_rules.json) from Binance's own response bodies.

The snapshot holds every USDⓈ-M perpetual of one ``GET /fapi/v1/exchangeInfo`` body (the fields ccxt's
``parse_market`` reads, all filters: tick, step, min/max quantity, market max, min notional, max orders and algo
orders) with its ``GET /fapi/v1/leverageBracket`` table. It is dated by the exchangeInfo's ``serverTime`` and names
the brackets' date, which may be older: brackets need an API key, so a refresh without one keeps the brackets of
the previous snapshot. A perpetual with no bracket table anywhere gets a fallback table, said so in the snapshot
(``brackets_fallback``) and by every run that uses it (:meth:`marketdata.rules.MarketRules.fallback_note`).

Build from the shared reference material::

    python -m marketdata.rules_build ../shared/reference/binance-usdm-universe/exchangeInfo.2024-10-20.json \
        ../shared/reference/binance-usdm-universe/leverageBracket.2023-08-01.json data/market_rules.json

``fanout data markets`` refreshes it from the venue (:func:`fetch_bodies`).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from marketdata.times import format_time

FORMAT = 2
"""Snapshot layout version; format 1 (7 symbols from ccxt fixtures, no date) is still read."""

INFO_FIELDS = (
    "symbol", "pair", "contractType", "deliveryDate", "onboardDate", "status", "baseAsset", "quoteAsset",
    "marginAsset", "pricePrecision", "quantityPrecision", "baseAssetPrecision", "quotePrecision", "triggerProtect",
    "filters", "orderTypes", "timeInForce",
)
"""The exchangeInfo fields a snapshot keeps per symbol: what ccxt reads (``parse_market``; ``orderTypes`` when it
checks an order), the filters and ``triggerProtect``; descriptive fields (underlyingSubType, liquidationFee, ...)
are dropped to keep the file small."""

_DATE_IN_NAME = re.compile(r"(\d{4}-\d{2}-\d{2})")


class SnapshotBuildError(ValueError):
    """A response body that is not what Binance sends; names the body and the field."""


def _perpetuals(exchange_info: dict, source: str) -> list[dict]:
    symbols = exchange_info.get("symbols") if isinstance(exchange_info, dict) else None
    if not isinstance(symbols, list):
        raise SnapshotBuildError(f"{source}: no 'symbols' list (not a GET /fapi/v1/exchangeInfo body)")
    out = []
    for i, entry in enumerate(symbols):
        if not isinstance(entry, dict) or not isinstance(entry.get("symbol"), str):
            raise SnapshotBuildError(f"{source}: symbols[{i}] has no 'symbol'")
        if entry.get("contractType") != "PERPETUAL":
            continue
        missing = [k for k in ("baseAsset", "quoteAsset", "marginAsset", "filters") if k not in entry]
        if missing:
            raise SnapshotBuildError(f"{source}: {entry['symbol']} lacks {', '.join(missing)}")
        out.append({k: entry[k] for k in INFO_FIELDS if k in entry})
    if not out:
        raise SnapshotBuildError(f"{source}: no PERPETUAL symbol in it")
    return sorted(out, key=lambda e: e["symbol"])


def _bracket_tables(brackets: list[dict], source: str) -> dict[str, list[dict]]:
    if not isinstance(brackets, list):
        raise SnapshotBuildError(f"{source}: not a list (not a GET /fapi/v1/leverageBracket body)")
    tables: dict[str, list[dict]] = {}
    for i, entry in enumerate(brackets):
        table = entry.get("brackets") if isinstance(entry, dict) else None
        if not isinstance(entry.get("symbol") if isinstance(entry, dict) else None, str) or not table:
            raise SnapshotBuildError(f"{source}: entry {i} has no 'symbol' and 'brackets'")
        for b in table:
            missing = [k for k in ("bracket", "initialLeverage", "notionalCap", "notionalFloor", "maintMarginRatio",
                                   "cum") if k not in b]
            if missing:
                raise SnapshotBuildError(f"{source}: {entry['symbol']} bracket lacks {', '.join(missing)}")
        tables[entry["symbol"]] = [{k: b[k] for k in ("bracket", "initialLeverage", "notionalCap", "notionalFloor",
                                                      "maintMarginRatio", "cum")} for b in table]
    return tables


def _shape(table: list[dict]) -> str:
    return json.dumps([[b["initialLeverage"], b["notionalCap"], b["notionalFloor"], b["maintMarginRatio"], b["cum"]]
                       for b in table])


def most_common_table(tables: dict[str, list[dict]]) -> tuple[list[dict], list[str]]:
    """The bracket table most symbols share (ties: the first symbol's in name order), and who shares it."""
    shapes = Counter(_shape(t) for t in tables.values())
    best = max(shapes.items(), key=lambda kv: kv[1])[0] if shapes else None
    sharing = sorted(s for s, t in tables.items() if _shape(t) == best)
    if not sharing:
        raise SnapshotBuildError("no leverage brackets at all: fetch them with an API key, or keep those of a "
                                 "previous snapshot")
    return tables[sharing[0]], sharing


def build_snapshot(
    exchange_info: dict,
    brackets: list[dict] | None,
    *,
    exchange_info_source: str,
    brackets_source: str | None = None,
    brackets_date: str | None = None,
    previous: dict | None = None,
) -> dict:
    """The snapshot dict for every PERPETUAL of ``exchange_info`` (a raw exchangeInfo body).

    brackets: a raw leverageBracket body (list of ``{symbol, brackets}``), or None when none could be fetched:
    then each symbol keeps its table from ``previous`` (a snapshot dict, format 2), with that table's origin.
    brackets_date: the day the brackets are from (``YYYY-MM-DD``; default the exchangeInfo's day).
    A symbol found in neither gets the most common table of the brackets used (``brackets_fallback`` says so).
    """
    perps = _perpetuals(exchange_info, exchange_info_source)
    server_time = exchange_info.get("serverTime")
    if not isinstance(server_time, int):
        raise SnapshotBuildError(f"{exchange_info_source}: no integer 'serverTime' to date the snapshot by")
    day = format_time(server_time)[:10]
    prev_symbols = (previous or {}).get("symbols", {})
    if brackets is not None:
        tables = _bracket_tables(brackets, brackets_source or "leverageBracket body")
        origin = f"leverageBracket {brackets_date or day}"
        bracket_meta = {"date": brackets_date or day, "source": brackets_source, "symbols": len(tables)}
    else:
        tables = {}
        origin = ""
        bracket_meta = dict((previous or {}).get("snapshot", {}).get("brackets") or {})
        bracket_meta["kept"] = "no leverageBracket body (it needs an API key): tables kept from the previous snapshot"
    known = dict(tables)
    for sid, entry in prev_symbols.items():
        if sid not in known and not entry.get("brackets_fallback"):
            known[sid] = entry["leverageBracket"]["brackets"]
    fallback_table, sharing = most_common_table(known)
    symbols: dict[str, Any] = {}
    for info in perps:
        sid = info["symbol"]
        entry: dict[str, Any] = {"exchangeInfo": info}
        if sid in tables:
            entry["leverageBracket"] = {"symbol": sid, "brackets": tables[sid]}
            entry["brackets_from"] = origin
        elif sid in known:
            entry["leverageBracket"] = {"symbol": sid, "brackets": known[sid]}
            prev = prev_symbols[sid]
            entry["brackets_from"] = prev.get("brackets_from") or prev.get("bracket_origin") or "previous snapshot"
        else:
            entry["brackets_fallback"] = True  # the table is the header's brackets.fallback (stored once)
        symbols[sid] = entry
    bracket_meta["fallback"] = {
        "why": "no bracket table for these symbols (brackets_fallback); the most common table of the brackets used",
        "symbols": sum(1 for e in symbols.values() if e.get("brackets_fallback")),
        "table_of": sharing[0], "shared_by": len(sharing), "brackets": fallback_table,
    }
    return {
        "snapshot": {
            "format": FORMAT,
            "venue": "binance-usdm",
            "date": day,
            "exchange_info": {"server_time": format_time(server_time), "source": exchange_info_source,
                              "perpetuals": len(perps)},
            "brackets": bracket_meta,
            "built_by": "python -m marketdata.rules_build EXCHANGE_INFO BRACKETS OUT, or fanout data markets",
        },
        "symbols": symbols,
    }


def dumps(snapshot: dict) -> str:
    """The snapshot as JSON text: the header indented, then one line per symbol (small, diffable per symbol)."""
    head = json.dumps(snapshot["snapshot"], indent=1, ensure_ascii=False)
    head = re.sub(r"\{[^{}\[\]]*\}", lambda m: json.dumps(json.loads(m.group(0)), ensure_ascii=False), head)
    lines = [json.dumps(sid) + ": " + json.dumps(entry, separators=(",", ":"), ensure_ascii=False)
             for sid, entry in snapshot["symbols"].items()]
    body = ",\n  ".join(lines)
    return f'{{\n "snapshot": {head.replace(chr(10), chr(10) + " ")},\n "symbols": {{\n  {body}\n }}\n}}\n'


def write_snapshot(snapshot: dict, path: str | Path) -> Path:
    """Write atomically (a temporary file beside ``path``, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(dumps(snapshot))
    os.replace(tmp, path)
    return path


def _filters(entry: dict) -> dict[str, dict[str, str]]:
    return {f["filterType"]: {k: str(v) for k, v in f.items() if k != "filterType"}
            for f in entry["exchangeInfo"].get("filters", [])}


def changes(old: dict | None, new: dict, shown: int = 8) -> list[str]:
    """What a refresh changed, one line per kind: symbols added and gone, symbols whose filters or brackets differ."""
    if not old or not old.get("symbols"):
        return [f"{len(new['symbols'])} perpetuals (no previous snapshot)"]
    before, after = old["symbols"], new["symbols"]

    def listed(ids: list[str]) -> str:
        return ", ".join(ids[:shown]) + (f" … {len(ids) - shown} more" if len(ids) > shown else "")

    lines = []
    added, gone = sorted(set(after) - set(before)), sorted(set(before) - set(after))
    if added:
        lines.append(f"{len(added)} new: {listed(added)}")
    if gone:
        lines.append(f"{len(gone)} no longer listed as perpetuals: {listed(gone)}")
    common = sorted(set(after) & set(before))
    filtered = []
    for sid in common:
        a, b = _filters(before[sid]), _filters(after[sid])
        kinds = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        if kinds:
            filtered.append(f"{sid} ({'/'.join(kinds)})")
    if filtered:
        lines.append(f"{len(filtered)} with changed filters: {listed(filtered)}")
    rebracketed = [sid for sid in common if not after[sid].get("brackets_fallback") and
                   not before[sid].get("brackets_fallback") and
                   _shape(before[sid]["leverageBracket"]["brackets"]) != _shape(after[sid]["leverageBracket"]["brackets"])]
    if rebracketed:
        lines.append(f"{len(rebracketed)} with changed leverage brackets: {listed(rebracketed)}")
    return lines or ["no rule changed"]


def date_from_name(path: str | Path) -> str | None:
    """``leverageBracket.2023-08-01.json`` → ``2023-08-01`` (None without a date in the name)."""
    m = _DATE_IN_NAME.search(Path(path).name)
    return m.group(1) if m else None


async def fetch_bodies(public: Any, keyed: Any | None) -> tuple[dict, list[dict] | None, str | None]:
    """The raw exchangeInfo body (through the keyless ccxt client ``public``) and, when ``keyed`` (a ccxt client
    with an API key) is given, the raw leverageBracket body; the third value says why there are no brackets.
    Errors of the exchangeInfo request propagate; a refused bracket request is reported, not raised."""
    import ccxt

    info = await public.fapiPublicGetExchangeInfo()
    if keyed is None:
        return info, None, "no API key (BINANCE_API_KEY / BINANCE_API_SECRET): leverageBracket needs one"
    try:
        return info, await keyed.fapiPrivateGetLeverageBracket(), None
    except ccxt.BaseError as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        return info, None, f"GET /fapi/v1/leverageBracket failed: {type(exc).__name__} {first}".strip()


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m marketdata.rules_build EXCHANGE_INFO_JSON LEVERAGE_BRACKET_JSON OUT_JSON",
              file=sys.stderr)
        return 2
    info_path, brackets_path, out = (Path(a) for a in argv)
    snapshot = build_snapshot(
        json.loads(info_path.read_text()), json.loads(brackets_path.read_text()),
        exchange_info_source=info_path.name, brackets_source=brackets_path.name,
        brackets_date=date_from_name(brackets_path),
    )
    write_snapshot(snapshot, out)
    meta = snapshot["snapshot"]
    print(f"wrote {out}: {meta['exchange_info']['perpetuals']} perpetuals, rules of {meta['date']}, brackets of "
          f"{meta['brackets']['date']} ({meta['brackets']['fallback']['symbols']} on the fallback table)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
