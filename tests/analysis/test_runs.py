"""Tests for analysis/runs.py: loading a run folder, naming what is broken, writing one from Python."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

import analysis


def test_run_backtest_writes_a_loadable_run_folder(demo_run):
    names = {p.name for p in demo_run.path.iterdir()}
    assert names == {"trades.csv", "skipped.csv", "equity.csv", "summary.json"}  # no PNG from Python


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
    elif what == "equity account":
        (folder / "equity.csv").write_text("time,Account 1\n2024-01-01T00:00:00+00:00,1\n")


@pytest.mark.parametrize(("what", "message"), [
    ("no summary", "lacks summary.json"),
    ("bad json", "summary.json: not valid JSON"),
    ("account field", "account 'Account 2' lacks field(s) fees"),
    ("trades column", "trades.csv: missing column(s) pnl"),
    ("empty skipped", "skipped.csv: empty file"),
    ("equity time", "equity.csv: the first column must hold UTC times"),
    ("equity account", "equity.csv: no column for account(s) Account 2, Account 3"),
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
