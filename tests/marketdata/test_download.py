"""Tests of ``fanout data download`` (marketdata/download.py, cache.py, client.py; fanout/cmd_data.py) replayed
from vcrpy cassettes.

Cassettes ``tests/cassettes/ohlcv_*.yaml`` hold Binance-shaped ``/fapi/v1/klines`` and ``exchangeInfo`` answers
recorded from the stand-in in tests/marketdata/binance_standin.py (real candles from ../shared/data). Playback never
touches the network (record_mode none; requests match on method, path and query). Re-record all of them with::

    FANOUT_RECORD_CASSETTES=1 .venv/bin/python -m pytest tests/marketdata -q
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from pathlib import Path
from urllib.parse import parse_qsl, urlparse, urlunparse

import numpy as np
import pytest
import vcr

from fanout import cmd_data
from marketdata.cache import (
    HEADER,
    MarketDataError,
    cache_path,
    load_cached,
    read_cache,
    summarize_cache,
    write_cache,
)
from marketdata.candles import load_candles
from marketdata.client import make_exchange
from marketdata.download import download, download_funding, funding_intervals
from marketdata.funding import load_cached_funding
from marketdata.times import Gap, format_time

from .binance_standin import SHARED_CSV, StandIn, load_funding_rows, load_minutes

CASSETTES = Path(__file__).resolve().parents[1] / "cassettes"
RECORD = os.environ.get("FANOUT_RECORD_CASSETTES") == "1"
T0 = 1677628800000  # 2023-03-01 00:00 UTC, the first candle of the shared CSV
M = 60_000
H = 60 * M


def _official_host(request):
    """Cassettes show Binance's host whatever the stand-in's port was."""
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
    decode_compressed_response=True,
)


@contextlib.asynccontextmanager
async def cassette(name: str, *, funding: tuple[str, ...] = (), **scenario):
    """Yield (api_url, cassette): playback with api_url None, or (FANOUT_RECORD_CASSETTES=1) a fresh recording
    against a stand-in configured by ``scenario`` (StandIn fields) whose origin is api_url; ``funding``: symbols
    whose shared funding history the stand-in serves."""
    if not RECORD:
        with _VCR.use_cassette(f"ohlcv_{name}.yaml", record_mode="none", allow_playback_repeats=False) as cass:
            yield None, cass
            assert cass.all_played, f"ohlcv_{name}.yaml has requests the code no longer makes"
        return
    if not SHARED_CSV.is_file():
        pytest.skip(f"recording needs the real candles at {SHARED_CSV}")
    (CASSETTES / f"ohlcv_{name}.yaml").unlink(missing_ok=True)
    standin = StandIn(load_minutes(), funding={s: load_funding_rows(s) for s in funding}, **scenario)
    url = await standin.start()
    try:
        with _VCR.use_cassette(f"ohlcv_{name}.yaml", record_mode="all") as cass:
            yield url, cass
    finally:
        await standin.stop()


def cache_time(ms: int) -> str:
    return format_time(ms, sep=" ", zone="+00:00")


def made(cass, endpoint: str = "/klines") -> list[dict]:
    """Query parameters of the ``endpoint`` requests made so far through this cassette, in order."""
    played = cass.requests if RECORD else [cass.requests[i] for i in sorted(cass.play_counts)]
    return [dict(parse_qsl(r.parsed_uri.query)) for r in played if r.parsed_uri.path.endswith(endpoint)]


def bodies(cass) -> list:
    """Every klines row in the cassette's 200 answers."""
    rows = []
    for req, resp in zip(cass.requests, cass.responses, strict=True):
        if req.parsed_uri.path.endswith("/klines") and resp["status"]["code"] == 200:
            body = resp["body"]["string"]
            rows.extend(json.loads(body.decode() if isinstance(body, bytes) else body))
    return rows


def csv_rows(path: Path) -> list[list]:
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(HEADER)
    return [line.split(",") for line in lines[1:]]


# --- downloads through cassettes --------------------------------------------------------------------------------


