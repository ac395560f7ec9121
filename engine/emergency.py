"""Engine room: the emergency close — a position whose stop-loss could not be placed is closed at market, and
whatever reduce-only order it leaves behind is cancelled (a mixin of the executor, engine/executor.py)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from engine.errors import describe, is_rejected
from engine.orders import OrderRef, OrderStateUnknown
from engine.results import AccountResult
from engine.signal import Signal
from engine.watcher import TRIGGER

if TYPE_CHECKING:
    from engine.executor import MultiAccountExecutor
    from engine.ports import Account

log = logging.getLogger("fanout.executor")


class EmergencyMixin:
    """``_emergency_close`` and its helpers for :class:`~engine.executor.MultiAccountExecutor`."""

    async def _emergency_close(self: MultiAccountExecutor, account: Account, signal: Signal, result: AccountResult,
                               cause: Exception) -> AccountResult:
        """The entry filled but no stop could be placed: close the position at market, reduce-only. When the stop's
        own fate is unknown (it may exist), every reduce-only order left on the symbol is cancelled, and the
        symbol stays watched until a late order could no longer land."""
        ex = account.exchange
        symbol = signal.symbol
        ref = OrderRef(signal.id, account.name, symbol, "X")
        log.error("🚨 %s: stop-loss failed after entry (%s); closing at market", account.name, describe(cause))
        try:
            await self.orders.send(
                ex, ref,
                lambda: ex.create_order(symbol, "market", signal.exit_side, result.quantity, None,
                                        {"reduceOnly": True, "clientOrderId": ref.cid}),
                amount=result.quantity,
            )
            result.closed = True
            result.reason = f"stop-loss rejected, position closed at market: {describe(cause)}"
            if not is_rejected(cause):
                await self._cancel_reduce_only(account, signal)
                self._watch(account, signal, result, "stop-loss state unknown, position closed")
        except Exception as exc:
            if isinstance(exc, OrderStateUnknown) and await self._flat(account, signal):
                # the close's reply was lost and it cannot be looked up, but the position is gone: it went through
                result.closed = True
                result.reason = (f"stop-loss rejected, position closed at market (the close's reply was lost; the "
                                 f"position is gone): {describe(cause)}")
                await self._cancel_reduce_only(account, signal)
                self._watch(account, signal, result, "close state unknown, position gone")
            else:
                result.reason = (
                    f"STOP-LOSS REJECTED AND EMERGENCY CLOSE FAILED, position open without stop: "
                    f"{describe(cause)}; close: {describe(exc)}"
                )
                self._watch(account, signal, result, "emergency close failed")
        await self._notify(self.notifier.event(f"🚨 Stop-loss failed - {account.name}", result.reason))
        return result

    async def _flat(self: MultiAccountExecutor, account: Account, signal: Signal) -> bool:
        """True only when the account's positions were read and none is open on the signal's symbol."""
        try:
            positions = await account.exchange.fetch_positions([signal.symbol])
        except Exception as exc:  # noqa: BLE001 — unreadable is not flat
            log.warning("%s: position of %s unreadable: %s", account.name, signal.symbol, describe(exc))
            return False
        return not any(p.get("symbol") == signal.symbol and abs(float(p.get("contracts") or 0)) > 0 for p in positions)

    async def _cancel_reduce_only(self: MultiAccountExecutor, account: Account, signal: Signal) -> None:
        """Cancel every open reduce-only trigger order on the signal's symbol (the position is closed)."""
        ex = account.exchange
        try:
            for o in await ex.fetch_open_orders(signal.symbol, None, None, dict(TRIGGER)):
                if o.get("reduceOnly") and o.get("symbol") == signal.symbol:
                    await ex.cancel_order(str(o["id"]), signal.symbol, dict(TRIGGER))
                    log.info("🧹 %s: cancelled reduce-only %s left by the emergency close", account.name, o["id"])
        except Exception as exc:  # noqa: BLE001 — the watch set by the caller sweeps them next round
            log.warning("%s: reduce-only orders of %s not cleared yet: %s", account.name, signal.symbol,
                        describe(exc))
