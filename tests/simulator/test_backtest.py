"""Tests for simulator/backtest.py with small hand-built candles: replay rules, sibling cancellation, skips and
determinism (the output files: tests/analysis/test_output.py)."""

from __future__ import annotations

import ccxt
import numpy as np
import pytest

from analysis.output import TRADE_COLUMNS, write_outputs
from engine import ExecutionConfig, parse_signal
from marketdata.candles import Candles
from simulator.backtest import BacktestRunner

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z
HOUR = 3_600_000
MINUTE = 60_000
QUIET = (50_000, 50_100, 49_900, 50_000)  # touches neither 49,500 nor 51,000


def candles(rows, start=T0, tf="1h", symbol=BTC):
    step = {"1h": HOUR, "1m": MINUTE}[tf]
    o, h, low, c = (np.array(col, dtype=float) for col in zip(*rows, strict=True))
    return Candles(symbol=symbol, timeframe=tf, time=start + step * np.arange(len(rows)), open=o, high=h, low=low,
                   close=c, volume=np.ones(len(rows)))


def sig(time=T0, entry=50_000, sl=49_500, tp=51_000, side="long", id="s1", symbol="BTCUSDT"):
    return parse_signal({"symbol": symbol, "side": side, "entry": entry, "sl": sl, "tp": tp, "time": time, "id": id})


def runner(rows, signals=None, balances=None, **kw) -> BacktestRunner:
    data = rows if isinstance(rows, list) and rows and isinstance(rows[0], Candles) else [candles(rows)]
    return BacktestRunner(data, signals or [sig()], balances or {"A": 1_000}, **kw)


def only_trade(rows, **kw) -> dict:
    (t,) = runner(rows, **kw).run().trades
    return t


def open_triggers(r: BacktestRunner) -> list[dict]:
    return [o for ex in r.exchanges.values() for o in ex.algo_orders.values() if o["status"] == "open"]


# --- entry ---------------------------------------------------------------------------------------------------------

def test_entry_at_the_open_of_the_first_candle_at_or_after_the_signal():
    rows = [QUIET, (50_200, 50_300, 50_100, 50_200), QUIET]
    t = only_trade(rows, signals=[sig(time=T0 + 30 * MINUTE)])
    # sized at the signal's entry ($400 / 50,000), filled at the candle's open
    assert (t["entry_time"], t["entry_price"], t["quantity"]) == (T0 + HOUR, 50_200, 0.008)
    t = only_trade(rows, signals=[sig(time=T0 + 30 * MINUTE)], slippage_bps=5)
    assert t["entry_price"] == pytest.approx(50_200 * 1.0005)


def test_short_entry_with_slippage():
    t = only_trade([QUIET, QUIET], signals=[sig(side="short", sl=50_500, tp=49_000)], slippage_bps=5)
    assert (t["side"], t["entry_price"]) == ("SHORT", pytest.approx(50_000 * 0.9995))


def test_seed_accounts_in_a_backtest():
    res = runner([QUIET, QUIET], balances={"Account 1": 1_000, "Account 2": 5_000, "Account 3": 500}).run()
    rows = [(t["account"], t["margin"], t["notional"], t["quantity"], t["leverage"]) for t in res.trades]
    assert rows == [("Account 1", 20, 400, 0.008, 20), ("Account 2", 100, 2_000, 0.04, 20),
                    ("Account 3", 10, 200, 0.004, 20)]
    assert res.summaries == [{"signal_id": "s1", "succeeded": 3, "total": 3}]


# --- exits ---------------------------------------------------------------------------------------------------------

def test_stop_and_target_in_one_candle_is_a_stop():
    t = only_trade([QUIET, (50_000, 51_500, 49_000, 50_500), QUIET])
    assert (t["exit_reason"], t["exit_price"], t["exit_time"]) == ("stop_loss", 49_500, T0 + HOUR)


