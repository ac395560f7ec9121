"""Composition root for paper and live: accounts → executor → session → TradingService, for one mode.

Plain composition, no behaviour: where paper and live differ is their two sessions (engine/ports.py ``Session``).
Paper: simulated accounts (PAPER_BALANCES or an accounts file) on the simulated venue, resumed from the journal
and fed with Binance's public market data by simulator/paper_session.py ``PaperSession``. Live: real accounts
(env → database → fallback) through ccxt, reconciled and polled by live/session.py ``LiveSession``. Both hand
their executor and session to the same fanout/service.py service, and each holds the database while it runs: one
bot per database (storage/instance_lock.py).
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from engine import Account, ExecutionConfig, MultiAccountExecutor, Notifier
from fanout.balances import DEFAULT_BALANCES, parse_balances
from fanout.env_values import env_flag, env_seconds
from fanout.service import TradingService, saved_ledger
from simulator.fills import TAKER_FEE
from storage.crash_points import VARIABLE as CRASH_VARIABLE
from storage.database import database_url, require_durable
from storage.instance_lock import InstanceLock, hold
from storage.journal import Journal

log = logging.getLogger("fanout.modes")
MODES = ("paper", "live")


def resolve_mode(cli_mode: str | None, env: Mapping[str, str]) -> str:
    mode = (cli_mode or env.get("TRADING_MODE") or "paper").strip().lower()
    if mode not in MODES:
        raise ValueError(f"TRADING_MODE / --mode must be paper or live, got {mode!r}")
    return mode


@dataclass
class Runtime:
    """Everything a running mode needs; ``close()`` releases it (``closers``: what the composition opened)."""

    mode: str
    accounts: list[Account]
    executor: MultiAccountExecutor
    service: TradingService
    journal: Journal
    notifier: Notifier
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    lock: InstanceLock | None = None  # this bot's hold on the database (storage/instance_lock.py)

    async def close(self) -> None:
        for close in self.closers:
            try:
                await close()
            except Exception as exc:  # noqa: BLE001
                log.warning("close failed: %s", type(exc).__name__)
        self.journal.close()
        if self.lock is not None:
            self.lock.release()


async def _hold_database(env: Mapping[str, str], mode: str, *, standby: bool, poll_seconds: float) -> InstanceLock:
    """This mode's hold on the database (storage/instance_lock.py): one bot per mode, and never a paper bot and a
    live bot on one database (they would share the journal's claimed signals: README, "The database"). An
    in-memory SQLite database is refused: the journal must survive a restart."""
    url = database_url(env)
    require_durable(url)
    return await hold(url, mode, standby=standby, poll_seconds=poll_seconds,
                      excludes=[m for m in MODES if m != mode])


async def build_paper(env: Mapping[str, str], config: ExecutionConfig, notifier: Notifier, *,
                      balances: dict[str, float] | None = None, price_source: Any = None,
                      taker_fee: float = TAKER_FEE, slippage_bps: float = 0.0, standby: bool = False) -> Runtime:
    """Paper trading at live prices. ``price_source``: ccxt-shaped public client (default: Binance public API).

    One paper bot per database, as in live: raises InstanceLocked naming the bot that holds it, or with
    ``standby`` waits until that one is gone (before reading the paper state it saved)."""
    from marketdata.rules import MarketRules
    from simulator.paper_session import PaperSession, resume_venue

    tick_interval = env_seconds(env, "PAPER_POLL_SECONDS", 5)
    standby_poll = env_seconds(env, "PAPER_STANDBY_POLL_SECONDS", 5)
    wanted = balances or parse_balances(env.get("PAPER_BALANCES") or DEFAULT_BALANCES, variable="PAPER_BALANCES")
    rules = MarketRules.load()
    async with contextlib.AsyncExitStack() as undo:  # a failure from here on gives back what was taken, lock last
        lock = await _hold_database(env, "paper", standby=standby, poll_seconds=standby_poll)
        undo.callback(lock.release)
        journal = Journal(database_url(env), crash_at=env.get(CRASH_VARIABLE))
        undo.callback(journal.close)
        venue = resume_venue(journal, rules, wanted, taker_fee=taker_fee, slippage_bps=slippage_bps)
        closers: list[Callable[[], Awaitable[None]]] = []
        if price_source is None:
            from marketdata.client import make_exchange

            price_source = make_exchange(env.get("BINANCE_API_URL") or None)
            undo.push_async_callback(price_source.close)
            price_source.set_markets(list(rules.markets.values()))  # the snapshot's markets: no exchangeInfo call
            closers.append(price_source.close)
        accounts = [Account(name, ex) for name, ex in venue.accounts.items()]
        executor = MultiAccountExecutor(accounts, config, notifier=notifier, ledger=saved_ledger(journal, "paper"))
        session = PaperSession(venue, price_source, executor.watcher, journal)
        service = TradingService(mode="paper", executor=executor, journal=journal, session=session,
                                 tick_interval=tick_interval)
        await service.start()
        undo.pop_all()  # started: the Runtime owns it all now
    return Runtime("paper", accounts, executor, service, journal, notifier, closers, lock=lock)


def live_banner(accounts: list[Account], *, demo: bool, api_url: str | None, config: ExecutionConfig,
                source: str) -> str:
    venue = "DEMO trading venue (demo-fapi)" if demo else "REAL Binance USDⓈ-M — real money"
    if api_url:
        venue += f" via BINANCE_API_URL {api_url}"
    lines = [
        "=" * 72,
        f"🔴 LIVE TRADING — {venue}",
        f"   accounts ({source}): " + ", ".join(a.name for a in accounts),
        f"   leverage {config.leverage}x, margin {config.position_size_pct:.1%} of available balance capped at "
        f"${config.max_position_usd:,.0f}, isolated, SL/TP reduce-only ({config.working_type})",
        f"   risk: daily loss limit {config.daily_loss_limit_pct:.1%}, max open positions {config.max_open_positions}",
        "=" * 72,
    ]
    return "\n".join(lines)


async def build_live(env: Mapping[str, str], config: ExecutionConfig, notifier: Notifier, *,
                     reconcile: bool = True, unprotected: str = "stop", standby: bool = False,
                     streams: bool = False) -> Runtime:
    """Live trading on real (or demo) accounts, with start-up reconciliation; ``streams``: fills pushed by each
    account's user-data stream (a long-running bot), polling only while a stream is down.

    One live bot per database: raises InstanceLocked naming the bot that holds it, or with ``standby`` waits
    until that one is gone (before touching any account); RoleConflict while a paper bot holds it."""
    from live.account_store import open_account_store
    from live.accounts import resolve_accounts
    from live.budget import WeightBudget
    from live.budget_config import BudgetConfig
    from live.exchange import close_all, create_live_exchanges
    from live.session import LiveSession

    demo = env_flag(env, "BINANCE_DEMO")
    tick_interval = env_seconds(env, "LIVE_POLL_SECONDS", 10)
    standby_poll = env_seconds(env, "LIVE_STANDBY_POLL_SECONDS", 5)
    with open_account_store(env) or contextlib.nullcontext() as store:  # None: no database file, no accounts there
        selection = resolve_accounts(env, store)
    if not selection.accounts:
        raise ValueError("no accounts configured: set BINANCE_API_KEY / BINANCE_API_SECRET in production.env "
                         "or add database accounts with `fanout accounts add`")
    api_url = env.get("BINANCE_API_URL") or None
    budget_config = BudgetConfig.from_env(env)
    async with contextlib.AsyncExitStack() as undo:  # a failure from here on gives back what was taken, lock last
        lock = await _hold_database(env, "live", standby=standby, poll_seconds=standby_poll)
        undo.callback(lock.release)
        budget = WeightBudget(budget_config, notifier=notifier)  # the IP's: every account's requests
        undo.push_async_callback(budget.close)
        accounts = await create_live_exchanges(selection.accounts, demo=demo, api_url=api_url, budget=budget,
                                               ws_url=env.get("BINANCE_WS_URL") or None)
        undo.push_async_callback(close_all, accounts)
        print(live_banner(accounts, demo=demo, api_url=api_url, config=config, source=selection.source), flush=True)
        journal = Journal(database_url(env), crash_at=env.get(CRASH_VARIABLE))
        undo.callback(journal.close)
        executor = MultiAccountExecutor(accounts, config, notifier=notifier, ledger=saved_ledger(journal, "live"))
        primary = next((a for a in accounts if selection.fallback and a.name == selection.fallback.name), None)
        session = LiveSession(executor, fallback_account=primary, reconcile=reconcile, unprotected=unprotected,
                              streams=streams)
        undo.push_async_callback(session.close)
        service = TradingService(mode="live", executor=executor, journal=journal, session=session,
                                 tick_interval=tick_interval)
        await service.start()
        undo.pop_all()  # started: the Runtime owns it all now
    gc.freeze()  # what start-up built (ccxt instances, markets) lives as long as the bot: out of the GC's scans
    return Runtime("live", accounts, executor, service, journal, notifier,
                   [session.close, partial(close_all, accounts), budget.close, _unfreeze], lock=lock)


async def _unfreeze() -> None:
    """Give what :func:`build_live` froze back to the cyclic GC (it is garbage once the runtime is closed)."""
    gc.unfreeze()
