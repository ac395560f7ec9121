"""Live room: live trading's session — reconcile at start, poll the watcher, the single-account fallback.

``LiveSession`` is the live side of the engine's ``Session`` port (engine/ports.py; the paper side is
simulator/paper_session.py), behind fanout's TradingService:

- ``start()``: every account is reconciled before the first signal (``BracketWatcher.reconcile``), all accounts
  concurrently under the IP's weight budget, open orders asked per symbol: a position without a stop gets one
  (or is closed, ``unprotected='close'``), orphan reduce-only orders are cancelled. A failed reconciliation is
  alerted and trading continues.
- ``prepare(signal)``: nothing — the exchange has its own prices.
- fills: with ``streams``, each account's user-data stream (live/user_stream.py) pushes order updates to the
  watcher, which cancels the sibling of a filled stop / target as soon as Binance reports the fill; a stream
  that (re)connects resyncs that account's brackets over REST (``on_connect``).
- ``tick()``: the watcher polls for filled legs on the accounts whose stream is down (every account without
  streams), at housekeeping priority, every ``LIVE_POLL_SECONDS``.
- ``fallback(signal, summary)``: priority 3 of account selection — only when the multi-account attempt placed
  nothing at all (``live.accounts.fallback_needed``), the signal is retried on the single primary key.
- ``persist()``: nothing of its own; the exchange holds the accounts' state (the service saves the engine's).
"""

from __future__ import annotations

import asyncio
import logging

from engine import Account, MultiAccountExecutor, Signal, SignalSummary
from live.accounts import fallback_needed
from live.budget_config import Priority, request_priority
from live.user_stream import UserStream, UserStreams

log = logging.getLogger("fanout.live")
UNPROTECTED = ("stop", "close")


class LiveSession:
    """Live mode's side of the service.

    executor: the executor trading the live accounts (its watcher reconciles and polls, its notifier alerts).
    fallback_account: the single primary account for the fallback, or None (no fallback).
    reconcile: reconcile every account in :meth:`start`. unprotected: what reconciliation does with a position
    that has no stop: ``"stop"`` (place one) or ``"close"`` (close it at market).
    streams: push fills through each account's user-data stream (live/user_stream.py; the exchanges must be
    ccxt.pro ``LiveExchange``s): started with the session, stopped by :meth:`close`.
    """

    def __init__(self, executor: MultiAccountExecutor, *, fallback_account: Account | None = None,
                 reconcile: bool = True, unprotected: str = "stop", streams: bool = False) -> None:
        if unprotected not in UNPROTECTED:
            raise ValueError(f"unprotected must be one of {UNPROTECTED}, got {unprotected!r}")
        self.executor = executor
        self.fallback_account = fallback_account
        self.reconcile = reconcile
        self.unprotected = unprotected
        self.streams: UserStreams | None = None
        if streams:
            self.streams = UserStreams(UserStream(a.name, a.exchange, on_order=self._on_order,
                                                  on_connect=self._on_connect) for a in executor.accounts)

    def __repr__(self) -> str:
        return f"LiveSession({len(self.executor.accounts)} accounts, fallback={self.fallback_account!r})"

    async def start(self) -> None:
        if self.streams is not None:  # in the background: each resyncs over REST once connected
            self.streams.start()
        if not self.reconcile:
            return
        # every account at once: the IP's weight budget paces them (entry priority: nothing trades before this)
        with request_priority(Priority.ENTRY):
            await asyncio.gather(*(self._reconcile(a) for a in self.executor.accounts))

    async def close(self) -> None:
        """Stop the user-data streams (the exchanges are closed by whoever opened them)."""
        if self.streams is not None:
            await self.streams.stop()

    async def _on_order(self, account: str, order: dict) -> None:
        """A pushed order update: a filled stop-loss / take-profit has its sibling cancelled at once."""
        await self.executor.watcher.on_order_update(account, order)

    async def _on_connect(self, account: str, first: bool) -> None:
        """A stream (re)connected: what it may have missed is read over REST (the account's brackets)."""
        fills = await self.executor.watcher.poll(accounts=[account])
        if fills:
            log.info("📡 %s: resync found %d filled leg(s) the stream missed", account, fills)

    async def _reconcile(self, account: Account) -> None:
        try:
            report = await self.executor.watcher.reconcile(account, unprotected=self.unprotected)
            log.info("🔧 reconcile %s: %s", account.name, "clean" if not report.changed else "changes made")
        except Exception as exc:  # noqa: BLE001 — reconciliation failure is alerted, trading continues
            log.error("❌ reconcile %s failed: %s", account.name, type(exc).__name__)
            await self.executor.notifier.event(f"❌ Reconcile failed - {account.name}", type(exc).__name__)

    async def prepare(self, signal: Signal) -> None:
        return None

    async def fallback(self, signal: Signal, summary: SignalSummary) -> SignalSummary | None:
        primary = self.fallback_account
        if primary is None or not fallback_needed(summary.results):
            return None
        log.warning("⚠️ multi-account execution placed nothing; single-account fallback on %s", primary.name)
        return await self.executor.execute(signal, accounts=[primary])

    async def tick(self) -> None:
        """Poll the brackets of accounts whose stream is down (every account without streams)."""
        if self.streams is None:
            await self.executor.watcher.poll()
            return
        down = self.streams.down()
        if down:
            with request_priority(Priority.HOUSEKEEPING):
                await self.executor.watcher.poll(accounts=down)

    def persist(self) -> None:
        return None
