"""Tests for marketdata/rules.py and rules_build.py: the dated snapshot of every USDⓈ-M perpetual, its brackets and
their fallback, ccxt parsing, and the errors for a symbol the snapshot lacks."""

from __future__ import annotations

import json
from pathlib import Path

import ccxt
import pytest

from marketdata import paths
from marketdata.rules import MarketRules, UnknownSymbolError
from marketdata.rules_build import (
    SnapshotBuildError,
    build_snapshot,
    date_from_name,
    dumps,
    main,
    most_common_table,
)

BTC = "BTC/USDT:USDT"
BUNDLED = paths.BUNDLED_DATA / "market_rules.json"
UNIVERSE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "binance-usdm-universe"
EXCHANGE_INFO = UNIVERSE / "exchangeInfo.2024-10-20.json"
BRACKETS = UNIVERSE / "leverageBracket.2023-08-01.json"
needs_reference = pytest.mark.skipif(not EXCHANGE_INFO.is_file(), reason=f"reference data not found at {UNIVERSE}")


def test_the_snapshot_is_dated_and_named(rules):
    assert rules.date == "2024-10-20" and rules.brackets_date == "2023-08-01"
    assert rules.name == "binance-usdm 2024-10-20 (brackets 2023-08-01)"
    assert rules.describe() == {"name": rules.name, "date": "2024-10-20", "brackets_date": "2023-08-01",
                                "path": str(BUNDLED), "symbols": 342}


def test_every_perpetual_is_a_market(rules):
    assert len(rules.markets) == 342
    assert {BTC, "ETH/USDT:USDT", "SOL/USDT:USDT", "BTC/USDC:USDC", "ETH/BTC:BTC"} <= set(rules.markets)
    assert all(m["swap"] and m["linear"] for m in rules.markets.values())
    m = rules.markets[BTC]
    assert (m["id"], m["settle"]) == ("BTCUSDT", "USDT")


def test_btcusdt_and_ethusdt_filters_are_binances(rules):
    m = rules.markets[BTC]
    assert m["limits"]["cost"]["min"] == 100  # the real exchangeInfo says 100 (and 20 for ETH)
    assert rules.markets["ETH/USDT:USDT"]["limits"]["cost"]["min"] == 20
    assert (m["limits"]["amount"]["min"], m["precision"]["amount"], m["precision"]["price"]) == (0.001, 0.001, 0.1)
    assert m["limits"]["market"]["max"] == 120
    algo = next(f for f in m["info"]["filters"] if f["filterType"] == "MAX_NUM_ALGO_ORDERS")
    assert algo["limit"] == 10


def test_a_symbol_outside_the_old_seven_has_its_own_filters(rules):
    sol = rules.markets["SOL/USDT:USDT"]
    assert (sol["precision"]["amount"], sol["precision"]["price"], sol["limits"]["cost"]["min"]) == (1, 0.01, 5)
    pepe = rules.markets["1000PEPE/USDT:USDT"]
    assert (pepe["precision"]["amount"], pepe["precision"]["price"]) == (1, 1e-07)
    assert rules.helper.amount_to_precision("SOL/USDT:USDT", 3.99) == "3"


def test_precision_formatting(rules):
    h = rules.helper
    assert h.amount_to_precision(BTC, 0.0089999) == "0.008"
    assert h.price_to_precision(BTC, 49_500.04) == "49500"
    assert h.price_to_precision(BTC, 49_500.06) == "49500.1"  # prices round to the tick


def test_btc_brackets_are_binance_2023_08(rules):
    tiers = rules.tiers[BTC]
    assert len(tiers) == 10
    first, second, third = tiers[:3]
    assert (first["minNotional"], first["maxNotional"], first["maintenanceMarginRate"], first["maxLeverage"]) == (
        0, 50_000, 0.004, 125)
    assert (second["maxNotional"], second["maxLeverage"], float(second["info"]["cum"])) == (250_000, 100, 50)
    assert (third["maintenanceMarginRate"], third["maxLeverage"]) == (0.01, 50)
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


