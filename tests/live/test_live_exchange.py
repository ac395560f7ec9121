"""Tests room: the live exchange (ccxt binanceusdm) replayed from cassettes, the venue switches, and secrecy."""

from __future__ import annotations

import re
from types import SimpleNamespace
from urllib.parse import parse_qsl

import ccxt
import pytest
import yaml

from engine.ids import client_order_id
from engine.results import FAILED, SUCCESS
from live.exchange import (
    OPTIONS,
    LiveExchange,
    build_exchange,
    close_all,
    create_live_exchanges,
)
from marketdata.venue import normalize_api_url, override_api_url, select_venue
from tests.live.cassette_support import (
    APIKEY_HEADER,
    CASSETTES,
    STANDIN_URL,
    label_keys,
    replay,
    use_cassette,
)
from tests.standin.scenarios import SCENARIOS, dummy_credentials

CID = re.compile(r"^fo-[0-9a-f]{12}-[0-9a-f]{8}-(E|SL|TP|X)$")


def body(req) -> dict:
    raw = req.body.decode() if isinstance(req.body, bytes) else (req.body or "")
    return dict(parse_qsl(raw)) | dict(req.query)


def only(items: list) -> object:
    assert len(items) == 1, items
    return items[0]


def cid(rep, account: str, leg: str) -> str:
    return client_order_id(rep.meta["signal"]["id"], account, leg)


def standin(rep) -> bool:
    return rep.meta["venue"] == "stand-in"


# --------------------------------------------------------------------------------------------- happy paths
async def test_seed_signal_places_entry_stop_and_target_on_every_account():
    rep = await replay("seed")
    names = rep.meta["accounts"]
    assert [r.status for r in rep.outcome.summary.results] == [SUCCESS] * len(names)
    if standin(rep):
        assert {r.account: r.quantity for r in rep.outcome.summary.results} == {
            "Account 1": 0.008, "Account 2": 0.04, "Account 3": 0.004}
    for name in names:
        entry = body(only(rep.requests(name, "POST", "/fapi/v1/order"))[0])
        assert entry["type"] == "MARKET" and entry["side"] == "BUY"
        assert entry["newClientOrderId"] == cid(rep, name, "E")
        assert "reduceOnly" not in entry
        algos = [body(req) for req, _ in rep.requests(name, "POST", "/fapi/v1/algoOrder")]
        assert [a["type"] for a in algos] == ["STOP_MARKET", "TAKE_PROFIT_MARKET"]
        sl, tp = algos
        signal = rep.meta["signal"]
        assert float(sl["triggerPrice"]) == signal["stop_loss"] and float(tp["triggerPrice"]) == signal["take_profit"]
        for a, leg in ((sl, "SL"), (tp, "TP")):
            assert a["algoType"] == "CONDITIONAL" and a["reduceOnly"] == "true" and a["side"] == "SELL"
            assert a["workingType"] == "MARK_PRICE" and a["quantity"] == entry["quantity"]
            assert a["clientAlgoId"] == cid(rep, name, leg)
        margin = body(only(rep.requests(name, "POST", "/fapi/v1/marginType"))[0])
        assert margin["marginType"] == "ISOLATED"
        assert body(only(rep.requests(name, "POST", "/fapi/v1/leverage"))[0])["leverage"] == "20"
    result = rep.outcome.result(names[0])
    assert result.stop_loss_order_id and result.take_profit_order_id and result.entry_order_id
    assert rep.cassette.all_played


async def test_port_calls_follow_the_engine_order():
    rep = await replay("seed")
    calls = [c[0] for c in rep.exchanges["Account 1"].calls if c[0] not in ("amount_to_precision",
                                                                          "price_to_precision", "milliseconds")]
    assert calls == ["market", "fetch_balance", "fetch_positions", "fetch_market_leverage_tiers", "set_margin_mode",
                     "set_leverage", "create_order", "create_order", "create_order"]


async def test_markets_are_loaded_once_for_all_accounts():
    rep = await replay("seed")
    assert len(rep.requests(path="/fapi/v1/exchangeInfo")) == 1
    exchanges = [e._inner for e in rep.exchanges.values()]
    assert all(e.markets is exchanges[0].markets for e in exchanges)


