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
- fees: with ``streams``, each entry's real commission (the order's reply has none) comes from the stream's
  trade update, or ``fetch_my_trades`` while the stream is down, into the executions row and the alert.
- ``tick()``: the watcher polls for filled legs on the accounts whose stream is down (every account without
  streams), at housekeeping priority, every ``LIVE_POLL_SECONDS``.
- balance: with ``streams``, a flat account whose stream has been quiet since it was last read is sized from that
  read (live/idle_account.py): the session reads each account when its stream comes up and, in ``tick()``, once
  it has settled after a change, so a signal usually asks no balance (weight 5 and a round trip fewer).
- ``fallback(signal, summary)``: priority 3 of account selection — only when the multi-account attempt placed
  nothing at all (``live.accounts.fallback_needed``), the signal is retried on the single primary key.
- ``persist()``: nothing of its own; the exchange holds the accounts' state (the service saves the engine's).
"""

from __future__ import annotations

import asyncio
import logging

from engine import Account, MultiAccountExecutor, Signal, SignalSummary
from engine.ports import ExecutionJournal
from engine.results import AccountResult, OrderEvent
from live.accounts import fallback_needed
from live.budget_config import Priority, request_priority
from live.user_stream import UserStream, UserStreams

log = logging.getLogger("fanout.live")
UNPROTECTED = ("stop", "close")
FEE_WAIT_S = 2.0  # how long an outcome waits for the entry's trade update before asking over REST


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
        self._reading: dict[str, asyncio.Task] = {}  # accounts being read ahead by tick(), in the background
        if streams:
            self.streams = UserStreams(UserStream(a.name, a.exchange, on_order=self._on_order,
                                                  on_connect=self._on_connect, on_config=self._on_config)
                                       for a in executor.accounts)

    def __repr__(self) -> str:
        return f"LiveSession({len(self.executor.accounts)} accounts, fallback={self.fallback_account!r})"

    async def start(self) -> None:
        if self.reconcile:
            # every account at once: the IP's weight budget paces them (entry priority: nothing trades before this)
            with request_priority(Priority.ENTRY):
                await asyncio.gather(*(self._reconcile(a) for a in self.executor.accounts))
        if self.streams is not None:  # in the background; each resyncs over REST once connected, so a fill
            self.streams.start()  # between the reconciliation and the stream is not missed
            if self.executor.journal is not None and not isinstance(self.executor.journal, _FillFees):
                self.executor.journal = _FillFees(self.executor.journal, self)

    async def close(self) -> None:
        """Stop the reads ahead and the user-data streams (the exchanges are closed by whoever opened them)."""
        for task in list(self._reading.values()):
            task.cancel()
        await asyncio.gather(*list(self._reading.values()), return_exceptions=True)
        if self.streams is not None:
            await self.streams.stop()

    async def _on_order(self, account: str, order: dict) -> None:
        """A pushed order update: a filled stop-loss / take-profit has its sibling cancelled at once."""
        await self.executor.watcher.on_order_update(account, order)

    def _on_config(self, account: str, symbol_id: str, leverage: int) -> None:
        """ACCOUNT_CONFIG_UPDATE: the symbol's leverage is now ``leverage`` (set by us, or changed elsewhere: the
        next signal sets it again if it wants another)."""
        exchange = next(a.exchange for a in self.executor.accounts if a.name == account)
        symbol = exchange.safe_market(symbol_id, None, None, "swap")["symbol"]
        self.executor.settings.changed(account, symbol, leverage)

    async def _on_connect(self, account: str, first: bool) -> None:
        """A stream (re)connected: what it may have missed is read over REST (the account's brackets)."""
        fills = await self.executor.watcher.poll(accounts=[account])
        if fills:
            log.info("📡 %s: resync found %d filled leg(s) the stream missed", account, fills)
        account_ = self._account(account)
        idle = getattr(account_.exchange, "idle", None)
        if idle is not None and idle.wants_refresh(settle=False):  # not an account known to hold a position
            await self._refresh_idle(account_)

    async def entry_fee(self, account: str, symbol: str, order_id: str) -> float | None:
        """The commission of an entry's fills: from the stream's trade updates (waiting up to ``FEE_WAIT_S``), or
        over REST (``fetch_my_trades``, weight 5) while the stream is down. None if not found (logged)."""
        stream = self.streams.get(account) if self.streams is not None else None
        found = None
        if stream is not None and stream.is_up:
            found = await stream.wait_fee(order_id, FEE_WAIT_S)
        if found is None:
            exchange = self._account(account).exchange
            try:
                with request_priority(Priority.HOUSEKEEPING):
                    trades = await exchange.fetch_my_trades(symbol, None, None, {"orderId": order_id})
            except Exception as exc:  # noqa: BLE001 — the fee stays unknown (0), the trade stands
                log.warning("%s: fee of order %s not found: %s", account, order_id, type(exc).__name__)
                return None
            fees = [t.get("fee") or {} for t in trades if str(t.get("order")) == str(order_id)]
            if not fees:
                return None
            found = (sum(float(f.get("cost") or 0.0) for f in fees), fees[-1].get("currency") or "")
        cost, currency = found
        if currency not in ("", "USDT"):
            log.info("%s: fee of order %s paid in %s (%g), not counted in USDT", account, order_id, currency, cost)
            return None
        return cost

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
        """Poll the brackets of accounts whose stream is down (every account without streams); read the flat,
        quiet accounts that hold no snapshot (live/idle_account.py) so the next signal need not."""
        if self.streams is None:
            await self.executor.watcher.poll()
            return
        down = self.streams.down()
        with request_priority(Priority.HOUSEKEEPING):
            if down:
                await self.executor.watcher.poll(accounts=down)
            self._read_ahead_quiet()

    def _read_ahead_quiet(self) -> None:
        """Start reading the quiet accounts that want it, in the background: the tick (which holds the service's
        lock) never waits for them, so a signal is not held up by reads queued for the budget's housekeeping."""
        loop = asyncio.get_running_loop()
        for account in self.executor.accounts:
            idle = getattr(account.exchange, "idle", None)
            if idle is None or account.name in self._reading or not idle.wants_refresh():
                continue
            task = loop.create_task(self._refresh_idle(account), name=f"read ahead {account.name}")
            self._reading[account.name] = task
            task.add_done_callback(lambda _, name=account.name: self._reading.pop(name, None))

    async def reads_ahead_done(self) -> None:
        """Until the reads ahead started so far have finished (tests, benchmarks)."""
        while self._reading:
            await asyncio.gather(*list(self._reading.values()), return_exceptions=True)

    async def _refresh_idle(self, account: Account) -> None:
        refresh = getattr(account.exchange, "refresh_idle_account", None)
        if refresh is None:
            return
        try:
            await refresh()
        except Exception as exc:  # noqa: BLE001 — the next signal reads the account itself
            log.info("%s: account not read ahead of the next signal: %s", account.name, type(exc).__name__)

    def _account(self, name: str) -> Account:
        return next(a for a in self.executor.accounts if a.name == name)

    def persist(self) -> None:
        return None


class _FillFees:
    """The executor's journal port with the real entry fee filled in before each outcome is recorded (the order's
    reply carries none): the stop and target are placed by then, so waiting for the fee delays no protection."""

    def __init__(self, inner: ExecutionJournal, session: LiveSession) -> None:
        self.inner = inner
        self.session = session

    async def record_order(self, event: OrderEvent) -> None:
        await self.inner.record_order(event)

    async def record_outcome(self, result: AccountResult) -> None:
        if result.entry_order_id and result.fill_price and not result.fee:
            fee = await self.session.entry_fee(result.account, result.symbol, result.entry_order_id)
            if fee is not None:
                result.fee = fee
        await self.inner.record_outcome(result)
