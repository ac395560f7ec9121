"""Tests for `fanout run --mode paper --once` and `fanout signal --mode paper`: virtual accounts fed by ccxt's public
binanceusdm client (marketdata.client.make_exchange), replayed from tests/cassettes/cli_run_paper.yaml and
cli_signal_paper.yaml at the recorded clock (tests/standin/cli_flows.py)."""

from __future__ import annotations

import json
import logging
from collections import Counter

import pytest

from fanout.cli import main
from simulator.fills import TAKER_FEE
from storage.journal import Journal
from tests.live.cassette_support import use_cassette
from tests.standin import cli_flows as flows

MINUTE = flows.MINUTE
T0 = flows.T0
TICKER = 50_012.30  # the recorded last price when the signal arrives (the open of the minute at T0)
TARGET = 51_000.0
BALANCES = {"Account 1": 1_000.0, "Account 2": 5_000.0, "Account 3": 500.0}
QUANTITIES = {"Account 1": 0.008, "Account 2": 0.04, "Account 3": 0.004}
FEE = TAKER_FEE  # build_paper's default


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path, caplog):
    flows.isolate(monkeypatch, tmp_path)
    caplog.set_level(logging.WARNING, logger="vcr")  # first: set_level also sets the capture handler's level
    caplog.set_level(logging.INFO)


@pytest.fixture
def env_file(tmp_path, database_url):
    """Settings for the flows; the journal is a SQLite file, then a PostgreSQL database (each test runs on both)."""
    return flows.write_env(tmp_path / "paper.env", mode="paper", database=database_url,
                           paper_balances=flows.BALANCES)


def _state(database_url: str) -> tuple[dict, dict, list[dict]]:
    """The journal after a run: the paper venue, the feed's last processed candles, the executions."""
    journal = Journal(database_url)
    try:
        return journal.load_state("paper_venue"), journal.load_state("paper_feed"), journal.executions("paper")
    finally:
        journal.close()


def _market_requests(cassette, before: Counter | None = None, until: Counter | None = None) -> list[tuple[str, dict]]:
    return [(path, params) for _label, _m, path, params in flows.played(cassette, before, until)]


def test_run_paper_executes_at_the_recorded_price_takes_profit_and_never_repeats(env_file, database_url, tmp_path,
                                                                                  capsys, caplog):
    signals = flows.write_signals(tmp_path / "signals.csv")
    clock = flows.Clock(flows.ENTRY_CLOCK)
    with use_cassette("cli_run_paper") as cassette, flows.paper_clock(clock) as clients:
        # run 1: the signal executes at the ticker's last price; the poll sees only minutes before the entry
        assert main(flows.run_argv(env_file, "paper", signals)) == 0
        out1 = capsys.readouterr().out
        venue1, feed1, executions1 = _state(database_url)
        run1 = Counter(cassette.play_counts)
        # run 2 (restart) after the target minute has closed: nothing executed again, the take-profit fills
        clock.now = flows.TARGET_CLOCK
        assert main(flows.run_argv(env_file, "paper", signals)) == 0
        out2 = capsys.readouterr().out
        venue2, feed2, executions2 = _state(database_url)
        run2 = Counter(cassette.play_counts)
        # run 3 (restart): no position, no signal, no request
        clock.now = flows.LATER_CLOCK
        assert main(flows.run_argv(env_file, "paper", signals)) == 0
        out3 = capsys.readouterr().out
        venue3, _feed3, executions3 = _state(database_url)
        run3 = Counter(cassette.play_counts)

    assert len(clients) == 3 and all(c.urls["api"]["fapiPublic"].startswith(flows.API_URL) for c in clients)
    assert "📄 PAPER trading: 3 virtual accounts at live prices (Account 1, Account 2, Account 3)" in out1
    assert "📊 paper: 1 signals, 3 account trades, 3 succeeded, 0 failed, 0 skipped" in out1
    assert "📊 paper: 0 signals, 0 account trades, 0 succeeded, 0 failed, 0 skipped" in out2
    assert "📊 paper: 0 signals, 0 account trades, 0 succeeded, 0 failed, 0 skipped" in out3
    assert caplog.messages.count(f"⏭️ signal {flows.RUN_SIGNAL_ID} already processed, not executing again") == 2
    assert "💾 paper state restored: 3 accounts, 3 open positions" in caplog.messages
    assert "💾 paper state restored: 3 accounts, 0 open positions" in caplog.messages

    # run 1: every virtual account filled at the recorded price, sized from the signal's entry
    assert sorted((r["account"], r["status"], r["quantity"], r["fill_price"]) for r in executions1) == [
        (name, "success", QUANTITIES[name], TICKER) for name in BALANCES]
    for name, acc in venue1["accounts"].items():
        (pos,) = acc["positions"]
        assert (pos["entry_price"], pos["opened_at"]) == (TICKER, flows.ENTRY_CLOCK)
        assert acc["wallet"] == pytest.approx(BALANCES[name] - QUANTITIES[name] * TICKER * FEE)
        assert sorted(o["status"] for o in acc["algo_orders"]) == ["open", "open"]
    assert feed1 == {"BTC/USDT:USDT": T0 - MINUTE}  # seen, not applied: those minutes closed before the entry
    assert _market_requests(cassette, until=run1) == [
        ("/fapi/v1/ticker/24hr", {"symbol": "BTCUSDT"}),  # before the signal (markets come from the snapshot)
        ("/fapi/v1/klines", {"symbol": "BTCUSDT", "interval": "1m", "startTime": str(T0 - 2 * MINUTE),
                             "limit": "500"}),
        ("/fapi/v1/ticker/24hr", {"symbol": "BTCUSDT"}),  # the poll
    ]

    # run 2: the minute at T0 + 2 reached the target: closed by take_profit at 51,000, the stop cancelled
    assert _market_requests(cassette, run1, run2) == [
        ("/fapi/v1/klines", {"symbol": "BTCUSDT", "interval": "1m", "startTime": str(T0), "limit": "500"}),
        ("/fapi/v1/ticker/24hr", {"symbol": "BTCUSDT"}),
    ]
    assert feed2 == {"BTC/USDT:USDT": T0 + 3 * MINUTE}
    assert executions2 == executions1
    for name, acc in venue2["accounts"].items():
        qty = QUANTITIES[name]
        assert acc["positions"] == []
        (closed,) = acc["closed"]
        assert (closed["exit_reason"], closed["exit_price"], closed["exit_time"]) == ("take_profit", TARGET,
                                                                                      T0 + 2 * MINUTE)
        assert (closed["entry_price"], closed["quantity"]) == (TICKER, qty)
        statuses = {o["info"]["orderType"]: o["status"] for o in acc["algo_orders"]}
        assert statuses == {"TAKE_PROFIT_MARKET": "closed", "STOP_MARKET": "canceled"}
        expected = BALANCES[name] + (TARGET - TICKER) * qty - qty * TICKER * FEE - qty * TARGET * FEE
        assert acc["wallet"] == pytest.approx(expected)
    for name in BALANCES:
        assert f"📄 {name} BTC/USDT:USDT closed by take_profit at 51000.00" in caplog.messages

    # run 3: balances restored exactly as saved, nothing executed, nothing requested
    assert run3 == run2
    assert executions3 == executions1
    assert {n: a["wallet"] for n, a in venue3["accounts"].items()} == {n: a["wallet"] for n, a in
                                                                       venue2["accounts"].items()}
    assert flows.unplayed(cassette) == []


