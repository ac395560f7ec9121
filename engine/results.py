"""Execution records: one result per account, a summary per signal, running stats."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

SUCCESS = "success"
SKIPPED = "skipped"
FAILED = "failed"
UNKNOWN = "unknown"  # the entry may exist but could not be looked up: settled later (final outcomes: the other three)

# The life of one order (OrderEvent.state), in order: recorded before the request, then one of the last two.
INTENT = "intent"  # about to be sent: from now on it may exist at the venue
SENT = "sent"  # a request may have reached the venue (its reply was lost): being looked up
ACKNOWLEDGED = "acknowledged"  # the venue has it (order_id)
REJECTED = "failed"  # the venue refused it, or it was looked up and does not exist


@dataclass(slots=True, kw_only=True)
class AccountResult:
    """What happened on one account for one signal.

    status: success | skipped (a rule said no; nothing sent) | failed (an exchange call failed) | unknown (the
        entry may exist but could not be looked up; the watcher protects the symbol and the service settles it).
    reason: why it was skipped or failed; warnings such as a missing take-profit on success.
    closed: True when the entry filled but the stop could not be placed, so the position was closed at market.
    entry_sent: True once the entry order was handed to the exchange (it may exist even if the reply was lost).
    """

    account: str
    signal_id: str
    symbol: str
    side: str
    status: str
    reason: str = ""
    margin: float = 0.0
    notional: float = 0.0
    quantity: float = 0.0
    leverage: int = 0
    fill_price: float | None = None
    entry_order_id: str | None = None
    stop_loss_order_id: str | None = None
    take_profit_order_id: str | None = None
    stop_loss: float | None = None
    take_profit: float | None = None
    liquidation_price: float | None = None
    fee: float = 0.0
    closed: bool = False
    entry_sent: bool = False
    time: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == SUCCESS

    @property
    def final(self) -> bool:
        """True once the outcome is settled (anything but ``unknown``)."""
        return self.status != UNKNOWN

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderEvent:
    """One step in the life of one order of one account, recorded through the ExecutionJournal port.

    leg: E (entry), SL, TP or X (emergency close); client_order_id: its deterministic id (engine/ids.py).
    state: intent | sent | acknowledged | failed (the constants above).
    order_id: the venue's id once acknowledged. amount, price: what was asked (price: the trigger of SL / TP).
    margin, notional, leverage: the sizing, on the entry's intent (a resumed entry's executions row reuses it).
    detail: the error of a sent or failed order.
    """

    signal_id: str
    account: str
    leg: str
    state: str
    client_order_id: str
    order_id: str | None = None
    amount: float | None = None
    price: float | None = None
    margin: float | None = None
    notional: float | None = None
    leverage: int | None = None
    detail: str = ""


@dataclass(slots=True, kw_only=True)
class SignalSummary:
    """Totals over all accounts for one signal (x/y succeeded, margin, notional, quantity)."""

    signal_id: str
    symbol: str
    side: str
    results: list[AccountResult]

    @property
    def succeeded(self) -> int:
        return sum(1 for r in self.results if r.ok)

    @property
    def total(self) -> int:
        return len(self.results)

    @property
    def total_margin(self) -> float:
        return round(math.fsum(r.margin for r in self.results if r.ok), 10)

    @property
    def total_notional(self) -> float:
        return round(math.fsum(r.notional for r in self.results if r.ok), 10)

    @property
    def total_quantity(self) -> float:
        return round(math.fsum(r.quantity for r in self.results if r.ok), 12)

    def to_dict(self) -> dict:
        return {
            "signal_id": self.signal_id,
            "symbol": self.symbol,
            "side": self.side,
            "succeeded": self.succeeded,
            "total": self.total,
            "total_margin": round(self.total_margin, 8),
            "total_notional": round(self.total_notional, 8),
            "total_quantity": round(self.total_quantity, 12),
            "accounts": [r.to_dict() for r in self.results],
        }


@dataclass(slots=True)
class ExecutionStats:
    """Running counters kept by the executor: signals seen, account trades attempted, successes, failures, skips."""

    signals: int = 0
    trades: int = 0
    successes: int = 0
    failures: int = 0
    skipped: int = 0
    per_account: dict[str, dict[str, int]] = field(default_factory=dict)

    def record(self, result: AccountResult) -> None:
        row = self.per_account.setdefault(result.account, {"trades": 0, "successes": 0, "failures": 0, "skipped": 0})
        if result.status == SKIPPED:
            self.skipped += 1
            row["skipped"] += 1
            return
        self.trades += 1
        row["trades"] += 1
        if result.ok:
            self.successes += 1
            row["successes"] += 1
        else:
            self.failures += 1
            row["failures"] += 1

    def to_dict(self) -> dict:
        return {
            "signals": self.signals,
            "trades": self.trades,
            "successes": self.successes,
            "failures": self.failures,
            "skipped": self.skipped,
            "per_account": self.per_account,
        }
