"""Tests for marketdata/times.py: the one timeframe table, time parser, ISO formatter, Gap and gap finder, and
that the candle loader and the downloader share them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from marketdata import candles, download
from marketdata.cache import write_cache
from marketdata.times import (
    BINANCE_TIMEFRAMES,
    Gap,
    TimeParseError,
    align_up,
    find_gaps,
    format_time,
    format_times,
    ms_to_timeframe,
    parse_time,
    parse_times,
    timeframe_to_ms,
)

T0 = 1677628800000  # 2023-03-01T00:00:00Z
M = 60_000


# --- timeframes -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("tf, ms", [("1s", 1_000), ("1m", 60_000), ("5m", 300_000), ("15m", 900_000),
                                    ("1h", 3_600_000), ("4h", 14_400_000), ("1d", 86_400_000), ("1w", 604_800_000)])
def test_timeframe_to_ms_and_back(tf, ms):
    assert timeframe_to_ms(tf) == ms
    assert ms_to_timeframe(ms) == tf


@pytest.mark.parametrize("bad", ["", "m", "0m", "1M", "1y", "1 hour"])
def test_timeframe_to_ms_rejects(bad):
    with pytest.raises(ValueError, match="timeframe"):
        timeframe_to_ms(bad)


def test_binance_timeframes_are_the_downloadable_ones():
    assert [timeframe_to_ms(tf, choices=BINANCE_TIMEFRAMES) for tf in ("1m", "8h", "1d")] == [M, 480 * M, 1440 * M]
    with pytest.raises(ValueError, match="timeframe '1w' is not one of 1m, 3m"):
        timeframe_to_ms("1w", choices=BINANCE_TIMEFRAMES)
    assert align_up(T0 + 1, M) == T0 + M and align_up(T0, M) == T0


# --- the formatter and the parser -------------------------------------------------------------------------------

@pytest.mark.parametrize("ms", [0, T0, T0 + 59 * M, T0 + 250, 1_704_067_199_999, 4_102_444_800_000])
@pytest.mark.parametrize("style", [{}, {"sep": " ", "zone": "+00:00"}, {"zone": "+00:00"}])
def test_formatter_round_trips_through_the_parser(ms, style):
    text = format_time(ms, **style)
    assert parse_time(text) == ms
    assert parse_times([text, text])[1] == ms


def test_many_at_once_write_what_datetime_isoformat_writes():
    ms = np.r_[np.random.default_rng(0).integers(-10**12, 4 * 10**12, 5_000), -250, 0, 999, T0]
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert format_times(ms, sep=" ", zone="+00:00") == [
        (epoch + timedelta(milliseconds=int(v))).isoformat(sep=" ") for v in ms]
    assert format_times([]) == []


def test_formatter_styles():
    assert format_time(T0) == "2023-03-01T00:00:00Z"
    assert format_time(T0, sep=" ", zone="+00:00") == "2023-03-01 00:00:00+00:00"  # the cache's CSV form
    assert format_time(T0 + 250) == "2023-03-01T00:00:00.250000Z"  # a fraction only when there is one
    # the same text datetime.isoformat writes, which the cache files and alerts always had
    assert format_time(T0 + 250, zone="+00:00") == datetime.fromtimestamp((T0 + 250) / 1000, tz=UTC).isoformat()


@pytest.mark.parametrize("text, ms", [
    ("2023-03-01", T0), ("2023-03-01T12:00", T0 + 720 * M), ("2023-03-01T12:00Z", T0 + 720 * M),
    ("2023-03-01 12:00:00+02:00", T0 + 600 * M), (" 2023-03-01T00:01:00.000Z ", T0 + M),
    (str(T0), T0), (str(T0 // 1000), T0), (T0, T0), (pd.Timestamp(T0, unit="ms"), T0),
    (datetime(2023, 3, 1, tzinfo=UTC), T0),
])
def test_parser_reads_epoch_numbers_and_iso_text(text, ms):
    assert parse_time(text) == ms


@pytest.mark.parametrize("value, words", [
    ("yesterday-ish", "'yesterday-ish' is not an ISO-8601 date or date-time (e.g. 2023-03-01T12:00)"),
    ("2023-13-01", "'2023-13-01' is not an ISO-8601"),
    ("-5", "'-5' is a negative epoch time"),
    (True, "holds booleans"),
])
def test_parser_names_the_field(value, words):
    with pytest.raises(TimeParseError) as err:
        parse_time(value, "--since")
    assert str(err.value).startswith("--since: ") and words in str(err.value)
    assert err.value.field == "--since" and err.value.index is None and isinstance(err.value, ValueError)


def test_column_parser_names_the_first_bad_value():
    with pytest.raises(TimeParseError) as err:
        parse_times(["2023-03-01T00:00Z", "2023-03-01T00:01Z", "soon", "later"], "open_time")
    assert err.value.index == 2 and err.value.field == "open_time" and "'soon'" in err.value.reason
    with pytest.raises(TimeParseError, match="not an epoch time like the other rows") as err:
        parse_times([str(T0), "2023-03-01T00:01Z"], "open_time")
    assert err.value.index == 1
    assert parse_times([T0 // 1000 * 1000_000, (T0 + M) * 1000]).tolist() == [T0, T0 + M]  # µs, by magnitude


# --- gaps ---------------------------------------------------------------------------------------------------------

def test_find_gaps_inside_and_at_the_edges():
    times = [T0 + M, T0 + 2 * M, T0 + 5 * M]
    assert find_gaps(times, M) == [Gap(start_ms=T0 + 3 * M, end_ms=T0 + 5 * M, missing=2)]
    assert find_gaps(times, M, T0, T0 + 7 * M) == [
        Gap(start_ms=T0, end_ms=T0 + M, missing=1),
        Gap(start_ms=T0 + 3 * M, end_ms=T0 + 5 * M, missing=2),
        Gap(start_ms=T0 + 6 * M, end_ms=T0 + 7 * M, missing=1),
    ]
    assert find_gaps(times, M, T0 + M, T0 + 3 * M) == []
    assert find_gaps([], M, T0, T0 + 3 * M) == [Gap(start_ms=T0, end_ms=T0 + 3 * M, missing=3)]
    assert find_gaps(np.array([], dtype=np.int64), M) == [] and find_gaps([T0], M) == []


def test_loader_and_downloader_share_one_gap(tmp_path):
    """A cache file with holes: the candle loader and the downloader's range check report the same Gap objects."""
    assert candles.Gap is download.Gap is Gap
    present = [T0 + i * M for i in (0, 1, 4, 5, 6, 9)]
    path = tmp_path / "BTCUSDT-1m.csv"
    write_cache(path, {ms: ("1", "1", "1", "1", "0") for ms in present})
    loaded = candles.load_candles(path)
    expected = [Gap(start_ms=T0 + 2 * M, end_ms=T0 + 4 * M, missing=2),
                Gap(start_ms=T0 + 7 * M, end_ms=T0 + 9 * M, missing=2)]
    assert loaded.gaps == expected
    assert find_gaps(present, M, T0, T0 + 10 * M) == expected  # what a download of [T0, T0 + 10m) reports
    assert find_gaps(loaded.time, M, T0 - 2 * M, T0 + 12 * M) == [
        Gap(start_ms=T0 - 2 * M, end_ms=T0, missing=2), *expected, Gap(start_ms=T0 + 10 * M, end_ms=T0 + 12 * M,
                                                                        missing=2)]
