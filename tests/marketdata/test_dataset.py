"""Tests for marketdata/dataset.py: a multi-symbol backtest's candles, funding and mark prices gathered from files,
folders (the shared real month) and the cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from marketdata.cache import FUNDING_HEADER, MARK_HEADER, cache_path, funding_path, write_cache
from marketdata.dataset import DatasetError, gather, split_assignment, symbol_from_name

MONTH = Path(__file__).resolve().parents[3] / "shared" / "data" / "usdm-2023-07"
needs_month = pytest.mark.skipif(not MONTH.is_dir(), reason=f"shared month not found at {MONTH}")
KNOWN = {"BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT", "BNBUSDT", "ADAUSDT"}
T0 = 1_704_067_200_000
M = 60_000


def candles_file(path: Path, n: int = 5, price: float = 100.0) -> Path:
    rows = [f"{T0 + i * M},{price},{price + 1},{price - 1},{price},1" for i in range(n)]
    path.write_text("open_time,open,high,low,close,volume\n" + "\n".join(rows) + "\n")
    return path


def test_split_assignment():
    assert split_assignment("ethusdt=a/b.csv", "--candles") == ("ETH/USDT:USDT", Path("a/b.csv"))
    assert split_assignment("a/b.csv", "--candles") == (None, Path("a/b.csv"))
    with pytest.raises(DatasetError, match="--funding 'not a symbol=x.csv'"):
        split_assignment("not a symbol=x.csv", "--funding")


def test_symbol_from_name():
    assert symbol_from_name(Path("ETHUSDT-1m-2023-07-03.csv"), KNOWN) == "ETH/USDT:USDT"
    assert symbol_from_name(Path("btcusdt_1h.parquet"), KNOWN) == "BTC/USDT:USDT"
    assert symbol_from_name(Path("btc-1h.csv"), KNOWN) is None


@needs_month
def test_the_shared_month_folder_gives_seven_coins_and_three_funding_histories():
    data = {d.symbol: d for d in gather(candles=[str(MONTH)], known_ids=KNOWN, cache_root=MONTH / "no-cache")}
    assert sorted(data) == sorted(f"{s[:-4]}/USDT:USDT" for s in KNOWN)
    assert {s for s, d in data.items() if d.funding is not None} == {"BTC/USDT:USDT", "ETH/USDT:USDT",
                                                                    "SOL/USDT:USDT"}
    btc = data["BTC/USDT:USDT"]
    assert len(btc.candles) == 43_199 and btc.candles.timeframe == "1m" and btc.mark is None
    assert btc.funding_origin.startswith("funding from ") and "BTCUSDT-fundingRate" in btc.funding_origin
    assert len(data["ETH/USDT:USDT"].candles) == 64_066


def test_files_cache_and_explicit_assignments(tmp_path):
    cache = tmp_path / "cache"
    write_cache(cache_path("SOLUSDT", "1m", cache), {T0 + i * M: ("20", "21", "19", "20", "5") for i in range(3)})
    write_cache(funding_path("SOLUSDT", cache), {T0: ("0.0001", "")}, header=FUNDING_HEADER)
    write_cache(cache_path("SOLUSDT", "1m", cache, series="mark"),
                {T0 + i * M: ("20.1", "21", "19", "20.1") for i in range(3)}, header=MARK_HEADER)
    eth = candles_file(tmp_path / "prices.csv")
    funding = tmp_path / "f.csv"
    funding.write_text("fundingTime,fundingRate\n1704067200000,-0.0002\n")
    data = gather(candles=[f"ETHUSDT={eth}"], symbols=["SOLUSDT"], funding=[f"ETHUSDT={funding}"], timeframe="1m",
                  known_ids=KNOWN, cache_root=cache)
    eth_data, sol = data
    assert (eth_data.symbol, eth_data.origin, eth_data.funding.rate.tolist()) == (
        "ETH/USDT:USDT", f"candles from {eth}", [-0.0002])
    assert sol.origin.startswith("real candles from cache") and sol.funding_origin.startswith("funding from cache")
    assert sol.mark.open.tolist() == [20.1] * 3 and sol.mark_origin.startswith("mark prices from cache")


def test_a_lone_file_belongs_to_symbol_then_its_name_then_the_default(tmp_path):
    plain = candles_file(tmp_path / "c.csv")
    named = candles_file(tmp_path / "ETHUSDT-1m.csv")
    assert gather(candles=[str(plain)], default_symbol="BTC/USDT:USDT", known_ids=KNOWN)[0].symbol == "BTC/USDT:USDT"
    assert gather(candles=[str(named)], default_symbol="BTC/USDT:USDT", known_ids=KNOWN)[0].symbol == "ETH/USDT:USDT"
    assert gather(candles=[str(named)], symbol_hint="SOL/USDT:USDT", known_ids=KNOWN)[0].symbol == "SOL/USDT:USDT"
    with pytest.raises(DatasetError, match=r"cannot tell the symbol of .*c.csv .*BTCUSDT="):
        gather(candles=[str(plain), str(named)], known_ids=KNOWN)


@pytest.mark.parametrize("kwargs, match", [
    (lambda t: {"candles": [str(t / "nope.csv")]}, "--candles: .*nope.csv: file not found"),
    (lambda t: {"symbols": ["ADAUSDT"], "timeframe": "1h"}, r"--symbols: no cached 1h candles for ADA/USDT:USDT"),
    (lambda t: {"candles": [f"ETHUSDT={candles_file(t / 'a.csv')}", f"ETHUSDT={candles_file(t / 'b.csv')}"]},
     "candles for ETH/USDT:USDT given twice"),
    (lambda t: {"candles": [str(t)]}, "no candle file in"),
    (lambda t: {"candles": [f"ETHUSDT={candles_file(t / 'a.csv')}"], "funding": [str(t / "a.csv")]},
     r"--funding: .*a.csv line 1, column 'fundingTime': missing column"),
], ids=["missing-file", "not-cached", "twice", "empty-folder", "candles-as-funding"])
def test_errors_name_the_option_and_file(tmp_path, kwargs, match):
    with pytest.raises(DatasetError, match=match):
        gather(known_ids=KNOWN, cache_root=tmp_path / "cache", **kwargs(tmp_path))
