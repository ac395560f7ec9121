"""`fanout data markets`: refresh the market-rules snapshot (data/market_rules.json) from Binance USDⓈ-M.

exchangeInfo is public; the leverage brackets (GET /fapi/v1/leverageBracket) need an API key: the primary account's
BINANCE_API_KEY / BINANCE_API_SECRET (environment or --env-file). Without one, or when Binance refuses it, each
symbol keeps its brackets from the previous snapshot, symbols new since then get the fallback table, and the
command says so. Backtests and paper trading read the snapshot; live trading loads the venue's rules itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import ccxt

from marketdata import paths
from marketdata.cache import MarketDataError
from marketdata.client import make_exchange
from marketdata.rules import MarketRules
from marketdata.rules_build import SnapshotBuildError, build_snapshot, changes, fetch_bodies, write_snapshot
from marketdata.venue import usdm_base


def register(sub: Any) -> None:
    """Add ``data markets`` to the ``fanout data`` actions."""
    p = sub.add_parser(
        "markets", help="refresh the market-rules snapshot from Binance (exchangeInfo; brackets with an API key)",
        description="Fetch every USDⓈ-M perpetual's rules (GET /fapi/v1/exchangeInfo, public) and, with "
                    "BINANCE_API_KEY / BINANCE_API_SECRET, the leverage brackets (GET /fapi/v1/leverageBracket), "
                    "and write the dated snapshot backtests use. BINANCE_API_URL replaces https://fapi.binance.com.")
    p.add_argument("--out", default=None, metavar="PATH",
                   help="snapshot to write (default the data folder's market_rules.json); its brackets (or the "
                        "bundled snapshot's when it does not exist yet) are kept when none can be fetched")
    p.add_argument("--env-file", default="production.env", metavar="FILE",
                   help="settings file for the API key (default %(default)s, if present; real variables win)")
    p.add_argument("--dry-run", action="store_true", help="fetch and show the changes, write nothing")
    p.set_defaults(func=handle_markets)


def _keyed_client(env: dict[str, str], api_url: str | None) -> tuple[Any | None, str | None]:
    """A ccxt client with the primary account's key, or None and why not (never the key itself)."""
    from live.credentials import AccountConfigError, ApiCredentials, check_credential
    from live.exchange import build_exchange

    if not env.get("BINANCE_API_KEY") and not env.get("BINANCE_API_SECRET"):
        return None, None
    try:
        key = check_credential(env.get("BINANCE_API_KEY"), "BINANCE_API_KEY")
        secret = check_credential(env.get("BINANCE_API_SECRET"), "BINANCE_API_SECRET")
    except AccountConfigError as exc:
        return None, f"{exc}: no key to ask for leverage brackets"
    credentials = ApiCredentials(number=1, name="market rules", api_key=key, api_secret=secret, source="env",
                                 variable="BINANCE_API_KEY")
    return build_exchange(credentials, api_url=api_url), None


async def _fetch(env: dict[str, str], api_url: str | None) -> tuple[dict, list[dict] | None, str | None, str]:
    public = make_exchange(api_url)
    keyed, why = _keyed_client(env, api_url)
    try:
        info, brackets, reason = await fetch_bodies(public, keyed)
        return info, brackets, why or reason, usdm_base(public)
    finally:
        await public.close()
        if keyed is not None:
            await keyed.close()


def handle_markets(args: argparse.Namespace) -> int:
    from live.env import load_env

    out = Path(args.out) if args.out else paths.market_rules_file()
    try:
        env = load_env(args.env_file)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    api_url = env.get("BINANCE_API_URL") or None
    previous = None
    base_file = out if out.is_file() else paths.BUNDLED_DATA / "market_rules.json"  # brackets to keep without a key
    if base_file.is_file():
        try:
            previous = json.loads(base_file.read_text())
        except ValueError as exc:
            print(f"error: {base_file} is not a snapshot (not JSON: {exc}); move it away or pass --out",
                  file=sys.stderr)
            return 2
    try:
        info, brackets, no_brackets, base = asyncio.run(_fetch(env, api_url))
        snapshot = build_snapshot(
            info, brackets, exchange_info_source=f"GET {base}/fapi/v1/exchangeInfo",
            brackets_source=f"GET {base}/fapi/v1/leverageBracket" if brackets is not None else None,
            previous=previous)
    except (ccxt.BaseError, MarketDataError, SnapshotBuildError) as exc:
        reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        print(f"error: market rules not refreshed ({type(exc).__name__}: {reason}); {out} is unchanged",
              file=sys.stderr)
        return 1
    rules = MarketRules(snapshot, out)
    meta = snapshot["snapshot"]
    print(f"📏 {meta['exchange_info']['perpetuals']} perpetuals from exchangeInfo of {meta['exchange_info']['server_time']}")
    if brackets is not None:
        print(f"📐 leverage brackets: {meta['brackets']['symbols']} tables fetched")
    else:
        kept = (f"the previous snapshot's (of {meta['brackets']['date']}) are kept" if meta["brackets"].get("date")
                else "none were known before")
        print(f"⚠️  leverage brackets not fetched ({no_brackets}); {kept}")
    fallback = meta["brackets"]["fallback"]
    if fallback["symbols"]:
        print(f"⚠️  {fallback['symbols']} perpetual(s) without a bracket table use the fallback table "
              f"({fallback['table_of']}'s, shared by {fallback['shared_by']})")
    for line in changes(previous, snapshot):
        print(f"   {line}")
    if args.dry_run:
        print(f"dry run: {out} not written ({rules.name})")
        return 0
    write_snapshot(snapshot, out)
    print(f"✅ wrote {out}: snapshot {rules.name}")
    return 0
