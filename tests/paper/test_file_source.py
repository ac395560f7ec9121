"""The watched signals file (fanout/signal_sources.py FileSignalSource): malformed lines are refused naming file and
line and never traded; a failure to hand a signal over is retried, and logged once, not every round."""

from __future__ import annotations

import asyncio
import logging

import ccxt
import pytest

from fanout.signal_sources import FileSignalSource
from fanout.signals_file import SignalFileError

HEADER = "symbol,side,entry,stop_loss,take_profit\n"


async def test_a_row_with_more_fields_than_its_header_is_refused_and_not_traded(tmp_path, caplog):
    path = tmp_path / "signals.csv"
    path.write_text(HEADER + "BTCUSDT,long,50000,49500,51000,surplus\nBTCUSDT,long,50000,49500,51000\n"
                    "ETHUSDT,up,3000,2900,3100\n")
    handed = []

    async def handler(signal, source):
        handed.append(signal.id)

    source = FileSignalSource(path, handler)
    with caplog.at_level(logging.ERROR, logger="fanout.sources"):
        assert await source.scan() == 1
    assert handed == ["signals-L3"] and source.rejected == 2
    assert caplog.messages == [
        f"❌ rejected signal: {path}:2: 6 fields, the header has 5 (symbol, side, entry, stop_loss, take_profit)",
        f"❌ rejected signal at {path}:4: signal field 'side': 'up' is not LONG, SHORT, buy or sell",
    ]


async def test_binary_garbage_and_a_bad_header_are_errors_naming_the_file(tmp_path):
    path = tmp_path / "signals.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(SignalFileError) as info:
        await FileSignalSource(path, None).scan()
    assert str(info.value) == f"{path}: not a text file (not UTF-8); expected CSV or JSON lines"
    path.write_text("sym,dir\nBTCUSDT,long\n")
    with pytest.raises(SignalFileError) as info:
        await FileSignalSource(path, None).scan()
    assert str(info.value) == (f"{path}:1: header misses column(s) symbol, side, entry, stop_loss, take_profit; "
                               "found sym, dir")


async def test_a_failing_handler_is_retried_and_logged_once_per_distinct_failure(tmp_path, caplog):
    path = tmp_path / "signals.csv"
    path.write_text(HEADER + "BTCUSDT,long,50000,49500,51000\n")
    attempts = []
    stop = asyncio.Event()

    async def handler(signal, source):
        attempts.append(signal.id)
        if len(attempts) < 4:
            try:
                raise ConnectionRefusedError(111, "refused")
            except ConnectionRefusedError as cause:
                raise ccxt.ExchangeNotAvailable("binanceusdm GET http://127.0.0.1:9/fapi/v1/ticker/24hr") from cause
        stop.set()

    source = FileSignalSource(path, handler, interval=0)
    with caplog.at_level(logging.INFO, logger="fanout.sources"):
        await source.run(stop)
    assert attempts == ["signals-L2"] * 4  # the line is read again until it is handed over
    assert caplog.messages == [
        f"❌ signals file {path}: venue unreachable at 127.0.0.1:9 (BINANCE_API_URL): connection refused "
        "(retrying every 0s)",
        f"✅ signals file {path}: reading again",
    ]
