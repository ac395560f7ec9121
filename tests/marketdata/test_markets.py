"""Tests of ``fanout data markets`` (fanout/cmd_data_markets.py, marketdata/rules_build.py) replayed from cassettes.

``tests/cassettes/markets_*.yaml`` hold ``GET /fapi/v1/exchangeInfo`` and the signed ``GET /fapi/v1/leverageBracket``
answers recorded from the stand-in (tests/marketdata/binance_standin.py) serving parts of the real reference bodies in
../shared/reference/binance-usdm-universe. No API key, signature or timestamp is recorded. Re-record with::

    FANOUT_RECORD_CASSETTES=1 .venv/bin/python -m pytest tests/marketdata/test_markets.py -q
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import pytest
import vcr

from fanout import cmd_data
from marketdata import paths
from marketdata.rules import MarketRules

from .binance_standin import StandIn

CASSETTES = Path(__file__).resolve().parents[1] / "cassettes"
RECORD = os.environ.get("FANOUT_RECORD_CASSETTES") == "1"
UNIVERSE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "binance-usdm-universe"
SERVED = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "ORDIUSDT", "BTCUSDC", "BTCUSDT_241227")
"""What the stand-in lists: the reference's entries of these (ORDIUSDT and BTCUSDC have no 2023-08 brackets; the
quarterly future is not a perpetual)."""
DUMMY_KEY, DUMMY_SECRET = "standinKey0123456789abcdef", "standinSecret0123456789abcdef"


def _official_host(request):
    parts = urlparse(request.uri)
    request.uri = urlunparse(("https", "fapi.binance.com", *parts[2:]))
    return request


def _only_content_type(response):
    response["headers"] = {k: v for k, v in response["headers"].items() if k.lower() == "content-type"}
    return response


_VCR = vcr.VCR(
    cassette_library_dir=str(CASSETTES),
    match_on=["method", "path", "query"],
    before_record_request=_official_host,
    before_record_response=_only_content_type,
    filter_headers=["X-MBX-APIKEY"],
    filter_query_parameters=["timestamp", "signature", "recvWindow"],
    decode_compressed_response=True,
)


def _reference_bodies() -> tuple[dict, list]:
    info = json.loads((UNIVERSE / "exchangeInfo.2024-10-20.json").read_text())
    info["symbols"] = [s for s in info["symbols"] if s["symbol"] in SERVED]
    brackets = [b for b in json.loads((UNIVERSE / "leverageBracket.2023-08-01.json").read_text())
                if b["symbol"] in SERVED]
    return info, brackets


@contextlib.asynccontextmanager
async def cassette(name: str):
    """Playback (BINANCE_API_URL unset), or with FANOUT_RECORD_CASSETTES=1 a recording against the stand-in."""
    if not RECORD:
        with _VCR.use_cassette(f"markets_{name}.yaml", record_mode="none", allow_playback_repeats=False) as cass:
            yield None, cass
            assert cass.all_played, f"markets_{name}.yaml has requests the code no longer makes"
        return
    if not UNIVERSE.is_dir():
        pytest.skip(f"recording needs the reference bodies in {UNIVERSE}")
    (CASSETTES / f"markets_{name}.yaml").unlink(missing_ok=True)
    info, brackets = _reference_bodies()
    standin = StandIn([], exchange_info=info, brackets=brackets)
    url = await standin.start()
    try:
        with _VCR.use_cassette(f"markets_{name}.yaml", record_mode="all") as cass:
            yield url, cass
    finally:
        await standin.stop()


async def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    cmd_data.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return await asyncio.to_thread(args.func, args)


@pytest.fixture
def env(monkeypatch, tmp_path):
    """No settings file, no key, no relay unless a test sets them."""
    for var in ("BINANCE_API_KEY", "BINANCE_API_SECRET", "BINANCE_API_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


async def test_with_a_key_every_perpetual_gets_its_rules_and_brackets(tmp_path, env, capsys):
    out = tmp_path / "market_rules.json"
    env.setenv("BINANCE_API_KEY", DUMMY_KEY)
    env.setenv("BINANCE_API_SECRET", DUMMY_SECRET)
    async with cassette("keyed") as (api_url, cass):
        if api_url:
            env.setenv("BINANCE_API_URL", api_url)
        assert await _run(["data", "markets", "--out", str(out)]) == 0
        paths_asked = [r.parsed_uri.path for r in cass.requests]
    printed = capsys.readouterr().out
    assert paths_asked == ["/fapi/v1/exchangeInfo", "/fapi/v1/leverageBracket"]
    assert "6 perpetuals from exchangeInfo of 2024-10-20T20:00:06.890000Z" in printed
    assert "leverage brackets: 4 tables fetched" in printed
    assert "2 perpetual(s) without a bracket table use the fallback table" in printed
    assert f"wrote {out}: snapshot binance-usdm 2024-10-20" in printed
    rules = MarketRules.load(out)
    assert rules.ids == {"BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "ORDIUSDT", "BTCUSDC"}
    assert rules.fallback_ids == {"ORDIUSDT", "BTCUSDC"}
    assert rules.markets["BTC/USDT:USDT"]["limits"]["cost"]["min"] == 100
    assert rules.tiers["BTC/USDT:USDT"][1]["maxNotional"] == 250_000
    assert rules.snapshot["symbols"]["BTCUSDT"]["brackets_from"] == "leverageBracket 2024-10-20"
    text = (CASSETTES / "markets_keyed.yaml").read_text()
    for secret in (DUMMY_KEY, DUMMY_SECRET, "signature=", "timestamp="):
        assert secret not in text


async def test_without_a_key_the_previous_brackets_stay_and_the_command_says_so(tmp_path, env, capsys):
    out = tmp_path / "market_rules.json"
    out.write_bytes(paths.market_rules_file().read_bytes())  # the bundled snapshot: brackets of 2023-08-01
    async with cassette("keyless") as (api_url, cass):
        if api_url:
            env.setenv("BINANCE_API_URL", api_url)
        assert await _run(["data", "markets", "--out", str(out)]) == 0
        paths_asked = [r.parsed_uri.path for r in cass.requests]
    printed = capsys.readouterr().out
    assert paths_asked == ["/fapi/v1/exchangeInfo"]
    assert ("leverage brackets not fetched (no API key (BINANCE_API_KEY / BINANCE_API_SECRET): leverageBracket "
            "needs one); the previous snapshot's (of 2023-08-01) are kept") in printed
    assert "336 no longer listed as perpetuals" in printed
    rules = MarketRules.load(out)
    assert rules.name == "binance-usdm 2024-10-20 (brackets 2023-08-01)"
    assert rules.snapshot["symbols"]["BTCUSDT"]["brackets_from"] == "leverageBracket 2023-08-01"
    assert rules.fallback_ids == {"ORDIUSDT", "BTCUSDC"}


async def test_dry_run_writes_nothing_and_a_failure_leaves_the_snapshot_alone(tmp_path, env, capsys):
    out = tmp_path / "market_rules.json"
    async with cassette("keyless_dry") as (api_url, _):
        if api_url:
            env.setenv("BINANCE_API_URL", api_url)
        assert await _run(["data", "markets", "--out", str(out), "--dry-run"]) == 0
    assert "dry run" in capsys.readouterr().out and not out.exists()
    env.setenv("BINANCE_API_URL", "http://127.0.0.1:9?x=1")
    out.write_text("{}")
    assert await _run(["data", "markets", "--out", str(out)]) == 1
    assert "market rules not refreshed" in capsys.readouterr().err and out.read_text() == "{}"


async def test_a_refused_key_is_reported_and_the_brackets_are_kept():
    """fetch_bodies never raises for the bracket request: the refresh goes on with the exchangeInfo alone."""
    import ccxt

    from marketdata.rules_build import fetch_bodies

    class Public:
        async def fapiPublicGetExchangeInfo(self):
            return {"serverTime": 1, "symbols": []}

    class Refused:
        async def fapiPrivateGetLeverageBracket(self):
            raise ccxt.AuthenticationError('binanceusdm {"code":-2015,"msg":"Invalid API-key, IP, or permissions."}')

    info, brackets, why = await fetch_bodies(Public(), Refused())
    assert info["serverTime"] == 1 and brackets is None
    assert why.startswith("GET /fapi/v1/leverageBracket failed: AuthenticationError") and "-2015" in why
