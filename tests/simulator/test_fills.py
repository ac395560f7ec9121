"""Tests for simulator/fills.py: one group per numbered fill assumption in its docstring.

Rules 1, 2 and 4 are also exercised end to end through the backtest runner in tests/simulator/test_backtest.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine import ExecutionConfig, parse_signal
from marketdata.candles import Candles
from marketdata.funding import FundingRates
from simulator.backtest import BacktestRunner
from simulator.fills import LIQUIDATION, STOP_LOSS, TAKE_PROFIT, Level, first_hit, levels_for, slipped

BTC = "BTC/USDT:USDT"
T0 = 1_704_067_200_000
HOUR = 3_600_000
LIQ = 47_690.76  # 20x long at 50,000, MMR 0.004

LONG = levels_for(True, stop_loss=[(49_500.0, "sl")], take_profit=[(51_000.0, "tp")], liquidation=LIQ)
SHORT = levels_for(False, stop_loss=[(50_500.0, "sl")], take_profit=[(49_000.0, "tp")], liquidation=52_290.0)


def hit(levels, o, h, low, long=True):
    found = first_hit(long, levels, o, h, low)
    return None if found is None else (found[0].kind, found[1])


def candles(rows, start=T0, tf="1h"):
    step = {"1h": HOUR, "1m": 60_000}[tf]
    o, h, low, c = (np.array(col, dtype=float) for col in zip(*rows, strict=True))
    return Candles(symbol=BTC, timeframe=tf, time=start + step * np.arange(len(rows)), open=o, high=h, low=low,
                   close=c, volume=np.ones(len(rows)))


def backtest(rows, *, signal_time=T0, fine=None, config=None, **kw):
    sig = parse_signal({"symbol": "BTCUSDT", "side": "long", "entry": 50_000, "sl": 49_500, "tp": 51_000,
                        "time": signal_time, "id": "s1"})
    runner = BacktestRunner([candles(rows)], [sig], {"A": 1_000}, config, fine=fine, **kw)
    return runner.run()


def test_levels_for_sides():
    assert LONG == [Level(STOP_LOSS, 49_500.0, True, "sl"), Level(TAKE_PROFIT, 51_000.0, False, "tp"),
                    Level(LIQUIDATION, LIQ, True, None, True)]  # the liquidation watches the mark (rule 7)
    marked = levels_for(True, stop_loss=[(49_500.0, "sl")], take_profit=[(51_000.0, "tp")], liquidation=None,
                        mark={"sl"})
    assert [lv.mark for lv in marked] == [True, False]
    assert [lv.down for lv in SHORT] == [False, True, False]
    assert levels_for(True, stop_loss=[], take_profit=[], liquidation=0.0) == []


def test_nothing_crossed():
    assert hit(LONG, 50_000, 50_900, 49_600) is None
    assert hit(SHORT, 50_000, 50_400, 49_100, long=False) is None


def test_touching_a_level_counts():
    assert hit(LONG, 50_000, 50_100, 49_500) == (STOP_LOSS, 49_500)
    assert hit(LONG, 50_000, 51_000, 49_600) == (TAKE_PROFIT, 51_000)


# --- rule 1: market fills at the current price, slippage against the trader -----------------------------------

def test_rule1_slippage_against_the_trader():
    assert slipped(50_000, True, 0) == 50_000
    assert slipped(50_000, True, 10) == pytest.approx(50_050)
    assert slipped(50_000, False, 10) == pytest.approx(49_950)


def test_rule1_entry_at_the_open_of_the_first_candle_at_or_after_the_signal():
    rows = [(50_000, 50_100, 49_900, 50_050), (50_200, 50_300, 50_100, 50_250), (50_250, 50_300, 50_200, 50_280)]
    (t,) = backtest(rows, signal_time=T0 + 1).trades  # one millisecond after the first open: the next candle
    assert (t["entry_time"], t["entry_price"]) == (T0 + HOUR, 50_200)
    (t,) = backtest(rows, signal_time=T0 + HOUR).trades  # exactly at an open: that candle
    assert (t["entry_time"], t["entry_price"]) == (T0 + HOUR, 50_200)


def test_rule1_slippage_moves_entries_and_trigger_fills():
    rows = [(50_000, 50_100, 49_900, 50_050), (49_900, 49_950, 49_400, 49_450)]
    (t,) = backtest(rows, slippage_bps=10).trades
    assert t["entry_price"] == pytest.approx(50_050)  # buy: up
    assert (t["exit_reason"], t["exit_price"]) == ("stop_loss", pytest.approx(49_450.5))  # sell: down


# --- rule 2: the entry candle's high and low count ----------------------------------------------------------------

def test_rule2_entry_candle_counts():
    (t,) = backtest([(50_000, 50_100, 49_400, 49_800), (49_800, 49_900, 49_700, 49_800)]).trades
    assert (t["exit_reason"], t["exit_time"], t["exit_price"]) == ("stop_loss", T0, 49_500)


# --- rule 3: a candle opening beyond a level fills at its open ---------------------------------------------------

def test_rule3_gap_through_the_stop_fills_at_the_worse_open():
    assert hit(LONG, 49_000, 49_200, 48_900) == (STOP_LOSS, 49_000)
    assert hit(SHORT, 51_000, 51_100, 50_900, long=False) == (STOP_LOSS, 51_000)


def test_rule3_gap_through_the_target_fills_at_the_better_open():
    assert hit(LONG, 51_500, 51_600, 49_000) == (TAKE_PROFIT, 51_500)  # even if the candle later hits the stop
    assert hit(SHORT, 48_500, 51_000, 48_400, long=False) == (TAKE_PROFIT, 48_500)


# --- rule 4: open -> adverse extreme -> favourable extreme -> close ---------------------------------------------

def test_rule4_stop_and_target_in_one_candle_stop_first():
    assert hit(LONG, 50_000, 51_500, 49_000) == (STOP_LOSS, 49_500)
    assert hit(SHORT, 50_000, 51_000, 48_500, long=False) == (STOP_LOSS, 50_500)


def test_rule4_several_levels_on_one_side_nearest_first():
    levels = levels_for(True, stop_loss=[(49_000.0, "far"), (49_500.0, "near")],
                        take_profit=[(52_000.0, "tp2"), (51_000.0, "tp1")], liquidation=None)
    assert first_hit(True, levels, 50_000, 50_100, 48_000)[0].order_id == "near"
    assert first_hit(True, levels, 50_000, 53_000, 49_900)[0].order_id == "tp1"


def test_rule4_finer_candles_decide():
    rows = [(50_000, 50_100, 49_900, 50_000), (50_000, 51_200, 49_400, 49_600)]
    coarse = backtest(rows).trades[0]
    assert coarse["exit_reason"] == "stop_loss"
    fine = candles([(50_000, 51_100, 49_950, 51_050), (51_050, 51_100, 49_400, 49_600)], start=T0 + HOUR, tf="1m")
    refined = backtest(rows, fine=[fine]).trades[0]
    assert (refined["exit_reason"], refined["exit_price"], refined["exit_time"]) == ("take_profit", 51_000, T0 + HOUR)


# --- rule 5: liquidation -------------------------------------------------------------------------------------------

def test_rule5_gap_past_stop_and_liquidation_liquidates_at_the_liquidation_price():
    assert hit(LONG, 47_000, 47_100, 46_500) == (LIQUIDATION, LIQ)
    assert hit(SHORT, 53_000, 53_100, 52_900, long=False) == (LIQUIDATION, 52_290.0)


def test_rule5_gap_past_the_stop_only_fills_the_stop():
    assert hit(LONG, 48_000, 48_100, 46_000) == (STOP_LOSS, 48_000)  # the open is above the liquidation price


def test_rule5_a_stop_beyond_the_liquidation_price_is_never_reached():
    levels = levels_for(True, stop_loss=[(47_000.0, "sl")], take_profit=[], liquidation=LIQ)
    assert hit(levels, 50_000, 50_100, 46_000) == (LIQUIDATION, LIQ)
    assert hit(levels, 46_500, 46_600, 46_000) == (LIQUIDATION, LIQ)


def test_rule5_liquidation_loses_the_margin():
    (t,) = backtest([(50_000, 50_100, 49_900, 50_000), (47_000, 47_100, 46_500, 46_800)]).trades
    assert t["exit_reason"] == "liquidation" and t["exit_price"] == pytest.approx(LIQ, abs=0.01)
    assert t["pnl"] == pytest.approx(-t["margin"] - t["fees"]) and t["margin"] == pytest.approx(20)


# --- rule 6: fees ----------------------------------------------------------------------------------------------------

def test_rule6_taker_fee_on_entry_and_trigger_fill_maker_unused():
    rows = [(50_000, 50_100, 49_900, 50_050), (50_100, 51_100, 50_000, 51_050)]
    (t,) = backtest(rows, taker_fee=0.001, maker_fee=0.0).trades
    assert t["exit_reason"] == "take_profit"
    assert t["fees"] == pytest.approx(400 * 0.001 + 408 * 0.001)
    assert t["pnl"] == pytest.approx(8 - t["fees"])
    (t,) = backtest(rows, taker_fee=0.001, maker_fee=0.0009).trades
    assert t["fees"] == pytest.approx(0.808)


# --- rule 7: candle prices stand in for the mark price ---------------------------------------------------------

def test_rule7_working_type_does_not_change_fills():
    rows = [(50_000, 50_100, 49_900, 50_050), (50_000, 51_200, 49_400, 49_600), (49_600, 49_700, 49_500, 49_600)]
    mark = backtest(rows, config=ExecutionConfig(working_type="MARK_PRICE")).trades
    contract = backtest(rows, config=ExecutionConfig(working_type="CONTRACT_PRICE")).trades
    assert mark == contract


# --- rule 9: funding --------------------------------------------------------------------------------------------

def funding(*events):
    """(time, rate, mark or None) events of BTC."""
    t, r, m = zip(*events, strict=True)
    return FundingRates(BTC, np.array(t, dtype=np.int64), np.array(r, dtype=float),
                        np.array([np.nan if x is None else x for x in m], dtype=float), "test")


def test_rule9_funding_at_the_data_times_on_the_candle_open_or_the_given_mark():
    rows = [(50_000, 50_100, 49_900, 50_000), (50_010, 50_100, 49_900, 50_000), (50_000, 50_100, 49_900, 50_000),
            (50_000, 50_100, 49_900, 50_000)]
    rates = funding((T0 - HOUR, 0.01, None),  # before the data: ignored
                    (T0 + HOUR + 5, 0.0001, None),  # no mark: the open of the candle it falls in (50,010)
                    (T0 + 2 * HOUR + 90 * 60_000 // 60, -0.0002, 50_500.0),  # any time, not an 8h grid; its mark
                    (T0 + 4 * HOUR, 0.01, None))  # at the data's end: the position is closed by then
    result = backtest(rows, funding=[rates])
    (t,) = result.trades
    assert t["exit_reason"] == "end_of_data" and t["quantity"] == 0.008
    expected = -0.008 * 50_010 * 0.0001 + 0.008 * 50_500 * 0.0002  # a long pays a positive rate, earns a negative
    assert t["funding"] == pytest.approx(expected, abs=1e-12)
    assert t["pnl"] == pytest.approx((50_000 - 50_000) * 0.008 - t["fees"] + expected)
    assert result.end_balance["A"] == pytest.approx(1_000 + t["pnl"])
    assert result.funding_known == [BTC]
    # the equity curve moves when funding is paid, not when the trade closes
    diff = result.equity["A"] - backtest(rows).equity["A"]
    assert diff == pytest.approx([0, 0, -0.008 * 50_010 * 0.0001, expected], abs=1e-9)
    assert backtest(rows).trades[0]["funding"] == 0 and backtest(rows).funding_known == []


def test_rule9_a_short_earns_a_positive_rate_and_an_exit_at_the_funding_time_pays_nothing():
    rows = [(50_000, 50_100, 49_900, 50_000), (50_000, 50_100, 49_900, 50_000), (50_000, 51_100, 49_900, 51_000)]
    short = parse_signal({"symbol": "BTCUSDT", "side": "short", "entry": 50_000, "sl": 50_500, "tp": 49_000,
                          "time": T0, "id": "s1"})
    (t,) = BacktestRunner([candles(rows)], [short], {"A": 1_000}, funding=[funding((T0 + HOUR, 0.0003, None))]).run().trades
    assert t["funding"] == pytest.approx(0.008 * 50_000 * 0.0003)
    # the stop fills in the candle opening at the funding time: closed before it, nothing paid
    (t,) = BacktestRunner([candles(rows)], [short], {"A": 1_000},
                          funding=[funding((T0 + 2 * HOUR, 0.0003, None))]).run().trades
    assert t["exit_reason"] == "stop_loss" and t["exit_time"] == T0 + 2 * HOUR and t["funding"] == 0


# --- rule 7 with mark candles: MARK_PRICE triggers and liquidation watch the mark ------------------------------

def mark_candles(rows):
    c = candles(rows)
    return Candles(symbol=BTC, timeframe="1h", time=c.time, open=c.open, high=c.high, low=c.low, close=c.close,
                   volume=np.zeros(len(c)))


def test_rule7_mark_price_triggers_and_liquidation_use_the_mark_candles():
    # the trade candles wick through the stop (49,500); the mark stays above it, then falls through it later
    rows = [(50_000, 50_100, 49_900, 50_000), (50_000, 50_100, 49_400, 49_900), (49_900, 50_000, 49_600, 49_700)]
    marks = mark_candles([(50_000, 50_100, 49_900, 50_000), (50_000, 50_050, 49_800, 49_900),
                          (49_900, 49_950, 49_450, 49_600)])
    (t,) = backtest(rows, config=ExecutionConfig(working_type="MARK_PRICE"), mark=[marks]).trades
    assert t["exit_reason"] == "stop_loss" and t["exit_time"] == T0 + 2 * HOUR and t["exit_price"] == 49_500
    (t,) = backtest(rows, config=ExecutionConfig(working_type="CONTRACT_PRICE"), mark=[marks]).trades
    assert t["exit_time"] == T0 + HOUR  # a CONTRACT_PRICE stop watches the trades
    (t,) = backtest(rows, config=ExecutionConfig(working_type="MARK_PRICE")).trades
    assert t["exit_time"] == T0 + HOUR  # without mark candles the candle prices stand in

    # the mark gaps below the stop: the stop's market order fills at the trade candle's open
    gap = mark_candles([(50_000, 50_100, 49_900, 50_000), (49_450, 49_500, 49_400, 49_450), (49_900,) * 4])
    rows = [(50_000, 50_100, 49_900, 50_000), (49_600, 49_700, 49_550, 49_600), (49_600,) * 4]
    (t,) = backtest(rows, mark=[gap]).trades
    assert t["exit_reason"] == "stop_loss" and t["exit_time"] == T0 + HOUR and t["exit_price"] == 49_600

    # liquidation follows the mark: trade prices pass the liquidation price (47,690.76), the mark does not
    stopless = ExecutionConfig(working_type="MARK_PRICE")
    rows = [(50_000, 50_100, 49_900, 50_000), (47_000, 47_100, 46_500, 46_800), (47_000,) * 4]
    calm = mark_candles([(50_000, 50_100, 49_900, 50_000), (49_700, 49_800, 49_600, 49_700), (49_700,) * 4])
    (t,) = backtest(rows, config=stopless, mark=[calm]).trades
    assert t["exit_reason"] == "end_of_data"
    crash = mark_candles([(50_000, 50_100, 49_900, 50_000), (47_000, 47_100, 46_500, 46_800), (47_000,) * 4])
    (t,) = backtest(rows, config=stopless, mark=[crash]).trades
    assert t["exit_reason"] == "liquidation" and t["exit_price"] == pytest.approx(LIQ, abs=0.01)
