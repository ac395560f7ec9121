"""Tests for `fanout backtest`: the offline demo is deterministic and writes every file; bad input exits 2."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from analysis.output import TRADE_COLUMNS
from fanout.cli import main
from marketdata import paths

EXITS = {"take_profit", "stop_loss", "liquidation", "end_of_data"}
ACCOUNT_KEYS = {"start_balance", "end_balance", "trades", "wins", "losses", "win_rate", "pnl", "fees", "max_drawdown",
                "max_drawdown_pct"}
TOTAL_KEYS = {"start_balance", "end_balance", "trades", "wins", "losses", "win_rate", "pnl", "fees"}


@pytest.fixture(autouse=True)
def demo_only(monkeypatch, tmp_path):
    """The bundled demo signals over synthetic candles, even if a real download sits in data/cache."""
    monkeypatch.delenv("FANOUT_DATA_DIR", raising=False)
    monkeypatch.setattr(paths, "cache_dir", lambda: tmp_path / "no-cache")


def backtest(out, *extra) -> int:
    return main(["backtest", "--out", str(out), "--no-progress", *extra])


def test_demo_is_deterministic_and_writes_every_file(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert backtest(a) == 0
    table = capsys.readouterr().out
    assert backtest(b, "--no-plot") == 0
    capsys.readouterr()
    for name in ("trades.csv", "skipped.csv", "equity.csv", "summary.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "equity.png").stat().st_size > 1_000 and not (b / "equity.png").exists()

    trades = pd.read_csv(a / "trades.csv")
    assert list(trades.columns) == TRADE_COLUMNS and len(trades) > 0
    assert set(trades["exit_reason"]) <= EXITS
    assert set(trades["account"]) == {"Account 1", "Account 2", "Account 3"}
    assert trades["signal_id"].str.startswith("demo-").all()
    assert (trades["exit_time"] >= trades["entry_time"]).all()
    skipped = pd.read_csv(a / "skipped.csv")
    assert list(skipped.columns) == ["account", "signal_id", "reason"]
    equity = pd.read_csv(a / "equity.csv")
    assert list(equity.columns) == ["time", "Account 1", "Account 2", "Account 3"]
    assert equity.iloc[0, 1:].tolist() == [1_000, 5_000, 500]

    summary = json.loads((a / "summary.json").read_text())
    assert summary["candles"]["synthetic"] is True
    assert set(summary["accounts"]) == {"Account 1", "Account 2", "Account 3"}
    for name, acct in summary["accounts"].items():
        assert ACCOUNT_KEYS <= set(acct), name
        assert acct["trades"] == int((trades["account"] == name).sum())
        assert acct["pnl"] == pytest.approx(trades.loc[trades["account"] == name, "pnl"].sum(), abs=1e-5)
    assert TOTAL_KEYS <= set(summary["totals"]) and summary["totals"]["trades"] == len(trades)
    assert summary["totals"]["start_balance"] == 6_500
    assert "SYNTHETIC" in table and "TOTAL" in table


def test_worker_processes_write_the_same_files_as_one_process(tmp_path, capsys):
    one, two = tmp_path / "one", tmp_path / "two"
    assert backtest(one, "--no-plot", "--workers", "1") == 0
    assert backtest(two, "--no-plot", "--workers", "2") == 0
    assert "3 accounts on 2 worker processes" in capsys.readouterr().err
    for name in ("trades.csv", "skipped.csv", "equity.csv", "summary.json"):
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    assert backtest(tmp_path / "bad", "--workers", "0") == 2
    assert "argument --workers: must be a whole number >= 1, got '0'" in capsys.readouterr().err


def test_json_output_is_the_summary(tmp_path, capsys):
    assert backtest(tmp_path / "o", "--no-plot", "--json") == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((tmp_path / "o" / "summary.json").read_text())


def write_hourly_candles(path, rows, start="2024-01-01T00:00:00Z"):
    t0 = pd.Timestamp(start)
    lines = ["time,open,high,low,close,volume"]
    lines += [f"{(t0 + pd.Timedelta(hours=i)).isoformat()},{o},{h},{lo},{c},1" for i, (o, h, lo, c) in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_signals(path, rows):
    path.write_text("time,id,symbol,side,entry,stop_loss,take_profit\n" + "\n".join(rows) + "\n")
    return path


def test_own_candles_and_signals(tmp_path, capsys):
    candles = write_hourly_candles(tmp_path / "c.csv", [(50_000, 50_100, 49_900, 50_000),
                                                       (50_000, 51_200, 49_950, 51_100),
                                                       (51_100, 51_200, 51_000, 51_150)])
    signals = write_signals(tmp_path / "s.csv", ["2024-01-01T00:00:00Z,x1,BTCUSDT,LONG,50000,49500,51000"])
    out = tmp_path / "o"
    code = backtest(out, "--candles", str(candles), "--signals", str(signals), "--balances", "1000,100", "--no-plot")
    assert code == 0
    trades = pd.read_csv(out / "trades.csv")
    assert trades[["account", "signal_id", "exit_reason", "exit_price"]].values.tolist() == [
        ["Account 1", "x1", "take_profit", 51_000.0]]
    skipped = pd.read_csv(out / "skipped.csv")
    assert skipped["account"].tolist() == ["Account 2"] and "minimum" in skipped["reason"][0]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["candles"]["synthetic"] is False
    assert summary["accounts"]["Account 1"]["wins"] == 1


def test_the_run_names_the_market_rules_snapshot_it_used(tmp_path, capsys):
    assert backtest(tmp_path / "o", "--no-plot") == 0
    err = capsys.readouterr().err
    assert "market rules: snapshot binance-usdm 2024-10-20 (brackets 2023-08-01)" in err
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert list(summary)[:2] == ["candles", "market_rules"]
    assert summary["market_rules"] == {"name": "binance-usdm 2024-10-20 (brackets 2023-08-01)", "date": "2024-10-20",
                                       "brackets_date": "2023-08-01", "path": str(paths.market_rules_file()),
                                       "symbols": 342}


def test_a_symbol_on_the_fallback_brackets_is_said_so(tmp_path, capsys):
    candles = write_hourly_candles(tmp_path / "c.csv", [(50, 51, 49, 50), (50, 51, 49, 50), (50, 51, 49, 50)])
    signals = write_signals(tmp_path / "s.csv", ["2024-01-01T00:00:00Z,x1,ORDIUSDT,LONG,50,45,55"])
    assert backtest(tmp_path / "o", "--candles", str(candles), "--symbol", "ORDIUSDT", "--signals", str(signals),
                    "--no-plot") == 0
    assert "no leverage brackets for ORDIUSDT in snapshot binance-usdm 2024-10-20" in capsys.readouterr().err


def bad_signals(tmp_path):
    return write_signals(tmp_path / "bad.csv", ["2024-01-01T02:05:00Z,a1,BTCUSDT,LONG,42000,41500,42500",
                                                "2024-01-01T03:05:00Z,a2,BTCUSDT,LONG,42000,42100,42500"])


@pytest.mark.parametrize("make_args, expected", [
    (lambda tmp: ["--balances", "1000,abc"], ["--balances", "#2", "'abc'"]),
    (lambda tmp: ["--balances", ""], ["--balances"]),
    (lambda tmp: ["--signals", str(tmp / "missing.csv")], ["signals file not found", "missing.csv"]),
    (lambda tmp: ["--signals", str(bad_signals(tmp))], ["bad.csv:3", "'stop_loss'"]),
    (lambda tmp: ["--candles", str(tmp / "nope.csv")], ["nope.csv", "not found"]),
    (lambda tmp: ["--leverage", "0"], ["argument --leverage", "'0'"]),
    (lambda tmp: ["--accounts", str(tmp / "accounts.csv")], ["--accounts", "not found"]),
    (lambda tmp: ["--symbol", "NOPEUSDT", "--candles", str(write_hourly_candles(tmp / "c.csv", [(1, 2, 1, 1)] * 3))],
     ["NOPE/USDT:USDT is not in the market-rules snapshot binance-usdm 2024-10-20", "fanout data markets"]),
], ids=["balances-not-a-number", "balances-empty", "signals-missing", "signals-bad-row", "candles-missing",
        "bad-leverage", "accounts-missing", "symbol-not-in-snapshot"])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, make_args, expected):
    out = tmp_path / "out"
    assert backtest(out, *make_args(tmp_path)) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and captured.out == ""
    for part in expected:
        assert part in captured.err
    assert not out.exists()


def test_bad_signals_json_lines_name_the_line(tmp_path, capsys):
    f = tmp_path / "s.jsonl"
    f.write_text('{"time": "2024-01-01T00:00:00Z", "symbol": "BTCUSDT", "side": "LONG", "entry": 1, "sl": 0.9, '
                 '"tp": 1.1}\n{"time": "2024-01-01T01:00:00Z", "symbol": "BTCUSDT", "side": "LONG"}\n')
    assert backtest(tmp_path / "o", "--signals", str(f)) == 2
    err = capsys.readouterr().err
    assert "s.jsonl:2" in err and "'entry'" in err
    assert not (tmp_path / "o").exists()


def test_mark_prices_given_as_symbol_path_are_used_and_reported(tmp_path, capsys):
    from dataclasses import replace

    from marketdata.candles import save_candles
    from marketdata.synthetic import generate_candles

    trades_candles = generate_candles(minutes=3 * 24 * 60)
    mark = replace(trades_candles, open=trades_candles.open * 1.004, high=trades_candles.high * 1.004,
                   low=trades_candles.low * 1.004, close=trades_candles.close * 1.004)
    c, m = save_candles(trades_candles, tmp_path / "c.csv"), save_candles(mark, tmp_path / "m.csv")
    base = ["--candles", f"BTCUSDT={c}", "--balances", "1000,5000", "--workers", "1", "--no-plot"]
    assert backtest(tmp_path / "with", *base, "--mark", f"BTCUSDT={m}") == 0
    assert f"mark prices from {m}" in capsys.readouterr().err
    assert backtest(tmp_path / "without", *base) == 0
    capsys.readouterr()
    summary = json.loads((tmp_path / "with" / "summary.json").read_text())
    assert summary["mark_prices"] == {"known": ["BTC/USDT:USDT"], "candles_stand_in": []}
    assert "mark_prices" not in json.loads((tmp_path / "without" / "summary.json").read_text())
    with_mark = pd.read_csv(tmp_path / "with" / "trades.csv")
    without = pd.read_csv(tmp_path / "without" / "trades.csv")
    assert len(with_mark) and not with_mark.equals(without)  # MARK_PRICE stops and liquidations follow the mark
