"""Engine room: the multi-account executor — one signal, every account concurrently, each isolated from the
others' failures; every order sent once (engine/orders.py), journaled, and a position never left without a stop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Coroutine, Iterable
from typing import Any

from engine.config import ExecutionConfig
from engine.emergency import EmergencyMixin
from engine.errors import describe, is_error, is_order_not_found, is_outcome_unknown, is_rejected
from engine.orders import NotRecorded, OrderRef, OrderSender, OrderStateUnknown
from engine.ports import Account, ExecutionJournal, Notifier, NullNotifier
from engine.results import FAILED, SKIPPED, SUCCESS, UNKNOWN, AccountResult, ExecutionStats, SignalSummary
from engine.resume import ResumeMixin
from engine.risk import (
    RiskLedger,
    RiskRejection,
    check_account,
    check_signal_quality,
    check_stop_vs_liquidation,
)
from engine.signal import Signal
from engine.sizing import SizingSkip, size_position
from engine.symbol_settings import SymbolSettings
from engine.watcher import TRIGGER, Bracket, BracketWatcher, Watch

log = logging.getLogger("fanout.executor")
__all__ = ["MultiAccountExecutor", "OrderStateUnknown"]


class MultiAccountExecutor(EmergencyMixin, ResumeMixin):
    """Executes signals on every account concurrently.

    Per account: balance → minimums → risk → sizing → isolated margin → leverage → market entry →
    reduce-only stop-loss and take-profit, sent together → notification. A failure on one account (any exception)
    becomes that account's result; the others carry on. If the stop cannot be placed after the entry filled,
    the position is closed at market. An entry whose fate stays unknown is settled by the account's position
    (filled: protected as usual) or left ``unknown`` with a watch on the symbol. Margin mode and leverage are set
    once per account and symbol and remembered (engine/symbol_settings.py, saved across restarts).

    journal: where order states and account outcomes are written as they happen (None: nowhere, e.g. backtests).
    retries, retry_delay, lookup_attempts, receive_window: see engine/orders.py ``OrderSender``.
    """

    def __init__(
        self,
        accounts: Iterable[Account],
        config: ExecutionConfig | None = None,
        *,
        notifier: Notifier | None = None,
        watcher: BracketWatcher | None = None,
        ledger: RiskLedger | None = None,
        journal: ExecutionJournal | None = None,
        quote: str = "USDT",
        retries: int = 3,
        retry_delay: float = 0.5,
        lookup_attempts: int = 7,
        receive_window: float = 10.0,
        notify_timeout: float = 10.0,
    ) -> None:
        self.accounts = list(accounts)
        names = [a.name for a in self.accounts]
        if len(set(names)) != len(names):
            raise ValueError(f"account names must be unique, got {names}")
        self.config = config or ExecutionConfig()
        self.notifier: Notifier = notifier or NullNotifier()
        self.watcher = watcher if watcher is not None else BracketWatcher(self.accounts, notifier=self.notifier)
        self.ledger = ledger or RiskLedger()
        self.quote = quote
        self.orders = OrderSender(journal=journal, retries=retries, retry_delay=retry_delay,
                                  lookup_attempts=lookup_attempts, receive_window=receive_window)
        self.notify_timeout = notify_timeout
        self.stats = ExecutionStats()
        self.settings = SymbolSettings()  # margin mode / leverage per (account, symbol); the service saves them
        self._tiers: dict[tuple[str, str], list[dict]] = {}

    @property
    def journal(self) -> ExecutionJournal | None:
        return self.orders.journal

    @journal.setter
    def journal(self, journal: ExecutionJournal | None) -> None:
        self.orders.journal = journal

    # ------------------------------------------------------------------ public
    async def execute(self, signal: Signal, accounts: Iterable[Account] | None = None) -> SignalSummary:
        """Run ``signal`` on every account (or the given subset) concurrently and return the summary."""
        targets = list(accounts) if accounts is not None else self.accounts
        self.stats.signals += 1
        try:
            check_signal_quality(signal, self.config)
            rejection = None
        except RiskRejection as exc:
            rejection = str(exc)
        if rejection is not None:
            results = [self._result(a, signal, SKIPPED, rejection) for a in targets]
            for r in results:
                await self._record_outcome(r)
        else:
            outcomes = await asyncio.gather(*(self._guarded(a, signal) for a in targets), return_exceptions=True)
            results = [
                o if isinstance(o, AccountResult) else self._result(a, signal, FAILED, describe(o))
                for a, o in zip(targets, outcomes, strict=True)
            ]
        return await self._summarise(signal, results)

    async def _summarise(self, signal: Signal, results: list[AccountResult], note: str = "",
                         counted: list[AccountResult] | None = None) -> SignalSummary:
        """Stats (``counted``: the results new to them, default all), the 📊 line and the summary alert."""
        for r in results if counted is None else counted:
            self.stats.record(r)
        summary = SignalSummary(signal_id=signal.id, symbol=signal.symbol, side=signal.side, results=results)
        log.info(
            "📊 %s %s %s: %d/%d succeeded, margin $%.2f, notional $%.2f, quantity %g%s",
            signal.id, signal.display_symbol, signal.side, summary.succeeded, summary.total,
            summary.total_margin, summary.total_notional, summary.total_quantity, note,
        )
        if self.notifier.enabled:
            await self._notify(self.notifier.signal_summary(signal, summary))
        return summary

    # ----------------------------------------------------------------- account
    async def _guarded(self, account: Account, signal: Signal) -> AccountResult:
        partial: list[AccountResult] = []  # the in-progress result, so entry_sent / order ids survive an exception
        try:
            result = await self._execute_account(account, signal, partial)
        except Exception as exc:  # one account's failure never stops the others
            log.error("❌ %s: %s", account.name, describe(exc))
            if partial:
                result = partial[0]
                result.status = FAILED
                result.reason = f"unexpected error after sizing: {describe(exc)}"
            else:
                result = self._result(account, signal, FAILED, describe(exc))
        return await self._finish(account, signal, result)

    async def _finish(self, account: Account, signal: Signal, result: AccountResult) -> AccountResult:
        """Log, journal and alert one account's outcome."""
        if result.status == SUCCESS:
            log.info("✅ %s: $%.2f margin, %g %s", account.name, result.margin, result.quantity, signal.display_symbol)
        elif result.status == SKIPPED:
            log.info("⏭️ %s skipped: %s", account.name, result.reason)
        elif result.status == UNKNOWN:
            log.error("❓ %s: %s", account.name, result.reason)
        await self._record_outcome(result)
        if self.notifier.enabled:
            await self._notify(self.notifier.account_executed(signal, result))
        return result

    async def _record_outcome(self, result: AccountResult) -> None:
        journal = self.orders.journal
        if journal is None:
            return
        try:
            await journal.record_outcome(result)
        except Exception as exc:  # noqa: BLE001 — the signal stays unfinished: a restart settles it
            log.error("❌ journal: outcome of %s not recorded: %s", result.account, describe(exc))

    async def _execute_account(
        self, account: Account, signal: Signal, partial: list[AccountResult] | None = None
    ) -> AccountResult:
        ex = account.exchange
        cfg = self.config
        symbol = signal.symbol
        now = ex.milliseconds()
        market = ex.market(symbol)  # BadSymbol for an unknown symbol → this account fails, others too

        balance = await ex.fetch_balance()
        quote = balance.get(self.quote) or {}
        free = float(quote.get("free") or 0.0)
        equity = float(quote.get("total") or free)
        if free < cfg.min_balance_usd:
            return self._result(
                account, signal, SKIPPED, f"balance ${free:,.2f} below minimum ${cfg.min_balance_usd:,.2f}", time=now
            )

        positions = await ex.fetch_positions()
        try:
            check_account(
                account=account.name, signal=signal, config=cfg, ledger=self.ledger, now_ms=now,
                equity=equity, positions=positions,
            )
        except RiskRejection as exc:
            return self._result(account, signal, SKIPPED, str(exc), time=now)

        leverage = signal.leverage or cfg.leverage
        tiers = await self._leverage_tiers(account, symbol)
        try:
            sizing = size_position(
                free_usdt=free, entry=signal.entry, leverage=leverage, config=cfg, market=market,
                amount_to_precision=ex.amount_to_precision, tiers=tiers,
            )
            liquidation = check_stop_vs_liquidation(signal, sizing, tiers)
        except (SizingSkip, RiskRejection) as exc:
            return self._result(account, signal, SKIPPED, str(exc), time=now)

        result = self._result(
            account, signal, FAILED, "", margin=sizing.margin, notional=sizing.notional,
            quantity=sizing.quantity, leverage=leverage, liquidation_price=liquidation, time=now,
        )
        if partial is not None:
            partial.append(result)
        settings = self.settings
        try:
            if settings.wants_margin_mode(account.name, symbol, cfg.margin_mode):
                try:
                    await ex.set_margin_mode(cfg.margin_mode, symbol)
                except Exception as exc:
                    if not is_error(exc, "MarginModeAlreadySet"):  # -4046: set by an earlier run, fine
                        raise
                settings.set_margin_mode(account.name, symbol, cfg.margin_mode)
            if settings.wants_leverage(account.name, symbol, leverage):
                await ex.set_leverage(leverage, symbol)
                settings.set_leverage(account.name, symbol, leverage)
        except Exception as exc:
            settings.forget(account.name, symbol)
            result.reason = f"leverage / margin mode not set, nothing traded: {describe(exc)}"
            return result

        # stop and target prices before the entry: nothing between the entry fill and the stop may fail
        result.stop_loss = float(ex.price_to_precision(symbol, signal.stop_loss))
        result.take_profit = float(ex.price_to_precision(symbol, signal.take_profit))

        ref = OrderRef(signal.id, account.name, symbol, "E")
        result.entry_sent = True
        try:
            entry = await self.orders.send(
                ex, ref,
                lambda: ex.create_order(symbol, "market", signal.order_side, sizing.quantity, None,
                                        {"clientOrderId": ref.cid}),
                amount=sizing.quantity, price=signal.entry, margin=sizing.margin, notional=sizing.notional,
                leverage=leverage,
            )
        except NotRecorded as exc:
            result.entry_sent = False
            result.reason = f"entry not sent: {exc}"
            return result
        except OrderStateUnknown as exc:
            return await self._entry_unknown(account, signal, result, exc)
        except Exception as exc:
            result.reason = f"entry order failed: {describe(exc)}"
            if is_rejected(exc):  # the venue's margin mode / leverage may not be what we think: set them next time
                settings.forget(account.name, symbol)
            if is_outcome_unknown(exc):  # looked up and not found; a late arrival is still swept
                self._watch(account, signal, result, f"entry {describe(exc)}")
            return result
        self._filled(result, entry, signal)
        return await self._protect(account, signal, result)

    @staticmethod
    def _filled(result: AccountResult, entry: dict, signal: Signal) -> None:
        result.quantity = float(entry.get("filled") or result.quantity)
        result.fill_price = _price(entry) or signal.entry
        result.entry_order_id = str(entry.get("id"))
        result.fee = _fee(entry)

    async def _entry_unknown(self, account: Account, signal: Signal, result: AccountResult,
                             cause: Exception) -> AccountResult:
        """The entry may exist and could not be looked up: the account's position tells whether it filled."""
        position = await self._position(account, signal)
        if position is not None:
            result.quantity = abs(float(position["contracts"]))
            result.fill_price = float(position.get("entryPrice") or 0) or None
            log.warning("⚠️ %s: entry reply lost and not found by id, but the position is there: protecting it",
                        account.name)
            return await self._protect(account, signal, result, note=f"entry found by its position ({describe(cause)})")
        result.status = UNKNOWN
        result.reason = (f"entry state unknown ({describe(cause)}); {signal.display_symbol} is watched and "
                         f"protected if it filled")
        self._watch(account, signal, result, "entry state unknown")
        return result

    async def _position(self, account: Account, signal: Signal) -> dict | None:
        """The account's open position on the signal's symbol in its direction; None if none or unreadable."""
        try:
            positions = await account.exchange.fetch_positions([signal.symbol])
        except Exception as exc:  # noqa: BLE001 — unknown stays unknown; the watcher looks again
            log.warning("%s: position of %s unreadable: %s", account.name, signal.symbol, describe(exc))
            return None
        want = "long" if signal.side == "LONG" else "short"
        for p in positions:
            if p.get("symbol") == signal.symbol and abs(float(p.get("contracts") or 0)) > 0 \
                    and (p.get("side") or "long") == want:
                return p
        return None

    async def _protect(self, account: Account, signal: Signal, result: AccountResult, *, stop: dict | None = None,
                       target: dict | None = None, note: str = "") -> AccountResult:
        """The entry filled (``result.quantity`` at ``result.fill_price``): the reduce-only stop-loss and the
        take-profit at the signal's prices, sent together (one round trip, not two); ``stop`` / ``target``: legs
        already placed (found after a restart). A stop that fails closes the position (the take-profit, if
        placed, is cancelled with it)."""
        ex = account.exchange
        symbol, filled = signal.symbol, result.quantity
        sl_price, tp_price = result.stop_loss, result.take_profit

        async def leg(name: str, trigger: str, price: float | None) -> dict:
            ref = OrderRef(signal.id, account.name, symbol, name)
            return await self.orders.send(
                ex, ref,
                lambda: ex.create_order(symbol, "market", signal.exit_side, filled, None, {
                    trigger: price, "reduceOnly": True, "workingType": self.config.working_type,
                    "clientOrderId": ref.cid,
                }),
                amount=filled, price=price,
            )

        async def placed(order: dict | None) -> dict | None:
            return order

        stop_out, target_out = await _both(
            leg("SL", "stopLossPrice", sl_price) if stop is None else placed(stop),
            leg("TP", "takeProfitPrice", tp_price) if target is None else placed(target),
        )
        if isinstance(stop_out, BaseException):
            if not isinstance(stop_out, Exception):
                raise stop_out
            result = await self._emergency_close(account, signal, result, stop_out)
            if isinstance(target_out, dict) and result.closed:  # else it still limits the open position
                await self._cancel_leg(account, signal, target_out, "take-profit")
            elif isinstance(target_out, BaseException) and not is_rejected(target_out):
                self._watch(account, signal, result, "take-profit state unknown beside a failed stop")
            return result
        stop = stop_out
        result.stop_loss_order_id = str(stop.get("id"))

        warning = ""
        if isinstance(target_out, BaseException):
            if not isinstance(target_out, Exception):
                raise target_out
            warning = f"take-profit not placed (stop-loss is in place): {describe(target_out)}"
            log.warning("⚠️ %s: %s", account.name, warning)
        elif target_out is not None:
            result.take_profit_order_id = str(target_out.get("id"))

        result.status = SUCCESS
        result.reason = "; ".join(x for x in (note, warning) if x)
        self.watcher.track(Bracket(
            account=account.name, symbol=symbol, side=signal.side, quantity=filled, signal_id=signal.id,
            entry_price=result.fill_price or signal.entry, stop_loss=sl_price, take_profit=tp_price,
            stop_loss_id=result.stop_loss_order_id, take_profit_id=result.take_profit_order_id,
        ))
        return result

    async def _cancel_leg(self, account: Account, signal: Signal, order: dict, what: str) -> None:
        """Cancel a leg placed beside a stop that failed (the position is being closed)."""
        try:
            await account.exchange.cancel_order(str(order.get("id")), signal.symbol, dict(TRIGGER))
            log.info("🧹 %s: cancelled the %s placed beside the failed stop", account.name, what)
        except Exception as exc:  # noqa: BLE001 — the watch set by the emergency close sweeps it
            if not is_order_not_found(exc):
                log.warning("%s: %s %s not cancelled yet: %s", account.name, what, order.get("id"), describe(exc))
                self.watcher.watch(Watch(account=account.name, symbol=signal.symbol, side=signal.side,
                                         signal_id=signal.id, reason=f"{what} beside a failed stop"))

    # ----------------------------------------------------------------- helpers
    def _watch(self, account: Account, signal: Signal, result: AccountResult, reason: str) -> None:
        """Have the watcher sweep this symbol every round, at least until a request still in flight could land."""
        self.watcher.watch(Watch(
            account=account.name, symbol=signal.symbol, side=signal.side, signal_id=signal.id,
            stop_loss=result.stop_loss if result.stop_loss is not None else signal.stop_loss,
            take_profit=result.take_profit if result.take_profit is not None else signal.take_profit,
            until_ms=account.exchange.milliseconds() + int(self.orders.receive_window * 1000), reason=reason,
        ))

    async def _leverage_tiers(self, account: Account, symbol: str) -> list[dict]:
        """Leverage brackets of one account and symbol, fetched once and remembered."""
        key = (account.name, symbol)
        if key not in self._tiers:
            self._tiers[key] = await account.exchange.fetch_market_leverage_tiers(symbol)
        return self._tiers[key]

    async def _notify(self, coro: Awaitable[None]) -> None:
        """Alerts never block or fail trading."""
        try:
            async with asyncio.timeout(self.notify_timeout):
                await coro
        except Exception as exc:  # noqa: BLE001
            log.warning("notification failed: %s", describe(exc))

    @staticmethod
    def _result(account: Account, signal: Signal, status: str, reason: str, **kw: Any) -> AccountResult:
        return AccountResult(
            account=account.name, signal_id=signal.id, symbol=signal.symbol, side=signal.side,
            status=status, reason=reason, **kw,
        )


def _price(order: dict) -> float | None:
    for key in ("average", "price"):
        value = order.get(key)
        if value:
            return float(value)
    return None


def _fee(order: dict) -> float:
    fee = order.get("fee") or {}
    try:
        return float(fee.get("cost") or 0.0)
    except (TypeError, ValueError):
        return 0.0


async def _both(first: Coroutine[Any, Any, Any], second: Coroutine[Any, Any, Any]) -> tuple[Any, Any]:
    """Two coroutines at once, each one's result or exception (as ``gather(..., return_exceptions=True)``).

    ``second`` runs in a task of its own and ``first`` in the caller's task: both requests are in flight together
    when they wait on the network, and a backtest, where neither ever waits, pays one task instead of gather's two
    (and its future). Cancelling the caller cancels both.
    """
    task = asyncio.ensure_future(second)
    try:
        a: Any = await first
    except Exception as exc:  # noqa: BLE001 — returned, as gather's return_exceptions does
        a = exc
    except BaseException:
        task.cancel()
        raise
    try:
        b: Any = await task
    except Exception as exc:  # noqa: BLE001
        b = exc
    return a, b
