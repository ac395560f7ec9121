"""Tests room: margin mode and leverage are set once per (account, symbol), remembered across a restart (the
service's saved state), set again when the signal wants another leverage or after the venue refused an entry."""

from __future__ import annotations

import ccxt

from engine import MultiAccountExecutor, parse_signal
from engine.symbol_settings import SymbolSettings
from tests.live.cassette_support import RecordingExchange


def signal(n: int, leverage: int | None = None):
    raw = {"symbol": "BTC/USDT", "side": "long", "entry": 50_000, "sl": 49_500, "tp": 51_000, "id": f"s-{n}"}
    if leverage is not None:
        raw["leverage"] = leverage
    return parse_signal(raw)


def settings_calls(ex: RecordingExchange) -> list[str]:
    calls = [c[0] for c in ex.calls if c[0] in ("set_margin_mode", "set_leverage")]
    ex.calls.clear()
    return calls


async def close_all(executor: MultiAccountExecutor) -> None:
    for b in executor.watcher.open_brackets():
        ex = executor.watcher.accounts[b.account].exchange
        await ex.cancel_order(b.stop_loss_id, b.symbol, {"trigger": True})
        await ex.cancel_order(b.take_profit_id, b.symbol, {"trigger": True})
        await ex.create_order(b.symbol, "market", "sell", b.quantity, None, {"reduceOnly": True})
        executor.watcher.brackets.clear()


async def test_set_once_remembered_across_a_restart_and_set_again_on_change(make_accounts):
    (account,) = make_accounts(10_000)
    account.exchange = ex = RecordingExchange(account.exchange)
    first = MultiAccountExecutor([account])
    assert (await first.execute(signal(1))).succeeded == 1
    assert settings_calls(ex) == ["set_margin_mode", "set_leverage"]
    await close_all(first)

    saved = first.settings.to_json()  # what the service saves under <mode>_symbol_settings
    assert saved == [["Account 1", "BTC/USDT:USDT", "isolated", 20]]
    restarted = MultiAccountExecutor([account])
    restarted.settings = SymbolSettings.from_json(saved)
    assert (await restarted.execute(signal(2))).succeeded == 1
    assert settings_calls(ex) == []  # nothing set again
    await close_all(restarted)

    assert (await restarted.execute(signal(3, leverage=10))).succeeded == 1
    assert settings_calls(ex) == ["set_leverage"]  # only what changed


async def test_a_refused_entry_has_them_set_again_next_time(make_accounts):
    (account,) = make_accounts(10_000)
    account.exchange = ex = RecordingExchange(account.exchange)
    executor = MultiAccountExecutor([account], retries=0, retry_delay=0)
    assert (await executor.execute(signal(1))).succeeded == 1
    await close_all(executor)
    settings_calls(ex)
    ex._inner.fail_next("create_order", ccxt.InsufficientFunds('binanceusdm {"code":-2019,"msg":"Margin is insufficient."}'))
    assert (await executor.execute(signal(2))).succeeded == 0
    assert settings_calls(ex) == []
    assert (await executor.execute(signal(3))).succeeded == 1
    assert settings_calls(ex) == ["set_margin_mode", "set_leverage"]


def test_malformed_saved_rows_are_forgotten():
    settings = SymbolSettings.from_json([["A", "BTC/USDT:USDT", "isolated", 20], ["broken"], None])
    assert settings.to_json() == [["A", "BTC/USDT:USDT", "isolated", 20]]