async def test_multi_page_download_writes_exact_rows(tmp_path):
    async with cassette("multipage") as (api_url, cass):
        report = await download("BTCUSDT", "1m", T0, T0 + 2500 * M, root=tmp_path, api_url=api_url)
        sent = made(cass)
    assert report.requests == 3 and report.fetched == 2500 and report.rows == 2500
    assert [int(q["startTime"]) for q in sent] == [T0, T0 + 1000 * M, T0 + 2000 * M]
    assert {(q["symbol"], q["interval"], q["limit"], q["endTime"]) for q in sent} == {
        ("BTCUSDT", "1m", "1000", str(T0 + 2500 * M - 1))}
    path = tmp_path / "BTCUSDT-1m.csv"
    assert report.path == path and load_cached("BTC/USDT:USDT", "1m", root=tmp_path) == path
    assert path.read_text().splitlines()[:2] == [
        "open_time,open,high,low,close,volume",
        "2023-03-01 00:00:00+00:00,23140.48,23150.77,23128.52,23142.31,2.131777",
    ]
    rows = csv_rows(path)
    served = bodies(cass)
    assert len(rows) == len(served) == 2500
    for row, kline in zip(rows, served, strict=True):
        assert row[0] == cache_time(kline[0])
        assert [float(x) for x in row[1:]] == [float(x) for x in kline[1:6]]
    assert report.gaps == () and report.duplicates == 0
    if SHARED_CSV.is_file():  # the cache holds the very candles the stand-in was built from
        for row, (ms, *values) in zip(rows, load_minutes(rows=2500), strict=True):
            assert row[0] == cache_time(ms)
            assert [float(x) for x in row[1:]] == [float(x) for x in values]


async def test_resume_requests_only_the_missing_part(tmp_path):
    async with cassette("resume") as (api_url, cass):
        first = await download("BTCUSDT", "1m", T0 + 2 * H, T0 + 2 * H + 150 * M, root=tmp_path,
                               api_url=api_url, limit=100)
        assert first.requests == 2 and first.rows == 150
        before = len(made(cass))
        # wider on both sides: 120 candles before the cache (windows newest first) and 100 after it
        second = await download("BTC/USDT", "1m", T0, T0 + 2 * H + 250 * M, root=tmp_path, api_url=api_url,
                                limit=100)
        sent = [(int(q["startTime"]), int(q["endTime"]) + 1) for q in made(cass)[before:]]
    assert sent == [(T0 + 20 * M, T0 + 2 * H), (T0, T0 + 20 * M), (T0 + 2 * H + 150 * M, T0 + 2 * H + 250 * M)]
    assert second.requests == 3 and second.fetched == 220 and second.rows == 370
    assert second.gaps == () and second.first == T0 and second.last == T0 + 2 * H + 249 * M
    assert sorted(read_cache(second.path)[0]) == list(range(T0, T0 + 370 * M, M))
    # a third run inside the cached range needs no request and no exchange at all
    third = await download("BTCUSDT", "1m", T0 + H, T0 + 3 * H, root=tmp_path, exchange=object())
    assert third.requests == 0 and third.fetched == 0 and third.rows == 370 and third.gaps == ()


async def test_gaps_are_reported(tmp_path):
    outage = {T0 + H + i * M for i in range(5)} | {T0 + 150 * M}
    async with cassette("gaps", missing=outage) as (api_url, cass):
        report = await download("BTCUSDT", "1m", T0 - H, T0 + 3 * H, root=tmp_path, api_url=api_url)
        assert len(made(cass)) == 1
    assert report.rows == 180 - 6
    assert report.gaps == (
        Gap(start_ms=T0 - H, end_ms=T0, missing=60),  # before the exchange's first candle
        Gap(start_ms=T0 + H, end_ms=T0 + H + 5 * M, missing=5),
        Gap(start_ms=T0 + 150 * M, end_ms=T0 + 151 * M, missing=1),
    )
    assert report.missing == 66
    text = "\n".join(cmd_data.describe(report))
    assert "3 gap(s), 66 missing candles" in text and "2023-03-01 01:00 → 2023-03-01 01:05 (5)" in text


async def test_unknown_symbol_names_it(tmp_path):
    async with cassette("bad_symbol") as (api_url, cass):
        with pytest.raises(MarketDataError) as err:
            await download("NOPEUSDT", "1h", T0, T0 + 24 * H, root=tmp_path, api_url=api_url)
        assert [r.parsed_uri.path for r in cass.requests] == ["/fapi/v1/exchangeInfo"]
    assert "NOPE/USDT:USDT" in str(err.value) and "NOPEUSDT" in str(err.value)
    assert not (tmp_path / "NOPEUSDT-1h.csv").exists()


