"""Tests room: record tests/cassettes/*.yaml against the local stand-in, or against Binance demo trading.

    .venv/bin/python scripts/record_cassettes.py                      # every scenario, local stand-in
    .venv/bin/python scripts/record_cassettes.py seed timeout         # some of them
    .venv/bin/python scripts/record_cassettes.py --live-demo          # demo-capable scenarios, real demo venue

``--live-demo`` reads the demo keys like the product does (BINANCE_API_KEY / BINANCE_API_SECRET,
BINANCE_API_KEY_2 / …_2, …; optionally from an env file), derives the signal from the current BTCUSDT price so
that it makes sense on the real market, records, then cancels the trigger orders and closes the positions it
opened (outside the cassette). Keys and signatures never reach the cassette (see tests/live/cassette_support.py).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from datetime import UTC, datetime
from typing import Any

import ccxt
import ccxt.async_support as ccxt_async

from live.exchange import close_all, create_live_exchanges
from tests.live.cassette_support import label_keys, use_cassette
from tests.standin.scenarios import (
    SCENARIOS,
    SYMBOL_ID,
    DummyCredentials,
    Scenario,
    break_brackets,
    build_standin,
    dummy_credentials,
    run_scenario,
)

log = logging.getLogger("fanout.record")
SYMBOL = "BTC/USDT:USDT"


def _metadata(scenario: Scenario, venue: str, signal: dict, balances: Any) -> dict:
    return {
        "scenario": scenario.name, "description": scenario.description, "venue": venue, "signal": signal,
        "accounts": scenario.names if balances is None else [n for n, _ in balances],
        "balances": None if balances is None else dict(balances), "timeout_ms": scenario.timeout_ms,
        "ccxt": ccxt.__version__, "recorded": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _report(name: str, outcome: Any) -> None:
    for r in outcome.summary.results:
        print(f"  {name:<20} {r.account:<12} {r.status:<8} qty={r.quantity:g} closed={r.closed} {r.reason[:90]}")
    for rep in outcome.reports:
        print(f"  {name:<20} {rep.account:<12} reconcile: protected={rep.protected} closed={rep.closed} "
              f"orphans={len(rep.orphans_cancelled)} errors={rep.errors}")


async def record_standin(scenario: Scenario, port: int) -> bool:
    creds = dummy_credentials(scenario.names)
    label_keys(creds)
    standin = build_standin(scenario, creds)
    url = await standin.start(port=port)
    try:
        with use_cassette(scenario.cassette, record=True) as cassette:
            cassette.get_metadata("fanout", _metadata(scenario, "stand-in", scenario.signal, scenario.balances))
            accounts = await create_live_exchanges(creds, demo=False, api_url=url, timeout_ms=scenario.timeout_ms)
            try:
                outcome = await run_scenario(scenario, accounts,
                                             move_price=lambda p: standin.set_price(SYMBOL_ID, p),
                                             break_brackets=lambda: break_brackets(standin))
            finally:
                await close_all(accounts)
            await asyncio.sleep(0)  # let the stand-in finish any late replies before the cassette closes
    finally:
        await standin.stop()
    _report(scenario.name, outcome)
    if standin.unknown:
        print(f"  ! stand-in had no handler for: {sorted(set(standin.unknown))}", file=sys.stderr)
        return False
    return True


# ------------------------------------------------------------------------------------------------ demo venue
def _demo_credentials(env_file: str | None) -> list[Any]:
    from live.accounts import load_env_accounts  # the product's own loader (BINANCE_API_KEY[_N] ...)

    env = dict(os.environ)
    if env_file:
        from dotenv import dotenv_values
        env = {**{k: v for k, v in dotenv_values(env_file).items() if v is not None}, **env}
    creds = load_env_accounts(env)
    if not creds:
        raise SystemExit("--live-demo needs demo keys: BINANCE_API_KEY and BINANCE_API_SECRET (and _2, _3 ...)")
    return creds


async def _demo_price() -> float:
    ex = ccxt_async.binanceusdm({"options": {"fetchCurrencies": False}})
    ex.enable_demo_trading(True)
    try:
        return float((await ex.fetch_ticker(SYMBOL))["last"])
    finally:
        await ex.close()


def _demo_signal(scenario: Scenario, price: float) -> dict:
    tick = lambda x: round(x, 1)  # noqa: E731 - BTCUSDT tick 0.10
    if scenario.name == "immediate_trigger":  # the stop lies above the market: Binance answers -2021
        entry, sl, tp = price * 1.02, price * 1.01, price * 1.05
    else:
        entry, sl, tp = price, price * 0.99, price * 1.02
    return {"id": f"demo-{scenario.name}-{int(time.time())}", "symbol": SYMBOL_ID, "side": "LONG",
            "entry": tick(entry), "stop_loss": tick(sl), "take_profit": tick(tp)}


async def _demo_cleanup(accounts: list[Any]) -> None:
    """Cancel open trigger orders and close BTCUSDT positions the recording left behind (not recorded)."""
    for a in accounts:
        ex = a.exchange
        try:
            for o in await ex.fetch_open_orders(SYMBOL, None, None, {"trigger": True}):
                await ex.cancel_order(o["id"], SYMBOL, {"trigger": True})
            for p in await ex.fetch_positions([SYMBOL]):
                qty = abs(float(p.get("contracts") or 0))
                if qty > 0:
                    side = "sell" if p.get("side") == "long" else "buy"
                    await ex.create_order(SYMBOL, "market", side, qty, None, {"reduceOnly": True})
        except ccxt.BaseError as exc:
            print(f"  ! cleanup of {a.name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)


async def _demo_prepare(creds: list[Any], timeout_ms: int) -> list[tuple[str, float]]:
    """Outside the cassette, on separate instances: clean up, then read balances for the metadata."""
    accounts = await create_live_exchanges(creds, demo=True, api_url=None, timeout_ms=timeout_ms)
    balances = []
    try:
        await _demo_cleanup(accounts)
        for a in accounts:
            try:
                balances.append((a.name, float((await a.exchange.fetch_balance())["USDT"]["free"])))
            except ccxt.BaseError:
                balances.append((a.name, 0.0))
    finally:
        await close_all(accounts)
    return balances


async def record_demo(scenario: Scenario, creds: list[Any]) -> bool:
    if scenario.name == "bad_key":
        creds = [*creds[:2], DummyCredentials("Bad key", "invalid-demo-key-000000000000", "invalid-secret-000000")]
    label_keys(creds)
    signal = _demo_signal(scenario, await _demo_price())
    balances = await _demo_prepare(creds, scenario.timeout_ms)
    with use_cassette(scenario.cassette, record=True) as cassette:  # fresh instances: markets are recorded too
        cassette.get_metadata("fanout", _metadata(scenario, "binance demo trading", signal, balances))
        accounts = await create_live_exchanges(creds, demo=True, api_url=None, timeout_ms=scenario.timeout_ms)
        try:
            outcome = await run_scenario(scenario, accounts, signal)
        finally:
            await close_all(accounts)
    _report(scenario.name, outcome)
    await _demo_prepare(creds, scenario.timeout_ms)  # closes what the recording opened
    return True


# ------------------------------------------------------------------------------------------------------- cli
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="record_cassettes", description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", help=f"names (default: all): {', '.join(SCENARIOS)}")
    parser.add_argument("--live-demo", action="store_true", help="record against Binance demo trading")
    parser.add_argument("--env-file", help="read demo keys from this env file (environment wins)")
    parser.add_argument("--port", type=int, default=0, help="stand-in port (default: any free port)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    unknown = [n for n in args.scenarios if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; choose from {list(SCENARIOS)}")
    chosen = [SCENARIOS[n] for n in (args.scenarios or SCENARIOS)]
    if args.live_demo:
        chosen = [s for s in chosen if s.demo]
        creds = _demo_credentials(args.env_file)
        ok = all(asyncio.run(record_demo(s, creds)) for s in chosen)
    else:
        ok = all(asyncio.run(record_standin(s, args.port)) for s in chosen)
    print(f"recorded {len(chosen)} cassette(s) into tests/cassettes/" if ok else "recording had problems")
    return 0 if ok else 1
