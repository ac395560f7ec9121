"""Tests for marketdata/rules.py: the market-rules snapshot, its corrections, brackets and ccxt parsing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from marketdata import paths
from marketdata.rules import MarketRules, _derive_brackets, _standard_leverage, build_snapshot, main

BTC = "BTC/USDT:USDT"
BUNDLED = paths.BUNDLED_DATA / "market_rules.json"
REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "binance-usdm"
needs_reference = pytest.mark.skipif(not REFERENCE.is_dir(), reason=f"reference data not found at {REFERENCE}")


def test_symbols(rules):
    assert {BTC, "ETH/USDT:USDT"} <= set(rules.markets)
    assert all(s.endswith("/USDT:USDT") for s in rules.markets)
    m = rules.markets[BTC]
    assert (m["id"], m["linear"], m["swap"], m["settle"]) == ("BTCUSDT", True, True, "USDT")


def test_btcusdt_filters(rules):
    m = rules.markets[BTC]
    assert m["limits"]["cost"]["min"] == 100  # the observed -4164 minimum, not the fixture's 5
    assert rules.markets["ETH/USDT:USDT"]["limits"]["cost"]["min"] == 20
    assert (m["limits"]["amount"]["min"], m["precision"]["amount"], m["precision"]["price"]) == (0.001, 0.001, 0.1)
    assert m["limits"]["market"]["max"] == 120


def test_precision_formatting(rules):
    h = rules.helper
    assert h.amount_to_precision(BTC, 0.0089999) == "0.008"
    assert h.price_to_precision(BTC, 49_500.04) == "49500"
    assert h.price_to_precision(BTC, 49_500.06) == "49500.1"  # prices round to the tick


def test_btc_brackets_are_binance_2024_10(rules):
    tiers = rules.tiers[BTC]
    assert len(tiers) == 12
    first, second = tiers[0], tiers[1]
    assert (first["minNotional"], first["maxNotional"], first["maintenanceMarginRate"], first["maxLeverage"]) == (
        0, 50_000, 0.004, 125)
    assert (second["maintenanceMarginRate"], second["maxLeverage"], float(second["info"]["cum"])) == (0.005, 100, 50)
    assert tiers[-1]["maxLeverage"] == 1


def test_brackets_are_contiguous_and_cum_is_consistent(rules):
    """cum_i = cum_(i-1) + floor_i × (mmr_i − mmr_(i-1)): the liquidation formula is continuous at each floor."""
    for symbol, tiers in rules.tiers.items():
        cum, prev = 0.0, 0.0
        for i, t in enumerate(tiers):
            if i:
                assert t["minNotional"] == tiers[i - 1]["maxNotional"], symbol
            cum += t["minNotional"] * (t["maintenanceMarginRate"] - prev)
            assert float(t["info"]["cum"]) == pytest.approx(cum, abs=1e-6), (symbol, i)
            prev = t["maintenanceMarginRate"]
        assert [t["maxLeverage"] for t in tiers] == sorted((t["maxLeverage"] for t in tiers), reverse=True)


def test_raw_brackets(rules):
    raw = rules.raw_brackets(BTC)
    assert raw[0]["initialLeverage"] == 125 and raw[0]["notionalCap"] == 50_000


@pytest.mark.parametrize("ceiling, expected", [(125, 125), (200, 125), (99.9, 75), (20, 20), (12.5, 10), (0.5, 1)])
def test_standard_leverage(ceiling, expected):
    assert _standard_leverage(ceiling) == expected


def test_derive_brackets():
    b = _derive_brackets([["0", "0.004"], ["50000", "0.005"], ["600000", "0.0065"]])
    assert [x["initialLeverage"] for x in b] == [125, 100, 75]  # 1/(2·mmr): 125, 100, 76.9 -> 75
    assert [x["cum"] for x in b] == [0.0, 50.0, 950.0]  # BTCUSDT's real cums
    assert [x["notionalCap"] for x in b] == [50_000, 600_000, 1_200_000]


def test_load_errors_name_the_path(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(FileNotFoundError, match="nope.json"):
        MarketRules.load(missing)


def test_snapshot_has_its_source():
    data = json.loads(BUNDLED.read_text())
    assert "MIN_NOTIONAL" in data["_source"]["corrections"]
    assert data["symbols"]["BTCUSDT"]["bracket_origin"].startswith("real")


@needs_reference
def test_snapshot_is_rebuilt_identically_from_the_reference():
    assert build_snapshot(REFERENCE) == json.loads(BUNDLED.read_text())


@needs_reference
def test_main_writes_a_loadable_snapshot(tmp_path, capsys):
    out = tmp_path / "rules.json"
    assert main([str(REFERENCE), str(out)]) == 0
    assert "BTCUSDT" in capsys.readouterr().out
    assert MarketRules.load(out).markets[BTC]["limits"]["cost"]["min"] == 100


def test_main_usage(capsys):
    assert main([]) == 2
    assert "usage" in capsys.readouterr().err
