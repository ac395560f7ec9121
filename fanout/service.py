"""The long-running trading service behind `fanout run`: signals in, the shared executor, the journal, the watcher.

One service for both modes; where paper and live differ is the ``Session`` it is given (engine/ports.py):
simulator/paper_session.py or live/session.py. A signal's life is journaled (storage/journal.py): ``received``
when it arrives, ``claimed`` once the session has prepared it (paper: the live price) and before any order, every
order's state before and after its request and every account's outcome as it happens (the executor writes them
through this service's ExecutionJournal), ``done`` once every account's outcome is final. Before an account's
outcome is written the session's state is saved (paper: the simulated venue), so the journal never holds an
outcome the saved venue lacks.

Exactly once across crashes: on start, and after every tick, each signal of this mode not ``done`` is resumed
(engine/resume.py) — what exists at the venue is completed, what was never sent is sent if the signal is still
fresh (``resume_max_age_s``) or recorded as expired. Then the session starts (live: reconcile, which would
otherwise put its own stop on a resumed entry). The engine's state (open brackets, watched symbols, risk ledger,
stats, margin mode / leverage per account and symbol) is saved under ``<mode>_brackets`` / ``<mode>_watches`` /
``<mode>_risk_ledger`` / ``<mode>_stats`` / ``<mode>_symbol_settings``.
Signals run one at a time (accounts concurrently), ticks between them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import asdict

from engine import MultiAccountExecutor, Signal, SignalSummary
from engine.ports import Session, StateStore
from engine.results import AccountResult, OrderEvent
from engine.resume import Prior
from engine.risk import RiskLedger
from engine.symbol_settings import SymbolSettings
from engine.watcher import Bracket, Watch
from fanout.errors import explain
from storage.journal import RECEIVED, Journal

log = logging.getLogger("fanout.service")


def saved_ledger(store: StateStore, mode: str) -> RiskLedger:
    """The risk ledger a previous run of ``mode`` saved (a daily loss limit survives a restart), or a new one."""
    return RiskLedger.from_json(store.load_state(f"{mode}_risk_ledger") or {})


class _JournalPort:
    """The executor's ExecutionJournal (engine/ports.py): order states and outcomes into the journal under this
    mode; the session's state is saved before each outcome (paper: the venue holds what the outcome says)."""

    def __init__(self, journal: Journal, mode: str, session: Session) -> None:
        self.journal = journal
        self.mode = mode
        self.session = session

    async def record_order(self, event: OrderEvent) -> None:
        await self.journal.record_order(self.mode, event)

    async def record_outcome(self, result: AccountResult) -> None:
        self.session.persist()
        await self.journal.record_outcome(self.mode, result)