async def test_hundred_accounts_make_one_exchange_info_request():
    creds = dummy_credentials([f"Account {i}" for i in range(1, 101)])
    label_keys(creds)
    with use_cassette(SCENARIOS["seed"].cassette) as cassette:
        accounts = await create_live_exchanges(creds, demo=False, api_url=STANDIN_URL)
        await close_all(accounts)
    assert sum(cassette.play_counts.values()) == 1
    assert len(accounts) == 100 and all(a.exchange.markets is accounts[0].exchange.markets for a in accounts)
    assert all(a.exchange.session is None or a.exchange.session.closed for a in accounts)


async def test_watcher_fetches_and_cancels_algo_orders_with_trigger():
    rep = await replay("watcher")
    assert rep.outcome.fills_seen == len(rep.meta["accounts"])
    for name in rep.meta["accounts"]:
        result = rep.outcome.result(name)
        only(rep.requests(name, "GET", "/fapi/v1/openAlgoOrders"))
        fetched = body(only(rep.requests(name, "GET", "/fapi/v1/algoOrder"))[0])
        assert fetched["algoId"] == result.take_profit_order_id
        cancelled = body(only(rep.requests(name, "DELETE", "/fapi/v1/algoOrder"))[0])
        assert cancelled["algoId"] == result.stop_loss_order_id
    assert rep.outcome.executor.watcher.cancelled_siblings == 3
    assert rep.outcome.executor.watcher.open_brackets() == []


async def test_reconcile_after_restart_protects_and_cleans_up():
    rep = await replay("reconcile")
    one, two, three = rep.outcome.reports
    assert one.protected == ["BTC/USDT:USDT stop 49000"] and not one.orphans_cancelled
    stop = body(rep.requests("Account 1", "POST", "/fapi/v1/algoOrder")[-1][0])
    assert stop["type"] == "STOP_MARKET" and stop["reduceOnly"] == "true" and stop["triggerPrice"] == "49000"
    assert stop["workingType"] == "MARK_PRICE" and stop["clientAlgoId"].startswith("fo-")  # deterministic id
    assert len(two.orphans_cancelled) == 2 and not two.protected
    assert len(rep.requests("Account 2", "DELETE", "/fapi/v1/algoOrder")) == 2
    assert not three.changed
    # open orders asked per symbol (weight 1), never without one (weight 40)
    listed = rep.requests(method="GET", path="/fapi/v1/openAlgoOrders")
    assert len(listed) == 3 and all(body(req)["symbol"] == "BTCUSDT" for req, _ in listed)
    # the account endpoint names Account 2's symbol (orders, no position) and gives Account 1's entry price
    assert len(rep.requests(method="GET", path="/fapi/v3/positionRisk")) == 0


# ---------------------------------------------------------------------------------------------- failures
def errors(rep, account: str) -> list[tuple[str, BaseException]]:
    return rep.exchanges[account].errors


async def test_insufficient_margin_fails_one_account_only():
    rep = await replay("insufficient_margin")
    r = rep.outcome.result("Account 2")
    assert r.status == FAILED and r.reason.startswith("entry order failed: InsufficientFunds")
    method, exc = only(errors(rep, "Account 2"))
    assert method == "create_order" and isinstance(exc, ccxt.InsufficientFunds) and "-2019" in str(exc)
    assert rep.outcome.result("Account 1").ok and rep.outcome.result("Account 3").ok
    assert rep.requests("Account 2", "POST", "/fapi/v1/algoOrder") == []


async def test_below_min_notional_is_rejected_by_binance():
    rep = await replay("min_notional")
    r = rep.outcome.result("Account 2")
    method, exc = only(errors(rep, "Account 2"))
    assert isinstance(exc, ccxt.InvalidOrder) and "-4164" in str(exc) and r.status == FAILED
    assert rep.outcome.result("Account 1").ok and rep.outcome.result("Account 3").ok