async def test_network_error_keeps_partial_progress_then_resumes(tmp_path):
    async with cassette("network_error", fail_start=[T0 + 100 * M] * 2) as (api_url, cass):
        with pytest.raises(MarketDataError) as err:
            await download("BTCUSDT", "1m", T0, T0 + 250 * M, root=tmp_path, api_url=api_url, limit=100,
                           retries=1, retry_delay=0)
        message = str(err.value)
        assert "100 new candles kept" in message and "run again to resume" in message
        kept = read_cache(tmp_path / "BTCUSDT-1m.csv")[0]
        assert sorted(kept) == list(range(T0, T0 + 100 * M, M))
        assert [q["startTime"] for q in made(cass)] == [str(T0), str(T0 + 100 * M), str(T0 + 100 * M)]
        again = await download("BTCUSDT", "1m", T0, T0 + 250 * M, root=tmp_path, api_url=api_url, limit=100)
    assert again.requests == 2 and again.fetched == 150 and again.rows == 250 and again.gaps == ()


# --- the command --------------------------------------------------------------------------------------------------


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fanout")
    cmd_data.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


async def _run(argv: list[str]) -> int:
    """Run a handler (it calls asyncio.run) in a worker thread, inside the test's cassette context."""
    import asyncio

    args = _parse(argv)
    return await asyncio.to_thread(args.func, args)


async def test_command_downloads_then_lists(tmp_path, monkeypatch, capsys):
    async with cassette("cli_5m") as (api_url, cass):
        if api_url:
            monkeypatch.setenv("BINANCE_API_URL", api_url)
        else:
            monkeypatch.delenv("BINANCE_API_URL", raising=False)
        code = await _run(["data", "download", "BTC/USDT:USDT", "5m", "--since", "2023-03-01",
                           "--until", "2023-03-05T12:00", "--cache-dir", str(tmp_path), "--quiet"])
        assert len(made(cass)) == 2
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "BTC/USDT:USDT 5m: 1,296 new candles in 2 requests" in out.out
    assert "validation: complete, no gaps in 2023-03-01 00:00 → 2023-03-05 12:00" in out.out
    rows = csv_rows(tmp_path / "BTCUSDT-5m.csv")
    assert len(rows) == 1296 and rows[0][0] == "2023-03-01 00:00:00+00:00" and rows[-1][0].startswith("2023-03-05 11:55")
    assert await _run(["data", "list", "--cache-dir", str(tmp_path)]) == 0
    listing = capsys.readouterr().out
    assert "BTCUSDT-5m.csv" in listing and "1,296" in listing and "2023-03-05 11:55" in listing


async def test_command_reports_bad_symbol_and_network_error(tmp_path, monkeypatch, capsys):
    async with cassette("bad_symbol") as (api_url, _):
        if api_url:
            monkeypatch.setenv("BINANCE_API_URL", api_url)
        else:
            monkeypatch.delenv("BINANCE_API_URL", raising=False)
        code = await _run(["data", "download", "NOPEUSDT", "1h", "--since", "2023-03-01", "--until", "2023-03-02",
                           "--cache-dir", str(tmp_path), "-q"])
    assert code == 1
    assert "error: symbol: Binance USDⓈ-M has no market NOPE/USDT:USDT (NOPEUSDT)" in capsys.readouterr().err
    assert await _run(["data", "download", "BTCUSDT", "1m", "--since", "yesterday-ish",
                       "--cache-dir", str(tmp_path)]) == 2
    assert "--since: 'yesterday-ish' is not an ISO-8601 date" in capsys.readouterr().err


JUN_2020, AUG_2020 = 1590969600000, 1596240000000  # 2020-06-01, 2020-08-01 (the shared funding history)
D = 24 * H


