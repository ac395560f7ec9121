"""Live room: one request-weight budget per egress IP, shared by every account's ccxt instance.

Binance counts REQUEST_WEIGHT per IP (2,400 a minute), not per API key, so a hundred accounts behind one IP
share one minute's weight. Every REST request of every account asks this budget first
(:meth:`WeightBudget.request`, called from ``LiveExchange.fetch2``), and the budget:

- counts the weight of each request (live/weights.py) in fixed one-minute windows aligned to the clock, as
  Binance's counter is, and corrects itself from the ``X-MBX-USED-WEIGHT-1M`` header of every response (other
  software on the same IP shows up there); per account, likewise the ``ORDERS`` limits from
  ``X-MBX-ORDER-COUNT-10S`` / ``-1M``;
- keeps ``safety_margin`` of the limit unused (requests in flight as the minute turns, clock skew), and lets each
  priority fill only its share: protective orders of open positions may use all of the usable weight, entries
  ``entry_share`` of it, housekeeping (reconciliation, polling, resyncs) ``housekeeping_share``, so a flood of
  entries or polling can never leave a stop-loss waiting;
- queues what does not fit, protective first, then entries, then housekeeping; within a priority, accounts in
  the order they were registered (loaded), so when a signal cannot reach every account in this minute the
  first accounts complete and the later ones wait, rather than all of them half-way. A request that costs no
  weight (placing an order) passes weighted requests that wait for the next minute;
- on HTTP 429 pauses every account for ``Retry-After`` (an order-count 429, -1015, pauses that account's
  orders only); on HTTP 418 (IP banned) stops every account until the ban's end, alerts through the notifier
  with that time, and resumes after it. Waiting requests stay queued, so nothing is retried into a ban;
- refuses (:class:`BudgetWaitTooLong`, nothing sent) a non-protective request that would wait longer than
  ``max_wait_s``: an entry ten minutes late is not the signal any more. Protective requests wait as long as it
  takes. Every wait over a second is logged with its reason, once per account and minute, and added to
  :attr:`WeightBudget.waited` so a signal's summary can say how long each account waited.

Settings, priorities and the clock are in live/budget_config.py; the clock is injectable (``time()`` and
``sleep()``), so tests run minutes of budget in no time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import ccxt

from live.budget_config import BudgetConfig, Clock, Priority, SystemClock, current_priority

log = logging.getLogger("fanout.live.budget")

WEIGHT_HEADER = "x-mbx-used-weight-1m"
ORDER_HEADERS = {"x-mbx-order-count-10s": 10, "x-mbx-order-count-1m": 60}
LOG_WAIT_S = 1.0  # waits shorter than this are not worth a line
_BANNED_UNTIL = re.compile(r"banned until (\d{12,})")


class BudgetWaitTooLong(ccxt.ExchangeError):
    """A request would have waited longer than ``max_wait_s`` for the IP's weight budget; it was not sent."""


class _Counter:
    """One of Binance's fixed-window counters (a minute of IP weight, 10 s or a minute of an account's orders).

    ``used`` is our estimate for the current window: what we charged plus what others on the same IP (or
    requests Binance weighs more than our table) added, learned from a response header: the server's count
    when it answered a request, less what we had charged up to and including that request. As a window turns,
    the amounts in flight and those sent just before the turn are carried into the new one, since the server
    may count them there.
    """

    def __init__(self, length: float, limit: float, guard: float) -> None:
        self.length, self.limit, self.guard = length, limit, guard
        self.window: int | None = None
        self.charged = 0.0
        self.foreign = 0.0
        self.inflight = 0.0
        self.recent: deque[tuple[float, float]] = deque()  # (time, amount) of the last two guards

    @property
    def used(self) -> float:
        return self.charged + self.foreign

    def roll(self, now: float) -> int:
        window = math.floor((now - self.guard) / self.length)
        if window != self.window:
            self._prune(now)
            self.charged = self.inflight + sum(a for _, a in self.recent)
            self.foreign = 0.0
            self.window = window
        return window

    def _prune(self, now: float) -> None:
        while self.recent and self.recent[0][0] < now - 2 * self.guard:
            self.recent.popleft()

    def room(self, now: float, ceiling: float | None = None) -> float:
        self.roll(now)
        return (self.limit if ceiling is None else ceiling) - self.used

    def charge(self, now: float, amount: float) -> tuple[int, float]:
        """Charge ``amount``; returns (window, what we had charged in it up to and including this)."""
        window = self.roll(now)
        self.charged += amount
        self.inflight += amount
        if amount:
            self.recent.append((now, amount))
            self._prune(now)
        return window, self.charged

    def settle(self, amount: float) -> None:
        self.inflight = max(0.0, self.inflight - amount)

    def observe(self, now: float, sent: tuple[int, float], server_count: float) -> None:
        """The server counted ``server_count`` when it answered the request charged as ``sent``."""
        window, charged_then = sent
        if self.roll(now) == window:
            self.foreign = max(self.foreign, server_count - charged_then)

    def fill(self, now: float) -> None:
        self.roll(now)
        self.foreign = max(self.foreign, self.limit - self.charged)

    def next_window_at(self) -> float:
        return ((self.window or 0) + 1) * self.length + self.guard


