"""Portfolio backtests on the real month in ../shared/data/usdm-2023-07/ (7 coins, BTC/ETH/SOL funding): one wallet
per account across symbols, the CLI over a folder, per-symbol totals, a symbol outside the old 7, unknown symbols."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from engine import ExecutionConfig, parse_signal
from fanout.cli import main
from marketdata.candles import load_candles
from marketdata.rules import MarketRules
from simulator.backtest import BacktestRunner

MONTH = Path(__file__).resolve().parents[3] / "shared" / "data" / "usdm-2023-07"
SIGNALS = Path(__file__).resolve().parents[2] / "data" / "portfolio_signals_2023-07.csv"
pytestmark = pytest.mark.skipif(not MONTH.is_dir(), reason=f"the real month is not here ({MONTH}: ../shared absent)")


def month(coin: str):
    (path,) = MONTH.glob(f"{coin}USDT-1m-*.csv")
    return load_candles(path, symbol=f"{coin}/USDT:USDT")


def sig(coin, time, entry, sl, tp, side="LONG", id=None):
    return parse_signal({"symbol": f"{coin}USDT", "side": side, "entry": entry, "sl": sl, "tp": tp, "time": time,
                         "id": id or f"{coin.lower()}-1"})


# 2023-07-20 00:00 UTC: BTC ~29,900, ETH ~1,890; wide levels keep both positions open for hours
BTC_LONG = ("BTC", "2023-07-20T00:00:00Z", 29_900, 25_000, 40_000)
ETH_LONG = ("ETH", "2023-07-20T00:05:00Z", 1_890, 1_600, 2_500)


def run(signals, balances, **config):
    data = [month("BTC"), month("ETH")]
    return BacktestRunner(data, signals, balances, ExecutionConfig(**config)).run()


def test_margin_locked_on_btc_is_missing_for_eth():
    cfg = {"position_size_pct": 0.9, "leverage": 5, "max_position_usd": 1e9, "min_balance_usd": 200}
    both = run([sig(*BTC_LONG), sig(*ETH_LONG)], {"A": 1_000}, **cfg)
    assert [t["symbol"] for t in both.trades] == ["BTC/USDT:USDT"]
    (skip,) = both.skipped
    assert skip["signal_id"] == "eth-1" and skip["reason"].startswith("balance $") and "below minimum $200" in skip["reason"]
    free = float(skip["reason"].split("$")[1].split()[0].replace(",", ""))
    btc = both.trades[0]
    assert free == pytest.approx(1_000 - btc["margin"] - btc["notional"] * 0.0005, abs=0.01)
    alone = run([sig(*ETH_LONG)], {"A": 1_000}, **cfg)  # the same ETH signal with the wallet to itself trades
    assert [t["symbol"] for t in alone.trades] == ["ETH/USDT:USDT"] and not alone.skipped


def test_max_open_positions_and_sizing_count_every_symbol():
    cfg = {"position_size_pct": 0.5, "leverage": 5, "max_position_usd": 1e9}
    capped = run([sig(*BTC_LONG), sig(*ETH_LONG)], {"A": 1_000}, max_open_positions=1, **cfg)
    assert [s["reason"] for s in capped.skipped] == ["max open positions reached (1/1)"]
    shared = run([sig(*BTC_LONG), sig(*ETH_LONG)], {"A": 1_000}, **cfg)
    btc, eth = sorted(shared.trades, key=lambda t: t["entry_time"])
    # half of what BTC left free, not half of the wallet
    # (quantities truncated to the step: 0.001 BTC is $6 of margin at 5x, 0.001 ETH $0.38, and fills are at the candle open, not the signal entry)
    assert btc["margin"] == pytest.approx(500, abs=6)
    assert eth["margin"] == pytest.approx((1_000 - btc["margin"] - btc["notional"] * 0.0005) * 0.5, abs=1)


def test_a_symbol_outside_the_old_seven_trades_with_its_own_filters():
    rules = MarketRules.load()
    sol = rules.market("SOL/USDT:USDT")
    step = Decimal(str(sol["precision"]["amount"]))
    result = BacktestRunner([month("SOL")], [sig("SOL", "2023-07-20T00:00:00Z", 26.0, 20.0, 40.0)],
                            {"A": 333, "B": 20_000}, ExecutionConfig(position_size_pct=0.1, leverage=3)).run()
    assert len(result.trades) == 2
    for t in result.trades:
        assert Decimal(str(t["quantity"])) % step == 0  # SOLUSDT trades whole coins (stepSize 1)
        assert t["notional"] >= sol["limits"]["cost"]["min"]
    tiny = BacktestRunner([month("SOL")], [sig("SOL", "2023-07-20T00:00:00Z", 26.0, 20.0, 40.0)], {"A": 30},
                          ExecutionConfig(position_size_pct=0.1, leverage=3, min_balance_usd=1)).run()
    assert tiny.skipped[0]["reason"].startswith("quantity 0.34615385 below minimum 1 ")  # SOL's own minQty


def cli(out, *extra) -> int:
    return main(["backtest", "--out", str(out), "--no-progress", "--no-plot", *extra])


def test_a_month_of_signals_on_seven_coins_over_many_accounts(tmp_path, capsys):
    args = ["--candles", str(MONTH), "--signals", str(SIGNALS), "--balances", "100,300,1000,5000,20000"]
    assert cli(tmp_path / "a", *args, "--workers", "1", "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert cli(tmp_path / "b", *args, "--workers", "2") == 0
    capsys.readouterr()
    for name in ("trades.csv", "skipped.csv", "equity.csv", "summary.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    trades = pd.read_csv(tmp_path / "a" / "trades.csv")
    assert trades["symbol"].nunique() == 7 and trades["account"].nunique() == 5
    per_symbol = summary["symbols"]
    assert len(per_symbol) == 7
    for symbol, s in per_symbol.items():
        t = trades[trades["symbol"] == symbol]
        assert s["trades"] == len(t) > 0
        assert s["pnl"] == pytest.approx(t["pnl"].sum(), abs=1e-5)
    assert sum(s["trades"] for s in per_symbol.values()) == summary["totals"]["trades"]
    assert sum(s["skipped"] for s in per_symbol.values()) == summary["totals"]["skipped"]
    assert summary["candles"]["series"]["SOL/USDT:USDT"]["timeframe"] == "1m"
    equity = pd.read_csv(tmp_path / "a" / "equity.csv", parse_dates=["time"])
    # one clock: the grid starts with the earliest symbol (ETH and ADA from 2023-07-03)
    first = min(month(coin).time[0] for coin in ("ADA", "ETH"))
    assert equity["time"].iloc[0] == pd.Timestamp(int(first), unit="ms", tz="UTC")


def test_a_symbol_the_snapshot_lacks_is_named_with_the_snapshot_date(tmp_path, capsys):
    btc = next(MONTH.glob("BTCUSDT-1m-*.csv"))
    assert cli(tmp_path, "--candles", f"BTCUSDT={btc}", "--candles", f"FAKECOINUSDT={btc}", "--signals",
               str(SIGNALS)) == 2
    err = capsys.readouterr().err
    assert "FAKECOIN/USDT:USDT" in err and "2024-10-20" in err
    assert not (tmp_path / "trades.csv").exists()