async def test_funding_history_pages_then_extends_both_ways(tmp_path):
    async with cassette("funding", funding=("BTCUSDT",)) as (api_url, cass):
        first = await download_funding("BTCUSDT", JUN_2020, AUG_2020, root=tmp_path, api_url=api_url, limit=100)
        starts = [int(q["startTime"]) for q in made(cass, "/fundingRate")]
        # the second page starts 1 ms after the 100th event (funding times carry a few ms of jitter)
        assert starts[0] == JUN_2020 and 0 < starts[1] - (JUN_2020 + 99 * 8 * H) < 10
        later = await download_funding("BTCUSDT", JUN_2020 - 12 * D, AUG_2020 + 9 * D, root=tmp_path,
                                       api_url=api_url, limit=100)
        sent = made(cass, "/fundingRate")[2:]
    assert (first.requests, first.fetched, first.rows) == (2, 183, 183)
    assert first.intervals == {"8h": 182} and first.series == "funding" and first.gaps == ()
    # before the cache: windows of 100 hours, newest first (no hole if one fails); after it: oldest first
    assert [(int(q["startTime"]), int(q["endTime"]) + 1) for q in sent[:3]] == [
        (JUN_2020 - 100 * H, JUN_2020), (JUN_2020 - 200 * H, JUN_2020 - 100 * H), (JUN_2020 - 288 * H,
                                                                                     JUN_2020 - 200 * H)]
    assert 0 < int(sent[3]["startTime"]) - (AUG_2020 - 8 * H) < 10 and len(sent) == 4
    assert (later.requests, later.fetched, later.rows, later.first) == (4, 63, 246, JUN_2020 - 12 * D)
    lines = (tmp_path / "BTCUSDT-funding.csv").read_text().splitlines()
    assert lines[0] == "fundingTime,fundingRate,markPrice" and len(lines) == 247
    assert lines[1].startswith("2020-05-20 00:00:00+00:00,") and lines[1].endswith(",")
    rates = load_cached_funding("BTCUSDT", tmp_path)
    assert len(rates) == 246 and rates.symbol == "BTC/USDT:USDT" and np.isnan(rates.mark).all()


async def test_mark_price_candles_go_beside_the_trade_candles(tmp_path):
    async with cassette("mark") as (api_url, cass):
        report = await download("BTCUSDT", "1h", T0, T0 + 30 * H, series="mark", root=tmp_path, api_url=api_url)
        assert len(made(cass, "/markPriceKlines")) == 1 and not made(cass)
    assert report.path == tmp_path / "BTCUSDT-1h-mark.csv" and report.rows == 30 and not report.gaps
    lines = report.path.read_text().splitlines()
    assert lines[0] == "open_time,open,high,low,close"
    mark = load_candles(report.path, timeframe="1h")
    trade = [m for m in load_minutes() if m[0] == T0][0]
    assert mark.open[0] == pytest.approx(float(trade[1]) * 1.0005, abs=0.01) and (mark.volume == 0).all()


async def test_command_downloads_many_symbols_with_mark_and_funding(tmp_path, monkeypatch, capsys):
    async with cassette("cli_many", symbols=("BTCUSDT", "ETHUSDT"), funding=("BTCUSDT",)) as (api_url, _):
        if api_url:
            monkeypatch.setenv("BINANCE_API_URL", api_url)
        else:
            monkeypatch.delenv("BINANCE_API_URL", raising=False)
        code = await _run(["data", "download", "BTCUSDT", "ETHUSDT,BTC/USDT", "4h", "--since", "2023-03-01",
                           "--until", "2023-03-03", "--mark", "--funding", "--cache-dir", str(tmp_path), "-q"])
    out = capsys.readouterr()
    assert code == 1  # ETHUSDT's funding failed (the stand-in has none); everything else was written
    assert "BTC/USDT:USDT 4h: 12 new candles" in out.out and "ETH/USDT:USDT 4h mark: 12 new candles" in out.out
    assert "BTC/USDT:USDT funding: 6 new funding rates in 1 requests" in out.out
    assert "intervals between funding times: 8h ×5" in out.out
    assert "error: ETH/USDT:USDT funding: unknown symbol at the venue: Invalid symbol." in out.err  # (BadSymbol)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "BTCUSDT-4h-mark.csv", "BTCUSDT-4h.csv", "BTCUSDT-funding.csv", "ETHUSDT-4h-mark.csv", "ETHUSDT-4h.csv"]
    assert await _run(["data", "list", "--cache-dir", str(tmp_path)]) == 0
    listing = capsys.readouterr().out
    assert "BTCUSDT-funding.csv" in listing and "ETHUSDT-4h-mark.csv" in listing


