"""Tests for fanout/modes.py: a start-up that fails after the database lock was taken gives everything back — the
lock first of all, so another bot (or the restarted one) can take the database at once."""

from __future__ import annotations

import ccxt
import pytest

from engine import ExecutionConfig
from engine.ports import NullNotifier
from fanout import modes
from storage.instance_lock import InstanceLock
from tests.standin import cli_flows as flows


class Boom(RuntimeError):
    """The injected failure."""


@pytest.fixture
def live_env(database_url) -> dict[str, str]:
    env = {"DATABASE_URL": database_url, "BINANCE_API_URL": flows.API_URL}
    for i, c in enumerate(flows.credentials(), 1):
        suffix = "" if i == 1 else f"_{i}"
        env |= {f"BINANCE_API_KEY{suffix}": c.api_key, f"BINANCE_API_SECRET{suffix}": c.api_secret}
    return env


def _free(url: str, role: str) -> bool:
    """Whether another holder could take ``role``'s lock right now (a second instance, as a second bot would)."""
    lock = InstanceLock(url, role)
    try:
        return lock.try_acquire()
    finally:
        lock.release()


@pytest.mark.parametrize("step", ["exchanges", "journal", "reconcile"])
async def test_a_live_start_that_fails_after_the_lock_releases_it(step, live_env, make_accounts, monkeypatch):
    import live.exchange
    import live.session

    accounts = make_accounts(1000, 5000, 500)
    closed: list[list[str]] = []

    async def create(credentials, **_kwargs):
        if step == "exchanges":
            raise ccxt.ExchangeNotAvailable("binanceusdm GET http://127.0.0.1:18080/fapi/v1/exchangeInfo")
        return accounts

    async def close_all(which):
        closed.append([a.name for a in which])

    def journal(_url, **_options):
        raise Boom("the journal cannot be opened")

    async def reconcile(_session):
        raise Boom("reconcile failed")

    monkeypatch.setattr(live.exchange, "create_live_exchanges", create)
    monkeypatch.setattr(live.exchange, "close_all", close_all)
    if step == "journal":
        monkeypatch.setattr(modes, "Journal", journal)
    if step == "reconcile":
        monkeypatch.setattr(live.session.LiveSession, "start", reconcile)

    with pytest.raises(ccxt.ExchangeNotAvailable if step == "exchanges" else Boom):
        await modes.build_live(live_env, ExecutionConfig(), NullNotifier())
    assert _free(live_env["DATABASE_URL"], "live"), f"a failed {step} step kept the live lock"
    # the exchanges it opened are closed again (none when opening them failed)
    assert closed == ([] if step == "exchanges" else [[a.name for a in accounts]])


async def test_a_paper_start_that_fails_after_the_lock_releases_it(database_url, monkeypatch):
    import simulator.paper_session

    def unreadable(*_args, **_kwargs):
        raise ValueError("simulated venue state version 99 not supported (expected 1)")

    monkeypatch.setattr(simulator.paper_session, "resume_venue", unreadable)
    with pytest.raises(ValueError, match="state version 99"):
        await modes.build_paper({"DATABASE_URL": database_url}, ExecutionConfig(), NullNotifier(), price_source=object())
    assert _free(database_url, "paper"), "a failed paper start kept the paper lock"


async def test_a_live_start_freezes_what_it_built_until_the_runtime_closes(live_env, make_accounts, monkeypatch):
    import gc

    import live.exchange
    import live.session

    accounts = make_accounts(1000, 5000)

    async def create(credentials, **_kwargs):
        return accounts

    async def nothing(*_args, **_kwargs):
        return None

    monkeypatch.setattr(live.exchange, "create_live_exchanges", create)
    monkeypatch.setattr(live.exchange, "close_all", nothing)
    monkeypatch.setattr(live.session.LiveSession, "start", nothing)
    gc.unfreeze()
    runtime = await modes.build_live(live_env, ExecutionConfig(), NullNotifier())
    try:
        assert gc.get_freeze_count() > 0  # out of the cyclic GC's full scans while the bot runs
    finally:
        await runtime.close()
    assert gc.get_freeze_count() == 0
