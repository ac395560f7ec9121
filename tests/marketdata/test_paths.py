"""Tests for marketdata/paths.py: FANOUT_DATA_DIR moves the rules snapshot, the downloader's markets file and the
cache together; nothing reads a data file from anywhere else."""

from __future__ import annotations

import json

import pytest

from marketdata import paths
from marketdata.cache import (
    FUNDING_HEADER,
    MarketDataError,
    cache_path,
    funding_path,
    summarize_cache,
    write_cache,
)
from marketdata.client import make_exchange, resolve_market
from marketdata.rules import MarketRules

BTC = "BTC/USDT:USDT"
T0 = 1677628800000


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """FANOUT_DATA_DIR pointing at a copy of the bundled snapshot whose BTCUSDT tick size is changed to 0.5, so a
    market read from it is told apart from one read from the checkout's data/."""
    snapshot = json.loads((paths.BUNDLED_DATA / "market_rules.json").read_text())
    for f in snapshot["symbols"]["BTCUSDT"]["exchangeInfo"]["filters"]:
        if f["filterType"] == "PRICE_FILTER":
            f["tickSize"] = "0.50"
    (tmp_path / "market_rules.json").write_text(json.dumps(snapshot))
    monkeypatch.setenv("FANOUT_DATA_DIR", str(tmp_path))
    return tmp_path


def test_every_location_follows_fanout_data_dir(data_dir, monkeypatch):
    assert paths.data_dir() == data_dir
    assert paths.market_rules_file() == data_dir / "market_rules.json"
    assert paths.cache_dir() == data_dir / "cache"
    assert paths.demo_signals_file() == data_dir / "demo_signals.csv"
    assert cache_path(BTC, "1m") == data_dir / "cache" / "BTCUSDT-1m.csv"
    monkeypatch.delenv("FANOUT_DATA_DIR")
    assert paths.market_rules_file() == paths.BUNDLED_DATA / "market_rules.json"
    assert cache_path(BTC, "1m") == paths.BUNDLED_DATA / "cache" / "BTCUSDT-1m.csv"


def test_rules_snapshot_is_read_from_fanout_data_dir(data_dir):
    assert MarketRules.load().markets[BTC]["precision"]["price"] == 0.5


def test_missing_snapshot_in_fanout_data_dir_names_the_path(tmp_path, monkeypatch):
    monkeypatch.setenv("FANOUT_DATA_DIR", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="empty/market_rules.json"):
        MarketRules.load()


async def test_downloader_markets_file_is_read_from_fanout_data_dir(data_dir):
    exchange = make_exchange()

    async def no_network(reload: bool = False) -> None:
        raise AssertionError("load_markets called: the snapshot in FANOUT_DATA_DIR was not used")

    exchange.load_markets = no_network
    try:
        market = await resolve_market(exchange, BTC)
    finally:
        await exchange.close()
    assert market["id"] == "BTCUSDT" and market["precision"]["price"] == 0.5


async def test_symbol_missing_from_the_snapshot_asks_the_exchange(data_dir):
    exchange = make_exchange()
    asked = []

    async def load_markets(reload: bool = False) -> None:
        asked.append(True)
        exchange.set_markets([])

    exchange.load_markets = load_markets
    try:
        with pytest.raises(MarketDataError, match="no market NOPE/USDT:USDT"):
            await resolve_market(exchange, "NOPE/USDT:USDT")
    finally:
        await exchange.close()
    assert asked == [True]


def test_cache_summary_lists_every_series_of_the_default_cache(data_dir):
    write_cache(cache_path(BTC, "1m"), {T0: ("1", "1", "1", "1", "0"), T0 + 120_000: ("1", "1", "1", "1", "0")})
    funding = cache_path(BTC, "8h", series="funding")
    write_cache(funding, {T0: ("0.0001",)}, header=("funding_time", "rate"))
    write_cache(funding_path("ETHUSDT"), {T0: ("0.0001", ""), T0 + 8 * 3_600_000: ("0.0002", "")},
                header=FUNDING_HEADER)
    listed = {(s.path.name, s.timeframe, s.series, s.rows, s.missing) for s in summarize_cache()}
    assert listed == {("BTCUSDT-1m.csv", "1m", "", 2, 1), ("BTCUSDT-8h-funding.csv", "8h", "funding", 1, 0),
                      ("ETHUSDT-funding.csv", "", "funding", 2, 0)}
