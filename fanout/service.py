"""The long-running trading service behind `fanout run`: signals in, the shared executor, the journal, the watcher.

Paper and live differ only in what the composition root passes in (simulator/paper.py or live/exchange.py):
``prepare`` refreshes prices before a signal (paper), ``tick`` advances fills or polls the exchange,
``persist`` saves paper state. Signals are executed one at a time (accounts concurrently), each claimed in the
journal first so a restart never executes it twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict

from engine import MultiAccountExecutor, Signal, SignalSummary
from storage.journal import Journal

log = logging.getLogger("fanout.service")


class TradingService:
    def __init__(
        self,
        *,
        mode: str,
        executor: MultiAccountExecutor,
        journal: Journal,
        prepare: Callable[[Signal], Awaitable[None]] | None = None,
        tick: Callable[[], Awaitable[None]] | None = None,
        persist: Callable[[], None] | None = None,
        fallback: Callable[[Signal, SignalSummary], Awaitable[SignalSummary | None]] | None = None,
        tick_interval: float = 5.0,
    ) -> None:
        self.mode = mode
        self.executor = executor
        self.journal = journal
        self.prepare = prepare
        self.tick = tick
        self.persist = persist
        self.fallback = fallback
        self.tick_interval = tick_interval
        self._lock = asyncio.Lock()
        self.executed: list[SignalSummary] = []

    async def handle(self, signal: Signal, source: str) -> SignalSummary | None:
        """Execute a signal once: claimed in the journal, executed on every account, results recorded."""
        async with self._lock:
            if not self.journal.claim_signal(signal.id, mode=self.mode, source=source, payload=asdict(signal)):
                log.info("⏭️ signal %s already processed, not executing again", signal.id)
                return None
            log.info("📨 %s signal %s: %s %s entry %g SL %g TP %g", source, signal.id, signal.display_symbol,
                     signal.side, signal.entry, signal.stop_loss, signal.take_profit)
            try:
                if self.prepare is not None:
                    try:
                        await self.prepare(signal)
                    except Exception:
                        self.journal.release_signal(signal.id)  # nothing was sent: it may be tried again
                        log.error("❌ signal %s not executed: could not prepare (e.g. no live price)", signal.id)
                        raise
                summary = await self.executor.execute(signal)
                if self.fallback is not None:
                    extra = await self.fallback(signal, summary)
                    if extra is not None:  # the fallback's outcome replaces that account's failed result
                        redone = {r.account: r for r in extra.results}
                        merged = [redone.pop(r.account, r) for r in summary.results] + list(redone.values())
                        summary = SignalSummary(signal_id=signal.id, symbol=signal.symbol, side=signal.side,
                                                results=merged)
                self.journal.record_results(self.mode, summary.results, summary.succeeded, summary.total)
                self.executed.append(summary)
                return summary
            finally:
                if self.persist is not None:
                    self.persist()

    async def tick_once(self) -> None:
        if self.tick is None:
            return
        async with self._lock:
            await self.tick()
            if self.persist is not None:
                self.persist()

    async def run_ticks(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.tick_once()
            except Exception as exc:  # noqa: BLE001 — a failed poll is retried next round
                log.warning("tick failed: %s: %s", type(exc).__name__, exc)
            try:
                await asyncio.wait_for(stop.wait(), self.tick_interval)
            except TimeoutError:
                pass