def test_a_symbol_without_brackets_falls_back_visibly(rules):
    assert len(rules.fallback_ids) == 152
    assert {"ORDIUSDT", "BTCUSDC", "WIFUSDT"} <= rules.fallback_ids and "BTCUSDT" not in rules.fallback_ids
    fallback = rules.meta["brackets"]["fallback"]
    assert rules.raw_brackets("ORDI/USDT:USDT") == fallback["brackets"]
    assert rules.tiers["ORDI/USDT:USDT"][0]["maxLeverage"] == fallback["brackets"][0]["initialLeverage"] == 20
    note = rules.fallback_note(["BTC/USDT:USDT", "ORDI/USDT:USDT", "WIFUSDT"])
    assert "ORDIUSDT, WIFUSDT" in note and "fallback table" in note and rules.name in note
    assert rules.fallback_note([BTC, "ETHUSDT"]) is None


def test_a_symbol_the_snapshot_lacks_is_named_with_the_snapshots_date(rules):
    with pytest.raises(UnknownSymbolError, match=r"NOPE/USDT:USDT is not in the market-rules snapshot binance-usdm 2024-10-20 "):
        rules.check_symbols([BTC, "NOPE/USDT:USDT"])
    with pytest.raises(ccxt.BadSymbol, match=r"NOPE/USDT:USDT.*2024-10-20.*fanout data markets"):
        rules.market("NOPE/USDT:USDT")
    rules.check_symbols([BTC, "SOLUSDT"])


def test_raw_brackets(rules):
    raw = rules.raw_brackets(BTC)
    assert raw[0]["initialLeverage"] == 125 and raw[0]["notionalCap"] == 50_000


