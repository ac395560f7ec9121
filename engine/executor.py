"""The multi-account executor: one signal, every account concurrently, each isolated from the others' failures."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from engine.config import ExecutionConfig
from engine.errors import describe, is_order_not_found, is_outcome_unknown, is_transient
from engine.ids import client_order_id
from engine.ports import Account, Notifier, NullNotifier
from engine.results import FAILED, SKIPPED, SUCCESS, AccountResult, ExecutionStats, SignalSummary
from engine.risk import (
    RiskLedger,
    RiskRejection,
    check_account,
    check_signal_quality,
    check_stop_vs_liquidation,
)
from engine.signal import Signal
from engine.sizing import SizingSkip, size_position
from engine.watcher import Bracket, BracketWatcher

log = logging.getLogger("fanout.executor")


class OrderStateUnknown(Exception):
    """An order was sent, the reply was lost, and looking it up by client order id failed too."""


class MultiAccountExecutor:
    """Executes signals on every account concurrently.

    Per account: balance → minimums → risk → sizing → isolated margin → leverage → market entry →
    reduce-only stop-loss → reduce-only take-profit → notification. A failure on one account (any exception)
    becomes that account's result; the others carry on. If the stop cannot be placed after the entry filled,
    the position is closed at market. Margin mode and leverage are set once per account and symbol and
    remembered.
    """

    def __init__(
        self,
        accounts: Iterable[Account],
        config: ExecutionConfig | None = None,
        *,
        notifier: Notifier | None = None,
        watcher: BracketWatcher | None = None,
        ledger: RiskLedger | None = None,
        quote: str = "USDT",
        retries: int = 3,
        retry_delay: float = 0.5,
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
        self.retries = retries
        self.retry_delay = retry_delay
        self.notify_timeout = notify_timeout
        self.stats = ExecutionStats()
        self._leverage_set: dict[tuple[str, str], int] = {}
        self._margin_mode_set: set[tuple[str, str]] = set()
        self._tiers: dict[tuple[str, str], list[dict]] = {}

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
        else:
            outcomes = await asyncio.gather(*(self._guarded(a, signal) for a in targets), return_exceptions=True)
            results = [
                o if isinstance(o, AccountResult) else self._result(a, signal, FAILED, describe(o))
                for a, o in zip(targets, outcomes, strict=True)
            ]
        for r in results:
            self.stats.record(r)
        summary = SignalSummary(signal_id=signal.id, symbol=signal.symbol, side=signal.side, results=results)
        log.info(
            "📊 %s %s %s: %d/%d succeeded, margin $%.2f, notional $%.2f, quantity %g",
            signal.id, signal.display_symbol, signal.side, summary.succeeded, summary.total,
            summary.total_margin, summary.total_notional, summary.total_quantity,
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
        if result.status == SUCCESS:
            log.info("✅ %s: $%.2f margin, %g %s", account.name, result.margin, result.quantity, signal.display_symbol)
        elif result.status == SKIPPED:
            log.info("⏭️ %s skipped: %s", account.name, result.reason)
        if self.notifier.enabled:
            await self._notify(self.notifier.account_executed(signal, result))
        return result

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
        key = (account.name, symbol)
        try:
            if key not in self._margin_mode_set:
                await ex.set_margin_mode(cfg.margin_mode, symbol)
                self._margin_mode_set.add(key)
            if self._leverage_set.get(key) != leverage:
                await ex.set_leverage(leverage, symbol)
                self._leverage_set[key] = leverage
        except Exception as exc:
            result.reason = f"leverage / margin mode not set, nothing traded: {describe(exc)}"
            return result

        # stop and target prices before the entry: nothing between the entry fill and the stop may fail
        sl_price = float(ex.price_to_precision(symbol, signal.stop_loss))
        tp_price = float(ex.price_to_precision(symbol, signal.take_profit))
        result.stop_loss, result.take_profit = sl_price, tp_price

        entry_cid = client_order_id(signal.id, account.name, "E")
        result.entry_sent = True
        try:
            entry = await self._send(
                ex, symbol, entry_cid, False,
                lambda: ex.create_order(symbol, "market", signal.order_side, sizing.quantity, None,
                                        {"clientOrderId": entry_cid}),
            )
        except Exception as exc:
            result.reason = f"entry order failed: {describe(exc)}"
            return result
        filled = float(entry.get("filled") or sizing.quantity)
        result.quantity = filled
        result.fill_price = _price(entry) or signal.entry
        result.entry_order_id = str(entry.get("id"))
        result.fee = _fee(entry)

        sl_cid = client_order_id(signal.id, account.name, "SL")
        try:
            sl = await self._send(
                ex, symbol, sl_cid, True,
                lambda: ex.create_order(symbol, "market", signal.exit_side, filled, None, {
                    "stopLossPrice": sl_price, "reduceOnly": True, "workingType": cfg.working_type,
                    "clientOrderId": sl_cid,
                }),
            )
        except Exception as exc:
            return await self._emergency_close(account, signal, result, filled, exc)
        result.stop_loss_order_id = str(sl.get("id"))

        tp_cid = client_order_id(signal.id, account.name, "TP")
        warning = ""
        try:
            tp = await self._send(
                ex, symbol, tp_cid, True,
                lambda: ex.create_order(symbol, "market", signal.exit_side, filled, None, {
                    "takeProfitPrice": tp_price, "reduceOnly": True, "workingType": cfg.working_type,
                    "clientOrderId": tp_cid,
                }),
            )
            result.take_profit_order_id = str(tp.get("id"))
        except Exception as exc:
            warning = f"take-profit not placed (stop-loss is in place): {describe(exc)}"
            log.warning("⚠️ %s: %s", account.name, warning)

        result.status = SUCCESS
        result.reason = warning
        self.watcher.track(Bracket(
            account=account.name, symbol=symbol, side=signal.side, quantity=filled, signal_id=signal.id,
            entry_price=result.fill_price, stop_loss=sl_price, take_profit=tp_price,
            stop_loss_id=result.stop_loss_order_id, take_profit_id=result.take_profit_order_id,
        ))
        return result

    # ----------------------------------------------------------------- helpers
    async def _emergency_close(
        self, account: Account, signal: Signal, result: AccountResult, filled: float, cause: Exception
    ) -> AccountResult:
        """The entry filled but no stop could be placed: close the position at market, reduce-only."""
        ex = account.exchange
        cid = client_order_id(signal.id, account.name, "X")
        log.error("🚨 %s: stop-loss failed after entry (%s); closing at market", account.name, describe(cause))
        try:
            await self._send(
                ex, signal.symbol, cid, False,
                lambda: ex.create_order(signal.symbol, "market", signal.exit_side, filled, None,
                                        {"reduceOnly": True, "clientOrderId": cid}),
            )
            result.closed = True
            result.reason = f"stop-loss rejected, position closed at market: {describe(cause)}"
        except Exception as exc:
            result.reason = (
                f"STOP-LOSS REJECTED AND EMERGENCY CLOSE FAILED, position open without stop: "
                f"{describe(cause)}; close: {describe(exc)}"
            )
        await self._notify(self.notifier.event(f"🚨 Stop-loss failed - {account.name}", result.reason))
        return result

    async def _send(
        self, ex: Any, symbol: str, cid: str, trigger: bool, call: Callable[[], Awaitable[dict]]
    ) -> dict:
        """Send an order without ever duplicating it.

        Rate-limit rejections are retried with the same client order id. After a timeout or a 5xx the order's
        state is unknown: it is looked up by client order id first and resent only if the exchange says it does
        not exist (a filled market order is no longer "open", so Binance would accept the same id again).
        """
        for attempt in range(self.retries + 1):
            try:
                return await call()
            except Exception as exc:
                if is_outcome_unknown(exc):
                    # the order may exist even on the last attempt: look before giving up or resending
                    params = {"clientOrderId": cid, "trigger": True} if trigger else {"clientOrderId": cid}
                    found = await self._lookup(ex, symbol, params)
                    if found is not None:
                        return found
                elif not is_transient(exc):
                    raise
                if attempt >= self.retries:
                    raise
                if is_transient(exc):
                    await asyncio.sleep(self.retry_delay * (2**attempt))
        raise AssertionError("unreachable")

    async def _lookup(self, ex: Any, symbol: str, params: dict) -> dict | None:
        """Find an order by client order id; None when the exchange says it does not exist."""
        last: Exception | None = None
        attempts = max(1, self.retries)  # at least one look, even with retries=0
        await asyncio.sleep(self.retry_delay)  # let an order still in flight land before asking for it
        for attempt in range(attempts):
            try:
                return await ex.fetch_order(None, symbol, dict(params))
            except Exception as exc:
                if is_order_not_found(exc):
                    return None
                last = exc
                if attempt + 1 < attempts:
                    await asyncio.sleep(self.retry_delay * (2**attempt))
        raise OrderStateUnknown(f"order {params['clientOrderId']} state unknown after timeout: {describe(last)}")

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
