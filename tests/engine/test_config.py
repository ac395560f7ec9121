"""Tests for engine/config.py: defaults from the design document, validation naming the field, env parsing."""

from __future__ import annotations

import math

import pytest

from engine.config import ExecutionConfig


def test_defaults_follow_the_design_document():
    c = ExecutionConfig()
    assert (c.position_size_pct, c.max_position_usd, c.leverage, c.min_balance_usd) == (0.02, 100.0, 20, 10.0)
    assert (c.daily_loss_limit_pct, c.max_open_positions, c.min_reward_risk) == (0.05, 5, 0.0)
    assert (c.margin_mode, c.working_type) == ("isolated", "MARK_PRICE")


@pytest.mark.parametrize("field, value", [
    ("position_size_pct", 0), ("position_size_pct", 1.5), ("position_size_pct", math.nan),
    ("max_position_usd", 0), ("max_position_usd", -1), ("max_position_usd", math.inf),
    ("leverage", 0), ("leverage", 126), ("leverage", 2.5),
    ("min_balance_usd", -1), ("daily_loss_limit_pct", 1), ("daily_loss_limit_pct", -0.1),
    ("max_open_positions", -1), ("min_reward_risk", math.nan),
    ("margin_mode", "cross"), ("working_type", "LAST_PRICE"),
])
def test_bad_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"'{field}'"):
        ExecutionConfig(**{field: value})


def test_frozen():
    with pytest.raises(AttributeError):
        ExecutionConfig().leverage = 10  # type: ignore[misc]


def test_from_env_percentages_and_blanks():
    c = ExecutionConfig.from_env({"POSITION_SIZE_PCT": "3", "DAILY_LOSS_LIMIT_PCT": "2.5", "LEVERAGE": "10",
                                  "MAX_POSITION_USD": " ", "MAX_OPEN_POSITIONS": "0", "OTHER": "x"})
    assert c.position_size_pct == pytest.approx(0.03)
    assert c.daily_loss_limit_pct == pytest.approx(0.025)
    assert (c.leverage, c.max_position_usd, c.max_open_positions) == (10, 100.0, 0)


@pytest.mark.parametrize("env, name", [({"LEVERAGE": "twenty"}, "LEVERAGE"), ({"LEVERAGE": "500"}, "LEVERAGE='500'"),
                                       ({"MIN_BALANCE_USD": "-5"}, "MIN_BALANCE_USD='-5'"),
                                       ({"LEVERAGE": "10", "POSITION_SIZE_PCT": "0"}, "POSITION_SIZE_PCT='0'"),
                                       ({"WORKING_TYPE": "LAST"}, "WORKING_TYPE='LAST'")])
def test_from_env_errors_name_the_variable(env, name):
    with pytest.raises(ValueError, match=name):
        ExecutionConfig.from_env(env)