def test_signal_paper_fills_every_virtual_account_at_the_ticker_price_once(env_file, database_url, capsys):
    clock = flows.Clock(flows.ENTRY_CLOCK)
    with use_cassette("cli_signal_paper") as cassette, flows.paper_clock(clock):
        code = main(flows.signal_argv(env_file, "paper", flows.PAPER_SIGNAL_ID))
        out, err = capsys.readouterr()
        again = main(flows.signal_argv(env_file, "paper", flows.PAPER_SIGNAL_ID))
        out_again, err_again = capsys.readouterr()
    assert code == 0, err
    d = json.loads(out)
    assert (d["signal_id"], d["succeeded"], d["total"]) == (flows.PAPER_SIGNAL_ID, 3, 3)
    rows = [(a["account"], a["margin"], a["quantity"], a["fill_price"]) for a in d["accounts"]]
    assert rows == [("Account 1", 20.0, 0.008, TICKER), ("Account 2", 100.0, 0.04, TICKER),
                    ("Account 3", 10.0, 0.004, TICKER)]
    assert all(a["stop_loss_order_id"] and a["take_profit_order_id"] for a in d["accounts"])
    assert _market_requests(cassette) == [("/fapi/v1/ticker/24hr", {"symbol": "BTCUSDT"})]
    # the same signal id again: the journal refuses it before any price is fetched
    assert again == 1 and out_again == ""
    assert f"signal {flows.PAPER_SIGNAL_ID} was already executed (paper)" in err_again
    venue, _feed, executions = _state(database_url)
    assert len(executions) == 3
    assert {n: len(a["positions"]) for n, a in venue["accounts"].items()} == dict.fromkeys(BALANCES, 1)
    assert flows.unplayed(cassette) == []


def test_run_waits_for_a_database_server_then_gives_up_naming_the_setting(tmp_path, capsys, caplog):
    from tests.postgres_server import _free_port

    url = f"postgresql://fanout:hunter2-secret@127.0.0.1:{_free_port()}/fanout"  # no server there
    env_file = flows.write_env(tmp_path / "paper.env", mode="paper", database=url, paper_balances=flows.BALANCES)
    with env_file.open("a") as f:
        f.write("DATABASE_WAIT_SECONDS=0.5\n")
    assert main(flows.run_argv(env_file, "paper", flows.write_signals(tmp_path / "signals.csv"))) == 1
    err = capsys.readouterr().err
    assert "did not answer within 0.5 s (DATABASE_WAIT_SECONDS)" in err and "Connection refused" in err
    assert "hunter2" not in err and "hunter2" not in caplog.text