async def test_stop_that_would_trigger_immediately_closes_the_position_at_market():
    rep = await replay("immediate_trigger")
    for name in rep.meta["accounts"]:
        r = rep.outcome.result(name)
        assert r.closed and "OrderImmediatelyFillable" in r.reason
        method, exc = only(errors(rep, name))
        assert method == "create_order" and isinstance(exc, ccxt.OrderImmediatelyFillable)
        entry, close = [body(req) for req, _ in rep.requests(name, "POST", "/fapi/v1/order")]
        assert close["reduceOnly"] == "true" and close["side"] == "SELL" and close["type"] == "MARKET"
        assert close["quantity"] == entry["quantity"] and close["newClientOrderId"] == cid(rep, name, "X")
        # the stop (rejected) and the target went together; the target is cancelled once the position is closed
        stop, target = sorted((body(req) for req, _ in rep.requests(name, "POST", "/fapi/v1/algoOrder")),
                              key=lambda b: b["type"])
        assert (stop["type"], target["type"]) == ("STOP_MARKET", "TAKE_PROFIT_MARKET")
        (cancel,) = [body(req) for req, _ in rep.requests(name, "DELETE", "/fapi/v1/algoOrder")]
        assert r.take_profit_order_id is None and cancel["algoId"]


async def test_rate_limit_is_retried_with_the_same_client_order_id():
    """A 429 is refused unexecuted: the exchange pauses every account for Retry-After in the IP budget, then
    sends the same order again itself; the engine sees one call that succeeded."""
    rep = await replay("rate_limit")
    assert all(r.ok for r in rep.outcome.summary.results)
    sent = rep.requests("Account 1", "POST", "/fapi/v1/order")
    assert [resp["status"]["code"] for _, resp in sent] == [429, 200]
    assert {body(req)["newClientOrderId"] for req, _ in sent} == {cid(rep, "Account 1", "E")}
    assert errors(rep, "Account 1") == []
    assert [c[0] for c in rep.exchanges["Account 1"].calls].count("create_order") == 3  # entry, stop, target


async def test_bad_key_fails_that_account_only():
    rep = await replay("bad_key")
    bad = rep.meta["accounts"][-1]
    r = rep.outcome.result(bad)
    assert r.status == FAILED and "AuthenticationError" in r.reason
    assert isinstance(only(errors(rep, bad))[1], ccxt.AuthenticationError)
    assert [req.path for req, _ in rep.requests(bad)] == ["/fapi/v3/account"]
    assert all(rep.outcome.result(n).ok for n in rep.meta["accounts"][:-1])


async def test_rejected_leverage_means_that_account_does_not_trade():
    rep = await replay("leverage_rejected")
    r = rep.outcome.result("Account 2")
    assert r.status == FAILED and r.reason.startswith("leverage / margin mode not set, nothing traded")
    assert rep.requests("Account 2", "POST", "/fapi/v1/order") == []
    assert rep.outcome.result("Account 1").ok and rep.outcome.result("Account 3").ok


async def test_timeouts_are_looked_up_by_client_order_id_never_duplicated():
    rep = await replay("timeout")
    assert all(r.ok for r in rep.outcome.summary.results)

    # Account 1: the entry reached Binance, the reply was lost → found by client order id, not resent
    sent = rep.requests("Account 1", "POST", "/fapi/v1/order")
    assert len(sent) == 1 and isinstance(only(errors(rep, "Account 1"))[1], ccxt.RequestTimeout)
    lookup, resp = only(rep.requests("Account 1", "GET", "/fapi/v1/order"))
    assert body(lookup)["origClientOrderId"] == cid(rep, "Account 1", "E") and resp["status"]["code"] == 200

    # Account 2: the stop-loss got -1007 (execution status unknown) → found among algo orders, not resent
    method, exc = only(errors(rep, "Account 2"))
    assert isinstance(exc, ccxt.RequestTimeout) and "-1007" in str(exc)
    assert len(rep.requests("Account 2", "POST", "/fapi/v1/algoOrder")) == 2  # stop once, target once
    lookup, _ = only(rep.requests("Account 2", "GET", "/fapi/v1/algoOrder"))
    assert body(lookup)["clientAlgoId"] == cid(rep, "Account 2", "SL")

    # Account 3: the entry never arrived → the lookup says -2013 → sent once more, same client order id
    sent = rep.requests("Account 3", "POST", "/fapi/v1/order")
    assert [resp["status"]["code"] for _, resp in sent] == [504, 200]
    assert {body(req)["newClientOrderId"] for req, _ in sent} == {cid(rep, "Account 3", "E")}
    assert [type(e).__name__ for _, e in errors(rep, "Account 3")] == ["RequestTimeout", "OrderNotFound"]