class TradingService:
    """Signals and ticks for one running mode.

    mode: "paper" or "live" — the journal's mode column and the prefix of the engine's state keys.
    executor: the executor trading the session's accounts (built with :func:`saved_ledger`); the service gives it
    its ExecutionJournal. journal: signals, orders, executions and state. session: what this mode does differently.
    tick_interval: seconds between ticks in :meth:`run_ticks`. clock: wall-clock seconds (a signal's age).
    """

    def __init__(self, *, mode: str, executor: MultiAccountExecutor, journal: Journal, session: Session,
                 tick_interval: float = 5.0, clock: Callable[[], float] = time.time) -> None:
        self.mode = mode
        self.executor = executor
        self.journal = journal
        self.session = session
        self.tick_interval = tick_interval
        self.clock = clock
        self._lock = asyncio.Lock()
        self.executed: list[SignalSummary] = []
        self._unprepared: dict[str, str] = {}  # signal id -> why it could not be prepared (logged once)
        executor.journal = _JournalPort(journal, mode, session)

    async def start(self) -> None:
        """Restore what the previous run was watching, resume its unfinished signals, then start the session."""
        watcher = self.executor.watcher
        for b in self.journal.load_state(f"{self.mode}_brackets") or []:
            if b["account"] in watcher.accounts:
                watcher.track(Bracket(**b))
        for w in self.journal.load_state(f"{self.mode}_watches") or []:
            if w["account"] in watcher.accounts:
                watcher.watch(Watch(**w))
        self.executor.settings = SymbolSettings.from_json(self.journal.load_state(f"{self.mode}_symbol_settings"))
        async with self._lock:
            await self.resume()
        await self.session.start()

    def persist(self) -> None:
        """Save the session's state and the engine's."""
        self.session.persist()
        executor, prefix = self.executor, self.mode
        self.journal.save_state(f"{prefix}_brackets", [asdict(b) for b in executor.watcher.open_brackets()])
        self.journal.save_state(f"{prefix}_watches", [asdict(w) for w in executor.watcher.watches.values()])
        self.journal.save_state(f"{prefix}_risk_ledger", executor.ledger.to_json())
        self.journal.save_state(f"{prefix}_stats", executor.stats.to_dict())
        self.journal.save_state(f"{prefix}_symbol_settings", executor.settings.to_json())

    async def handle(self, signal: Signal, source: str) -> SignalSummary | None:
        """Execute a signal once: journaled, prepared, claimed, executed on every account, finished."""
        async with self._lock:
            if not self.journal.claim_signal(signal.id, mode=self.mode, source=source, payload=asdict(signal)):
                log.info("⏭️ signal %s already processed, not executing again", signal.id)
                return None
            log.log(logging.DEBUG if signal.id in self._unprepared else logging.INFO,  # a retry: said already
                    "📨 %s signal %s: %s %s entry %g SL %g TP %g", source, signal.id, signal.display_symbol,
                    signal.side, signal.entry, signal.stop_loss, signal.take_profit)
            try:
                try:
                    await self.session.prepare(signal)
                except Exception as exc:
                    self.journal.release_signal(signal.id)  # nothing was sent: it may be tried again
                    self._not_prepared(signal.id, exc, "not executed: could not prepare")
                    raise
                self._prepared(signal.id)
                self.journal.mark_claimed(signal.id)
                summary = await self.executor.execute(signal)
                extra = await self.session.fallback(signal, summary)
                if extra is not None:  # the fallback's outcome replaces that account's failed result
                    redone = {r.account: r for r in extra.results}
                    merged = [redone.pop(r.account, r) for r in summary.results] + list(redone.values())
                    summary = SignalSummary(signal_id=signal.id, symbol=signal.symbol, side=signal.side,
                                            results=merged)
                self.journal.checkpoint("summary")
            except BaseException:
                self.persist()
                raise
            self.executed.append(summary)
            self._finish(summary)
            return summary

    async def resume(self) -> list[SignalSummary]:
        """Resume every signal of this mode the journal holds as not done (engine/resume.py); their summaries."""
        summaries = []
        for row in self.journal.unfinished_signals(self.mode):
            signal = Signal(**row["payload"])
            age = self.clock() - row["received_at"]
            fresh = age <= self.executor.config.resume_max_age_s
            try:
                await self.session.prepare(signal)
            except Exception as exc:  # noqa: BLE001 — tried again after the next tick
                self._not_prepared(signal.id, exc, "not resumed yet: could not prepare")
                continue
            self._prepared(signal.id)
            if row["status"] == RECEIVED:
                log.warning("▶️ resuming signal %s: received, never traded (%s)", signal.id,
                            "fresh: trading it now" if fresh else "too old: expiring it")
                self.journal.mark_claimed(signal.id)
            prior = self._prior(signal.id)
            summary = await self.executor.resume(signal, prior, age_s=age)
            known = {name: p.outcome.status for name, p in prior.items() if p.outcome is not None}
            self._finish(summary, quiet=all(known.get(r.account) == r.status for r in summary.results))
            summaries.append(summary)
        return summaries

    def _not_prepared(self, signal_id: str, exc: Exception, what: str) -> None:
        """Log why a signal could not be prepared (e.g. no live price): once, not on every retry (a watched file
        hands it over every second), and again only when the reason changes."""
        words = explain(exc)
        if self._unprepared.get(signal_id) != words:
            log.error("❌ signal %s %s: %s (trying again)", signal_id, what, words)
            self._unprepared[signal_id] = words

    def _prepared(self, signal_id: str) -> None:
        if self._unprepared.pop(signal_id, None) is not None:
            log.info("✅ signal %s prepared after all; executing it", signal_id)

    def _prior(self, signal_id: str) -> dict[str, Prior]:
        """What the journal knows of each account for ``signal_id``."""
        legs: dict[str, set[str]] = {}
        sizing: dict[str, dict] = {}
        for row in self.journal.order_intents(signal_id):
            legs.setdefault(row["account"], set()).add(row["leg"])
            if row["leg"] == "E":
                sizing[row["account"]] = {k: row[k] for k in ("margin", "notional", "leverage")}
        outcomes = {row["account"]: _account_result(row) for row in self.journal.outcomes(signal_id)}
        return {name: Prior(outcome=outcomes.get(name), legs=frozenset(legs.get(name, ())), **sizing.get(name, {}))
                for name in set(legs) | set(outcomes)}

    def _finish(self, summary: SignalSummary, quiet: bool = False) -> None:
        """Save state, then mark the signal done if every account's outcome is final (else settled later; ``quiet``:
        nothing changed since the last try)."""
        self.persist()
        unsettled = [r.account for r in summary.results if not r.final]
        if unsettled:
            log.log(logging.DEBUG if quiet else logging.WARNING, "⏳ signal %s: %s unknown yet; looked up again "
                    "after every tick", summary.signal_id, ", ".join(unsettled))
            return
        self.journal.finish_signal(self.mode, summary.signal_id, summary.succeeded, summary.total)

    async def tick_once(self) -> None:
        """One round of the session's tick (paper: candles and fills; live: the watcher's poll), the watcher's
        sweep of watched symbols, unfinished signals settled, then save."""
        async with self._lock:
            try:
                await self.session.tick()
                await self.executor.watcher.sweep()
                await self.resume()
            finally:
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


def _account_result(row: dict) -> AccountResult:
    """An executions row as the engine's AccountResult."""
    fields = {k: row[k] for k in AccountResult.__dataclass_fields__ if k in row and row[k] is not None}
    if "time" in fields:
        fields["time"] = int(fields["time"])
    return AccountResult(**fields)
