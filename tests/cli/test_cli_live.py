"""Tests for `fanout signal --mode live` and `fanout run --mode live --once`: the real commands, env accounts, ccxt
binanceusdm and the engine, replayed from tests/cassettes/cli_signal_live.yaml and cli_run_live.yaml."""

from __future__ import annotations

import json
import logging
from collections import Counter

import pytest

from engine.ids import client_order_id
from fanout.cli import main
from storage.journal import Journal
from tests.live.cassette_support import use_cassette
from tests.standin import cli_flows as flows

QUANTITIES = {"Account 1": "0.008", "Account 2": "0.04", "Account 3": "0.004"}
SEED_LOG = ["✅ Loaded Account 1 from BINANCE_API_KEY", "✅ Loaded Account 2 from BINANCE_API_KEY_2",
            "✅ Loaded Account 3 from BINANCE_API_KEY_3", "🎯 Total accounts loaded: 3"]


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path, caplog):
    flows.isolate(monkeypatch, tmp_path)
    caplog.set_level(logging.WARNING, logger="vcr")  # one INFO line per replayed request; first: this also
    caplog.set_level(logging.INFO)  # sets the capture handler's level, which INFO must have in the end


@pytest.fixture
def env_file(tmp_path, database_url):
    """Settings for the flows; the journal is a SQLite file, then a PostgreSQL database (each test runs on both)."""
    return flows.write_env(tmp_path / "live.env", mode="live", database=database_url)


def _no_secrets(*texts: str) -> None:
    for text in texts:
        for value in flows.secrets():
            assert value not in text


def _check_orders(requests: list, signal_id: str) -> None:
    """Each account: one MARKET entry with the engine's client id, then reduce-only STOP_MARKET and
    TAKE_PROFIT_MARKET algo orders at the signal's levels, after that account's start-up reconciliation."""
    for name, qty in QUANTITIES.items():
        mine = [(m, p, q) for label, m, p, q in requests if label == f"<{name}>"]
        entries = [q for m, p, q in mine if (m, p) == ("POST", "/fapi/v1/order")]
        assert [(q["type"], q["side"], q["quantity"], q["newClientOrderId"]) for q in entries] == [
            ("MARKET", "BUY", qty, client_order_id(signal_id, name, "E"))]
        assert entries[0]["newClientOrderId"].startswith("fo-") and entries[0]["newClientOrderId"].endswith("-E")
        algos = {q["type"]: q for m, p, q in mine if (m, p) == ("POST", "/fapi/v1/algoOrder")}
        assert set(algos) == {"STOP_MARKET", "TAKE_PROFIT_MARKET"}
        for kind, trigger, leg in (("STOP_MARKET", "49500", "SL"), ("TAKE_PROFIT_MARKET", "51000", "TP")):
            a = algos[kind]
            assert (a["side"], a["quantity"], a["reduceOnly"], a["algoType"]) == ("SELL", qty, "true", "CONDITIONAL")
            assert float(a["triggerPrice"]) == float(trigger)
            assert a["clientAlgoId"] == client_order_id(signal_id, name, leg)
        # build_live reconciled the account before trading on it: the account endpoint (positions and symbols
        # with orders) named none, so no open orders were asked (per symbol, never all without one: weight 40)
        calls = [(m, p, tuple(sorted(q))) for m, p, q in mine]
        first_order = calls.index(("POST", "/fapi/v1/order", tuple(sorted(entries[0]))))
        assert calls[:first_order].count(("GET", "/fapi/v3/account", ())) == 2  # reconcile, then the balance
        assert not any(p == "/fapi/v1/openAlgoOrders" for m, p, q in calls[:first_order])


