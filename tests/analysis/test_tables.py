"""Tests for analysis/tables.py: skip reasons grouped, underwater curves, the per-account table."""

from __future__ import annotations

import pandas as pd
import pytest

import analysis


def test_drawdown_is_percent_below_the_running_peak():
    equity = pd.DataFrame({"a": [100.0, 110.0, 99.0, 120.0, 60.0], "empty": [0.0] * 5})
    dd = analysis.drawdown(equity)
    assert dd["a"].tolist() == pytest.approx([0, 0, -10, 0, -50])
    assert dd["empty"].tolist() == [0.0] * 5  # no peak above zero: nothing to fall from


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