def test_finer_candles_under_the_hour_put_the_target_first():
    hour = [QUIET, (50_000, 51_500, 49_000, 50_500), QUIET]
    minutes = candles([(50_000, 50_500, 49_950, 50_400), (50_400, 51_100, 50_300, 51_000),
                       (51_000, 51_500, 49_000, 49_200)], start=T0 + HOUR, tf="1m")
    t = only_trade(hour, fine=[minutes])
    assert (t["exit_reason"], t["exit_price"], t["exit_time"]) == ("take_profit", 51_000, T0 + HOUR + MINUTE)


def test_finer_candles_can_confirm_the_stop():
    hour = [QUIET, (50_000, 51_500, 49_000, 50_500), QUIET]
    minutes = candles([(50_000, 50_100, 49_400, 49_500), (49_500, 51_500, 49_400, 51_000)], start=T0 + HOUR, tf="1m")
    t = only_trade(hour, fine=[minutes])
    assert (t["exit_reason"], t["exit_time"]) == ("stop_loss", T0 + HOUR)


def test_without_finer_candles_for_that_hour_the_coarse_rule_applies():
    hour = [QUIET, (50_000, 51_500, 49_000, 50_500), QUIET]
    elsewhere = candles([QUIET, QUIET], start=T0 + 2 * HOUR, tf="1m")
    assert only_trade(hour, fine=[elsewhere])["exit_reason"] == "stop_loss"


def test_gap_through_the_stop_fills_at_the_open():
    t = only_trade([QUIET, (49_000, 49_200, 48_800, 49_100)])
    assert (t["exit_reason"], t["exit_price"]) == ("stop_loss", 49_000)
    assert t["pnl"] == pytest.approx(-8 - 0.2 - 392 * 0.0005)


def test_gap_through_the_target_fills_at_the_open():
    t = only_trade([QUIET, (52_000, 52_100, 49_000, 49_500)])
    assert (t["exit_reason"], t["exit_price"]) == ("take_profit", 52_000)


def test_short_exits():
    short = [sig(side="short", sl=50_500, tp=49_000)]
    assert only_trade([QUIET, (50_000, 51_000, 48_000, 50_000)], signals=short)["exit_reason"] == "stop_loss"
    t = only_trade([QUIET, (48_000, 48_100, 47_900, 48_000)], signals=short)
    assert (t["exit_reason"], t["exit_price"]) == ("take_profit", 48_000)


def test_liquidation_before_the_stop_on_a_gap():
    """The stop is inside the liquidation price (the risk check sees to that); a gap past both liquidates."""
    r = runner([QUIET, (47_000, 47_100, 46_500, 46_800), QUIET])
    (t,) = r.run().trades
    assert t["exit_reason"] == "liquidation" and t["exit_price"] == pytest.approx(47_690.76, abs=0.01)
    assert t["pnl"] == pytest.approx(-20 - 0.2)
    assert open_triggers(r) == []  # the exchange cancelled the stop and the target


def test_end_of_data():
    rows = [QUIET, QUIET, (50_000, 50_200, 49_800, 50_150)]
    t = only_trade(rows)
    assert (t["exit_reason"], t["exit_price"], t["exit_time"]) == ("end_of_data", 50_150, T0 + 3 * HOUR)
    assert t["pnl"] == pytest.approx(1.2 - 0.2 - 401.2 * 0.0005)


def test_the_entry_candle_counts():
    t = only_trade([(50_000, 50_100, 49_400, 49_900), QUIET])
    assert (t["exit_reason"], t["exit_time"]) == ("stop_loss", T0)


def test_trade_rows_carry_the_signal():
    t = only_trade([QUIET, (50_100, 51_100, 50_000, 51_000)])
    assert list(t.as_dict()) == [*TRADE_COLUMNS, "funding"]  # a trades.csv line (funding: when the run knows it)
    assert (t["signal_id"], t["symbol"], t["side"], t["stop_loss"], t["take_profit"]) == (
        "s1", BTC, "LONG", 49_500, 51_000)
    assert (t["exit_reason"], t["exit_price"], t["fees"]) == ("take_profit", 51_000, pytest.approx(0.2 + 0.204))