def test_load_errors_name_the_path(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(FileNotFoundError, match="nope.json"):
        MarketRules.load(missing)


def test_an_undated_format_1_snapshot_still_loads(tmp_path):
    entry = json.loads(BUNDLED.read_text())["symbols"]["BTCUSDT"]
    old = {"_source": {}, "symbols": {"BTCUSDT": {"exchangeInfo": entry["exchangeInfo"], "leverageBracket":
                                                  entry["leverageBracket"], "bracket_origin": "real"}}}
    (tmp_path / "old.json").write_text(json.dumps(old))
    rules = MarketRules.load(tmp_path / "old.json")
    assert rules.name == "binance-usdm, undated snapshot" and rules.date is None
    assert rules.tiers[BTC][0]["maxLeverage"] == 125 and not rules.fallback_ids


def _body(*entries: dict, server_time: int = 1_729_454_406_890) -> dict:
    return {"serverTime": server_time, "symbols": list(entries)}


def _info(sid: str, base: str, quote: str = "USDT", contract: str = "PERPETUAL") -> dict:
    return {"symbol": sid, "pair": sid, "contractType": contract, "deliveryDate": 4133404800000, "status": "TRADING",
            "baseAsset": base, "quoteAsset": quote, "marginAsset": quote, "pricePrecision": 2,
            "quantityPrecision": 3, "baseAssetPrecision": 8, "quotePrecision": 8, "underlyingType": "COIN",
            "filters": [{"filterType": "PRICE_FILTER", "tickSize": "0.10", "minPrice": "1", "maxPrice": "100000"},
                        {"filterType": "LOT_SIZE", "stepSize": "0.001", "minQty": "0.001", "maxQty": "1000"},
                        {"filterType": "MIN_NOTIONAL", "notional": "5"}]}


def _table(sid: str, lev: int = 20) -> dict:
    return {"symbol": sid, "brackets": [
        {"bracket": 1, "initialLeverage": lev, "notionalCap": 5000, "notionalFloor": 0, "maintMarginRatio": 0.02,
         "cum": 0.0},
        {"bracket": 2, "initialLeverage": 10, "notionalCap": 25000, "notionalFloor": 5000, "maintMarginRatio": 0.025,
         "cum": 25.0}]}


def test_build_keeps_perpetuals_only_and_their_filters():
    snap = build_snapshot(_body(_info("AAAUSDT", "AAA"), _info("AAAUSDT_241227", "AAA", contract="CURRENT_QUARTER")),
                          [_table("AAAUSDT")], exchange_info_source="ei.json", brackets_source="lb.json",
                          brackets_date="2023-08-01")
    assert list(snap["symbols"]) == ["AAAUSDT"]
    entry = snap["symbols"]["AAAUSDT"]
    assert "underlyingType" not in entry["exchangeInfo"] and len(entry["exchangeInfo"]["filters"]) == 3
    assert entry["brackets_from"] == "leverageBracket 2023-08-01"
    assert snap["snapshot"]["date"] == "2024-10-20" and snap["snapshot"]["brackets"]["date"] == "2023-08-01"
    assert json.loads(dumps(snap)) == snap


def test_refresh_without_brackets_keeps_the_previous_tables_and_falls_back_for_new_symbols():
    first = build_snapshot(_body(_info("AAAUSDT", "AAA"), _info("BBBUSDT", "BBB")),
                           [_table("AAAUSDT", 50), _table("BBBUSDT", 20)], exchange_info_source="ei.json",
                           brackets_date="2023-08-01")
    later = build_snapshot(_body(_info("AAAUSDT", "AAA"), _info("CCCUSDT", "CCC"), server_time=1_760_000_000_000),
                           None, exchange_info_source="venue", previous=first)
    assert later["snapshot"]["date"] == "2025-10-09"
    assert later["snapshot"]["brackets"]["date"] == "2023-08-01" and "kept" in later["snapshot"]["brackets"]
    assert later["symbols"]["AAAUSDT"]["leverageBracket"]["brackets"][0]["initialLeverage"] == 50
    assert later["symbols"]["AAAUSDT"]["brackets_from"] == "leverageBracket 2023-08-01"
    assert later["symbols"]["CCCUSDT"]["brackets_fallback"] is True
    rules = MarketRules(later)
    assert rules.name == "binance-usdm 2025-10-09 (brackets 2023-08-01)"
    assert rules.fallback_ids == {"CCCUSDT"} and rules.tiers["CCC/USDT:USDT"][0]["maxLeverage"] in (20, 50)


def test_most_common_table():
    tables = {"A": _table("A", 20)["brackets"], "B": _table("B", 20)["brackets"], "C": _table("C", 50)["brackets"]}
    table, sharing = most_common_table(tables)
    assert sharing == ["A", "B"] and table[0]["initialLeverage"] == 20


@pytest.mark.parametrize("body, match", [({"symbols": "x"}, "no 'symbols' list"), ({"symbols": [{}]}, "symbols\\[0\\]"),
                                         (_body(_info("X", "X", contract="NEXT_QUARTER")), "no PERPETUAL"),
                                         ({"symbols": [_info("AUSDT", "A")]}, "serverTime")])
def test_build_errors_name_the_body(body, match):
    with pytest.raises(SnapshotBuildError, match=match):
        build_snapshot(body, [_table("AUSDT")], exchange_info_source="ei.json")


def test_date_from_name():
    assert date_from_name("x/leverageBracket.2023-08-01.json") == "2023-08-01"
    assert date_from_name("brackets.json") is None


@needs_reference
def test_bundled_snapshot_is_rebuilt_identically_from_the_reference(tmp_path, capsys):
    out = tmp_path / "rules.json"
    assert main([str(EXCHANGE_INFO), str(BRACKETS), str(out)]) == 0
    assert "342 perpetuals" in capsys.readouterr().out
    assert out.read_text() == BUNDLED.read_text()


@needs_reference
def test_every_perpetual_of_the_reference_is_in_the_snapshot(rules):
    info = json.loads(EXCHANGE_INFO.read_text())
    perpetuals = {s["symbol"] for s in info["symbols"] if s["contractType"] == "PERPETUAL"}
    assert perpetuals == rules.ids
    with_table = {b["symbol"] for b in json.loads(BRACKETS.read_text())}
    assert rules.fallback_ids == perpetuals - with_table


def test_main_usage(capsys):
    assert main([]) == 2
    assert "usage" in capsys.readouterr().err
