"""Tests for simulator/parallel.py: a backtest sharded over worker processes gives the single process's result."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from engine import ExecutionConfig
from simulator.backtest import BacktestResult
from simulator.parallel import run_backtest, shard_accounts

# small accounts skip (below the minimum quantity / notional), mid ones hit the daily loss limit, large ones trade
CONFIG = ExecutionConfig(daily_loss_limit_pct=0.003, max_position_usd=400)
BALANCES = {f"acct-{i:02d}": b for i, b in enumerate([150, 90_000, 700, 2_500, 12, 40_000, 5_000, 300, 1_000, 8_000])}


def same_result(a: BacktestResult, b: BacktestResult) -> None:
    assert a.accounts == b.accounts and list(a.accounts) == list(b.accounts)
    assert a.trades == b.trades
    assert a.skipped == b.skipped
    assert np.array_equal(a.equity_time, b.equity_time)
    assert list(a.equity) == list(b.equity)
    for name in a.equity:
        assert a.equity[name].tobytes() == b.equity[name].tobytes(), name
    assert a.end_balance == b.end_balance and list(a.end_balance) == list(b.end_balance)
    assert a.stats == b.stats and list(a.stats["per_account"]) == list(b.stats["per_account"])
    assert a.summaries == b.summaries
    assert (a.synthetic, a.candles_source) == (b.synthetic, b.candles_source)


def test_accounts_are_dealt_round_robin_into_at_most_n_shards():
    balances = {c: float(i) for i, c in enumerate("abcde")}
    assert shard_accounts(balances, 2) == [{"a": 0.0, "c": 2.0, "e": 4.0}, {"b": 1.0, "d": 3.0}]
    assert shard_accounts(balances, 9) == [{c: balances[c]} for c in "abcde"]
    assert shard_accounts(balances, 1) == [balances]


@pytest.fixture(scope="module")
def one_process(demo_candles, demo_signals) -> BacktestResult:
    return run_backtest([demo_candles], demo_signals, BALANCES, CONFIG, workers=1, slippage_bps=3)


@pytest.mark.parametrize("workers", [2, 3, 10])
def test_any_number_of_workers_gives_the_single_process_result(demo_candles, demo_signals, one_process, workers):
    assert len(one_process.trades) > 50 and len(one_process.skipped) > 50  # trades, and skips of several kinds
    assert {r["reason"].split(" ")[0] for r in one_process.skipped} >= {"quantity", "notional", "daily", "already"}
    sharded = run_backtest([demo_candles], demo_signals, BALANCES, CONFIG, workers=workers, slippage_bps=3)
    same_result(sharded, one_process)


def test_workers_started_by_spawn_need_nothing_from_the_parent(demo_candles, demo_signals, one_process):
    """spawn (a fresh interpreter, everything pickled) is the strictest start method: forkserver and fork also work."""
    sharded = run_backtest([demo_candles], demo_signals, BALANCES, CONFIG, workers=2, slippage_bps=3,
                           start_method="spawn")
    same_result(sharded, one_process)


def test_signals_outside_the_candles_and_per_signal_totals_merge_in_order(demo_candles, demo_signals):
    late = dataclasses.replace(demo_signals[0], id="late", time=int(demo_candles.time[-1]) + 1)
    signals = [*demo_signals, late]
    one = run_backtest([demo_candles], signals, BALANCES, workers=1)
    two = run_backtest([demo_candles], signals, BALANCES, workers=2)
    same_result(two, one)
    assert all(s["total"] == len(BALANCES) for s in two.summaries)
    assert [r["account"] for r in two.skipped if r["signal_id"] == "late"] == list(BALANCES)


def test_a_worker_error_reaches_the_caller(demo_candles, demo_signals):
    with pytest.raises(ValueError, match="taker_fee"):
        run_backtest([demo_candles], demo_signals, BALANCES, workers=2, taker_fee=2.0)
    with pytest.raises(ValueError, match="workers"):
        run_backtest([demo_candles], demo_signals, BALANCES, workers=0)


def test_one_progress_bar_follows_every_worker(demo_candles, demo_signals, one_process, capsys):
    sharded = run_backtest([demo_candles], demo_signals, BALANCES, CONFIG, workers=2, slippage_bps=3, progress=True)
    same_result(sharded, one_process)
    bar = capsys.readouterr().err
    assert "backtest" in bar and "account-signals" in bar  # tqdm on stderr, counting accounts × signals
