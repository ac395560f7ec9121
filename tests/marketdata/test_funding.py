"""Tests for marketdata/funding.py: funding-rate files (the fundingRate endpoint's columns) and the cache, validated
with errors naming the file, line and column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from marketdata.cache import FUNDING_HEADER, MarketDataError, funding_path, write_cache
from marketdata.funding import FundingError, load_cached_funding, load_funding

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "usdm-2023-07"
BTC_FUNDING = SHARED / "BTCUSDT-fundingRate-2023-07-04--2023-08-17.csv"
H = 3_600_000
T0 = 1_688_486_400_000  # 2023-07-04 16:00 UTC


def write(tmp_path, text: str, name: str = "f.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.skipif(not BTC_FUNDING.is_file(), reason=f"shared funding data not found at {BTC_FUNDING}")
def test_the_shared_month_loads_with_its_symbol_and_jittered_times():
    rates = load_funding(BTC_FUNDING)
    assert rates.symbol == "BTC/USDT:USDT" and len(rates) == 131
    assert rates.time[0] == T0 and rates.rate[0] == 0.0001
    assert np.isnan(rates.mark).all()  # the file's mark_price_8h_kline_open is not the endpoint's markPrice
    assert (np.diff(rates.time) > 0).all()


def test_endpoint_columns_with_mark_price_and_iso_times(tmp_path):
    path = write(tmp_path, "symbol,fundingTime,fundingRate,markPrice\n"
                           "ETHUSDT,2023-07-04T16:00:00Z,0.0001,1950.5\n"
                           "ETHUSDT,2023-07-05T00:00:00.002Z,-0.00005,\n")
    rates = load_funding(path, "ETH/USDT:USDT")
    assert rates.time.tolist() == [T0, T0 + 8 * H + 2] and rates.rate.tolist() == [0.0001, -0.00005]
    assert rates.mark[0] == 1950.5 and np.isnan(rates.mark[1])
    assert list(rates.between(T0, T0 + 8 * H + 2)) == [1] and list(rates.between(T0 - 1, T0)) == [0]


def test_a_file_without_a_symbol_column_needs_the_symbol(tmp_path):
    path = write(tmp_path, "fundingTime,fundingRate\n1688486400000,0.0001\n")
    with pytest.raises(FundingError, match=r"f.csv line 1, column 'symbol': no 'symbol' column"):
        load_funding(path)
    assert load_funding(path, "solusdt").symbol == "SOL/USDT:USDT"


@pytest.mark.parametrize("body, symbol, match", [
    ("symbol,fundingTime\nBTCUSDT,1\n", None, r"line 1, column 'fundingRate': missing column"),
    ("symbol,fundingTime,fundingRate\n", None, "no data rows"),
    ("symbol,fundingTime,fundingRate\nBTCUSDT,1688486400000,0.0001\nETHUSDT,1688515200000,0.0001\n", None,
     r"line 3, column 'symbol': 'ETHUSDT' is not BTC/USDT:USDT"),
    ("symbol,fundingTime,fundingRate\nBTCUSDT,1688486400000,0.0001\n", "ETHUSDT",
     r"line 2, column 'symbol': 'BTCUSDT' is not ETH/USDT:USDT"),
    ("symbol,fundingTime,fundingRate\nBTCUSDT,1688486400000,0.0001\nBTCUSDT,yesterday,0.0001\n", None,
     r"line 3, column 'fundingTime': 'yesterday' is not an epoch time"),
    ("symbol,fundingTime,fundingRate\nBTCUSDT,1688486400000,0.0001\nBTCUSDT,1688486400000,0.0002\n", None,
     r"line 3, column 'fundingTime': duplicate time 2023-07-04T16:00:00Z"),
    ("symbol,fundingTime,fundingRate\nBTCUSDT,1688515200000,0.0001\nBTCUSDT,1688486400000,0.0002\n", None,
     r"line 3, column 'fundingTime': not sorted"),
    ("symbol,fundingTime,fundingRate\nBTCUSDT,1688486400000,0.01%\n", None,
     r"line 2, column 'fundingRate': '0.01%' is missing, not a number"),
    ("symbol,fundingTime,fundingRate\nBTCUSDT,1688486400000,\n", None, r"line 2, column 'fundingRate': '' is missing"),
    ("symbol,fundingTime,fundingRate\nBTCUSDT,1688486400000,1.5\n", None,
     r"line 2, column 'fundingRate': 1.5 is beyond ±0.1: fundingRate is a fraction"),
    ("symbol,fundingTime,fundingRate,markPrice\nBTCUSDT,1688486400000,0.0001,-3\n", None,
     r"line 2, column 'markPrice': mark price must be > 0"),
    ("symbol,fundingTime,fundingRate\nNOT A SYMBOL,1688486400000,0.0001\n", None, r"line 2, column 'symbol'"),
], ids=["no-rate-column", "empty", "two-symbols", "other-symbol", "bad-time", "duplicate", "unsorted", "percent-sign",
        "empty-rate", "percentage", "negative-mark", "bad-symbol"])
def test_bad_files_name_file_line_and_column(tmp_path, body, symbol, match):
    with pytest.raises(FundingError, match=match) as err:
        load_funding(write(tmp_path, body), symbol)
    assert str(err.value).startswith(str(tmp_path / "f.csv"))


def test_missing_file(tmp_path):
    with pytest.raises(FundingError, match="nope.csv: file not found"):
        load_funding(tmp_path / "nope.csv", "BTCUSDT")


def test_the_cache_file_reads_back(tmp_path):
    assert load_cached_funding("BTCUSDT", tmp_path) is None
    write_cache(funding_path("BTCUSDT", tmp_path), {T0: ("0.0001", "30959.4"), T0 + 8 * H + 1: ("0.00012", "")},
                header=FUNDING_HEADER)
    rates = load_cached_funding("BTC/USDT:USDT", tmp_path)
    assert rates.time.tolist() == [T0, T0 + 8 * H + 1] and rates.mark[0] == 30959.4
    funding_path("ETHUSDT", tmp_path).write_text("fundingTime,fundingRate,markPrice\nnope,1,\n")
    with pytest.raises(MarketDataError, match="ETHUSDT-funding.csv line 2"):
        load_cached_funding("ETHUSDT", tmp_path)