async def test_cassettes_replay_against_production_urls_too():
    rep = await replay("insufficient_margin", api_url=None)
    assert isinstance(only(errors(rep, "Account 2"))[1], ccxt.InsufficientFunds)


# ------------------------------------------------------------------------------------------- venue / urls
def test_api_url_replaces_every_usdm_base():
    ex = ccxt.binanceusdm()
    rewritten = override_api_url(ex, "http://127.0.0.1:18080/")
    assert rewritten["fapiPublic"] == "http://127.0.0.1:18080/fapi/v1"
    assert rewritten["fapiPrivateV3"] == "http://127.0.0.1:18080/fapi/v3"
    assert rewritten["fapiData"] == "http://127.0.0.1:18080/futures/data"
    assert all(not v.startswith("https://fapi.") for k, v in ex.urls["api"].items() if k.startswith("fapi"))
    assert ex.urls["api"]["sapi"].startswith("https://api.binance.com")


def test_demo_trading_and_relay():
    ex = ccxt.binanceusdm()
    assert select_venue(ex, demo=True, api_url=None) == "demo-fapi.binance.com"
    ex = ccxt.binanceusdm()
    assert select_venue(ex, demo=True, api_url="https://relay.example/binance") == "relay.example"
    assert ex.urls["api"]["fapiPrivate"] == "https://relay.example/binance/fapi/v1"


@pytest.mark.parametrize("bad", ["127.0.0.1:8080", "ftp://x", "http://", "https://u:p4ssw0rd@host",
                                 "http://host?x=1", "http://host:99999"])
def test_bad_api_url_names_the_variable_and_hides_credentials(bad):
    with pytest.raises(ValueError) as err:
        normalize_api_url(bad)
    assert "BINANCE_API_URL" in str(err.value) and "p4ssw0rd" not in str(err.value)


def test_exchange_is_configured_as_the_issue_asks():
    cred = SimpleNamespace(name="Account 1", api_key="k" * 64, api_secret="s" * 64)
    ex = build_exchange(cred, api_url="http://127.0.0.1:18080", timeout_ms=7000)
    assert isinstance(ex, LiveExchange) and ex.enableRateLimit and ex.timeout == 7000
    assert all(ex.options[k].items() >= v.items() if isinstance(v, dict) else ex.options[k] == v  # merged into ccxt's
               for k, v in OPTIONS.items())
    assert ex.options["ws"]["compress"] == 0  # no permessage-deflate offer for the user-data stream
    assert ex.urls["api"]["fapiPrivate"] == "http://127.0.0.1:18080/fapi/v1"
    assert "k" * 64 not in repr(ex) and "s" * 64 not in repr(ex) and "Account 1" in repr(ex)


def test_override_host_keeps_binance_error_classes():
    cred = SimpleNamespace(name="A", api_key="k" * 64, api_secret="s" * 64)
    ex = build_exchange(cred, api_url="http://127.0.0.1:18080")
    body_ = '{"code":-2019,"msg":"Margin is insufficient."}'
    with pytest.raises(ccxt.InsufficientFunds):
        ex.handle_errors(400, "Bad Request", "http://127.0.0.1:18080/fapi/v1/order", "POST", {}, body_,
                         {"code": -2019, "msg": "Margin is insufficient."}, {}, "")


def test_exception_messages_lose_signature_and_keys():
    cred = SimpleNamespace(name="A", api_key="KEY" * 20, api_secret="SECRET" * 10)
    ex = build_exchange(cred)
    text = ex.redact(f"GET https://x/fapi/v1/order?symbol=BTCUSDT&timestamp=1&signature=abc123 {'KEY' * 20}")
    assert "abc123" not in text and "KEY" * 20 not in text and "symbol=BTCUSDT" in text


