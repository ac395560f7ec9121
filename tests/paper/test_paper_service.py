"""Paper mode end to end with a recorded price source: file signals, fills, restart without re-execution."""

from __future__ import annotations

import pytest

from engine import ExecutionConfig
from engine.ports import NullNotifier
from fanout.modes import build_paper
from fanout.signal_sources import FileSignalSource

SYMBOL = "BTC/USDT:USDT"
T0 = 1_700_000_000_000 - (1_700_000_000_000 % 60_000)


class RecordedPrices:
    """A ccxt-shaped public client replaying a fixed minute series (stands in for Binance's market data)."""

    def __init__(self, candles: list[tuple[int, float, float, float, float]]) -> None:
        self.candles = candles
        self.now = candles[0][0] + 1_000
        self.calls: list[str] = []

    def milliseconds(self) -> int:
        return self.now

    async def fetch_ticker(self, symbol: str) -> dict:
        self.calls.append("fetch_ticker")
        last = [c for c in self.candles if c[0] <= self.now][-1]
        return {"symbol": symbol, "last": last[1], "timestamp": self.now}

    async def fetch_ohlcv(self, symbol, timeframe="1m", since=None, limit=None):
        self.calls.append("fetch_ohlcv")
        return [[t, o, h, low, c, 1.0] for t, o, h, low, c in self.candles if since is None or t >= since][:limit]

    async def close(self) -> None:
        return None


def _candles():
    # minute 0: entry at 50,000; minute 1 quiet; minute 2 reaches the 51,000 target
    return [
        (T0, 50_000.0, 50_100.0, 49_900.0, 50_050.0),
        (T0 + 60_000, 50_050.0, 50_300.0, 49_950.0, 50_200.0),
        (T0 + 120_000, 50_200.0, 51_200.0, 50_150.0, 51_100.0),
        (T0 + 180_000, 51_100.0, 51_150.0, 51_000.0, 51_050.0),
    ]


@pytest.fixture()
def env(database_url):
    """Each test once on SQLite and once on PostgreSQL."""
    return {"DATABASE_URL": database_url, "PAPER_BALANCES": "1000,5000,500"}


def _write_signals(path, rows):
    path.write_text("time,id,symbol,side,entry,stop_loss,take_profit\n" + "".join(rows))


async def test_paper_file_signal_fills_targets_and_survives_restart(tmp_path, env):
    prices = RecordedPrices(_candles())
    signals = tmp_path / "signals.csv"
    _write_signals(signals, [f"{T0},s1,BTCUSDT,LONG,50000,49500,51000\n"])

    rt = await build_paper(env, ExecutionConfig(), NullNotifier(), price_source=prices, taker_fee=0.0)
    source = FileSignalSource(signals, rt.service.handle)
    assert await source.scan() == 1
    summary = rt.service.executed[-1]
    assert summary.succeeded == 3
    assert [r.quantity for r in summary.results] == [0.008, 0.04, 0.004]
    assert all(r.fill_price == 50_000.0 for r in summary.results)
    # time passes: minute 2 crosses the target
    prices.now = T0 + 240_000
    await rt.service.tick_once()
    venue_accounts = {a.name: a.exchange for a in rt.accounts}
    for ex in venue_accounts.values():
        assert not ex.positions
        assert [c.exit_reason for c in ex.closed] == ["take_profit"]
        assert not [o for o in ex.algo_orders.values() if o["status"] == "open"], "sibling stop cancelled"
    assert venue_accounts["Account 1"].wallet == pytest.approx(1000 + 0.008 * 1000)
    await rt.close()

    # restart: same database, same signals file → nothing executed again, balances restored
    rt2 = await build_paper(env, ExecutionConfig(), NullNotifier(), price_source=prices, taker_fee=0.0)
    source2 = FileSignalSource(signals, rt2.service.handle)
    await source2.scan()
    assert rt2.service.executed == []
    ex1 = {a.name: a.exchange for a in rt2.accounts}["Account 1"]
    assert ex1.wallet == pytest.approx(1008.0)
    assert len(rt2.journal.executions("paper")) == 3
    await rt2.close()


async def test_paper_restart_keeps_open_position_and_brackets(tmp_path, env):
    prices = RecordedPrices(_candles())
    rt = await build_paper(env, ExecutionConfig(), NullNotifier(), price_source=prices, taker_fee=0.0)
    signals = tmp_path / "signals.jsonl"
    signals.write_text('{"id": "s2", "symbol": "BTC/USDT", "side": "long", "entry": 50000, "stop_loss": 49500, '
                       '"take_profit": 51000}\n{"symbol": "BTC/USDT", "side": "long", "entry": -1}\n')
    source = FileSignalSource(signals, rt.service.handle)
    assert await source.scan() == 1
    assert source.rejected == 1  # the malformed line is logged, never traded
    await rt.close()

    rt2 = await build_paper(env, ExecutionConfig(), NullNotifier(), price_source=prices, taker_fee=0.0)
    accounts = {a.name: a.exchange for a in rt2.accounts}
    assert accounts["Account 2"].positions[SYMBOL].contracts == pytest.approx(0.04)
    assert len(rt2.executor.watcher.open_brackets()) == 3
    prices.now = T0 + 240_000
    await rt2.service.tick_once()
    assert all(not ex.positions for ex in accounts.values())
    assert rt2.executor.watcher.cancelled_siblings == 3
    await rt2.close()


async def test_file_source_picks_up_appended_lines_only_when_complete(tmp_path, env):
    prices = RecordedPrices(_candles())
    rt = await build_paper(env, ExecutionConfig(), NullNotifier(), price_source=prices, taker_fee=0.0)
    signals = tmp_path / "signals.csv"
    _write_signals(signals, [])
    source = FileSignalSource(signals, rt.service.handle)
    assert await source.scan() == 0
    with signals.open("a") as fh:
        fh.write(f"{T0},s3,BTCUSDT,SHORT,50000,50500,49000")  # no newline yet: still being written
    assert await source.scan() == 0
    with signals.open("a") as fh:
        fh.write("\n")
    assert await source.scan() == 1
    assert rt.service.executed[-1].results[0].side == "SHORT"
    await rt.close()


async def test_signal_is_retried_when_the_price_cannot_be_fetched(tmp_path, env):
    prices = RecordedPrices(_candles())
    rt = await build_paper(env, ExecutionConfig(), NullNotifier(), price_source=prices, taker_fee=0.0)
    signals = tmp_path / "signals.csv"
    _write_signals(signals, [f"{T0},s4,BTCUSDT,LONG,50000,49500,51000\n"])

    async def offline(symbol):
        raise ConnectionError("no network")

    real = prices.fetch_ticker
    prices.fetch_ticker = offline
    source = FileSignalSource(signals, rt.service.handle)
    with pytest.raises(ConnectionError):
        await source.scan()
    assert not rt.journal.is_processed("s4")
    assert all(not a.exchange.positions for a in rt.accounts)
    prices.fetch_ticker = real
    assert await source.scan() == 1  # the same watcher reads the line again
    assert rt.service.executed[-1].succeeded == 3
    await rt.close()
