"""Tests for engine/risk.py: daily loss limit by UTC day, open-position limits, reward:risk, stop vs liquidation."""

from __future__ import annotations

import pytest

from engine import ExecutionConfig, MultiAccountExecutor, parse_signal
from engine.risk import (
    DAY_MS,
    RiskLedger,
    RiskRejection,
    check_account,
    check_signal_quality,
    check_stop_vs_liquidation,
)
from engine.sizing import Sizing

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z
HOUR = 3_600_000


def signal(entry=50_000, sl=49_500, tp=51_000, symbol="BTCUSDT", side="LONG", **kw):
    return parse_signal({"symbol": symbol, "side": side, "entry": entry, "sl": sl, "tp": tp, **kw})


def position(symbol=BTC, contracts=0.008, upnl=0.0):
    return {"symbol": symbol, "contracts": contracts, "unrealizedPnl": upnl}


def check(positions=(), equity=1_000.0, now=T0, ledger=None, config=None, sig=None):
    check_account(account="A", signal=sig or signal(), config=config or ExecutionConfig(), ledger=ledger or RiskLedger(),
                  now_ms=now, equity=equity, positions=list(positions))


# --- unit: check_account -------------------------------------------------------------------------------------

def test_daily_loss_limit_by_utc_day():
    ledger = RiskLedger()
    check(equity=1_000, now=T0 + HOUR, ledger=ledger)  # first look today: the day starts at $1,000
    check(equity=951, now=T0 + 2 * HOUR, ledger=ledger)  # -$49: under 5%
    with pytest.raises(RiskRejection, match="daily loss limit"):
        check(equity=950, now=T0 + 23 * HOUR, ledger=ledger)  # -$50 = 5% of $1,000
    check(equity=950, now=T0 + DAY_MS, ledger=ledger)  # next UTC day: a new start at $950
    assert ledger.day_start["A"] == (T0 // DAY_MS + 1, 950.0)


def test_daily_loss_ignores_floating_pnl():
    ledger = RiskLedger()
    check(equity=1_000, ledger=ledger)
    # equity fell $80 but $70 of it is unrealised on an ETH position: the wallet lost $10
    check(positions=[position(ETH, 1, upnl=-70)], equity=920, now=T0 + HOUR, ledger=ledger)


def test_daily_loss_limit_disabled():
    ledger = RiskLedger()
    cfg = ExecutionConfig(daily_loss_limit_pct=0)
    check(equity=1_000, ledger=ledger, config=cfg)
    check(equity=10, now=T0 + HOUR, ledger=ledger, config=cfg)


def test_ledger_round_trips_json():
    ledger = RiskLedger()
    ledger.observe("A", T0, 1_000.0)
    again = RiskLedger.from_json(ledger.to_json())
    assert again.day_start == ledger.day_start
    assert again.observe("A", T0 + HOUR, 5.0) == 1_000.0


def test_one_position_per_symbol():
    with pytest.raises(RiskRejection, match="already has an open BTC/USDT position"):
        check(positions=[position(BTC)])
    check(positions=[position(BTC, contracts=0)])  # an empty position entry does not count


def test_max_open_positions():
    others = [position(f"X{i}/USDT:USDT") for i in range(5)]
    with pytest.raises(RiskRejection, match=r"max open positions reached \(5/5\)"):
        check(positions=others)
    check(positions=others[:4])
    check(positions=others, config=ExecutionConfig(max_open_positions=0))  # 0 disables


def test_min_reward_risk():
    check_signal_quality(signal(), ExecutionConfig(min_reward_risk=2))  # exactly 2:1 passes
    with pytest.raises(RiskRejection, match="reward:risk 2.00 below minimum 2.50"):
        check_signal_quality(signal(), ExecutionConfig(min_reward_risk=2.5))
    check_signal_quality(signal(tp=50_001), ExecutionConfig())  # 0 = off


def test_stop_vs_liquidation(rules):
    tiers = rules.tiers[BTC]
    seed = Sizing(margin=20, notional=400, quantity=0.008, amount="0.008", leverage=20)
    assert check_stop_vs_liquidation(signal(), seed, tiers) == pytest.approx(47_690.763, abs=0.01)
    assert check_stop_vs_liquidation(signal(), seed, None) is None
    # 100x with a 2% stop: liquidation ~49,698.8 lies above the 49,000 stop
    high = Sizing(margin=20, notional=2_000, quantity=0.04, amount="0.04", leverage=100)
    with pytest.raises(RiskRejection, match="beyond the liquidation price 49,698.80 at 100x"):
        check_stop_vs_liquidation(signal(sl=49_000), high, tiers)
    short = signal(side="SHORT", sl=51_000, tp=49_000)
    with pytest.raises(RiskRejection, match="liquidation"):
        check_stop_vs_liquidation(short, high, tiers)


# --- through the executor on simulated accounts ---------------------------------------------------------------

async def test_daily_loss_limit_after_a_simulated_loss(venue, make_accounts):
    accounts = make_accounts(1_000)
    ex = accounts[0].exchange
    # 0.3% of $1,000 = $3; a stop-out of 0.008 BTC by $500 loses $4 plus fees
    executor = MultiAccountExecutor(accounts, ExecutionConfig(daily_loss_limit_pct=0.003))
    first = await executor.execute(signal(time=T0))
    assert first.succeeded == 1
    venue.apply_candle(BTC, T0 + HOUR, 49_900, 49_950, 49_400, 49_450)  # stop hit
    assert BTC not in ex.positions and ex.wallet < 1_000 - 4

    venue.set_price(BTC, 49_450, T0 + 2 * HOUR)
    same_day = await executor.execute(signal(entry=49_450, sl=48_950, tp=50_450, time=T0 + 2 * HOUR))
    (r,) = same_day.results
    assert r.status == "skipped" and "daily loss limit" in r.reason
    assert BTC not in ex.positions

    venue.set_price(BTC, 49_450, T0 + DAY_MS)  # next UTC day
    next_day = await executor.execute(signal(entry=49_450, sl=48_950, tp=50_450, time=T0 + DAY_MS))
    assert next_day.results[0].ok
    assert BTC in ex.positions


async def test_max_open_positions_and_one_per_symbol(venue, make_accounts):
    accounts = make_accounts(1_000)
    venue.set_price(ETH, 2_000)
    executor = MultiAccountExecutor(accounts, ExecutionConfig(max_open_positions=1))
    assert (await executor.execute(signal())).succeeded == 1
    again = await executor.execute(signal(id="again"))
    assert "already has an open BTC/USDT position" in again.results[0].reason
    eth = await executor.execute(signal(2_000, 1_980, 2_040, symbol="ETHUSDT"))
    assert eth.results[0].status == "skipped" and "max open positions reached (1/1)" in eth.results[0].reason
    assert set(accounts[0].exchange.positions) == {BTC}


async def test_min_reward_risk_skips_every_account_without_orders(venue, make_accounts):
    accounts = make_accounts(1_000, 5_000)
    summary = await MultiAccountExecutor(accounts, ExecutionConfig(min_reward_risk=3)).execute(signal())
    assert [r.status for r in summary.results] == ["skipped", "skipped"]
    assert all("reward:risk 2.00 below minimum 3.00" in r.reason for r in summary.results)
    assert all(not a.exchange.orders and not a.exchange.algo_orders for a in accounts)


async def test_stop_beyond_liquidation_at_high_leverage(venue, make_accounts):
    accounts = make_accounts(5_000)
    summary = await MultiAccountExecutor(accounts, ExecutionConfig(leverage=100)).execute(signal(sl=49_000))
    (r,) = summary.results
    assert r.status == "skipped" and "beyond the liquidation price" in r.reason and "100x" in r.reason
    assert not accounts[0].exchange.orders
    # a signal's own leverage override is checked the same way
    summary = await MultiAccountExecutor(accounts).execute(signal(sl=49_000, leverage=100, id="override"))
    assert summary.results[0].status == "skipped" and "liquidation" in summary.results[0].reason
