"""Tests for notebooks/ (executed with nbclient on bundled data, offline) and analysis/report.py behind them."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import sys
import time
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbformat.v4 import new_code_cell

from engine import parse_signal
from fanout.balances import parse_balances
from fanout.cmd_backtest import DEMO_DAYS, DEMO_SEED
from marketdata.paths import demo_signals_file
from fanout.signals_file import read_signals
from analysis import report as analysis
from marketdata.candles import save_candles
from marketdata.synthetic import generate_candles

NOTEBOOKS = Path(__file__).parents[2] / "notebooks"
NOTEBOOK_NAMES = ["analysis.ipynb", "paper_vs_backtest.ipynb"]
MAX_SECONDS = 60


@pytest.fixture(scope="module")
def demo_candles():
    return generate_candles(minutes=DEMO_DAYS * 24 * 60, seed=DEMO_SEED)


@pytest.fixture(scope="module")
def demo_signals():
    return read_signals(demo_signals_file())


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, demo_candles, demo_signals) -> analysis.Run:
    """The offline demo (as `fanout backtest` with no arguments) written to a run folder."""
    out = tmp_path_factory.mktemp("runs") / "demo"
    return analysis.run_backtest(demo_candles, demo_signals, parse_balances("1000,5000,500"), out)


def copy_run(run: analysis.Run, dest: Path, **summary_changes) -> Path:
    """A copy of a run folder with summary.json top-level fields replaced."""
    shutil.copytree(run.path, dest)
    summary = json.loads((dest / "summary.json").read_text())
    summary.update(summary_changes)
    (dest / "summary.json").write_text(json.dumps(summary))
    return dest


# --- the notebooks -----------------------------------------------------------------------------------------------

def execute(name: str, tmp_path: Path, monkeypatch, **parameters) -> tuple[nbformat.NotebookNode, float]:
    """Run a notebook in a fresh kernel of this virtualenv; a failing cell raises CellExecutionError."""
    venv_kernels = Path(sys.prefix) / "share" / "jupyter"
    if (venv_kernels / "kernels" / "python3").is_dir():  # this venv's kernelspec first, whatever the user has
        monkeypatch.setenv("JUPYTER_PATH", str(venv_kernels))
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    for key, value in parameters.items():
        cell.source, n = re.subn(rf"^{key} = .*$", f"{key} = {value!r}", cell.source, flags=re.M)
        assert n == 1, f"parameter {key} not in {name}"
    nb.cells.append(new_code_cell("import sys\nprint(sys.prefix)"))
    client = NotebookClient(nb, kernel_name="python3", timeout=MAX_SECONDS,
                            resources={"metadata": {"path": str(tmp_path)}})
    start = time.monotonic()
    client.execute()
    return nb, time.monotonic() - start


def outputs_text(nb: nbformat.NotebookNode) -> str:
    parts = []
    for c in nb.cells:
        for o in c.get("outputs", []):
            parts.append(o.get("text", "") or o.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def images(nb: nbformat.NotebookNode) -> int:
    return sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))


@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_notebook_is_committed_clean_with_parameters(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code), f"clear the outputs of {name}"
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and re.search(r"^RUN_DIR = None\b", params[0].source, re.M)


@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_notebook_runs_the_demo_offline(name, tmp_path, monkeypatch):
    nb, seconds = execute(name, tmp_path, monkeypatch)
    assert seconds < MAX_SECONDS, f"{name} took {seconds:.1f} s"
    assert nb.cells[-1].outputs[0]["text"].strip() == sys.prefix, "the kernel is not this virtualenv's python"
    text = outputs_text(nb)
    assert "SYNTHETIC" in text
    assert images(nb) >= (6 if name == "analysis.ipynb" else 1)
    if name == "paper_vs_backtest.ipynb":
        assert "STAND-IN" in text


def test_a_failing_cell_fails_the_run(tmp_path, monkeypatch):
    with pytest.raises(CellExecutionError, match="RunDirError"):
        execute("analysis.ipynb", tmp_path, monkeypatch, RUN_DIR=str(tmp_path / "no-such-run"))


def test_analysis_notebook_loads_a_given_run(demo_run, tmp_path, monkeypatch):
    nb, _ = execute("analysis.ipynb", tmp_path, monkeypatch, RUN_DIR=str(demo_run.path),
                    SIZING_BALANCES=[100, 100_000])
    text = outputs_text(nb)
    assert "demo backtest written" not in text
    assert str(demo_run.path) in text


def test_paper_notebook_reads_a_records_file(demo_run, demo_candles, demo_signals, tmp_path, monkeypatch):
    records = analysis.recorded_price_paper(demo_candles, demo_signals, demo_run.start_balances)
    path = tmp_path / "paper.csv"
    records.to_csv(path, index=False)
    nb, _ = execute("paper_vs_backtest.ipynb", tmp_path, monkeypatch, RUN_DIR=str(demo_run.path),
                    PAPER_RECORDS=str(path))
    text = outputs_text(nb)
    assert "STAND-IN paper records" not in text
    assert f"{len(records)} records" in text


# --- loading a run -----------------------------------------------------------------------------------------------

def test_load_run_reads_every_file(demo_run):
    run = analysis.load_run(demo_run.path)
    assert run.accounts == ["Account 1", "Account 2", "Account 3"]
    assert len(run.trades) == run.summary["totals"]["trades"] > 0
    assert str(run.trades["entry_time"].dt.tz) == "UTC"
    assert set(run.trades["exit_reason"]) <= {"take_profit", "stop_loss", "liquidation", "end_of_data"}
    assert list(run.equity.columns) == run.accounts
    assert isinstance(run.equity.index, pd.DatetimeIndex)
    assert set(run.skipped["category"]) == {"open_position"}
    assert run.synthetic and "SYNTHETIC" in repr(run)
    assert run.start_balances == {"Account 1": 1000.0, "Account 2": 5000.0, "Account 3": 500.0}


def _break(folder: Path, what: str) -> None:
    if what == "no summary":
        (folder / "summary.json").unlink()
    elif what == "bad json":
        (folder / "summary.json").write_text("{not json")
    elif what == "account field":
        s = json.loads((folder / "summary.json").read_text())
        del s["accounts"]["Account 2"]["fees"]
        (folder / "summary.json").write_text(json.dumps(s))
    elif what == "trades column":
        pd.read_csv(folder / "trades.csv").drop(columns="pnl").to_csv(folder / "trades.csv", index=False)
    elif what == "empty skipped":
        (folder / "skipped.csv").write_text("")
    elif what == "equity time":
        (folder / "equity.csv").write_text("time,Account 1,Account 2,Account 3\nyesterday,1,2,3\n")


@pytest.mark.parametrize(("what", "message"), [
    ("no summary", "lacks summary.json"),
    ("bad json", "summary.json: not valid JSON"),
    ("account field", "account 'Account 2' lacks field(s) fees"),
    ("trades column", "trades.csv: missing column(s) pnl"),
    ("empty skipped", "skipped.csv: empty file"),
    ("equity time", "equity.csv: the first column must hold UTC times"),
])
def test_load_run_names_the_broken_file(demo_run, tmp_path, what, message):
    folder = tmp_path / "run"
    shutil.copytree(demo_run.path, folder)
    _break(folder, what)
    with pytest.raises(analysis.RunDirError, match=re.escape(message)):
        analysis.load_run(folder)


def test_load_run_missing_folder(tmp_path):
    with pytest.raises(analysis.RunDirError, match="does not exist"):
        analysis.load_run(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(analysis.RunDirError, match="is not a folder"):
        analysis.load_run(tmp_path / "file")


# --- figures over a run ------------------------------------------------------------------------------------------

def test_drawdown_is_percent_below_the_running_peak():
    equity = pd.DataFrame({"a": [100.0, 110.0, 99.0, 120.0, 60.0]})
    assert analysis.drawdown(equity)["a"].tolist() == pytest.approx([0, 0, -10, 0, -50])


def test_drawdown_agrees_with_summary(demo_run):
    worst = -analysis.drawdown(demo_run.equity).min()
    for name, figures in demo_run.summary["accounts"].items():
        assert worst[name] == pytest.approx(figures["max_drawdown_pct"], abs=1e-3)


def test_account_table_agrees_with_the_csv_files(demo_run):
    table = analysis.account_table(demo_run)
    trades = demo_run.trades.groupby("account")
    assert table["trades"].to_dict() == trades.size().to_dict()
    assert table["pnl"].to_dict() == pytest.approx(trades["pnl"].sum().to_dict(), abs=1e-5)
    assert table["fees"].to_dict() == pytest.approx(trades["fees"].sum().to_dict(), abs=1e-5)
    assert table["skipped"].to_dict() == demo_run.skipped.groupby("account").size().to_dict()
    wins = trades["pnl"].apply(lambda p: (p > 0).mean() * 100)
    assert table["win_rate_pct"].to_dict() == pytest.approx(wins.to_dict(), abs=0.01)


@pytest.mark.parametrize(("reason", "category"), [
    ("quantity 0.00095 below minimum 0.001 (margin $2.00 × 20x at 42000)", "min_size"),
    ("notional $84.00 below exchange minimum $100.00", "min_size"),
    ("balance $5.00 below minimum $10.00", "low_balance"),
    ("already has an open BTC/USDT position", "open_position"),
    ("max open positions reached (5/5)", "max_open"),
    ("daily loss limit reached: realised loss $60.00 ≥ 5.0% of $1,000.00", "daily_loss"),
    ("reward:risk 0.80 below minimum 1.50", "reward_risk"),
    ("stop loss 30000 lies beyond the liquidation price 40,000.00 at 20x", "stop_beyond_liquidation"),
    ("leverage 125x above the 50x allowed for notional $60,000.00", "leverage_bracket"),
    ("signal after the last candle", "no_candles"),
    ("failed: entry order failed: InsufficientFunds", "failed"),
    ("something new", "other"),
])
def test_skip_category(reason, category):
    assert analysis.skip_category(reason) == category


def test_charts_say_synthetic_only_for_synthetic_runs(demo_run, tmp_path):
    fig = analysis.plot_equity(demo_run)
    assert "SYNTHETIC" in fig.get_suptitle()
    real = analysis.load_run(copy_run(demo_run, tmp_path / "real", candles={"source": "x.csv", "synthetic": False}))
    for plot in (analysis.plot_equity, analysis.plot_drawdown, analysis.plot_per_account):
        fig = plot(real)
        assert "SYNTHETIC" not in fig.get_suptitle()
        assert not any("SYNTHETIC" in t.get_text() for t in fig.texts)


def test_plot_trades_rejects_an_unknown_account(demo_run, demo_candles):
    with pytest.raises(ValueError, match="account 'Nobody' is not in the run"):
        analysis.plot_trades(demo_run, demo_candles, "Nobody")


# --- candles -----------------------------------------------------------------------------------------------------

def test_locate_candles_regenerates_the_synthetic_demo(demo_run, demo_candles):
    candles = analysis.locate_candles(demo_run)
    assert candles.synthetic
    assert np.array_equal(candles.time, demo_candles.time) and np.array_equal(candles.close, demo_candles.close)


def test_locate_candles_from_a_path(demo_run, demo_candles, tmp_path):
    path = save_candles(demo_candles.slice(None, int(demo_candles.time[0]) + 3 * 86_400_000), tmp_path / "c.csv")
    candles = analysis.locate_candles(demo_run, path)
    assert len(candles) == 3 * 1440


def test_locate_candles_reloads_the_run_candle_file(demo_run, demo_candles, tmp_path):
    path = save_candles(demo_candles, tmp_path / "c.csv")
    run = analysis.load_run(copy_run(demo_run, tmp_path / "run", candles={"source": str(path), "synthetic": False}))
    assert len(analysis.locate_candles(run)) == len(demo_candles)


@pytest.mark.parametrize("source", ["synthetic (generated by fanout, seed 8)", "/nowhere/candles.csv"])
def test_locate_candles_refuses_what_does_not_match(demo_run, tmp_path, source):
    run = analysis.load_run(copy_run(demo_run, tmp_path / "run", candles={"source": source, "synthetic": True}))
    with pytest.raises(analysis.CandlesUnavailable, match="pass the candles path"):
        analysis.locate_candles(run)


def test_chart_candles_resamples_to_at_most_max_bars(demo_candles):
    bars = analysis.chart_candles(demo_candles, max_bars=600)
    assert bars.timeframe == "2h" and len(bars) <= 600
    small = demo_candles.slice(None, int(demo_candles.time[0]) + 300 * 60_000)
    assert analysis.chart_candles(small, 600) is small


# --- sizing study ------------------------------------------------------------------------------------------------

def test_sizing_study_shows_minimum_and_cap(demo_candles, demo_signals):
    study = analysis.sizing_study(demo_candles, demo_signals, [100, 1_000, 100_000])
    n = len(demo_signals)
    small, mid, big = (study.loc[b] for b in (100.0, 1_000.0, 100_000.0))
    # $100: 2% = $2 margin × 20 = $40 notional, below BTC's $100 minimum notional → every signal skipped
    assert small["trades"] == 0 and small["skipped_min_size"] == n and small["end_balance"] == 100
    assert mid["trades"] > 0 and mid["margin_mean"] < 25
    # $100,000: margin capped at $100 (MAX_POSITION_USD), truncation to the 0.001 step keeps it a little below
    assert 95 < big["margin_mean"] <= 100
    assert (study["trades"] + study["skipped"] == n).all()
    assert abs(big["return_pct"]) < abs(mid["return_pct"])


@pytest.mark.parametrize("balances", [[], [0], [100, 100]])
def test_sizing_study_rejects_bad_balances(demo_candles, demo_signals, balances):
    with pytest.raises(ValueError, match="balances"):
        analysis.sizing_study(demo_candles, demo_signals, balances)


async def test_sizing_study_inside_a_running_event_loop(demo_candles, demo_signals):
    """Jupyter runs cells inside an event loop, where asyncio.run refuses to start: the helpers still work."""
    study = analysis.sizing_study(demo_candles, demo_signals[:5], [1_000])
    assert study.loc[1_000.0, "trades"] + study.loc[1_000.0, "skipped"] == 5


# --- paper records and slippage ----------------------------------------------------------------------------------

def test_recorded_price_paper_fills_at_the_next_minute_close(demo_candles, demo_signals):
    records = analysis.recorded_price_paper(demo_candles, demo_signals[:6], {"A": 1_000.0, "B": 100.0})
    assert len(records) == 12 and list(records.columns[:5]) == analysis.RECORD_COLUMNS
    a = records[records["account"] == "A"]
    assert (a["status"] == "success").any()
    for _, r in a[a["status"] == "success"].iterrows():
        signal = next(s for s in demo_signals if s.id == r["signal_id"])
        i = demo_candles.index_at_or_after(signal.time)
        assert r["fill_price"] == demo_candles.close[i]
        assert r["time"] == pd.Timestamp(int(demo_candles.time[i]) + 60_000, unit="ms", tz="UTC")
    b = records[records["account"] == "B"]  # $100 is below the minimum notional
    assert (b["status"] == "skipped").all() and b["fill_price"].isna().all()
    assert b["reason"].map(analysis.skip_category).eq("min_size").all()


def test_recorded_price_paper_skips_signals_outside_the_candles(demo_candles):
    late = parse_signal({"symbol": "BTCUSDT", "side": "long", "entry": 40_000, "sl": 39_000, "tp": 42_000,
                         "id": "late", "time": "2030-01-01T00:00:00Z"})
    records = analysis.recorded_price_paper(demo_candles, [late], {"A": 1_000.0})
    assert records["status"].tolist() == ["skipped"] and records["reason"][0] == "signal after the last candle"
    with pytest.raises(ValueError, match="delay_ms"):
        analysis.recorded_price_paper(demo_candles, [late], {"A": 1_000.0}, delay_ms=0)


def test_load_paper_records_csv_round_trip(demo_candles, demo_signals, tmp_path):
    records = analysis.recorded_price_paper(demo_candles, demo_signals[:4], {"A": 1_000.0})
    records.to_csv(tmp_path / "r.csv", index=False)
    loaded = analysis.load_paper_records(tmp_path / "r.csv")
    assert loaded["fill_price"].tolist() == pytest.approx(records["fill_price"].tolist(), nan_ok=True)
    assert (loaded["time"] == records["time"]).all()


def test_load_paper_records_from_the_journal_database(tmp_path):
    db = tmp_path / "fanout.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE processed_signals (signal_id TEXT PRIMARY KEY, mode TEXT)")
        conn.execute("CREATE TABLE executions (signal_id TEXT, account TEXT, mode TEXT, status TEXT, reason TEXT, "
                     "side TEXT, quantity REAL, fill_price REAL, time REAL, recorded_at REAL)")
        conn.executemany("INSERT INTO executions VALUES (?,?,?,?,?,?,?,?,?,?)", [
            ("s1", "Account 1", "paper", "success", "", "LONG", 0.009, 42_000.5, 1_704_067_260_000, 1.0),
            ("s1", "Account 2", "paper", "skipped", "notional $40.00 below exchange minimum $100.00", "LONG",
             0.0, None, 1_704_067_260_000, 1.0),
            ("s1", "Account 1", "live", "success", "", "LONG", 0.009, 42_001.0, 1_704_067_260_000, 1.0),
        ])
    records = analysis.load_paper_records(db)
    assert records["account"].tolist() == ["Account 1", "Account 2"]
    assert records["time"][0] == pd.Timestamp("2024-01-01T00:01:00Z")
    assert len(analysis.load_paper_records(db, mode=None)) == 3


def test_load_paper_records_names_what_is_missing(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        analysis.load_paper_records(tmp_path / "nope.csv")
    (tmp_path / "r.csv").write_text("signal_id,account,qty\ns1,A,1\n")
    with pytest.raises(ValueError, match=r"missing column\(s\) fill_price"):
        analysis.load_paper_records(tmp_path / "r.csv")
    (tmp_path / "aliases.csv").write_text("signal_id,account,avg_price,filled,timestamp\ns1,A,100.5,2,1704067200\n")
    loaded = analysis.load_paper_records(tmp_path / "aliases.csv")
    assert loaded.loc[0, ["fill_price", "quantity"]].tolist() == [100.5, 2]
    assert loaded.loc[0, "time"] == pd.Timestamp("2024-01-01T00:00:00Z")


def test_compare_fills_signs_slippage_against_the_trader():
    t = pd.Timestamp("2024-01-01T00:00:00Z")
    trades = pd.DataFrame({
        "account": ["A", "A", "A"], "signal_id": ["long", "short", "bt-only"], "symbol": ["BTC/USDT:USDT"] * 3,
        "side": ["LONG", "SHORT", "LONG"], "entry_time": [t] * 3, "entry_price": [100.0, 100.0, 100.0],
        "quantity": [2.0, 2.0, 1.0],
    })
    paper = pd.DataFrame({
        "signal_id": ["long", "short", "paper-only"], "account": ["A", "A", "A"], "fill_price": [101.0, 99.0, 50.0],
        "quantity": [2.0, 1.0, 1.0], "time": [t] * 3,
    })
    fills = analysis.compare_fills(paper, trades).set_index("signal_id")
    assert fills.loc["long", "slippage_bps"] == pytest.approx(100.0)  # paid more on a LONG: worse
    assert fills.loc["short", "slippage_bps"] == pytest.approx(100.0)  # sold lower on a SHORT: worse
    assert fills.loc["long", "slippage_cost"] == pytest.approx(2.0)
    assert fills.loc["bt-only", "matched"] == "backtest_only" and fills.loc["paper-only", "matched"] == "paper_only"
    assert np.isnan(fills.loc["paper-only", "slippage_bps"])
    table = analysis.slippage_by_account(fills.reset_index()).loc["A"]
    assert (table["matched"], table["paper_only"], table["backtest_only"]) == (2, 1, 1)
    assert table["mean_bps"] == pytest.approx(100.0) and table["cost_usdt"] == pytest.approx(3.0)
    assert table["quantity_mismatches"] == 1