async def test_credentials_are_validated_without_echoing_secrets():
    with pytest.raises(ValueError, match="no accounts"):
        await create_live_exchanges([])
    with pytest.raises(ValueError, match="'Account 2': api_secret is missing"):
        await create_live_exchanges([SimpleNamespace(name="Account 2", api_key="abc", api_secret=" ")])
    with pytest.raises(ValueError, match="unique"):
        await create_live_exchanges([SimpleNamespace(name="A", api_key="k", api_secret="s")] * 2)
    with pytest.raises(ValueError, match="timeout_ms"):
        await create_live_exchanges([SimpleNamespace(name="A", api_key="k", api_secret="s")], timeout_ms=0)


async def test_instances_are_closed_when_markets_cannot_load(monkeypatch):
    closed = []

    async def fail(self, *a, **k):
        raise ccxt.ExchangeNotAvailable("down")

    async def close(self):
        closed.append(self.account_name)

    monkeypatch.setattr(LiveExchange, "load_markets", fail)
    monkeypatch.setattr(LiveExchange, "close", close)
    with pytest.raises(ccxt.ExchangeNotAvailable):
        await create_live_exchanges(dummy_credentials(["A", "B"]))
    assert closed == ["A", "B"]


async def test_close_all_closes_every_session():
    creds = dummy_credentials(["Account 1", "Account 2", "Account 3"])
    label_keys(creds)
    with use_cassette(SCENARIOS["seed"].cassette, record=False):
        accounts = await create_live_exchanges(creds, api_url=STANDIN_URL)
        sessions = [a.exchange for a in accounts]
        await close_all(accounts)
    assert all(e.session is None or e.session.closed for e in sessions)


# ----------------------------------------------------------------------------------------------- secrecy
LIVE_CASSETTES = sorted(CASSETTES.glob("live_*.yaml"))


def test_every_scenario_has_a_cassette():
    assert {p.stem for p in LIVE_CASSETTES} == {s.cassette for s in SCENARIOS.values()}


@pytest.mark.parametrize("path", LIVE_CASSETTES, ids=lambda p: p.stem)
def test_cassettes_hold_no_key_secret_signature_or_timestamp(path):
    text = path.read_text()
    assert not re.search(r"signature|timestamp=|recvWindow|secret|standin-dummy", text, re.I)
    data = yaml.safe_load(text)
    for interaction in data["interactions"]:
        request = interaction["request"]
        for value in request["headers"].get(APIKEY_HEADER, []):
            assert re.fullmatch(r"<[^<>]+>", value), value
        uri_query = dict(parse_qsl(request["uri"].partition("?")[2]))
        assert not {"signature", "timestamp"} & set(uri_query)
    assert data["metadata"]["fanout"]["scenario"] in SCENARIOS


def test_later_instances_are_built_like_the_first(monkeypatch):
    """LiveExchange.__dir__ shortens ccxt's constructor walk after a class's first instance: an instance built
    that way has the same attributes and camelCase aliases as one built with the full walk."""
    import live.exchange as module

    monkeypatch.setattr(module, "_data_names", {})
    full = LiveExchange({"apiKey": "key-one-0000", "secret": "secret-one-0000"}, account="One")
    assert LiveExchange in module._data_names
    fast = LiveExchange({"apiKey": "key-two-0000", "secret": "secret-two-0000"}, account="Two")
    assert set(vars(fast)) == set(vars(full))
    assert (fast.apiKey, fast.enableRateLimit, fast.rateLimit) == ("key-two-0000", full.enableRateLimit, full.rateLimit)
    assert fast.fetchBalance.__func__ is full.fetchBalance.__func__ and fast.options == full.options
    assert "fetch_balance" in dir(full.__class__)


def test_instances_share_only_ccxts_endpoint_table():
    a, b = (build_exchange(c, api_url="http://127.0.0.1:9") for c in dummy_credentials(["A", "B"]))
    assert a.api is b.api and a.api  # read by ccxt only: one copy for every account
    for name in ("options", "urls", "has", "fees", "exceptions", "features"):
        assert getattr(a, name) is not getattr(b, name), name
    assert a.urls["api"] is not b.urls["api"] and a.options["ws"] is not b.options["ws"]