# --- sibling orders --------------------------------------------------------------------------------------------------

def test_the_sibling_is_cancelled_after_an_exit():
    r = runner([QUIET, (50_000, 50_100, 49_400, 49_600), QUIET], balances={"A": 1_000, "B": 5_000})
    res = r.run()
    assert [t["exit_reason"] for t in res.trades] == ["stop_loss", "stop_loss"]
    assert open_triggers(r) == []
    assert r.executor.watcher.cancelled_siblings == 2
    statuses = sorted(o["status"] for ex in r.exchanges.values() for o in ex.algo_orders.values())
    assert statuses == ["canceled", "canceled", "closed", "closed"]


STALE_ROWS = [
    QUIET,                                  # signal 1 enters at 50,000 (SL 49,500, TP 51,000)
    (49_800, 49_850, 49_400, 49_600),       # signal 1 stopped out; its target stays behind if not cancelled
    (49_600, 49_700, 49_500, 49_650),       # signal 2 enters at 49,600 (SL 49,000, TP 52,000)
    (49_700, 51_200, 49_650, 51_100),       # crosses 51,000: the first signal's target, not the second's
    (51_100, 51_200, 51_000, 51_150),
]
STALE_SIGNALS = [sig(), sig(time=T0 + 2 * HOUR, entry=49_600, sl=49_000, tp=52_000, id="s2")]


def test_a_stale_sibling_would_close_a_later_position(monkeypatch):
    r = runner(STALE_ROWS, signals=STALE_SIGNALS)

    async def never_cancel(bracket, filled_id):
        return None

    monkeypatch.setattr(r.executor.watcher, "_leg_filled", never_cancel)
    first, second = r.run().trades
    assert first["exit_reason"] == "stop_loss"
    # signal 2's position closed by signal 1's leftover take-profit at 51,000
    assert (second["signal_id"], second["exit_reason"], second["exit_price"]) == ("s2", "take_profit", 51_000)


def test_the_engine_cancel_prevents_the_stale_sibling():
    r = runner(STALE_ROWS, signals=STALE_SIGNALS)
    first, second = r.run().trades
    assert first["exit_reason"] == "stop_loss"
    assert (second["signal_id"], second["exit_reason"], second["exit_price"]) == ("s2", "end_of_data", 51_150)


# --- a stop rejected after the entry (emergency close) --------------------------------------------------------------

GAPPED_ENTRY = [(49_400, 49_450, 49_300, 49_400), (49_400, 49_500, 49_300, 49_400)]  # opens below the 49,500 stop


def test_stop_rejected_at_the_entry_closes_the_position():
    r = runner(GAPPED_ENTRY)
    res = r.run()
    (row,) = res.skipped
    assert row["reason"].startswith("failed: stop-loss rejected, position closed at market")
    (t,) = res.trades
    assert (t["entry_price"], t["exit_price"], t["exit_time"]) == (49_400, 49_400, T0)
    assert not r.exchanges["A"].positions and open_triggers(r) == []


def test_emergency_close_trade_row_names_its_signal():
    (t,) = runner(GAPPED_ENTRY).run().trades
    assert (t["signal_id"], t["stop_loss"], t["take_profit"]) == ("s1", 49_500, 51_000)


def test_emergency_close_exit_reason_is_documented():
    (t,) = runner(GAPPED_ENTRY).run().trades
    assert t["exit_reason"] in {"take_profit", "stop_loss", "liquidation", "end_of_data"}


# --- skips, risk and bad input -----------------------------------------------------------------------------------

