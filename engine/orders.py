"""Engine room: sending one order without ever duplicating it — journaled before it is sent, looked up by its client
order id whenever its fate is unknown (engine/errors.py says when), resent only once the venue says it does not
exist and can no longer arrive.

Binance refuses a request whose timestamp is older than its receive window (ccxt sends ``recvWindow`` 10 s), so
"not found" is trusted only after that window has passed since the request; before, the lookup is repeated with
backoff. Rate-limit refusals are resent with the same client order id at once (after a backoff).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from engine.errors import describe, is_order_not_found, is_rejected, is_transient
from engine.ids import client_order_id
from engine.ports import ExecutionJournal
from engine.results import ACKNOWLEDGED, INTENT, REJECTED, SENT, OrderEvent

log = logging.getLogger("fanout.orders")
TRIGGER_LEGS = ("SL", "TP")


class OrderStateUnknown(Exception):
    """An order may have been sent, and looking it up by client order id failed every time."""


class NotRecorded(Exception):
    """The order's intent could not be written to the journal, so it was not sent."""


@dataclass(frozen=True, slots=True)
class OrderRef:
    """Which order: one leg (E, SL, TP, X) of one signal on one account and symbol."""

    signal_id: str
    account: str
    symbol: str
    leg: str

    @property
    def cid(self) -> str:
        return client_order_id(self.signal_id, self.account, self.leg)

    @property
    def lookup_params(self) -> dict:
        """``fetch_order`` params finding this order by client order id (stops and targets are trigger orders)."""
        return {"clientOrderId": self.cid, "trigger": True} if self.leg in TRIGGER_LEGS else {"clientOrderId": self.cid}


class OrderSender:
    """Sends orders once, whatever the network does.

    journal: where each order's states go (None: not recorded, e.g. backtests).
    retries: resends after a rate limit, or after a lost request was looked up and not found.
    retry_delay: first backoff in seconds (doubling, at most 8×; 0 in tests: no waiting).
    lookup_attempts: lookups of one order before its state is declared unknown (or, if each said "not found"
        before the window was over, not sent).
    receive_window: seconds after which a request can no longer reach the matching engine (ccxt's recvWindow;
        0 in tests against a stand-in, which has no queue).
    """

    def __init__(self, *, journal: ExecutionJournal | None = None, retries: int = 3, retry_delay: float = 0.5,
                 lookup_attempts: int = 7, receive_window: float = 10.0) -> None:
        self.journal = journal
        self.retries = retries
        self.retry_delay = retry_delay
        self.lookup_attempts = max(1, lookup_attempts)
        self.receive_window = receive_window

    async def send(self, ex: Any, ref: OrderRef, call: Callable[[], Awaitable[dict]], *, amount: float,
                   price: float | None = None, **sizing: Any) -> dict:
        """Record the intent, send, and return the venue's order; raises the refusal, or
        :class:`OrderStateUnknown` when the order may exist and could not be looked up (its journal state stays
        ``sent``). ``sizing``: margin / notional / leverage for the entry's intent."""
        if self.journal is not None:  # (checked here too: backtests send millions of orders without a journal)
            try:
                await self.record(ref, INTENT, amount=amount, price=price, strict=True, **sizing)
            except Exception as exc:
                raise NotRecorded(f"journal unavailable ({describe(exc)}), nothing sent") from exc
        maybe_sent = False
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt and last is not None and is_transient(last):
                await self._sleep(self.retry_delay * (2 ** (attempt - 1)))
            sent_at = ex.milliseconds()
            try:
                order = await call()
            except Exception as exc:
                last = exc
                if is_transient(exc):
                    continue
                if is_rejected(exc) and not maybe_sent:
                    break
                # the request may have reached the venue (or, after one that may have, a refusal such as a
                # duplicate client order id): look before resending or giving up
                if not maybe_sent:
                    maybe_sent = True
                    await self.record(ref, SENT, detail=describe(exc))
                found = await self.lookup(ex, ref, sent_at)
                if found is not None:
                    await self.record(ref, ACKNOWLEDGED, order_id=str(found.get("id")))
                    return found
                if is_rejected(exc):
                    break
                continue
            if self.journal is not None:
                await self.record(ref, ACKNOWLEDGED, order_id=str(order.get("id")))
            return order
        assert last is not None
        await self.record(ref, REJECTED, detail=describe(last))
        raise last

    async def lookup(self, ex: Any, ref: OrderRef, sent_at: int | None = None) -> dict | None:
        """The order by client order id; None once the venue says it does not exist and the receive window has
        passed since the request (``sent_at``, the exchange's clock). Raises :class:`OrderStateUnknown` when every
        lookup failed."""
        start = ex.milliseconds() if sent_at is None else sent_at
        waited = 0.0
        delay = self.retry_delay
        last: Exception | None = None
        for _ in range(self.lookup_attempts):
            await self._sleep(delay)  # let a request still in flight land before asking for it
            waited += delay
            delay = min(delay * 2, self.retry_delay * 8)
            try:
                return await ex.fetch_order(None, ref.symbol, ref.lookup_params)
            except Exception as exc:
                if not is_order_not_found(exc):
                    last = exc
                    continue
                last = None
                if max(waited, (ex.milliseconds() - start) / 1000) >= self.receive_window:
                    return None
        if last is None:
            return None  # only "not found" answers, the window not over: as sure as the lookups can make it
        raise OrderStateUnknown(f"order {ref.cid} state unknown: {self.lookup_attempts} lookups failed, "
                                f"last {describe(last)}")

    async def find(self, ex: Any, ref: OrderRef) -> dict | None:
        """One order after a restart: looked up (with :meth:`lookup`'s retries, no receive window to wait for:
        the request is long past it). None when it does not exist; OrderStateUnknown when it cannot be told."""
        last: Exception | None = None
        delay = self.retry_delay
        for attempt in range(self.lookup_attempts):
            if attempt:
                await self._sleep(delay)
                delay = min(delay * 2, self.retry_delay * 8)
            try:
                return await ex.fetch_order(None, ref.symbol, ref.lookup_params)
            except Exception as exc:
                if is_order_not_found(exc):
                    return None
                last = exc
        raise OrderStateUnknown(f"order {ref.cid} state unknown: {self.lookup_attempts} lookups failed, "
                                f"last {describe(last) if last else '?'}")

    async def record(self, ref: OrderRef, state: str, *, strict: bool = False, detail: str = "",
                     **fields: Any) -> None:
        """Write one state of ``ref`` to the journal. ``strict`` (the intent): a failure raises, so nothing is
        sent unrecorded; later states are logged on failure (the order exists or not whatever the journal says,
        and a restart looks it up)."""
        if self.journal is None:
            return
        event = OrderEvent(signal_id=ref.signal_id, account=ref.account, leg=ref.leg, state=state,
                           client_order_id=ref.cid, detail=detail, **fields)
        try:
            await self.journal.record_order(event)
        except Exception as exc:
            if strict:
                raise
            log.error("❌ journal: %s %s of %s not recorded: %s", ref.leg, state, ref.account, describe(exc))

    @staticmethod
    async def _sleep(seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds)
