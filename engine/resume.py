"""Engine room: finishing a signal a crash (or an unknown order) left unfinished — per account, what exists at the
venue decides, never what the dead process believed; the journal only says which orders may exist.

Per account (``MultiAccountExecutor.resume``):

- an outcome already recorded (success, skipped, failed) is kept as it is, its bracket watched again;
- the entry exists (found by its client order id, or its position is there when the lookup keeps failing): its
  stop-loss and take-profit at the signal's prices — found by their ids, else placed (closed at market if no
  stop can be placed) — and its executions row;
- the entry does not exist: sent now (the normal path, the same ids) if the signal is still fresh and the price
  has not drifted (``check_resume_price``), else recorded "expired after restart" with an alert; while no price
  can be had to check, a fresh signal is not expired but waits (``unknown``, tried again after the next tick);
- the entry's state cannot be told: ``unknown``, the symbol watched; the service tries again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.errors import describe
from engine.orders import OrderRef, OrderStateUnknown
from engine.results import FAILED, SKIPPED, SUCCESS, UNKNOWN, AccountResult, SignalSummary
from engine.risk import RiskRejection, check_resume_price
from engine.signal import Signal
from engine.watcher import TRIGGER, Bracket

if TYPE_CHECKING:
    from engine.executor import MultiAccountExecutor
    from engine.ports import Account

log = logging.getLogger("fanout.resume")
OPEN = "open"
NO_PRICE = "no price to check"


@dataclass(frozen=True, slots=True, kw_only=True)
class Prior:
    """What the journal knows of one account for the signal being resumed.

    outcome: the account's recorded result, if any (a final one is kept). legs: the legs whose intent was recorded
    (each may exist at the venue; a leg without an intent was never sent). margin / notional / leverage: the
    entry intent's sizing, for the executions row of an entry found at the venue.
    """

    outcome: AccountResult | None = None
    legs: frozenset[str] = frozenset()
    margin: float | None = None
    notional: float | None = None
    leverage: int | None = None


class ResumeMixin:
    """``resume`` for :class:`~engine.executor.MultiAccountExecutor` (see the module docstring)."""

    async def resume(self: MultiAccountExecutor, signal: Signal, prior: Mapping[str, Prior], *,
                     age_s: float) -> SignalSummary:
        """Finish ``signal`` on every account; ``prior``: the journal's knowledge by account name; ``age_s``:
        seconds since the signal was received (an entry never sent is sent only within ``resume_max_age_s``).
        An account still ``unknown`` as before is neither recorded nor announced again."""
        max_age = self.config.resume_max_age_s
        wait = None
        if age_s <= max_age:
            drift = await self._drift(signal)
            if drift is not None and drift.startswith(NO_PRICE):  # not a reason to expire a fresh signal yet
                drift, wait = None, drift
        else:
            drift = f"received {age_s:.0f} s ago (at most {max_age:g} s, RESUME_MAX_AGE_SECONDS)"
        kept = {name: p.outcome for name, p in prior.items() if p.outcome is not None and p.outcome.final}
        todo = [a for a in self.accounts if a.name not in kept]
        outcomes = await asyncio.gather(*(self._resume_guarded(a, signal, prior.get(a.name) or Prior(), drift, wait)
                                          for a in todo), return_exceptions=True)
        done = {a.name: o if isinstance(o, AccountResult) else self._result(a, signal, UNKNOWN, describe(o))
                for a, o in zip(todo, outcomes, strict=True)}
        for result in kept.values():
            self._track_again(result)
        changed = [r for name, r in done.items() if not _still_unknown(r, prior.get(name))]
        expired = [r.account for r in changed if r.reason.startswith("expired after restart")]
        if expired:
            await self._notify(self.notifier.event(
                f"⌛ Signal expired after restart - {signal.display_symbol}",
                f"{signal.id}: not sent on {', '.join(expired)}: {drift}"))
        names = {a.name for a in self.accounts}
        results = [kept.get(a.name) or done[a.name] for a in self.accounts]
        results += [r for name, r in kept.items() if name not in names]
        if not changed:
            return SignalSummary(signal_id=signal.id, symbol=signal.symbol, side=signal.side, results=results)
        return await self._summarise(signal, results, note=" (resumed)", counted=changed)

    async def _drift(self: MultiAccountExecutor, signal: Signal) -> str | None:
        """Why an entry of ``signal`` must no longer be sent (the price moved), or None."""
        if not self.accounts:
            return None
        try:
            ticker = await self.accounts[0].exchange.fetch_ticker(signal.symbol)
            price = float(ticker.get("last") or ticker.get("close"))
            check_resume_price(signal, price, self.config)
        except RiskRejection as exc:
            return str(exc)
        except Exception as exc:  # noqa: BLE001 — a price that cannot be checked is not traded on
            return f"{NO_PRICE} ({describe(exc)})"
        return None

    async def _resume_guarded(self: MultiAccountExecutor, account: Account, signal: Signal, prior: Prior,
                              drift: str | None, wait: str | None = None) -> AccountResult:
        try:
            result = await self._resume_account(account, signal, prior, drift, wait)
        except Exception as exc:  # noqa: BLE001 — whatever exists stays watched; the service tries again
            result = self._result(account, signal, UNKNOWN, f"resume failed: {describe(exc)}", entry_sent=True)
            self._watch(account, signal, result, "resume failed")
        if _still_unknown(result, prior):
            log.debug("%s: %s still unknown", account.name, signal.id)
            return result
        return await self._finish(account, signal, result)

    async def _resume_account(self: MultiAccountExecutor, account: Account, signal: Signal, prior: Prior,
                              drift: str | None, wait: str | None = None) -> AccountResult:
        ex = account.exchange
        entry: dict | None = None
        position: dict | None = None
        if "E" in prior.legs or prior.outcome is not None:
            try:
                entry = await self.orders.find(ex, OrderRef(signal.id, account.name, signal.symbol, "E"))
            except OrderStateUnknown as exc:
                position = await self._position(account, signal)
                if position is None:
                    result = self._result(account, signal, UNKNOWN, f"entry state unknown after restart ({exc})",
                                          entry_sent=True, **_sizing(prior))
                    self._watch(account, signal, result, "entry state unknown after restart")
                    return result
            if entry is not None and not float(entry.get("filled") or 0) and entry.get("status") != OPEN:
                entry = None  # cancelled or expired unfilled: it does not exist
        if entry is None and position is None:
            if wait is not None:  # nothing exists: nothing to watch
                return self._result(account, signal, UNKNOWN, f"not sent yet after restart: {wait}; tried again "
                                    f"after the next tick while the signal is fresh", **_sizing(prior))
            if drift is not None:
                return self._result(account, signal, SKIPPED, f"expired after restart: {drift}",
                                    time=ex.milliseconds())
            log.info("▶️ %s: %s never reached the venue; sending it now", account.name, signal.id)
            return await self._execute_account(account, signal)
        return await self._complete(account, signal, prior, entry, position)

    async def _complete(self: MultiAccountExecutor, account: Account, signal: Signal, prior: Prior,
                        entry: dict | None, position: dict | None) -> AccountResult:
        """The entry exists: protect its position with the signal's stop and target, or note it already closed."""
        ex = account.exchange
        result = self._result(account, signal, FAILED, "", entry_sent=True, time=ex.milliseconds(), **_sizing(prior))
        result.stop_loss = float(ex.price_to_precision(signal.symbol, signal.stop_loss))
        result.take_profit = float(ex.price_to_precision(signal.symbol, signal.take_profit))
        if entry is not None:
            self._filled(result, entry, signal)
            position = await self._position(account, signal)
        elif position is not None:
            result.quantity = abs(float(position["contracts"]))
            result.fill_price = float(position.get("entryPrice") or 0) or signal.entry
        legs = {}
        for leg in ("SL", "TP"):
            ref = OrderRef(signal.id, account.name, signal.symbol, leg)
            try:
                legs[leg] = await self.orders.find(ex, ref)
            except OrderStateUnknown:  # the lookup endpoint keeps failing: the open trigger orders tell
                legs[leg] = await _open_by_cid(ex, ref)
        if position is None:  # filled, and closed: by the emergency close, or its stop or target, or by hand
            await self._cancel_reduce_only(account, signal)
            close = None
            if "X" in prior.legs:
                close = await self.orders.find(ex, OrderRef(signal.id, account.name, signal.symbol, "X"))
            if close is not None and float(close.get("filled") or 0):
                result.closed = True
                result.reason = ("resumed after restart: the stop-loss was not placed and the position was closed "
                                 "at market")
                return result
            result.status = SUCCESS
            result.stop_loss_order_id = _id(legs["SL"])
            result.take_profit_order_id = _id(legs["TP"])
            result.reason = "resumed after restart: the position was already closed"
            return result
        result.quantity = abs(float(position["contracts"]))
        open_legs = {leg: o for leg, o in legs.items() if o is not None and o.get("status") == OPEN}
        return await self._protect(account, signal, result, stop=open_legs.get("SL"), target=open_legs.get("TP"),
                                   note="resumed after restart")

    def _track_again(self: MultiAccountExecutor, result: AccountResult) -> None:
        """Watch a recorded success's bracket again (it was tracked in memory only by the process that died)."""
        if result.status != SUCCESS or not result.stop_loss_order_id:
            return
        if (result.account, result.stop_loss_order_id) in self.watcher.brackets:
            return
        self.watcher.track(Bracket(
            account=result.account, symbol=result.symbol, side=result.side, quantity=result.quantity,
            signal_id=result.signal_id, entry_price=result.fill_price or 0.0, stop_loss=result.stop_loss or 0.0,
            take_profit=result.take_profit or 0.0, stop_loss_id=result.stop_loss_order_id,
            take_profit_id=result.take_profit_order_id,
        ))


async def _open_by_cid(ex: Any, ref: OrderRef) -> dict | None:
    """The open trigger order with ``ref``'s client order id, or None (not open: cancelled or filled, and a filled
    stop or target leaves no position to protect). Raises when the open orders cannot be read either."""
    for order in await ex.fetch_open_orders(ref.symbol, None, None, dict(TRIGGER)):
        if order.get("clientOrderId") == ref.cid and order.get("symbol") == ref.symbol:
            return order
    return None


def _still_unknown(result: AccountResult, prior: Prior | None) -> bool:
    """Unknown now, and already recorded as unknown: nothing new to record or announce."""
    return (result.status == UNKNOWN and prior is not None and prior.outcome is not None
            and prior.outcome.status == UNKNOWN)


def _sizing(prior: Prior) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if prior.margin is not None:
        out["margin"] = prior.margin
    if prior.notional is not None:
        out["notional"] = prior.notional
    if prior.leverage is not None:
        out["leverage"] = prior.leverage
    return out


def _id(order: dict | None) -> str | None:
    return str(order["id"]) if order is not None else None
