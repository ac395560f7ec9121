"""Live room: the weight budget's settings: request priorities (a context variable), its clock, BudgetConfig."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Protocol

from live.weights import ORDER_LIMIT_1M, ORDER_LIMIT_10S, WEIGHT_LIMIT_1M


class Priority(IntEnum):
    """Who goes first when the weight runs short (lower value first)."""

    PROTECTIVE = 0  # stop-loss / take-profit / emergency close of an open position, sibling cancels
    ENTRY = 1  # a signal's calls: balance, positions, brackets, margin mode, leverage, the entry
    HOUSEKEEPING = 2  # reconciliation, polling, stream resyncs


_priority: ContextVar[Priority] = ContextVar("fanout_request_priority", default=Priority.ENTRY)


@contextlib.contextmanager
def request_priority(priority: Priority) -> Iterator[None]:
    """Requests made inside (and in tasks started inside) go to the budget with this priority."""
    token = _priority.set(priority)
    try:
        yield
    finally:
        _priority.reset(token)


def current_priority() -> Priority:
    return _priority.get()


class Clock(Protocol):
    """Wall time in seconds since the epoch, and a way to wait (simulated in tests)."""

    def time(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetConfig:
    """How the IP's weight is shared.

    weight_limit: REQUEST_WEIGHT per minute for the IP (Binance: 2,400; BINANCE_WEIGHT_LIMIT).
    safety_margin: share of ``weight_limit`` this process never uses (0.1; BINANCE_WEIGHT_MARGIN).
    entry_share / housekeeping_share: share of the usable weight entries / housekeeping may fill in a minute;
        protective requests may fill all of it.
    order_limit_10s / order_limit_1m: ORDERS per account (300 / 1,200), kept ``safety_margin`` below as well.
    max_wait_s: longest a non-protective request waits before it is refused (BINANCE_MAX_WAIT_SECONDS, 120).
    retry_after_s: pause after a 429 that names no Retry-After.
    boundary_guard_s: the minute is taken to turn this long after the clock's minute, and weight sent around
        the turn counts in both minutes (covers clock skew against Binance).
    """

    weight_limit: int = WEIGHT_LIMIT_1M
    safety_margin: float = 0.10
    entry_share: float = 0.90
    housekeeping_share: float = 0.50
    order_limit_10s: int = ORDER_LIMIT_10S
    order_limit_1m: int = ORDER_LIMIT_1M
    max_wait_s: float = 120.0
    retry_after_s: float = 60.0
    boundary_guard_s: float = 1.0

    def __post_init__(self) -> None:
        for name in ("weight_limit", "order_limit_10s", "order_limit_1m"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive whole number, got {value!r}")
        for name in ("safety_margin",):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")
        for name in ("entry_share", "housekeeping_share"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)!r}")
        for name in ("max_wait_s", "retry_after_s", "boundary_guard_s"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be zero or more seconds, got {getattr(self, name)!r}")

    @property
    def usable(self) -> float:
        return self.weight_limit * (1 - self.safety_margin)

    def ceiling(self, priority: Priority) -> float:
        """Weight a request of this priority may bring the minute's total up to."""
        share = {Priority.PROTECTIVE: 1.0, Priority.ENTRY: self.entry_share,
                 Priority.HOUSEKEEPING: self.housekeeping_share}[priority]
        return self.usable * share

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> BudgetConfig:
        """BINANCE_WEIGHT_LIMIT, BINANCE_WEIGHT_MARGIN, BINANCE_MAX_WAIT_SECONDS (each optional)."""
        kw: dict[str, Any] = {}
        for var, key, kind in (("BINANCE_WEIGHT_LIMIT", "weight_limit", int),
                               ("BINANCE_WEIGHT_MARGIN", "safety_margin", float),
                               ("BINANCE_MAX_WAIT_SECONDS", "max_wait_s", float)):
            text = (env.get(var) or "").strip()
            if not text:
                continue
            try:
                kw[key] = kind(text)
            except ValueError:
                raise ValueError(f"{var} must be a {'whole ' if kind is int else ''}number, got {text!r}") from None
        try:
            return cls(**kw)
        except ValueError as exc:
            names = {"weight_limit": "BINANCE_WEIGHT_LIMIT", "safety_margin": "BINANCE_WEIGHT_MARGIN",
                     "max_wait_s": "BINANCE_MAX_WAIT_SECONDS"}
            text = str(exc)
            for key, var in names.items():
                text = text.replace(key, var)
            raise ValueError(text) from None
