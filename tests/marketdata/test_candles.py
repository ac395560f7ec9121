"""Tests for marketdata/candles.py: loading every time format, validation errors, gaps, resampling, saving."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest

from marketdata.candles import CandleError, Candles, load_candles, resample, save_candles
from marketdata.times import Gap

REAL = Path(__file__).parents[2].parent / "shared" / "data" / "BTCUSDT-1m-2023-03-01--2023-03-21.binanceus.csv"
T0 = 1677628800000  # 2023-03-01T00:00:00Z

ROWS = [  # open, high, low, close, volume
    (100.0, 101.0, 99.5, 100.5, 1.5),
    (100.5, 102.0, 100.0, 101.5, 2.0),
    (101.5, 101.5, 100.5, 101.0, 0.0),
]


def write_csv(path: Path, header: str, times: list, rows: list = ROWS) -> Path:
    lines = [header] + [",".join([str(t)] + [repr(v) for v in r]) for t, r in zip(times, rows, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path


def minutes(n: int = 3, step: int = 60_000) -> list[int]:
    return [T0 + i * step for i in range(n)]


# --- time formats and column names ---------------------------------------------------------------------------

@pytest.mark.parametrize("times", [
    pytest.param(minutes(), id="epoch-ms"),
    pytest.param([t // 1000 for t in minutes()], id="epoch-s"),
    pytest.param(["2023-03-01 00:00:00+00:00", "2023-03-01 00:01:00+00:00", "2023-03-01 00:02:00+00:00"],
                 id="iso-offset"),
    pytest.param(["2023-03-01T00:00:00Z", "2023-03-01T00:01:00Z", "2023-03-01T00:02:00Z"], id="iso-z"),
    pytest.param(["2023-03-01T00:00:00", "2023-03-01T00:01:00", "2023-03-01T00:02:00"], id="iso-naive-utc"),
    pytest.param(["2023-03-01T01:00:00+01:00", "2023-03-01T01:01:00+01:00", "2023-03-01T01:02:00+01:00"],
                 id="iso-other-zone"),
])
def test_time_formats(tmp_path, times):
    c = load_candles(write_csv(tmp_path / "c.csv", "timestamp,open,high,low,close,volume", times))
    assert c.time.tolist() == minutes()
    assert c.timeframe == "1m" and c.timeframe_ms == 60_000
    assert c.close.tolist() == [100.5, 101.5, 101.0]
    assert c.time.dtype == np.int64 and c.close.dtype == np.float64
    assert not c.synthetic and c.gaps == [] and c.source.endswith("c.csv")


@pytest.mark.parametrize("time_col", ["timestamp", "open_time", "time", "date", "Open_Time", "TIMESTAMP", "Date"])
def test_time_column_names(tmp_path, time_col):
    c = load_candles(write_csv(tmp_path / "c.csv", f"{time_col},Open,HIGH,low,Close,Volume", minutes()))
    assert len(c) == 3 and c.high.tolist() == [101.0, 102.0, 101.5]


def test_volume_optional_and_extra_columns(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("open_time,open,high,low,close,trades\n"
                    f"{T0},1,2,0.5,1.5,7\n{T0 + 3_600_000},1.5,2,1,1,3\n")
    c = load_candles(path, symbol="ETH/USDT:USDT")
    assert c.volume.tolist() == [0.0, 0.0]
    assert c.timeframe == "1h" and c.symbol == "ETH/USDT:USDT"


def test_csv_gz_and_headerless_binance_klines(tmp_path):
    frame = pd.DataFrame({"open_time": minutes(), "open": [r[0] for r in ROWS], "high": [r[1] for r in ROWS],
                          "low": [r[2] for r in ROWS], "close": [r[3] for r in ROWS], "volume": [r[4] for r in ROWS]})
    frame.to_csv(tmp_path / "c.csv.gz", index=False)
    assert load_candles(tmp_path / "c.csv.gz").close.tolist() == [100.5, 101.5, 101.0]
    # data.binance.vision dumps: no header, 12 columns, open time in ms (µs since 2025 for spot)
    frame["close_time"] = frame.open_time + 59_999
    frame["quote_volume"] = 1.0
    frame.to_csv(tmp_path / "k.csv", index=False, header=False)
    assert load_candles(tmp_path / "k.csv").time.tolist() == minutes()
    frame["open_time"] = frame.open_time * 1000
    frame.to_csv(tmp_path / "k_us.csv", index=False, header=False)
    assert load_candles(tmp_path / "k_us.csv").time.tolist() == minutes()


def test_headerless_file_whose_first_row_repeats_a_price_is_not_a_header(tmp_path):
    """As a header, ``100.5,100.5`` would become the columns ``100.5`` and ``100.5.1`` (issue 11)."""
    path = tmp_path / "k.csv"
    path.write_text("".join(f"{t},100.5,100.5,100.5,100.5,3\n" for t in minutes()))
    c = load_candles(path)
    assert c.time.tolist() == minutes() and c.close.tolist() == [100.5] * 3


@pytest.mark.parametrize("times, message", [
    ([0, 1, 2], "column 'time': holds a row index (0, 1, …), not times"),
    ([1, 2, 3], "column 'time': holds a row index (1, 2, …), not times"),
    ([1000, 1060, 1120], "column 'time', row 1: 1000 reads as 1970-01-01T00:16:40Z, outside 2009..2100"),
    (["1999-01-01", "1999-01-02", "1999-01-03"], "row 1: '1999-01-01' reads as 1999-01-01T00:00:00Z, outside"),
    ([T0 * 3, T0 * 3 + 60_000, T0 * 3 + 120_000], "row 1: 5032886400000 reads as 2129-06-27T00:00:00Z, outside"),
], ids=["row-index-0", "row-index-1", "1970-epochs", "before-2009", "after-2100"])
def test_times_no_market_candle_can_have_are_refused(tmp_path, times, message):
    with pytest.raises(CandleError) as info:
        load_candles(write_csv(tmp_path / "c.csv", "time,open,high,low,close,volume", times))
    assert str(info.value).startswith(f"{tmp_path / 'c.csv'}: ") and message in str(info.value)


def test_a_file_that_is_not_parquet_is_refused_naming_it(tmp_path):
    path = tmp_path / "c.parquet"
    path.write_bytes(b"PAR1 not really")
    with pytest.raises(CandleError, match="c.parquet: cannot be read as Parquet"):
        load_candles(path)


def test_parquet_round_trip(tmp_path):
    c = load_candles(write_csv(tmp_path / "c.csv", "time,open,high,low,close,volume", minutes()))
    save_candles(c, tmp_path / "c.parquet")
    back = load_candles(tmp_path / "c.parquet")
    for name in ("time", "open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(back, name), getattr(c, name))
    assert back.timeframe == "1m" and not back.synthetic


def test_parquet_keeps_synthetic_flag_and_reads_epoch_columns(tmp_path):
    c = Candles(symbol="BTC/USDT:USDT", timeframe="1m", time=minutes(), open=[1, 2, 3], high=[2, 3, 4],
                low=[1, 2, 3], close=[2, 3, 4], volume=[0, 0, 0], synthetic=True, source="test")
    assert load_candles(save_candles(c, tmp_path / "s.parquet")).synthetic is True
    pd.DataFrame({"open_time": minutes(), "open": [1.0] * 3, "high": [1.0] * 3, "low": [1.0] * 3,
                  "close": [1.0] * 3}).to_parquet(tmp_path / "e.parquet")
    assert load_candles(tmp_path / "e.parquet").time.tolist() == minutes()


def test_csv_round_trip_writes_iso_open_time(tmp_path):
    c = load_candles(write_csv(tmp_path / "c.csv", "timestamp,open,high,low,close,volume", minutes()))
    out = save_candles(c, tmp_path / "out.csv")
    assert out.read_text().splitlines()[:2] == ["open_time,open,high,low,close,volume",
                                                "2023-03-01 00:00:00+00:00,100.0,101.0,99.5,100.5,1.5"]
    back = load_candles(out)
    np.testing.assert_array_equal(back.time, c.time)
    np.testing.assert_array_equal(back.close, c.close)


def test_frame_round_trip():
    c = Candles(symbol="BTC/USDT:USDT", timeframe="1m", time=minutes(), open=[1, 2, 3], high=[2, 3, 4],
                low=[1, 2, 3], close=[2, 3, 4], volume=[5, 6, 7])
    df = c.to_frame()
    assert isinstance(df.index, pd.DatetimeIndex) and str(df.index.tz) == "UTC"
    assert df.index[0] == pd.Timestamp("2023-03-01", tz="UTC")
    back = Candles.from_frame(df)
    np.testing.assert_array_equal(back.time, c.time)
    np.testing.assert_array_equal(back.volume, c.volume)
    with pytest.raises(CandleError, match="column 'high', row 2"):
        Candles.from_frame(df.assign(high=[2, 2.5, 4]))


# --- validation ----------------------------------------------------------------------------------------------

GOOD = "open_time,open,high,low,close,volume\n" + "\n".join(
    f"{T0 + i * 60_000},{o},{h},{lo},{c},{v}" for i, (o, h, lo, c, v) in enumerate(ROWS))


def _with(line_no: int, new_line: str) -> str:
    lines = GOOD.splitlines()
    lines[line_no] = new_line
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("text, column, row, words", [
    pytest.param("time,open,high,close\n1,1,1,1\n", "low", None, "found: time, open, high, close", id="missing"),
    pytest.param("when,open,high,low,close\n1,1,1,1,1\n", "time", None, "found: when", id="no-time-column"),
    pytest.param(_with(2, f"{T0 + 60_000},100.5,abc,100.0,101.5,2.0"), "high", 2, "'abc'", id="non-numeric"),
    pytest.param(_with(2, f"{T0 + 60_000},100.5,102.0,,101.5,2.0"), "low", 2, "missing", id="empty-cell"),
    pytest.param(_with(3, f"{T0 + 120_000},101.5,inf,100.5,101.0,0"), "high", 3, "not finite", id="inf"),
    pytest.param(_with(1, f"{T0},0,101.0,0,100.5,1.5"), "open", 1, "> 0", id="zero-price"),
    pytest.param(_with(1, f"{T0},100,101.0,-1,100.5,1.5"), "low", 1, "> 0", id="negative-price"),
    pytest.param(_with(1, f"{T0},100,101.0,99.5,100.5,-1"), "volume", 1, ">= 0", id="negative-volume"),
    pytest.param(_with(3, f"{T0 - 60_000},101.5,101.5,100.5,101.0,0"), "open_time", 3, "not sorted", id="unsorted"),
    pytest.param(_with(3, f"{T0 + 60_000},101.5,101.5,100.5,101.0,0"), "open_time", 3, "duplicate", id="duplicate"),
    pytest.param(_with(2, f"{T0 + 60_000},100.5,101.0,100.0,101.5,2.0"), "high", 2, "below max", id="high<close"),
    pytest.param(_with(2, f"{T0 + 60_000},100.5,102.0,100.8,101.5,2.0"), "low", 2, "above min", id="low>open"),
    pytest.param(_with(2, f"{T0 + 60_000},100.5,99.0,100.0,99.5,2.0"), "high", 2, "below low", id="high<low"),
    pytest.param(_with(2, "01/03/2023 00:01,100.5,102.0,100.0,101.5,2.0"), "open_time", 2, "'01/03/2023 00:01'",
                 id="not-iso"),
    pytest.param(_with(2, "yesterday,100.5,102.0,100.0,101.5,2.0"), "open_time", 2, "'yesterday'", id="bad-time"),
    pytest.param("time,open,high,low,close\n2023-03-01T00:00:00Z,1,1,1,1\n2023-13-01T00:01:00Z,1,1,1,1\n", "time", 2,
                 "'2023-13-01T00:01:00Z'", id="bad-iso-time"),
    pytest.param(_with(3, f"{T0 + 150_000},101.5,101.5,100.5,101.0,0"), "open_time", 3, "off the 1m grid",
                 id="off-grid"),
])
def test_validation_errors_name_file_column_row(tmp_path, text, column, row, words):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(CandleError) as info:
        load_candles(path, timeframe="1m" if "grid" in words else None)
    message = str(info.value)
    assert str(path) in message and f"column '{column}'" in message and words in message
    assert info.value.column == column and info.value.row == row
    if row is not None:
        assert f"row {row}" in message
    assert isinstance(info.value, ValueError)


def test_error_shows_the_row_time(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(_with(2, f"{T0 + 60_000},100.5,101.0,100.0,101.5,2.0"))
    with pytest.raises(CandleError, match=r"row 2 \(2023-03-01T00:01:00Z\)"):
        load_candles(path)


@pytest.mark.parametrize("name, text, words", [
    ("none.csv", None, "file not found"),
    ("c.json", "{}", "unknown file type"),
    ("empty.csv", "open_time,open,high,low,close\n", "no data rows"),
    ("one.csv", f"open_time,open,high,low,close\n{T0},1,1,1,1\n", "pass timeframe="),
])
def test_file_level_errors(tmp_path, name, text, words):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(CandleError, match=words):
        load_candles(path)


def test_single_candle_with_timeframe(tmp_path):
    path = tmp_path / "one.csv"
    path.write_text(f"open_time,open,high,low,close\n{T0},1,1,1,1\n")
    assert len(load_candles(path, timeframe="1h")) == 1


# --- gaps ----------------------------------------------------------------------------------------------------

def test_gaps_reported_not_hidden_nor_filled(tmp_path, caplog):
    times = [T0, T0 + 60_000, T0 + 300_000, T0 + 360_000, T0 + 480_000]
    rows = [(1.0, 1.0, 1.0, 1.0, 1.0)] * 5
    path = write_csv(tmp_path / "gappy.csv", "open_time,open,high,low,close,volume", times, rows)
    with caplog.at_level(logging.WARNING, logger="fanout.candles"):
        c = load_candles(path)
    assert len(c) == 5 and c.timeframe == "1m"
    assert c.gaps == [Gap(start_ms=T0 + 120_000, end_ms=T0 + 300_000, missing=3),
                      Gap(start_ms=T0 + 420_000, end_ms=T0 + 480_000, missing=1)]
    record = next(r for r in caplog.records if r.name == "fanout.candles")
    assert record.levelno == logging.WARNING
    assert "2 gap(s), 4 missing 1m candle(s)" in record.getMessage() and "gappy.csv" in record.getMessage()
    assert c.slice(T0 + 300_000).gaps == [c.gaps[1]]
    assert c.slice(None, T0 + 300_000).gaps == []
    assert c.slice(T0, T0 + 300_001).gaps == [c.gaps[0]]


# --- Candles helpers -----------------------------------------------------------------------------------------

def test_index_and_slice():
    c = Candles(symbol="BTC/USDT:USDT", timeframe="1m", time=minutes(5), open=[1] * 5, high=[1] * 5,
                low=[1] * 5, close=[1, 2, 3, 4, 5], volume=[0] * 5)
    assert c.index_at_or_after(T0) == 0
    assert c.index_at_or_after(T0 + 1) == 1
    assert c.index_at_or_after(T0 + 10 * 60_000) == 5
    part = c.slice(T0 + 60_000, T0 + 180_000)
    assert part.close.tolist() == [2, 3] and part.symbol == c.symbol
    assert len(c.slice(T0 + 180_000, T0)) == 0
    assert "x5" in repr(c)


def test_candles_rejects_mismatched_arrays():
    with pytest.raises(ValueError, match="Candles.close"):
        Candles(symbol="X", timeframe="1m", time=[1, 2], open=[1, 1], high=[1, 1], low=[1, 1], close=[1],
                volume=[0, 0])


def test_resample_ohlcv():
    rng = np.random.default_rng(3)
    n = 180  # three hours of 1m candles starting at 00:30 → buckets 00:00 (partial), 01:00, 02:00, 03:00 (partial)
    t = T0 + 30 * 60_000 + 60_000 * np.arange(n)
    close = 100 + np.cumsum(rng.normal(0, 0.1, n))
    open_ = np.r_[100.0, close[:-1]]
    high = np.maximum(open_, close) + 0.05
    low = np.minimum(open_, close) - 0.05
    vol = rng.uniform(0, 2, n)
    c = Candles(symbol="BTC/USDT:USDT", timeframe="1m", time=t, open=open_, high=high, low=low, close=close,
                volume=vol)
    h = resample(c, "1h")
    assert h.timeframe == "1h" and h.time.tolist() == [T0 + k * 3_600_000 for k in range(4)]
    expected = c.to_frame().resample("1h").agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"})
    np.testing.assert_allclose(h.to_frame().to_numpy(), expected.to_numpy())
    assert h.open[1] == open_[30] and h.close[1] == close[89]
    assert resample(c, "1m").close.tolist() == close.tolist()
    with pytest.raises(ValueError, match="multiple"):
        resample(resample(c, "15m"), "20m")


def test_resample_keeps_missing_buckets_as_gaps():
    t = np.array([T0, T0 + 60_000, T0 + 3 * 3_600_000])
    c = Candles(symbol="X", timeframe="1m", time=t, open=[1, 1, 1], high=[2, 3, 1], low=[1, 1, 1],
                close=[1, 1, 1], volume=[1, 1, 1])
    h = resample(c, "1h")
    assert h.high.tolist() == [3, 1] and h.volume.tolist() == [2, 1]
    assert h.gaps == [Gap(start_ms=T0 + 3_600_000, end_ms=T0 + 3 * 3_600_000, missing=2)]


# --- the real shared file and a year of candles --------------------------------------------------------------------------

@pytest.mark.skipif(not REAL.exists(), reason=f"real candles not present at {REAL} (../shared/data beside the repo)")
def test_real_binance_file_loads():
    c = load_candles(REAL)
    assert len(c) == 30_240 and c.gaps == [] and c.timeframe == "1m"
    assert c.time[0] == T0 and c.time[-1] == T0 + 30_239 * 60_000
    assert c.open[0] == 23140.48 and c.close[0] == 23142.31
    assert len(resample(c, "1h")) == 504


def test_a_year_of_pyarrow_written_candles_loads_exactly(tmp_path):
    """525,000 rows in pyarrow's CSV dialect (quoted header, ``2023-03-01 00:00:00.000Z`` times) come back
    value for value; how long it takes is printed by benchmarks/bench_candles.py, never asserted."""
    n = 525_000
    rng = np.random.default_rng(1)
    close = np.round(30000 * np.exp(np.cumsum(rng.normal(0, 0.0007, n))), 1)
    open_ = np.r_[30000.0, close[:-1]]
    c = Candles(symbol="BTC/USDT:USDT", timeframe="1m", time=T0 + 60_000 * np.arange(n), open=open_,
                high=np.maximum(open_, close) + 1, low=np.minimum(open_, close) - 1, close=close,
                volume=rng.uniform(0, 10, n).round(3))
    table = pa.table({"open_time": pa.array(c.time, pa.timestamp("ms", tz="UTC")), "open": c.open,
                      "high": c.high, "low": c.low, "close": c.close, "volume": c.volume})
    pa_csv.write_csv(table, tmp_path / "big.csv")
    back = load_candles(tmp_path / "big.csv", symbol=c.symbol)
    assert len(back) == n and back.timeframe == "1m" and back.gaps == []
    for name in ("time", "open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(back, name), getattr(c, name), err_msg=name)
