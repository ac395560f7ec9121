"""Tests for analysis/charts.py: every chart builds, says SYNTHETIC only for synthetic runs, resamples candles."""

from __future__ import annotations

import pytest

import analysis
from analysis.charts import chart_candles
from tests.analysis.conftest import copy_run


def test_charts_say_synthetic_only_for_synthetic_runs(demo_run, tmp_path):
    fig = analysis.plot_equity(demo_run)
    assert "SYNTHETIC" in fig.get_suptitle()
    real = analysis.load_run(copy_run(demo_run, tmp_path / "real", candles={"source": "x.csv", "synthetic": False}))
    for plot in (analysis.plot_equity, analysis.plot_drawdown, analysis.plot_per_account):
        fig = plot(real)
        assert "SYNTHETIC" not in fig.get_suptitle()
        assert not any("SYNTHETIC" in t.get_text() for t in fig.texts)


def test_equity_chart_is_usdt_over_percent_and_names_the_accounts_left_out(demo_run):
    fig = analysis.equity_figure(demo_run.equity, synthetic=False, max_accounts=2)
    usdt, pct = fig.axes
    assert (usdt.get_ylabel(), pct.get_ylabel()) == ("USDT", "return %")
    assert len(usdt.lines) == 2 and "(first 2 of 3 accounts)" in fig.get_suptitle()


def test_plot_trades_marks_entries_and_exits(demo_run, demo_candles):
    fig = analysis.plot_trades(demo_run, demo_candles, "Account 1")
    labels = set(fig.axes[0].get_legend_handles_labels()[1])
    assert {"entry LONG", "exit take profit", "exit stop loss"} <= labels
    assert "trades of Account 1" in fig.get_suptitle()


def test_plot_trades_rejects_an_unknown_account(demo_run, demo_candles):
    with pytest.raises(ValueError, match="account 'Nobody' is not in the run"):
        analysis.plot_trades(demo_run, demo_candles, "Nobody")


def test_chart_candles_resamples_to_at_most_max_bars(demo_candles):
    bars = chart_candles(demo_candles, max_bars=600)
    assert bars.timeframe == "2h" and len(bars) <= 600
    small = demo_candles.slice(None, int(demo_candles.time[0]) + 300 * 60_000)
    assert chart_candles(small, 600) is small


def test_symbols_chart_has_a_line_and_a_bar_per_symbol(demo_run):
    trades = demo_run.trades.copy()
    trades.loc[trades.index[::2], "symbol"] = "ETH/USDT:USDT"  # the demo's trades as if on two coins
    fig = analysis.symbols_figure(trades, synthetic=False)
    lines, bars = fig.axes
    assert sorted(line.get_label() for line in lines.get_lines() if not line.get_label().startswith("_")) == [
        "BTC/USDT", "ETH/USDT"]
    totals = trades.groupby("symbol")["pnl"].sum().sort_values()
    assert [p.get_width() for p in bars.patches] == pytest.approx(list(totals))
    assert "SYNTHETIC" in analysis.plot_symbols(demo_run).get_suptitle()
