"""The long-running trading service behind `fanout run`: signals in, the shared executor, the journal, the watcher.

One service for both modes; where paper and live differ is the ``Session`` it is given (engine/ports.py):
simulator/paper_session.py or live/session.py. The service claims each signal in the journal before anything is
sent (a restart never executes it twice), lets the session prepare (paper: the live price), runs the executor on
every account, lets the session fall back (live: the single-account retry), records the results, and saves state
after every signal and tick: the session's own, and the engine's (open brackets, risk ledger, stats) under
``<mode>_brackets`` / ``<mode>_risk_ledger`` / ``<mode>_stats``. Signals run one at a time (accounts concurrently),
ticks between them.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict

from engine import MultiAccountExecutor, Signal, SignalSummary
from engine.ports import Session, StateStore
from engine.risk import RiskLedger
from engine.watcher import Bracket
from storage.journal import Journal

log = logging.getLogger("fanout.service")


def saved_ledger(store: StateStore, mode: str) -> RiskLedger:
    """The risk ledger a previous run of ``mode`` saved (a daily loss limit survives a restart), or a new one."""
    return RiskLedger.from_json(store.load_state(f"{mode}_risk_ledger") or {})


class TradingService:
    """Signals and ticks for one running mode.

    mode: "paper" or "live" — the journal's mode column and the prefix of the engine's state keys.
    executor: the executor trading the session's accounts (built with :func:`saved_ledger`).
    journal: processed signals, executions and state. session: what this mode does differently.
    tick_interval: seconds between ticks in :meth:`run_ticks`.
    """

    def __init__(self, *, mode: str, executor: MultiAccountExecutor, journal: Journal, session: Session,
                 tick_interval: float = 5.0) -> None:
        self.mode = mode
        self.executor = executor
        self.journal = journal
        self.session = session
        self.tick_interval = tick_interval
        self._lock = asyncio.Lock()
        self.executed: list[SignalSummary] = []

    async def start(self) -> None:
        """Restore the brackets the previous run was watching, then start the session (live: reconcile)."""
        watcher = self.executor.watcher
        for b in self.journal.load_state(f"{self.mode}_brackets") or []:
            if b["account"] in watcher.accounts:
                watcher.track(Bracket(**b))
        await self.session.start()

    def persist(self) -> None:
        """Save the session's state and the engine's."""
        self.session.persist()
        executor, prefix = self.executor, self.mode
        self.journal.save_state(f"{prefix}_brackets", [asdict(b) for b in executor.watcher.open_brackets()])
        self.journal.save_state(f"{prefix}_risk_ledger", executor.ledger.to_json())
        self.journal.save_state(f"{prefix}_stats", executor.stats.to_dict())

    async def handle(self, signal: Signal, source: str) -> SignalSummary | None:
        """Execute a signal once: claimed in the journal, executed on every account, results recorded."""
        async with self._lock:
            if not self.journal.claim_signal(signal.id, mode=self.mode, source=source, payload=asdict(signal)):
                log.info("⏭️ signal %s already processed, not executing again", signal.id)
                return None
            log.info("📨 %s signal %s: %s %s entry %g SL %g TP %g", source, signal.id, signal.display_symbol,
                     signal.side, signal.entry, signal.stop_loss, signal.take_profit)
            try:
                try:
                    await self.session.prepare(signal)
                except Exception:
                    self.journal.release_signal(signal.id)  # nothing was sent: it may be tried again
                    log.error("❌ signal %s not executed: could not prepare (e.g. no live price)", signal.id)
                    raise
                summary = await self.executor.execute(signal)
                extra = await self.session.fallback(signal, summary)
                if extra is not None:  # the fallback's outcome replaces that account's failed result
                    redone = {r.account: r for r in extra.results}
                    merged = [redone.pop(r.account, r) for r in summary.results] + list(redone.values())
                    summary = SignalSummary(signal_id=signal.id, symbol=signal.symbol, side=signal.side,
                                            results=merged)
                self.journal.record_results(self.mode, summary.results, summary.succeeded, summary.total)
                self.executed.append(summary)
                return summary
            finally:
                self.persist()

    async def tick_once(self) -> None:
        """One round of the session's tick (paper: candles and fills; live: the watcher's poll), then save."""
        async with self._lock:
            await self.session.tick()
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