def test_skips_are_reported():
    res = runner([QUIET, QUIET], balances={"A": 1_000, "small": 100, "empty": 5}).run()
    assert [t["account"] for t in res.trades] == ["A"]
    reasons = {s["account"]: s["reason"] for s in res.skipped}
    assert "below minimum 0.001" in reasons["small"] and "balance $5.00 below minimum $10.00" in reasons["empty"]
    assert res.stats["skipped"] == 2 and res.stats["successes"] == 1


def test_signals_outside_the_candles_are_skipped_for_every_account():
    signals = [sig(time=T0 + 10 * HOUR, id="late"), sig(symbol="ETHUSDT", entry=2_000, sl=1_980, tp=2_040, id="eth")]
    res = runner([QUIET, QUIET], signals=signals, balances={"A": 1_000, "B": 1_000}).run()
    assert res.trades == []
    assert sorted((s["signal_id"], s["reason"]) for s in res.skipped) == [
        ("eth", f"no candles for {ETH}"), ("eth", f"no candles for {ETH}"),
        ("late", "signal after the last candle"), ("late", "signal after the last candle")]


def test_signal_before_the_first_candle_is_skipped_with_a_reason():
    """Issue 11: the candle it would enter on is not in the data, so it is not traded at the first candle; a signal
    inside the candle before the first one enters at the first open, as it would with that candle present."""
    signals = [sig(time=T0 - HOUR, id="early"), sig(time=T0 - 30 * MINUTE, id="just-before")]
    res = runner([QUIET, QUIET], signals=signals).run()
    assert res.skipped == [{"account": "A", "signal_id": "early",
                            "reason": "signal before the first candle (2024-01-01T00:00:00Z)", "symbol": BTC}]
    assert [(t["signal_id"], t["entry_time"]) for t in res.trades] == [("just-before", T0)]


def test_one_position_per_symbol_in_a_backtest():
    signals = [sig(), sig(time=T0 + HOUR, id="s2")]
    res = runner([QUIET, QUIET, QUIET], signals=signals).run()
    assert [t["signal_id"] for t in res.trades] == ["s1"]
    assert res.skipped == [{"account": "A", "signal_id": "s2", "reason": "already has an open BTC/USDT position",
                            "symbol": BTC}]


def test_leverage_bracket_skip_in_a_backtest():
    res = runner([QUIET, QUIET], config=ExecutionConfig(leverage=125, max_position_usd=1_000),
                 balances={"big": 60_000}).run()
    # $1,000 x 125 = $125,000 is past 125x's bracket: the engine skips it before any order
    assert res.trades == [] and "125x" in res.skipped[0]["reason"]


def test_failed_accounts_are_listed_with_the_status():
    r = runner([QUIET, QUIET], balances={"A": 1_000, "B": 1_000})
    r.exchanges["B"].fail_next("set_leverage", ccxt.BadRequest("leverage refused"))
    res = r.run()
    assert [t["account"] for t in res.trades] == ["A"]
    (row,) = res.skipped
    assert row["account"] == "B" and row["reason"].startswith("failed: leverage / margin mode not set")
    assert res.stats["failures"] == 1


def test_signals_need_a_time():
    with pytest.raises(ValueError, match="'time'"):
        runner([QUIET], signals=[parse_signal({"symbol": "BTCUSDT", "side": "long", "entry": 50_000,
                                               "sl": 49_500, "tp": 51_000})])


def test_needs_candles_and_accounts():
    with pytest.raises(ValueError, match="candles"):
        BacktestRunner([], [sig()], {"A": 1_000})
    with pytest.raises(ValueError, match="balance"):
        BacktestRunner([candles([QUIET])], [sig()], {})


def test_two_symbols_interleave_in_time():
    btc = candles([QUIET, QUIET, (50_000, 51_100, 49_900, 51_000), QUIET])
    eth = candles([(2_000, 2_005, 1_995, 2_000), (2_000, 2_001, 1_970, 1_975), (1_975, 1_980, 1_970, 1_975),
                   (1_975, 1_980, 1_970, 1_975)], symbol=ETH)
    signals = [sig(), sig(time=T0, symbol="ETHUSDT", entry=2_000, sl=1_980, tp=2_040, id="e1")]
    res = runner([btc, eth], signals=signals).run()
    got = sorted((t["signal_id"], t["exit_reason"], t["exit_time"]) for t in res.trades)
    assert got == [("e1", "stop_loss", T0 + HOUR), ("s1", "take_profit", T0 + 2 * HOUR)]


