"""Tests for engine/signal.py: symbol forms, sides, validation errors naming the field, times, default ids."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from engine.signal import SignalError, default_signal_id, normalize_symbol, parse_signal, parse_time_ms

GOOD = {"symbol": "BTC/USDT", "side": "LONG", "entry": 50_000, "stop_loss": 49_500, "take_profit": 51_000}
SHORT = {"symbol": "BTC/USDT", "side": "SHORT", "entry": 50_000, "stop_loss": 50_500, "take_profit": 49_000}


def with_(base: dict, **changes) -> dict:
    out = dict(base)
    for k, v in changes.items():
        if v is ...:
            out.pop(k, None)
        else:
            out[k] = v
    return out


# --- symbols and sides ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw", ["BTCUSDT", "BTC/USDT", "btc/usdt:usdt", "BTC/USDT:USDT", " btcusdt ", "BTC-USDT"])
def test_symbol_forms_map_to_the_linear_perpetual(raw):
    assert normalize_symbol(raw) == "BTC/USDT:USDT"
    assert parse_signal(with_(GOOD, symbol=raw)).symbol == "BTC/USDT:USDT"


def test_usdc_and_numeric_bases():
    assert normalize_symbol("1000PEPEUSDT") == "1000PEPE/USDT:USDT"
    assert normalize_symbol("ETHUSDC") == "ETH/USDC:USDC"


@pytest.mark.parametrize("raw", ["", "   ", None, 123, "BTC", "USDT", "BTC/USDT:BTC", "BTC USDT", "BTCUSD"])
def test_bad_symbol_names_the_field(raw):
    with pytest.raises(SignalError) as e:
        parse_signal(with_(GOOD, symbol=raw))
    assert e.value.field == "symbol"
    assert "symbol" in str(e.value)


def test_missing_symbol():
    with pytest.raises(SignalError) as e:
        parse_signal(with_(GOOD, symbol=...))
    assert e.value.field == "symbol"


@pytest.mark.parametrize("raw, side, order_side, exit_side", [
    ("long", "LONG", "buy", "sell"), ("LONG", "LONG", "buy", "sell"), ("buy", "LONG", "buy", "sell"),
    ("Buy", "LONG", "buy", "sell"),
])
def test_long_sides(raw, side, order_side, exit_side):
    s = parse_signal(with_(GOOD, side=raw))
    assert (s.side, s.order_side, s.exit_side) == (side, order_side, exit_side)


@pytest.mark.parametrize("raw", ["short", "SHORT", "sell", " Sell "])
def test_short_sides(raw):
    s = parse_signal(with_(SHORT, side=raw))
    assert (s.side, s.order_side, s.exit_side) == ("SHORT", "sell", "buy")


@pytest.mark.parametrize("raw", [None, "", "up", "longg", 1, ...])
def test_bad_side(raw):
    with pytest.raises(SignalError) as e:
        parse_signal(with_(GOOD, side=raw))
    assert e.value.field == "side"


# --- prices -----------------------------------------------------------------------------------------------------

BAD_NUMBERS = [0, -1, -50_000.0, math.nan, math.inf, -math.inf, "nan", "inf", "abc", "", None, True, [1]]


@pytest.mark.parametrize("field", ["entry", "stop_loss", "take_profit"])
@pytest.mark.parametrize("value", BAD_NUMBERS, ids=repr)
def test_bad_price_names_the_field(field, value):
    with pytest.raises(SignalError) as e:
        parse_signal(with_(GOOD, **{field: value}))
    assert e.value.field == field
    assert f"'{field}'" in str(e.value)


def test_numbers_given_as_strings_are_accepted():
    s = parse_signal(with_(GOOD, entry="50000", stop_loss="49500.5", take_profit=" 51000 "))
    assert (s.entry, s.stop_loss, s.take_profit) == (50_000.0, 49_500.5, 51_000.0)


def test_sl_tp_short_keys():
    s = parse_signal({"symbol": "BTCUSDT", "side": "buy", "entry": 50_000, "sl": 49_500, "tp": 51_000})
    assert (s.stop_loss, s.take_profit) == (49_500.0, 51_000.0)


@pytest.mark.parametrize("base, field, value", [
    (GOOD, "stop_loss", 50_000),     # LONG: stop must be below entry
    (GOOD, "stop_loss", 50_500),
    (GOOD, "take_profit", 50_000),   # LONG: target must be above entry
    (GOOD, "take_profit", 49_000),
    (SHORT, "stop_loss", 50_000),    # SHORT: stop must be above entry
    (SHORT, "stop_loss", 49_500),
    (SHORT, "take_profit", 50_000),  # SHORT: target must be below entry
    (SHORT, "take_profit", 51_000),
])
def test_stop_and_target_on_the_wrong_side(base, field, value):
    with pytest.raises(SignalError) as e:
        parse_signal(with_(base, **{field: value}))
    assert e.value.field == field
    assert base["side"] in str(e.value)


def test_good_short():
    s = parse_signal(SHORT)
    assert (s.side, s.stop_loss, s.take_profit) == ("SHORT", 50_500.0, 49_000.0)
    assert s.reward_risk == pytest.approx(2.0)


def test_reward_risk_and_display_symbol():
    s = parse_signal(GOOD)
    assert s.reward_risk == pytest.approx(2.0)
    assert s.display_symbol == "BTC/USDT"


# --- time, leverage, id ------------------------------------------------------------------------------------------

T = 1_704_067_200_000  # 2024-01-01T00:00:00Z


@pytest.mark.parametrize("raw", [
    T, T / 1000, str(T), "1704067200", "2024-01-01T00:00:00Z", "2024-01-01T00:00:00+00:00",
    "2024-01-01 00:00:00", "2024-01-01T01:00:00+01:00", datetime(2024, 1, 1, tzinfo=UTC),
    datetime(2024, 1, 1),
], ids=repr)
def test_time_forms(raw):
    assert parse_time_ms(raw) == T
    assert parse_signal(with_(GOOD, time=raw)).time == T


@pytest.mark.parametrize("raw", ["yesterday", "2024-13-01", -1, math.nan, math.inf, True, [T], {"t": T}], ids=repr)
def test_bad_time_names_the_field(raw):
    with pytest.raises(SignalError) as e:
        parse_signal(with_(GOOD, time=raw))
    assert e.value.field == "time"


@pytest.mark.parametrize("raw", [None, ""])
def test_time_is_optional(raw):
    assert parse_signal(with_(GOOD, time=raw)).time is None


@pytest.mark.parametrize("raw, expected", [(None, None), ("", None), (1, 1), ("10", 10), (125, 125), (50.0, 50)])
def test_leverage_override(raw, expected):
    assert parse_signal(with_(GOOD, leverage=raw)).leverage == expected


@pytest.mark.parametrize("raw", [0, -5, 2.5, 126, 1000, "ten", math.nan, math.inf, True])
def test_bad_leverage_names_the_field(raw):
    with pytest.raises(SignalError) as e:
        parse_signal(with_(GOOD, leverage=raw))
    assert e.value.field == "leverage"


def test_default_id_is_deterministic_and_content_based():
    a = parse_signal(with_(GOOD, time=T))
    b = parse_signal(with_(GOOD, time=T, symbol="btcusdt", side="buy"))  # same signal, other spelling
    assert a.id == b.id
    assert a.id.startswith("sig-") and len(a.id) == 16
    assert a.id == default_signal_id("BTC/USDT:USDT", "LONG", 50_000.0, 49_500.0, 51_000.0, T)
    others = {
        parse_signal(with_(GOOD, time=T + 60_000)).id,
        parse_signal(with_(GOOD, time=T, entry=50_001)).id,
        parse_signal(with_(GOOD, time=T, take_profit=52_000)).id,
        parse_signal(GOOD).id,
    }
    assert a.id not in others and len(others) == 4


def test_given_id_is_kept_and_checked():
    assert parse_signal(with_(GOOD, id=" my-signal-1 ")).id == "my-signal-1"
    assert parse_signal(with_(GOOD, id=42)).id == "42"
    with pytest.raises(SignalError) as e:
        parse_signal(with_(GOOD, id="x" * 65))
    assert e.value.field == "id"
    with pytest.raises(SignalError) as e:
        parse_signal(with_(GOOD, id="   "))
    assert e.value.field == "id"


def test_not_a_mapping():
    with pytest.raises(SignalError) as e:
        parse_signal(["BTCUSDT", "LONG"])  # type: ignore[arg-type]
    assert e.value.field == "signal"


def test_signal_error_is_a_value_error_and_first_bad_field_wins():
    with pytest.raises(ValueError) as e:
        parse_signal({"symbol": "BTCUSDT", "side": "up", "entry": -1})
    assert e.value.field == "side"


def test_signal_is_frozen():
    s = parse_signal(GOOD)
    with pytest.raises(AttributeError):
        s.entry = 1.0  # type: ignore[misc]
