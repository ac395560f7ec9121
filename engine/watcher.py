"""Bracket watcher: cancels the sibling when a stop-loss or take-profit fills, and reconciles accounts on start.

The exchange is never trusted to cancel the sibling. Fills arrive either pushed (``on_order_update``, from the
simulator or a websocket) or by polling (``poll``); both end in the same handling. A sibling that is already
gone is not an error.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from engine.errors import describe, is_order_not_found
from engine.ids import client_order_id
from engine.ports import Account, Notifier, NullNotifier

log = logging.getLogger("fanout.watcher")
TRIGGER = {"trigger": True}


@dataclass(slots=True, kw_only=True)
class Bracket:
    """A filled entry protected by a stop-loss and (usually) a take-profit, both reduce-only trigger orders."""

    account: str
    symbol: str
    side: str
    quantity: float
    signal_id: str
    entry_price: float
    stop_loss: float
    take_profit: float
    stop_loss_id: str | None
    take_profit_id: str | None
    closed_by: str | None = None

    def legs(self) -> dict[str, str]:
        """Order id by leg name (``stop_loss``, ``take_profit``), for the legs that were placed."""
        out = {}
        if self.stop_loss_id:
            out["stop_loss"] = self.stop_loss_id
        if self.take_profit_id:
            out["take_profit"] = self.take_profit_id
        return out


@dataclass(slots=True)
class ReconcileReport:
    """What reconciliation found and did on one account."""

    account: str
    protected: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    orphans_cancelled: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.protected or self.closed or self.orphans_cancelled or self.errors)


class BracketWatcher:
    """Tracks brackets per account and cancels the sibling of whichever leg fills first."""

    def __init__(self, accounts: Iterable[Account], *, notifier: Notifier | None = None) -> None:
        self.accounts = {a.name: a for a in accounts}
        self.notifier = notifier or NullNotifier()
        self.brackets: dict[tuple[str, str], Bracket] = {}  # (account, order id) -> bracket
        self.cancelled_siblings = 0

    def track(self, bracket: Bracket) -> None:
        for oid in bracket.legs().values():
            self.brackets[(bracket.account, oid)] = bracket

    def open_brackets(self) -> list[Bracket]:
        seen: dict[int, Bracket] = {}
        for b in self.brackets.values():
            seen[id(b)] = b
        return list(seen.values())

    def _forget(self, bracket: Bracket) -> None:
        for oid in bracket.legs().values():
            self.brackets.pop((bracket.account, oid), None)

    async def on_order_update(self, account: str, order: dict) -> Bracket | None:
        """Handle a pushed order update; when a bracket leg is closed (filled), cancel its sibling."""
        order_id = str(order.get("id"))
        bracket = self.brackets.get((account, order_id))
        if bracket is None:
            return None
        status = order.get("status")
        if status == "closed":
            await self._leg_filled(bracket, order_id)
            return bracket
        if status in ("canceled", "expired", "rejected"):
            # the exchange removed this leg (e.g. liquidation); forget the bracket once no leg is open
            remaining = [oid for oid in bracket.legs().values() if oid != order_id]
            if all((account, oid) not in self.brackets for oid in remaining):
                self._forget(bracket)
            else:
                self.brackets.pop((account, order_id), None)
        return None

    async def _leg_filled(self, bracket: Bracket, filled_id: str) -> None:
        # the bracket was found under filled_id, so it is one of its two legs; the sibling may never have been placed
        if filled_id == bracket.stop_loss_id:
            leg, sibling = "stop_loss", bracket.take_profit_id
        else:
            leg, sibling = "take_profit", bracket.stop_loss_id
        bracket.closed_by = leg
        self._forget(bracket)
        if sibling is None:
            return
        ex = self.accounts[bracket.account].exchange
        try:
            await ex.cancel_order(sibling, bracket.symbol, dict(TRIGGER))
            self.cancelled_siblings += 1
            log.info("🧹 %s: %s filled, cancelled sibling %s", bracket.account, leg, sibling)
        except Exception as exc:
            if is_order_not_found(exc):
                log.info("%s: sibling %s already gone", bracket.account, sibling)
                return
            log.error("❌ %s: could not cancel sibling %s: %s", bracket.account, sibling, describe(exc))
            try:
                await self.notifier.event(
                    f"⚠️ Sibling order not cancelled - {bracket.account}",
                    f"{bracket.symbol}: {leg} filled but cancelling {sibling} failed: {describe(exc)}",
                )
            except Exception:  # noqa: BLE001
                pass

    async def poll(self) -> int:
        """Polling path (live): find legs no longer open, look up their state, cancel siblings. Returns fills."""
        fills = 0
        by_account: dict[tuple[str, str], list[Bracket]] = {}
        for b in self.open_brackets():
            by_account.setdefault((b.account, b.symbol), []).append(b)
        for (name, symbol), brackets in by_account.items():
            ex = self.accounts[name].exchange
            try:
                open_ids = {str(o.get("id")) for o in await ex.fetch_open_orders(symbol, None, None, dict(TRIGGER))}
            except Exception as exc:
                log.warning("watcher: %s open orders unavailable: %s", name, describe(exc))
                continue
            for b in brackets:
                for oid in b.legs().values():
                    if oid in open_ids or (name, oid) not in self.brackets:
                        continue
                    try:
                        order = await ex.fetch_order(oid, symbol, dict(TRIGGER))
                    except Exception as exc:
                        log.warning("watcher: %s order %s lookup failed: %s", name, oid, describe(exc))
                        continue
                    if await self.on_order_update(name, order) is not None:
                        fills += 1
        return fills

    async def reconcile(self, account: Account, *, unprotected: str = "stop", stop_distance_pct: float = 0.02) -> ReconcileReport:
        """Start-up check of one account.

        A position without a reduce-only stop gets one (``unprotected='stop'``, ``stop_distance_pct`` from its
        entry price, or from the tracked bracket's stop when known) or is closed at market (``'close'``).
        Reduce-only orders on a symbol with no position are cancelled.
        """
        ex = account.exchange
        report = ReconcileReport(account.name)
        positions = [p for p in await ex.fetch_positions() if abs(float(p.get("contracts") or 0)) > 0]
        orders = await ex.fetch_open_orders(None, None, None, dict(TRIGGER))
        with_position = {p["symbol"] for p in positions}
        for o in orders:
            if o.get("reduceOnly") and o.get("symbol") not in with_position:
                try:
                    await ex.cancel_order(str(o["id"]), o["symbol"], dict(TRIGGER))
                    report.orphans_cancelled.append(str(o["id"]))
                except Exception as exc:
                    if not is_order_not_found(exc):
                        report.errors.append(f"cancel {o['id']}: {describe(exc)}")
        for p in positions:
            symbol = p["symbol"]
            long = (p.get("side") or "long") == "long"
            stops = [o for o in orders if o.get("symbol") == symbol and o.get("reduceOnly") and _is_stop(o, long)]
            if stops:
                continue
            contracts = abs(float(p["contracts"]))
            exit_side = "sell" if long else "buy"
            # deterministic per position, so a lost reply can be looked up and a retry never duplicates
            key = f"reconcile:{symbol}:{p.get('entryPrice')}:{contracts}"
            try:
                if unprotected == "close":
                    await ex.create_order(symbol, "market", exit_side, contracts, None, {
                        "reduceOnly": True, "clientOrderId": client_order_id(key, account.name, "X")})
                    report.closed.append(symbol)
                else:
                    known = next((b for b in self.open_brackets() if b.account == account.name and b.symbol == symbol), None)
                    entry = float(p.get("entryPrice") or 0)
                    price = known.stop_loss if known else entry * (1 - stop_distance_pct if long else 1 + stop_distance_pct)
                    price = float(ex.price_to_precision(symbol, price))
                    await ex.create_order(symbol, "market", exit_side, contracts, None, {
                        "stopLossPrice": price, "reduceOnly": True, "workingType": "MARK_PRICE",
                        "clientOrderId": client_order_id(key, account.name, "SL"),
                    })
                    report.protected.append(f"{symbol} stop {price:g}")
            except Exception as exc:
                report.errors.append(f"{symbol}: {describe(exc)}")
        if report.changed:
            text = "; ".join(
                [f"stop placed: {', '.join(report.protected)}"] * bool(report.protected)
                + [f"closed: {', '.join(report.closed)}"] * bool(report.closed)
                + [f"orphans cancelled: {len(report.orphans_cancelled)}"] * bool(report.orphans_cancelled)
                + [f"errors: {'; '.join(report.errors)}"] * bool(report.errors)
            )
            log.warning("🔧 reconcile %s: %s", account.name, text)
            try:
                await self.notifier.event(f"🔧 Reconciled - {account.name}", text)
            except Exception:  # noqa: BLE001
                pass
        return report


def _is_stop(order: dict, long: bool) -> bool:
    """A reduce-only stop-loss (not a take-profit) for a position of this direction."""
    if order.get("stopLossPrice") is not None:
        return True
    kind = str(order.get("type") or "").lower()
    info = order.get("info") or {}
    raw = str(info.get("orderType") or info.get("type") or "").upper()
    return raw in ("STOP_MARKET", "STOP") or kind in ("stop_market", "stop")