def test_funding_intervals_follow_the_data():
    assert funding_intervals([0, 8 * H, 16 * H + 2, 20 * H, 24 * H]) == {"8h": 2, "4h": 2}
    assert funding_intervals([5]) == {}


# --- offline units ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["BTCUSDT", "btc/usdt", "BTC/USDT:USDT"])
def test_cache_path_accepts_every_spelling(spelling, tmp_path, monkeypatch):
    monkeypatch.setenv("FANOUT_DATA_DIR", str(tmp_path))
    assert cache_path(spelling, "4h") == tmp_path / "cache" / "BTCUSDT-4h.csv"
    assert cache_path(spelling, "1m", root="/x") == Path("/x/BTCUSDT-1m.csv")
    assert cache_path(spelling, "8h", root="/x", series="funding") == Path("/x/BTCUSDT-8h-funding.csv")


def test_bad_timeframe_and_symbol_name_the_field(tmp_path):
    with pytest.raises(ValueError, match="timeframe '1w' is not one of 1m"):
        cache_path("BTCUSDT", "1w")
    with pytest.raises(MarketDataError, match="^symbol: 'BTC-USD-X'"):
        cache_path("BTC-USD-X", "1m")
    assert load_cached("ETHUSDT", "1m", root=tmp_path) is None


def test_open_candle_is_never_requested(tmp_path):
    now = T0 + 30 * 1000  # inside the first candle, which is still open
    with pytest.raises(MarketDataError, match="current candle is still open"):
        import asyncio

        asyncio.run(download("BTCUSDT", "1m", T0, None, root=tmp_path, now=now, exchange=object()))


def test_cache_roundtrip_dedupes_and_sorts(tmp_path):
    path = tmp_path / "BTCUSDT-1m.csv"
    path.write_text("open_time,open,high,low,close,volume\n"
                    "2023-03-01 00:01:00+00:00,2,2,2,2,1\n"
                    "2023-03-01 00:00:00+00:00,1,1,1,1,1\n"
                    "2023-03-01 00:01:00+00:00,3,3,3,3,1\n")
    rows, dups = read_cache(path)
    assert dups == 1 and rows == {T0: ("1", "1", "1", "1", "1"), T0 + M: ("3", "3", "3", "3", "1")}
    write_cache(path, rows)
    assert path.read_text().splitlines()[1:] == ["2023-03-01 00:00:00+00:00,1,1,1,1,1",
                                                 "2023-03-01 00:01:00+00:00,3,3,3,3,1"]
    assert not list(tmp_path.glob(".*.tmp"))
    summary = summarize_cache(tmp_path)
    assert [(s.symbol, s.timeframe, s.series, s.rows, s.first, s.last, s.missing) for s in summary] == [
        ("BTCUSDT", "1m", "", 2, T0, T0 + M, 0)]


def test_bad_cache_file_names_file_and_line(tmp_path):
    path = tmp_path / "BTCUSDT-1m.csv"
    path.write_text("open_time,open,high,low,close,volume\n2023-03-01 00:00:00+00:00,1,1,1\n")
    with pytest.raises(MarketDataError, match="BTCUSDT-1m.csv line 2: expected 6 columns"):
        read_cache(path)


async def test_api_url_replaces_the_fapi_origin_only():
    exchange = make_exchange("http://127.0.0.1:8999/")
    try:
        assert exchange.urls["api"]["fapiPublic"] == "http://127.0.0.1:8999/fapi/v1"
        assert exchange.urls["api"]["fapiData"] == "http://127.0.0.1:8999/futures/data"
        assert exchange.urls["api"]["public"].startswith("https://api.binance.com")
    finally:
        await exchange.close()
    with pytest.raises(MarketDataError, match="BINANCE_API_URL must start with http"):
        make_exchange("ftp://example")


def test_cache_is_readable_by_the_candle_loader(tmp_path):
    candles = pytest.importorskip("marketdata.candles")
    path = tmp_path / "BTCUSDT-1m.csv"
    write_cache(path, {T0 + i * M: ("1.5", "2", "1", "1.5", "0.001") for i in range(3)})
    loaded = candles.load_candles(path)
    assert len(loaded) == 3