def test_signal_live_places_entry_stop_and_target_on_every_env_account(env_file, capsys, caplog):
    with use_cassette("cli_signal_live") as cassette:
        code = main(flows.signal_argv(env_file, "live", flows.LIVE_SIGNAL_ID))
    out, err = capsys.readouterr()
    assert code == 0, err
    d = json.loads(out)  # --json: stdout is the JSON document alone, the banner goes to stderr
    assert (d["signal_id"], d["symbol"], d["side"], d["succeeded"], d["total"]) == (
        flows.LIVE_SIGNAL_ID, "BTC/USDT:USDT", "LONG", 3, 3)
    rows = [(a["account"], a["status"], a["margin"], a["quantity"], a["fill_price"]) for a in d["accounts"]]
    assert rows == [("Account 1", "success", 20.0, 0.008, 50_000.0), ("Account 2", "success", 100.0, 0.04, 50_000.0),
                    ("Account 3", "success", 10.0, 0.004, 50_000.0)]
    assert all(a["stop_loss_order_id"] and a["take_profit_order_id"] for a in d["accounts"])
    assert "🔴 LIVE TRADING" in err and "accounts (env): Account 1, Account 2, Account 3" in err
    for line in SEED_LOG:
        assert line in caplog.messages
    requests = flows.played(cassette)
    _check_orders(requests, flows.LIVE_SIGNAL_ID)
    assert [r[1:3] for r in requests].count(("GET", "/fapi/v1/exchangeInfo")) == 1  # markets loaded once
    assert flows.unplayed(cassette) == []
    _no_secrets(out, err, caplog.text)


def test_run_live_once_executes_the_file_signal_and_a_restart_executes_nothing(env_file, database_url, tmp_path,
                                                                                capsys, caplog):
    signals = flows.write_signals(tmp_path / "signals.csv")
    with use_cassette("cli_run_live") as cassette:
        first = main(flows.run_argv(env_file, "live", signals))
        out1, err1 = capsys.readouterr()
        after_first = Counter(cassette.play_counts)
        second = main(flows.run_argv(env_file, "live", signals))
        out2, err2 = capsys.readouterr()
    assert (first, second) == (0, 0), err1 + err2
    assert "🔴 LIVE TRADING" in out1 and "🔴 LIVE TRADING" in out2
    assert "📊 live: 1 signals, 3 account trades, 3 succeeded, 0 failed, 0 skipped" in out1
    assert "📊 live: 0 signals, 0 account trades, 0 succeeded, 0 failed, 0 skipped" in out2
    assert f"⏭️ signal {flows.RUN_SIGNAL_ID} already processed, not executing again" in caplog.messages
    assert caplog.messages.count("🎯 Total accounts loaded: 3") == 2

    _check_orders(flows.played(cassette), flows.RUN_SIGNAL_ID)
    restart = flows.played(cassette, after_first)
    assert not [r for r in restart if r[1] != "GET"], "the restart sent an order"
    assert ("-", "GET", "/fapi/v1/exchangeInfo", {}) in restart
    for name in QUANTITIES:  # start-up reconciliation, then the watcher's poll of the restored brackets
        mine = [(m, p, q) for label, m, p, q in restart if label == f"<{name}>"]
        assert ("GET", "/fapi/v3/account", {}) in mine and ("GET", "/fapi/v3/positionRisk", {}) not in mine
        assert mine.count(("GET", "/fapi/v1/openAlgoOrders", {"symbol": "BTCUSDT"})) == 2  # reconcile, poll
        assert ("GET", "/fapi/v1/openAlgoOrders", {}) not in mine
    assert flows.unplayed(cassette) == []

    journal = Journal(database_url)
    try:
        rows = journal.executions("live")
        assert journal.is_processed(flows.RUN_SIGNAL_ID)
    finally:
        journal.close()
    assert sorted((r["account"], r["status"], r["quantity"]) for r in rows) == [
        ("Account 1", "success", 0.008), ("Account 2", "success", 0.04), ("Account 3", "success", 0.004)]
    _no_secrets(out1, err1, out2, err2, caplog.text)


def test_cli_cassettes_hold_no_key_secret_signature_or_timestamp():
    from tests.live.cassette_support import CASSETTES

    paths = sorted(CASSETTES.glob("cli_*.yaml"))
    assert {p.stem for p in paths} >= {"cli_signal_live", "cli_run_live", "cli_signal_paper", "cli_run_paper"}
    for path in paths:
        text = path.read_text()
        for value in flows.secrets():
            assert value not in text, path.name
        for volatile in ("signature=", "timestamp=", "recvWindow="):
            assert volatile not in text, (path.name, volatile)
