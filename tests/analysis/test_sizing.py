"""Tests for analysis/sizing.py: the same signals from different starting balances."""

from __future__ import annotations

import pytest

import analysis


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


def test_plot_sizing_has_the_four_panels(demo_candles, demo_signals):
    study = analysis.sizing_study(demo_candles, demo_signals[:5], [1_000, 5_000])
    fig = analysis.plot_sizing(study, synthetic=True)
    assert len(fig.axes) == 4 and "SYNTHETIC" in fig.get_suptitle()
