"""Composition root for paper and live: builds accounts, executor, watcher and service hooks for one mode.

Paper: simulated accounts (PAPER_BALANCES or an accounts file) on the simulated venue, fed with live prices from
Binance's public market data, state persisted in the journal. Live: real accounts (env → database → fallback)
through ccxt. Both hand the same MultiAccountExecutor to the same TradingService.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from engine import Account, ExecutionConfig, MultiAccountExecutor, Notifier, Signal, SignalSummary
from engine.risk import RiskLedger
from engine.watcher import Bracket
from fanout.balances import DEFAULT_BALANCES, parse_balances
from fanout.service import TradingService
from simulator.fills import TAKER_FEE
from storage.database import database_url
from storage.instance_lock import InstanceLock, hold
from storage.journal import Journal

log = logging.getLogger("fanout.modes")
MODES = ("paper", "live")


def _truthy(value: Any) -> bool:
    return str(value or "").strip().lower() in ("1", "true", "yes", "on")


def resolve_mode(cli_mode: str | None, env: Mapping[str, str]) -> str:
    mode = (cli_mode or env.get("TRADING_MODE") or "paper").strip().lower()
    if mode not in MODES:
        raise ValueError(f"TRADING_MODE / --mode must be paper or live, got {mode!r}")
    return mode


@dataclass
class Runtime:
    """Everything a running mode needs; ``close()`` releases it."""

    mode: str
    accounts: list[Account]
    executor: MultiAccountExecutor
    service: TradingService
    journal: Journal
    notifier: Notifier
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    symbols: set[str] = field(default_factory=set)
    lock: InstanceLock | None = None  # live: this bot's hold on the database (storage/instance_lock.py)

    async def close(self) -> None:
        for close in self.closers:
            try:
                await close()
            except Exception as exc:  # noqa: BLE001
                log.warning("close failed: %s", type(exc).__name__)
        self.journal.close()
        if self.lock is not None:
            self.lock.release()


def _restore_brackets(executor: MultiAccountExecutor, journal: Journal, key: str) -> None:
    for b in journal.load_state(key) or []:
        if b["account"] in executor.watcher.accounts:
            executor.watcher.track(Bracket(**b))


def _save_common(executor: MultiAccountExecutor, journal: Journal, prefix: str) -> None:
    journal.save_state(f"{prefix}_brackets", [asdict(b) for b in executor.watcher.open_brackets()])
    journal.save_state(f"{prefix}_risk_ledger", executor.ledger.to_json())
    journal.save_state(f"{prefix}_stats", executor.stats.to_dict())


async def build_paper(env: Mapping[str, str], config: ExecutionConfig, notifier: Notifier, *,
                      balances: dict[str, float] | None = None, price_source: Any = None,
                      taker_fee: float = TAKER_FEE, slippage_bps: float = 0.0) -> Runtime:
    """Paper trading at live prices. ``price_source``: ccxt-shaped public client (default: Binance public API)."""
    from marketdata.rules import MarketRules
    from simulator.paper import PaperFeed
    from simulator.venue import SimulatedVenue

    journal = Journal(database_url(env))
    saved = journal.load_state("paper_venue")
    wanted = balances or parse_balances(env.get("PAPER_BALANCES") or DEFAULT_BALANCES, variable="PAPER_BALANCES")
    settings = {"taker_fee": taker_fee, "slippage_bps": slippage_bps}
    if saved:
        venue = SimulatedVenue.from_state(saved, MarketRules.load(), **settings)
        log.info("💾 paper state restored: %d accounts, %d open positions", len(venue.accounts),
                 sum(len(ex.positions) for ex in venue.accounts.values()))
    else:
        venue = SimulatedVenue.from_snapshot(**settings)
    for name, bal in wanted.items():
        if name not in venue.accounts:
            venue.add_account(name, bal)
    closers: list[Callable[[], Awaitable[None]]] = []
    if price_source is None:
        from marketdata.download import make_exchange

        price_source = make_exchange(env.get("BINANCE_API_URL") or None)
        price_source.set_markets(list(venue.rules.markets.values()))  # the snapshot's markets: no exchangeInfo call
        closers.append(price_source.close)
    feed = PaperFeed(venue, price_source)
    for symbol, t in (journal.load_state("paper_feed") or {}).items():
        feed.last_candle[symbol] = int(t)
    accounts = [Account(name, ex) for name, ex in venue.accounts.items()]
    ledger = RiskLedger.from_json(journal.load_state("paper_risk_ledger") or {})
    executor = MultiAccountExecutor(accounts, config, notifier=notifier, ledger=ledger)
    _restore_brackets(executor, journal, "paper_brackets")

    async def prepare(signal: Signal) -> None:
        price = await feed.refresh(signal.symbol)
        log.info("📄 paper: %s last price %.2f", signal.display_symbol, price)
        await venue.drain_updates(executor.watcher)

    async def tick() -> None:
        symbols = {s for ex in venue.accounts.values() for s in ex.positions} | {
            b.symbol for b in executor.watcher.open_brackets()}
        if symbols:
            await feed.poll(symbols)
            await venue.drain_updates(executor.watcher)

    def persist() -> None:
        journal.save_state("paper_venue", venue.to_state())
        journal.save_state("paper_feed", feed.last_candle)
        _save_common(executor, journal, "paper")

    service = TradingService(mode="paper", executor=executor, journal=journal, prepare=prepare, tick=tick,
                             persist=persist, tick_interval=float(env.get("PAPER_POLL_SECONDS") or 5))
    return Runtime("paper", accounts, executor, service, journal, notifier, closers)


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
                     reconcile: bool = True, unprotected: str = "stop", standby: bool = False) -> Runtime:
    """Live trading on real (or demo) accounts, with start-up reconciliation.

    One live bot per database: raises InstanceLocked naming the bot that holds it, or with ``standby`` waits
    until that one is gone (before touching any account)."""
    from live.account_store import open_account_store
    from live.accounts import fallback_needed, resolve_accounts
    from live.exchange import close_all, create_live_exchanges

    with open_account_store(env) or contextlib.nullcontext() as store:  # None: no database file, no accounts there
        selection = resolve_accounts(env, store)
    if not selection.accounts:
        raise ValueError("no accounts configured: set BINANCE_API_KEY / BINANCE_API_SECRET in production.env "
                         "or add database accounts with `fanout accounts add`")
    demo = _truthy(env.get("BINANCE_DEMO"))
    api_url = env.get("BINANCE_API_URL") or None
    lock = await hold(database_url(env), "live", standby=standby,
                      poll_seconds=float(env.get("LIVE_STANDBY_POLL_SECONDS") or 5))
    try:
        accounts = await create_live_exchanges(selection.accounts, demo=demo, api_url=api_url)
    except BaseException:
        lock.release()
        raise
    print(live_banner(accounts, demo=demo, api_url=api_url, config=config, source=selection.source), flush=True)
    journal = Journal(database_url(env))
    ledger = RiskLedger.from_json(journal.load_state("live_risk_ledger") or {})
    executor = MultiAccountExecutor(accounts, config, notifier=notifier, ledger=ledger)
    _restore_brackets(executor, journal, "live_brackets")
    closers: list[Callable[[], Awaitable[None]]] = [lambda: close_all(accounts)]

    fallback_hook = None
    primary = next((a for a in accounts if selection.fallback and a.name == selection.fallback.name), None)
    if primary is not None:

        async def fallback_hook(signal: Signal, summary: SignalSummary) -> SignalSummary | None:
            """Priority 3: only when the multi-account path placed nothing at all, retry on the primary key."""
            if not fallback_needed(summary.results):
                return None
            log.warning("⚠️ multi-account execution placed nothing; single-account fallback on %s", primary.name)
            return await executor.execute(signal, accounts=[primary])

    if reconcile:
        for acc in accounts:
            try:
                report = await executor.watcher.reconcile(acc, unprotected=unprotected)
                log.info("🔧 reconcile %s: %s", acc.name, "clean" if not report.changed else "changes made")
            except Exception as exc:  # noqa: BLE001 — reconciliation failure is alerted, trading continues
                log.error("❌ reconcile %s failed: %s", acc.name, type(exc).__name__)
                await notifier.event(f"❌ Reconcile failed - {acc.name}", type(exc).__name__)

    async def tick() -> None:
        await executor.watcher.poll()

    def persist() -> None:
        _save_common(executor, journal, "live")

    service = TradingService(mode="live", executor=executor, journal=journal, tick=tick, persist=persist,
                             fallback=fallback_hook, tick_interval=float(env.get("LIVE_POLL_SECONDS") or 10))
    return Runtime("live", accounts, executor, service, journal, notifier, closers, lock=lock)