def test_end_of_data_per_symbol():
    btc = candles([QUIET, QUIET, QUIET])
    eth = candles([(2_000, 2_005, 1_995, 2_000), (2_000, 2_001, 1_995, 2_001)], symbol=ETH)
    signals = [sig(), sig(time=T0, symbol="ETHUSDT", entry=2_000, sl=1_980, tp=2_040, id="e1")]
    r = runner([btc, eth], signals=signals)
    got = sorted((t["signal_id"], t["exit_reason"], t["exit_price"], t["exit_time"]) for t in r.run().trades)
    assert got == [("e1", "end_of_data", 2_001, T0 + 2 * HOUR), ("s1", "end_of_data", 50_000, T0 + 3 * HOUR)]
    assert open_triggers(r) == [] and r.executor.watcher.open_brackets() == []


# --- determinism and outputs -------------------------------------------------------------------------------------------

MIXED = [QUIET, (50_000, 50_100, 49_400, 49_600), (49_600, 49_700, 49_500, 49_650),
         (49_700, 52_100, 49_650, 52_000), (52_000, 52_100, 51_900, 52_050), (52_050, 52_100, 51_000, 51_100)]
MIXED_SIGNALS = [sig(), sig(time=T0 + 2 * HOUR, entry=49_600, sl=49_000, tp=52_000, id="s2"),
                 sig(time=T0 + 4 * HOUR, entry=52_000, sl=52_500, tp=51_000, side="short", id="s3")]
BALANCES = {"A": 1_000, "B": 5_000, "C": 500, "D": 100}


def test_same_inputs_same_outputs(tmp_path):
    a = runner(MIXED, signals=MIXED_SIGNALS, balances=BALANCES).run()
    b = runner(MIXED, signals=MIXED_SIGNALS, balances=BALANCES).run()
    assert a.trades == b.trades and a.skipped == b.skipped and a.end_balance == b.end_balance
    assert all(np.array_equal(a.equity[k], b.equity[k]) for k in a.equity)
    write_outputs(a, tmp_path / "a", plot=False)
    write_outputs(b, tmp_path / "b", plot=False)
    for name in ("trades.csv", "skipped.csv", "equity.csv", "summary.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_end_balance_is_start_plus_trade_pnl():
    res = runner(MIXED, signals=MIXED_SIGNALS, balances=BALANCES).run()
    for name, start in BALANCES.items():
        pnl = sum(t["pnl"] for t in res.trades if t["account"] == name)
        assert res.end_balance[name] == pytest.approx(start + pnl)
    assert {t["exit_reason"] for t in res.trades} == {"stop_loss", "take_profit"}


def test_equity_curve_marks_to_the_close_and_ends_at_the_wallet():
    rows = [QUIET, (50_000, 51_100, 49_950, 51_000), (51_000, 51_100, 50_900, 51_000), QUIET]
    res = runner(rows).run()
    assert res.equity_time.tolist() == [T0 + i * HOUR for i in range(4)]
    # before the entry; the exit candle (its close is the target); realised afterwards
    assert res.equity["A"].tolist() == pytest.approx([1_000, 1_000 + 8 - 0.2, 1_000 + 8 - 0.404, 1_000 + 8 - 0.404])
    assert res.equity["A"][-1] == pytest.approx(res.end_balance["A"])


def test_equity_curve_of_a_liquidation_loses_the_margin():
    res = runner([QUIET, (47_000, 47_100, 46_500, 46_800), QUIET]).run()
    assert res.equity["A"].tolist() == pytest.approx([1_000, 979.8, 979.8])
