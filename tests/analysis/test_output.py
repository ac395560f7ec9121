"""Tests for analysis/output.py: the run folder files, summary figures and the terminal table of a backtest."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analysis.output import TRADE_COLUMNS, format_table, max_drawdown, summarize, write_outputs
from tests.simulator.test_backtest import BALANCES, MIXED, MIXED_SIGNALS, runner


def test_output_files(tmp_path):
    res = runner(MIXED, signals=MIXED_SIGNALS, balances=BALANCES).run()
    summary = write_outputs(res, tmp_path, plot=True)
    trades = pd.read_csv(tmp_path / "trades.csv")
    assert list(trades.columns) == TRADE_COLUMNS
    assert set(trades["exit_reason"]) <= {"take_profit", "stop_loss", "liquidation", "end_of_data"}
    assert trades["entry_time"].iloc[0] == "2024-01-01T00:00:00+00:00"
    skipped = pd.read_csv(tmp_path / "skipped.csv")
    assert list(skipped.columns) == ["account", "signal_id", "reason"] and set(skipped["account"]) == {"D"}
    equity = pd.read_csv(tmp_path / "equity.csv")
    assert list(equity.columns) == ["time", *BALANCES]
    assert (tmp_path / "equity.png").stat().st_size > 0
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk == summary
    for name, a in on_disk["accounts"].items():
        for key in ("start_balance", "end_balance", "trades", "wins", "losses", "win_rate", "pnl", "fees",
                    "max_drawdown", "max_drawdown_pct"):
            assert key in a, (name, key)
        assert a["trades"] == a["wins"] + a["losses"]
    t = on_disk["totals"]
    assert t["trades"] == len(trades) and t["start_balance"] == sum(BALANCES.values())
    assert t["pnl"] == pytest.approx(trades["pnl"].sum(), abs=1e-6)
    assert on_disk["accounts"]["D"]["trades"] == 0 and on_disk["accounts"]["D"]["skipped"] == 3
    table = format_table(summary)
    assert "TOTAL" in table and all(name in table for name in BALANCES)


def test_summarize_counts():
    res = runner(MIXED, signals=MIXED_SIGNALS, balances={"A": 1_000}).run()
    a = summarize(res)["accounts"]["A"]
    assert (a["trades"], a["wins"], a["losses"]) == (3, 2, 1)
    assert a["win_rate"] == pytest.approx(0.6667, abs=1e-4)
    assert a["exits"] == {"stop_loss": 1, "take_profit": 2}


def test_max_drawdown():
    assert max_drawdown(np.array([100.0, 120, 90, 130, 110])) == (30.0, 0.25)
    assert max_drawdown(np.array([])) == (0.0, 0.0)
    assert max_drawdown(np.array([100.0, 101, 102])) == (0.0, 0.0)
