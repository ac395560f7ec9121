"""Tests for `fanout signal` offline: the design document's example end to end, and bad input exiting 2."""

from __future__ import annotations

import json

import pytest

from fanout.cli import main

SEED = ["signal", "BTC/USDT", "long", "--entry", "50000", "--sl", "49500", "--tp", "51000"]


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No production.env, no TRADING_MODE, no Discord: the offline simulation."""
    monkeypatch.chdir(tmp_path)
    for var in ("TRADING_MODE", "DISCORD_WEBHOOK_URL", "FANOUT_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)


def run(argv, capsys) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_seed_example_json(capsys):
    code, out, _ = run([*SEED, "--balances", "1000,5000,500", "--json"], capsys)
    assert code == 0
    d = json.loads(out)
    assert (d["symbol"], d["side"], d["succeeded"], d["total"]) == ("BTC/USDT:USDT", "LONG", 3, 3)
    assert (d["total_margin"], d["total_notional"], d["total_quantity"]) == (130.0, 2_600.0, 0.052)
    rows = [(a["account"], a["status"], a["margin"], a["notional"], a["quantity"], a["leverage"]) for a in d["accounts"]]
    assert rows == [("Account 1", "success", 20.0, 400.0, 0.008, 20), ("Account 2", "success", 100.0, 2_000.0, 0.04, 20),
                    ("Account 3", "success", 10.0, 200.0, 0.004, 20)]
    for a in d["accounts"]:
        assert (a["fill_price"], a["stop_loss"], a["take_profit"], a["closed"]) == (50_000.0, 49_500.0, 51_000.0, False)
        assert a["liquidation_price"] == pytest.approx(47_690.76, abs=0.01)
        assert a["stop_loss_order_id"] and a["take_profit_order_id"]


def test_seed_example_text(capsys):
    code, out, _ = run(SEED, capsys)  # 1000,5000,500 is the default
    assert code == 0
    assert "✅ Account 1: margin $20.00, notional $400.00, 20x, quantity 0.008 BTC @ 50,000.00" in out
    assert "✅ Account 2: margin $100.00, notional $2,000.00, 20x, quantity 0.04 BTC" in out
    assert "✅ Account 3: margin $10.00, notional $200.00, 20x, quantity 0.004 BTC" in out
    assert ("📊 3/3 succeeded — total margin $130.00, total notional $2,600.00, total quantity 0.052 BTC") in out


def test_same_signal_same_output(capsys):
    first = run([*SEED, "--json"], capsys)
    second = run([*SEED, "--json"], capsys)
    assert first[1] == second[1]


def test_symbol_and_side_forms(capsys):
    code, out, _ = run(["signal", "btcusdt", "SELL", "--entry", "50000", "--sl", "50500", "--tp", "49000", "--json"],
                       capsys)
    d = json.loads(out)
    assert code == 0 and (d["symbol"], d["side"], d["succeeded"]) == ("BTC/USDT:USDT", "SHORT", 3)


def test_skips_are_shown_and_exit_zero(capsys):
    code, out, _ = run([*SEED, "--balances", "1000,5,100"], capsys)
    assert code == 0
    assert "⏭️ Account 2: skipped — balance $5.00 below minimum $10.00" in out
    assert "⏭️ Account 3: skipped — quantity 0.0008 below minimum 0.001" in out
    assert "📊 1/3 succeeded" in out


def test_sizing_options(capsys):
    code, out, _ = run([*SEED, "--balances", "1000", "--position-pct", "5", "--leverage", "10", "--json"], capsys)
    (a,) = json.loads(out)["accounts"]
    assert code == 0 and (a["margin"], a["notional"], a["quantity"], a["leverage"]) == (50.0, 500.0, 0.01, 10)


def test_risk_options(capsys):
    _, out, _ = run([*SEED, "--min-rr", "3", "--json"], capsys)
    assert all("reward:risk" in a["reason"] for a in json.loads(out)["accounts"])
    _, out, _ = run(["signal", "BTCUSDT", "long", "--entry", "50000", "--sl", "49000", "--tp", "51000",
                     "--leverage", "100", "--json"], capsys)
    accounts = json.loads(out)["accounts"]
    assert all(a["status"] == "skipped" and "liquidation" in a["reason"] for a in accounts)


@pytest.mark.parametrize("argv, field", [
    (["signal", "BTCUSD", "long", "--entry", "50000", "--sl", "49500", "--tp", "51000"], "'symbol'"),
    (["signal", "BTCUSDT", "up", "--entry", "50000", "--sl", "49500", "--tp", "51000"], "'side'"),
    (["signal", "BTCUSDT", "long", "--entry", "nan", "--sl", "49500", "--tp", "51000"], "argument --entry"),
    (["signal", "BTCUSDT", "long", "--entry", "-1", "--sl", "49500", "--tp", "51000"], "argument --entry"),
    (["signal", "BTCUSDT", "long", "--entry", "50000", "--sl", "50500", "--tp", "51000"], "'stop_loss'"),
    (["signal", "BTCUSDT", "short", "--entry", "50000", "--sl", "50500", "--tp", "51000"], "'take_profit'"),
    ([*SEED, "--signal-leverage", "200"], "argument --signal-leverage"),
    ([*SEED, "--balances", "1000,abc"], "--balances"),
    ([*SEED, "--balances", "1000,-5"], "--balances"),
    ([*SEED, "--leverage", "500"], "argument --leverage"),
    ([*SEED, "--position-pct", "0"], "argument --position-pct"),
])
def test_bad_input_exits_2_naming_the_field(capsys, argv, field):
    code, out, err = run(argv, capsys)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and field in err


def test_argparse_errors_exit_2(capsys):
    assert main(["signal", "BTCUSDT", "long", "--sl", "49500", "--tp", "51000"]) == 2
    assert "--entry" in capsys.readouterr().err