@dataclass(slots=True, eq=False)
class Ticket:
    """One admitted request: what it was charged and in which windows, for the response to correct."""

    account: str
    weight: int
    orders: int
    priority: Priority
    weight_sent: tuple[int, float]  # (window, weight we had charged in it up to and including this request)
    order_sent: dict[int, tuple[int, float]] = field(default_factory=dict)  # window length → likewise
    settled: bool = False
    status: int | None = None  # the HTTP status of the answer, once there is one

    @property
    def rate_limited(self) -> bool:
        """Binance refused it for the rate limits (429) or a ban (418): it was not executed."""
        return self.status in (429, 418)


@dataclass(slots=True, eq=False)
class _Waiter:
    priority: Priority
    rank: int  # the account's place in the order accounts were registered: earlier accounts go first
    seq: int
    account: str
    weight: int
    orders: int
    since: float
    future: asyncio.Future


class WeightBudget:
    """The request-weight budget of one egress IP (see the module docstring). One per process and IP.

    notifier: where a ban is alerted (an engine ``Notifier``; settable later, e.g. by the composition root).
    """

    def __init__(self, config: BudgetConfig | None = None, *, clock: Clock | None = None,
                 notifier: Any = None) -> None:
        self.config = config or BudgetConfig()
        self.clock: Clock = clock or SystemClock()
        self.notifier = notifier
        cfg = self.config
        self.weight = _Counter(60, cfg.usable, cfg.boundary_guard_s)
        self._orders: dict[str, dict[int, _Counter]] = {}
        self._queue: list[_Waiter] = []
        self._seq = 0
        self._ranks: dict[str, int] = {}
        self._wake: asyncio.Task | None = None
        self._wake_at: float | None = None
        self._tasks: set[asyncio.Task] = set()
        self.paused_until = 0.0  # every account (429 or 418)
        self.banned_until = 0.0  # 418
        self._account_paused: dict[str, float] = {}  # an account's orders (order-count 429)
        self._logged: dict[str, int] = {}  # account → minute its wait was last logged
        self.waited: dict[str, float] = {}  # account → seconds waited for the budget, in total
        self.spent: dict[str, int] = {}  # account → weight charged, in total
        self.rejections = {429: 0, 418: 0}
        self.refused = 0

    # ------------------------------------------------------------------ admission
    @contextlib.asynccontextmanager
    async def request(self, *, account: str, weight: int, orders: int = 0,
                      priority: Priority | None = None) -> AsyncIterator[Ticket]:
        """Wait for room, charge the request, and settle it when the block ends (answered or failed)."""
        ticket = await self.acquire(account=account, weight=weight, orders=orders, priority=priority)
        try:
            yield ticket
        finally:
            self.settle(ticket)

    async def acquire(self, *, account: str, weight: int, orders: int = 0,
                      priority: Priority | None = None) -> Ticket:
        priority = current_priority() if priority is None else priority
        now = self.clock.time()
        self._seq += 1
        waiter = _Waiter(priority, self.register(account), self._seq, account, weight, orders, now,
                         asyncio.get_running_loop().create_future())
        if not self._queue_ahead(waiter) and self._fits(now, account, weight, orders, priority):
            return self._admit(now, account, weight, orders, priority)
        refusal = self._too_long(now, waiter)
        if refusal is not None:
            raise refusal
        self._queue.append(waiter)
        self._queue.sort(key=_order)
        self._log_wait(now, waiter)
        self._pump()
        try:
            return await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled() and waiter.future.exception() is None:
                self.settle(waiter.future.result())  # admitted just as we were cancelled
            with contextlib.suppress(ValueError):
                self._queue.remove(waiter)
            raise

    def settle(self, ticket: Ticket) -> None:
        if ticket.settled:
            return
        ticket.settled = True
        self.weight.settle(ticket.weight)
        for length, counter in self._order_counters(ticket.account).items():
            if length in ticket.order_sent:
                counter.settle(ticket.orders)
        if self._queue:
            self._pump()

    def register(self, account: str) -> int:
        """Give ``account`` its place (accounts registered first go first within a priority); returns it."""
        return self._ranks.setdefault(account, len(self._ranks))

    def _queue_ahead(self, waiter: _Waiter) -> bool:
        """Someone who goes before this waiter already waits for weight."""
        return waiter.weight > 0 and any(w.weight > 0 and _order(w) < _order(waiter) for w in self._queue)

    def _fits(self, now: float, account: str, weight: int, orders: int, priority: Priority) -> bool:
        if now < self.paused_until:
            return False
        if weight and self.weight.room(now, self.config.ceiling(priority)) < weight:
            return False
        if orders:
            if now < self._account_paused.get(account, 0.0):
                return False
            if any(c.room(now) < orders for c in self._order_counters(account).values()):
                return False
        return True

    def _admit(self, now: float, account: str, weight: int, orders: int, priority: Priority) -> Ticket:
        ticket = Ticket(account, weight, orders, priority, self.weight.charge(now, weight))
        if orders:
            for length, counter in self._order_counters(account).items():
                ticket.order_sent[length] = counter.charge(now, orders)
        self.spent[account] = self.spent.get(account, 0) + weight
        return ticket

    def _order_counters(self, account: str) -> dict[int, _Counter]:
        counters = self._orders.get(account)
        if counters is None:
            keep = 1 - self.config.safety_margin
            guard = self.config.boundary_guard_s
            counters = self._orders[account] = {
                10: _Counter(10, self.config.order_limit_10s * keep, guard),
                60: _Counter(60, self.config.order_limit_1m * keep, guard),
            }
        return counters

    # ------------------------------------------------------------------ the queue
    def _pump(self) -> None:
        """Admit whoever fits, in priority order; arrange to be woken when the next one can."""
        now = self.clock.time()
        wake: list[float] = []
        if now < self.paused_until:
            wake.append(self.paused_until)
        else:
            if self.banned_until and now >= self.banned_until:
                self._ban_over()
            weight_blocked = False
            for waiter in list(self._queue):
                if waiter.future.done():
                    self._queue.remove(waiter)
                    continue
                refusal = self._too_long(now, waiter)
                if refusal is not None:
                    self._queue.remove(waiter)
                    waiter.future.set_exception(refusal)
                    continue
                if waiter.weight and (weight_blocked or self.weight.room(now, self.config.ceiling(waiter.priority))
                                      < waiter.weight):
                    weight_blocked = True
                    continue
                if waiter.orders and not self._fits(now, waiter.account, 0, waiter.orders, waiter.priority):
                    paused = self._account_paused.get(waiter.account, 0.0)
                    wake.append(paused if now < paused else min(
                        c.next_window_at() for c in self._order_counters(waiter.account).values()))
                    continue
                self._queue.remove(waiter)
                ticket = self._admit(now, waiter.account, waiter.weight, waiter.orders, waiter.priority)
                self._record_wait(now, waiter)
                waiter.future.set_result(ticket)
            if weight_blocked:
                wake.append(self.weight.next_window_at())
        if self._queue and wake:
            self._schedule(min(wake))

    def _schedule(self, at: float) -> None:
        if self._wake is not None and not self._wake.done():
            if self._wake_at is not None and self._wake_at <= at:
                return
            self._wake.cancel()
        self._wake_at = at
        self._wake = asyncio.get_running_loop().create_task(self._wake_up(at))

    async def _wake_up(self, at: float) -> None:
        delay = at - self.clock.time()
        if delay > 0:
            await self.clock.sleep(delay)
        self._wake_at = None
        self._pump()

    def _earliest_start(self, now: float, waiter: _Waiter) -> float:
        """A lower bound of when this waiter can go: the pause's end, else the next minute if weight is short."""
        start = max(now, self.paused_until)
        if waiter.weight and start < self.weight.next_window_at() and \
                self.weight.room(now, self.config.ceiling(waiter.priority)) < waiter.weight:
            start = self.weight.next_window_at()
        return start

    def _too_long(self, now: float, waiter: _Waiter) -> BudgetWaitTooLong | None:
        """The refusal for a non-protective waiter whose wait would pass ``max_wait_s``, else None."""
        if waiter.priority == Priority.PROTECTIVE:
            return None
        total = self._earliest_start(now, waiter) - waiter.since
        if total <= self.config.max_wait_s:
            return None
        self.refused += 1
        exc = BudgetWaitTooLong(
            f"{waiter.account}: would wait {total:.0f} s for the IP request-weight budget (more than "
            f"{self.config.max_wait_s:.0f} s; {self._reason(now)}); not sent")
        log.warning("⛔ %s", exc)
        return exc

    # ------------------------------------------------------------------ waits, for logs and summaries
    def _reason(self, now: float) -> str:
        if now < self.banned_until:
            return f"IP banned by Binance (HTTP 418) until {_iso(self.banned_until)}"
        if now < self.paused_until:
            return f"Binance answered 429, every account paused until {_iso(self.paused_until)}"
        return (f"{self.weight.used:,.0f} of {self.config.weight_limit:,} weight used this minute, "
                f"next minute in {max(0.0, self.weight.next_window_at() - now):.0f} s")

    def _log_wait(self, now: float, waiter: _Waiter) -> None:
        expected = self._earliest_start(now, waiter) - now
        minute = math.floor(now / 60)
        if expected < LOG_WAIT_S or self._logged.get(waiter.account) == minute:
            return
        self._logged[waiter.account] = minute
        log.info("⏳ %s waits about %.0f s (%s): %s", waiter.account, expected, waiter.priority.name.lower(),
                 self._reason(now))

    def _record_wait(self, now: float, waiter: _Waiter) -> None:
        waited = now - waiter.since
        if waited <= 0:
            return
        self.waited[waiter.account] = self.waited.get(waiter.account, 0.0) + waited
        if waited >= LOG_WAIT_S:
            log.info("▶️ %s sent after waiting %.1f s for the IP weight budget (%s)", waiter.account, waited,
                     waiter.priority.name.lower())

    def waits_since(self, mark: Mapping[str, float]) -> dict[str, float]:
        """Seconds each account waited since ``mark`` (an earlier copy of :attr:`waited`), only those that did."""
        return {a: s - mark.get(a, 0.0) for a, s in self.waited.items() if s - mark.get(a, 0.0) > 0}

    # ------------------------------------------------------------------ responses
    def observe(self, ticket: Ticket | None, status: int, headers: Mapping[str, Any] | None, body: str | None) -> None:
        """Read a response's weight / order-count headers and act on 429 and 418 (from ``handle_errors``)."""
        now = self.clock.time()
        lower = {str(k).lower(): v for k, v in (headers or {}).items()}
        if ticket is not None:
            ticket.status = status
            used = _number(lower.get(WEIGHT_HEADER))
            if used is not None:
                self.weight.observe(now, ticket.weight_sent, used)
            for name, length in ORDER_HEADERS.items():
                count = _number(lower.get(name))
                if count is not None and length in ticket.order_sent:
                    self._order_counters(ticket.account)[length].observe(now, ticket.order_sent[length], count)
        if status == 429:
            self._too_many(now, ticket, lower, body or "")
        elif status == 418:
            self._banned(now, lower, body or "")

    def _too_many(self, now: float, ticket: Ticket | None, headers: dict, body: str) -> None:
        self.rejections[429] += 1
        seconds = _number(headers.get("retry-after"))
        seconds = self.config.retry_after_s if seconds is None else seconds
        if '"code":-1015' in body.replace(" ", "") and ticket is not None:  # the account's order count
            until = now + seconds
            self._account_paused[ticket.account] = max(self._account_paused.get(ticket.account, 0.0), until)
            for counter in self._order_counters(ticket.account).values():
                counter.fill(now)
            log.warning("⏸️ Binance 429 on %s's orders: its orders wait %.0f s", ticket.account, seconds)
            return
        self.weight.fill(now)
        until = now + seconds
        if until > self.paused_until:
            self.paused_until = until
            log.warning("⏸️ Binance answered 429 (too much request weight): every account waits %.0f s, "
                        "until %s", seconds, _iso(until))
        self._pump()

    def _banned(self, now: float, headers: dict, body: str) -> None:
        self.rejections[418] += 1
        found = _BANNED_UNTIL.search(body)
        if found:
            until = int(found.group(1)) / 1000
        else:
            seconds = _number(headers.get("retry-after"))
            until = now + (self.config.retry_after_s if seconds is None else seconds)
        self.weight.fill(now)
        if until <= self.banned_until:
            return
        self.banned_until = until
        self.paused_until = max(self.paused_until, until)
        text = (f"Binance banned this IP (HTTP 418) until {_iso(until)} ({until - now:,.0f} s): every account "
                f"stopped sending; queued requests go out after it, protective orders first. Entries that "
                f"would wait more than {self.config.max_wait_s:.0f} s are not sent.")
        log.error("🚫 %s", text)
        self._alert("🚫 Binance IP ban", text)
        self._pump()

    def _ban_over(self) -> None:
        log.warning("▶️ Binance IP ban over (was until %s): sending again", _iso(self.banned_until))
        self._alert("▶️ Binance IP ban over", f"the ban until {_iso(self.banned_until)} has ended; sending again")
        self.banned_until = 0.0

    def _alert(self, title: str, text: str) -> None:
        if self.notifier is None:
            return

        async def send() -> None:
            try:
                await self.notifier.event(title, text)
            except Exception as exc:  # noqa: BLE001 — an alert never breaks trading
                log.warning("ban alert failed: %s", type(exc).__name__)

        task = asyncio.get_running_loop().create_task(send())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain_alerts(self) -> None:
        """Wait for alerts already started (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        if self._wake is not None:
            self._wake.cancel()
        await self.drain_alerts()


def _order(waiter: _Waiter) -> tuple[int, int, int]:
    return waiter.priority, waiter.rank, waiter.seq


def _number(value: Any) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
