"""Tests for engine/sizing.py: the seed sizes, truncation, minimums, caps, leverage brackets, liquidation price."""

from __future__ import annotations

import math

import pytest

from engine.config import ExecutionConfig
from engine.sizing import SizingSkip, isolated_liquidation_price, size_position, tier_for

BTC = "BTC/USDT:USDT"


@pytest.fixture
def size(rules):
    """size(free, entry=50_000, leverage=20, config=None, symbol=BTC, tiers=True) with the snapshot's rules."""

    def run(free, entry=50_000.0, leverage=20, config=None, symbol=BTC, tiers=True):
        return size_position(
            free_usdt=free, entry=entry, leverage=leverage, config=config or ExecutionConfig(),
            market=rules.markets[symbol], amount_to_precision=rules.helper.amount_to_precision,
            tiers=rules.tiers[symbol] if tiers else None,
        )

    return run


@pytest.mark.parametrize("free, margin, notional, quantity, amount", [
    (1_000, 20.0, 400.0, 0.008, "0.008"),
    (5_000, 100.0, 2_000.0, 0.04, "0.04"),  # 2% is exactly the $100 cap
    (500, 10.0, 200.0, 0.004, "0.004"),
])
def test_seed_example(size, free, margin, notional, quantity, amount):
    s = size(free)
    assert (s.margin, s.notional, s.quantity, s.amount, s.leverage) == (margin, notional, quantity, amount, 20)


def test_max_position_caps_the_margin(size):
    s = size(50_000)  # 2% = $1,000, capped at $100
    assert (s.margin, s.notional, s.quantity) == (100.0, 2_000.0, 0.04)
    s = size(50_000, config=ExecutionConfig(max_position_usd=250))
    assert (s.margin, s.notional, s.quantity) == (250.0, 5_000.0, 0.1)


def test_truncation_never_rounds_up(size):
    # $22.4999 x 20 / 50,000 = 0.0089999 BTC -> 0.008 (the step is 0.001), never 0.009
    s = size(1_124.995)
    assert s.amount == "0.008" and s.quantity == 0.008
    # the margin and notional reported are those of the truncated quantity
    assert s.notional == pytest.approx(400.0) and s.margin == pytest.approx(20.0)


@pytest.mark.parametrize("raw_qty", [0.0089999, 0.008999999999, 0.0080001, 0.0089])
def test_amount_to_precision_truncates(rules, raw_qty):
    assert rules.helper.amount_to_precision(BTC, raw_qty) == "0.008"


def test_quantity_below_the_minimum_is_skipped(size):
    # ETH at 1,000,000 with $200 notional: 0.0002 ETH < min 0.001
    with pytest.raises(SizingSkip, match="below minimum 0.001"):
        size(500, entry=1_000_000.0, symbol="ETH/USDT:USDT")


def test_notional_below_the_exchange_minimum_is_skipped(size):
    # BTCUSDT MIN_NOTIONAL is 100: a $100 balance -> $2 margin -> $40 notional. At 20,000 that is 0.002 BTC,
    # above the 0.001 minimum quantity, so the notional minimum is what says no.
    with pytest.raises(SizingSkip) as e:
        size(100, entry=20_000.0)
    assert "$40.00" in str(e.value) and "minimum $100.00" in str(e.value)
    # at 50,000 the same $40 is 0.0008 BTC: the quantity minimum is named first
    with pytest.raises(SizingSkip, match=r"quantity 0.0008 below minimum 0.001 \(margin \$2.00"):
        size(100)


def test_minimum_notional_is_checked_after_truncation(size):
    # $5.10 margin x 20 = $102 -> 0.00204 BTC -> 0.002 BTC = $100 (allowed); $5.09 -> 0.002 too
    assert size(255).notional == pytest.approx(100.0)
    with pytest.raises(SizingSkip, match="below exchange minimum"):
        size(249.99)  # $4.9998 x 20 = $99.996 -> 0.001 BTC = $50


def test_balance_below_the_minimum_is_skipped(size):
    with pytest.raises(SizingSkip, match=r"balance \$9.99 below minimum \$10.00"):
        size(9.99)
    with pytest.raises(SizingSkip, match="below minimum"):
        size(math.nan)
    with pytest.raises(SizingSkip, match=r"below minimum \$600.00"):
        size(500, config=ExecutionConfig(min_balance_usd=600))


def test_leverage_above_the_bracket_is_skipped(size):
    # $1,000 margin x 125 = $125,000 notional: BTCUSDT's second bracket (50k-600k) allows 100x at most
    cfg = ExecutionConfig(max_position_usd=1_000, leverage=125)
    with pytest.raises(SizingSkip) as e:
        size(100_000, leverage=125, config=cfg)
    assert "125x" in str(e.value) and "100x" in str(e.value)
    assert size(100_000, leverage=100, config=cfg).notional == pytest.approx(100_000.0)
    # without tiers the bracket is not checked
    assert size(100_000, leverage=125, config=cfg, tiers=False).notional == pytest.approx(125_000.0)


def test_market_maximum_caps_the_quantity(rules):
    market = {"symbol": BTC, "limits": {"amount": {"min": 0.001, "max": 1000}, "market": {"max": 0.01},
                                        "cost": {"min": 5}}}
    s = size_position(free_usdt=5_000, entry=50_000, leverage=20, config=ExecutionConfig(), market=market,
                      amount_to_precision=rules.helper.amount_to_precision)
    assert (s.quantity, s.amount, s.notional, s.margin) == (0.01, "0.01", 500.0, 25.0)


def test_precision_error_means_zero_quantity():
    def raising(symbol, amount):
        raise ValueError("amount must be greater than minimum amount precision")

    market = {"symbol": BTC, "limits": {}}
    with pytest.raises(SizingSkip, match="truncates to zero"):
        size_position(free_usdt=1_000, entry=50_000, leverage=20, config=ExecutionConfig(), market=market,
                      amount_to_precision=raising)


def test_tier_for(rules):
    tiers = rules.tiers[BTC]
    assert tier_for(tiers, 0)["maxLeverage"] == 125
    assert tier_for(tiers, 49_999.99)["maxLeverage"] == 125
    assert tier_for(tiers, 50_000)["maxLeverage"] == 100  # floors are inclusive, caps exclusive
    assert tier_for(tiers, 10**12) is tiers[-1]
    assert tier_for([], 1) is None


def test_liquidation_price_of_the_seed_position():
    # Binance isolated: (q*entry - margin - cum) / (q*(1 - mmr)) = 380 / 0.007968
    liq = isolated_liquidation_price(side="LONG", entry=50_000, quantity=0.008, margin=20, mmr=0.004)
    assert liq == pytest.approx(47_690.763, abs=0.01)
    short = isolated_liquidation_price(side="SHORT", entry=50_000, quantity=0.008, margin=20, mmr=0.004)
    assert short == pytest.approx(420 / (0.008 * 1.004))
    assert isolated_liquidation_price(side="LONG", entry=50_000, quantity=0.008, margin=400, mmr=0.004) == 0.0


def test_liquidation_price_uses_cum():
    # second bracket of BTCUSDT: mmr 0.005, cum 50
    liq = isolated_liquidation_price(side="LONG", entry=50_000, quantity=2, margin=1_000, mmr=0.005, cum=50)
    assert liq == pytest.approx((100_000 - 1_000 - 50) / (2 * 0.995))
