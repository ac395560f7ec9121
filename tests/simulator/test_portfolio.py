"""Portfolio backtests on the real month in ../shared/data/usdm-2023-07/ (7 coins, BTC/ETH/SOL funding): one wallet
per account across symbols, the CLI over a folder, per-symbol totals, a symbol outside the old 7, unknown symbols."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

import analysis
from engine import ExecutionConfig, parse_signal
from fanout.cli import main
from marketdata.candles import load_candles
from marketdata.funding import load_funding
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
    out, err = capsys.readouterr()
    summary = json.loads(out)
    unknown = ["ADA/USDT:USDT", "BNB/USDT:USDT", "DOGE/USDT:USDT", "XRP/USDT:USDT"]
    assert f"funding unknown for {', '.join(unknown)}" in err
    assert summary["funding"] == {"known": ["BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"], "unknown": unknown}
    assert cli(tmp_path / "b", *args, "--workers", "2") == 0
    capsys.readouterr()
    for name in ("trades.csv", "skipped.csv", "equity.csv", "summary.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    trades = pd.read_csv(tmp_path / "a" / "trades.csv")
    assert trades["symbol"].nunique() == 7 and trades["account"].nunique() == 5
    assert list(trades.columns)[-1] == "funding"
    assert trades.loc[trades["symbol"].isin(unknown), "funding"].isna().all()  # unknown, not 0
    assert trades.loc[trades["symbol"] == "BTC/USDT:USDT", "funding"].abs().sum() > 0
    for name, acct in summary["accounts"].items():
        assert acct["funding"] == pytest.approx(trades.loc[trades["account"] == name, "funding"].sum(), abs=1e-6)
        assert acct["end_balance"] == pytest.approx(acct["start_balance"] + acct["pnl"], abs=1e-6)
    assert summary["totals"]["funding"] == pytest.approx(trades["funding"].sum(), abs=1e-6)
    per_symbol = summary["symbols"]
    assert [per_symbol[s]["funding"] for s in unknown] == [None] * 4
    assert len(per_symbol) == 7
    for symbol, s in per_symbol.items():
        t = trades[trades["symbol"] == symbol]
        assert s["trades"] == len(t) > 0
        assert s["pnl"] == pytest.approx(t["pnl"].sum(), abs=1e-5)
    assert sum(s["trades"] for s in per_symbol.values()) == summary["totals"]["trades"]
    assert sum(s["skipped"] for s in per_symbol.values()) == summary["totals"]["skipped"]
    assert summary["candles"]["series"]["SOL/USDT:USDT"]["timeframe"] == "1m"
    run = analysis.load_run(tmp_path / "a")  # what the notebook shows
    table = analysis.symbol_table(run)
    assert list(table.index) == list(per_symbol) and pd.isna(table.loc["ADA/USDT:USDT", "funding"])
    assert table["trades"].sum() == len(trades)
    assert len(analysis.plot_symbols(run).axes[0].get_lines()) == 7 + 1  # a line per coin, and zero
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


def test_funding_equals_a_hand_computation_on_the_real_month():
    """A BTC long held from 2023-07-20 until its target or stop, over the real funding history: each funding time
    between entry and exit costs quantity × the open of the 1m candle it falls in × the rate."""
    (path,) = MONTH.glob("BTCUSDT-fundingRate-*.csv")
    rates = load_funding(path)
    btc = month("BTC")
    signal = sig("BTC", "2023-07-20T00:00:00Z", 29_900, 29_000, 30_600)
    result = BacktestRunner([btc], [signal], {"A": 10_000}, ExecutionConfig(leverage=5), funding=[rates]).run()
    (t,) = result.trades
    raw = pd.read_csv(path)  # by hand, from the file itself
    held = raw[(raw["fundingTime"] >= t["entry_time"]) & (raw["fundingTime"] < t["exit_time"])]
    assert len(held) >= 2, "the position should span funding times"
    opens = pd.read_csv(next(MONTH.glob("BTCUSDT-1m-*.csv")))
    times = pd.to_datetime(opens["open_time"], utc=True).dt.as_unit("ms").astype("int64").to_numpy()
    expected = 0.0
    for when, rate in zip(held["fundingTime"], held["fundingRate"], strict=True):
        k = int((times <= when).nonzero()[0][-1])
        expected -= t["quantity"] * float(opens["open"].iloc[k]) * rate
    assert t["funding"] == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert len(held) == 14 and t["funding"] == pytest.approx(-0.3121356, abs=1e-7)  # 0.016 BTC, 4.4 days
    assert result.end_balance["A"] == pytest.approx(10_000 + t["pnl"], abs=1e-9)


def test_funding_given_as_symbol_path_for_a_single_symbol_run(tmp_path, capsys):
    eth = next(MONTH.glob("ETHUSDT-1m-*.csv"))
    rates = next(MONTH.glob("ETHUSDT-fundingRate-*.csv"))
    signals = tmp_path / "s.csv"
    signals.write_text("time,id,symbol,side,entry,stop_loss,take_profit\n"
                       "2023-07-20T00:00:00Z,e1,ETHUSDT,SHORT,1890,2300,1000\n")
    assert cli(tmp_path / "a", "--candles", str(eth), "--funding", f"ETHUSDT={rates}", "--signals", str(signals),
               "--balances", "1000", "--leverage", "3") == 0
    assert "funding unknown" not in capsys.readouterr().err
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    (t,) = pd.read_csv(tmp_path / "a" / "trades.csv").to_dict("records")
    assert t["exit_reason"] == "end_of_data" and t["funding"] > 0  # a short over a month of positive rates earns
    assert summary["accounts"]["Account 1"]["funding"] == pytest.approx(t["funding"])
    assert summary["funding"] == {"known": ["ETH/USDT:USDT"], "unknown": []} and "symbols" not in summary
    assert cli(tmp_path / "b", "--candles", str(eth), "--signals", str(signals), "--balances", "1000", "--leverage", "3") == 0
    assert "funding unknown for ETH/USDT:USDT" in capsys.readouterr().err
    assert "funding" not in pd.read_csv(tmp_path / "b" / "trades.csv").columns


def test_the_daily_loss_limit_sees_every_symbols_losses():
    cfg = {"position_size_pct": 0.5, "leverage": 5, "max_position_usd": 1e9, "daily_loss_limit_pct": 0.005}
    btc_stopped = sig("BTC", "2023-07-20T00:00:00Z", 29_900, 29_800, 40_000)  # stopped out the same day
    eth_later = sig("ETH", "2023-07-20T20:00:00Z", 1_890, 1_600, 2_500)
    result = run([btc_stopped, eth_later], {"A": 1_000}, **cfg)
    (btc,) = result.trades
    assert btc["exit_reason"] == "stop_loss" and btc["exit_time"] < 1_689_883_200_000  # before 20:00 UTC
    assert btc["pnl"] < -0.005 * 1_000
    (skip,) = result.skipped
    assert skip["signal_id"] == "eth-1" and skip["reason"].startswith("daily loss limit reached")
