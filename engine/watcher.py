"""Engine room: the bracket watcher — cancels the sibling when a stop-loss or take-profit fills, sweeps the symbols
it watches for naked positions and orphan reduce-only orders every round, and reconciles accounts on start.

The exchange is never trusted to cancel the sibling. Fills arrive either pushed (``on_order_update``, from the
simulator or a websocket) or by polling (``poll``); both end in the same handling. A sibling that is already
gone is not an error.

A :class:`Watch` marks a symbol on an account whose protection is not known to be in place: an entry or stop
whose fate is unknown, a failed emergency close, a stop leg the exchange removed, a sibling that could not be
cancelled. ``sweep`` (every round, paper and live) looks at each: a position without a stop gets one — at the
signal's stop, with the signal's client order id, so the venue refuses a second — or is closed at market when
the price is already beyond it; reduce-only orders on a symbol without a position are cancelled. It costs two
requests per watched symbol and nothing when there is none.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from engine.errors import describe, is_order_not_found, is_rejected
from engine.ids import client_order_id
from engine.ports import Account, Notifier, NullNotifier

log = logging.getLogger("fanout.watcher")
TRIGGER = {"trigger": True}
FALLBACK_STOP_PCT = 0.02  # a position whose signal's stop is unknown gets a stop this far from its entry


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


@dataclass(slots=True, kw_only=True)
class Watch:
    """A symbol on an account the sweep checks every round (see the module docstring).

    side: LONG / SHORT of the signal that traded it. signal_id: that signal (its stop gets the signal's client
    order id), or None. stop_loss / take_profit: the signal's prices when known. until_ms: keep watching at least
    until then on the exchange's clock (an order still in flight may land); dropped at the first clean round after.
    reason: why it is watched (logs).
    """

    account: str
    symbol: str
    side: str
    signal_id: str | None = None
    stop_loss: float | None = None
    take_profit: float | None = None
    until_ms: int = 0
    reason: str = ""


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
        self.watches: dict[tuple[str, str], Watch] = {}  # (account, symbol) -> what the sweep checks
        self.cancelled_siblings = 0

    def track(self, bracket: Bracket) -> None:
        for oid in bracket.legs().values():
            self.brackets[(bracket.account, oid)] = bracket

    def open_brackets(self) -> list[Bracket]:
        seen: dict[int, Bracket] = {}
        for b in self.brackets.values():
            seen[id(b)] = b
        return list(seen.values())

    def watch(self, watch: Watch) -> None:
        """Check ``watch.symbol`` on ``watch.account`` every round until it is clean (the latest known prices win)."""
        key = (watch.account, watch.symbol)
        known = self.watches.get(key)
        if known is not None:
            watch.until_ms = max(watch.until_ms, known.until_ms)
            watch.stop_loss = watch.stop_loss if watch.stop_loss is not None else known.stop_loss
            watch.take_profit = watch.take_profit if watch.take_profit is not None else known.take_profit
            watch.signal_id = watch.signal_id or known.signal_id
        self.watches[key] = watch

    def _watch_bracket(self, bracket: Bracket, reason: str) -> None:
        self.watch(Watch(account=bracket.account, symbol=bracket.symbol, side=bracket.side,
                         signal_id=bracket.signal_id, stop_loss=bracket.stop_loss, take_profit=bracket.take_profit,
                         reason=reason))

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
            # the exchange removed this leg (e.g. liquidation, or cancelled by hand): forget the bracket once no
            # leg is open; a stop gone while the position may remain is swept (a new stop, or nothing to do)
            remaining = [oid for oid in bracket.legs().values() if oid != order_id]
            if all((account, oid) not in self.brackets for oid in remaining):
                self._forget(bracket)
            else:
                self.brackets.pop((account, order_id), None)
            if order_id == bracket.stop_loss_id:
                self._watch_bracket(bracket, f"stop-loss {order_id} {status}")
        return None

    async def _leg_filled(self, bracket: Bracket, filled_id: str) -> None:
        # the bracket was found under filled_id, so it is one of its two legs; the sibling may never have been placed
        if filled_id == bracket.stop_loss_id:
            leg, sibling = "stop_loss", bracket.take_profit_id
        else:
            leg, sibling = "take_profit", bracket.stop_loss_id
        bracket.closed_by = leg
        self._forget(bracket)
        if sibling is None:  # none placed, or one whose reply was lost (no id): the sweep cancels what is left
            self._watch_bracket(bracket, f"{leg} filled, sibling id unknown")
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
            self._watch_bracket(bracket, f"sibling {sibling} not cancelled")  # the sweep cancels the orphan
            try:
                await self.notifier.event(
                    f"⚠️ Sibling order not cancelled - {bracket.account}",
                    f"{bracket.symbol}: {leg} filled but cancelling {sibling} failed: {describe(exc)}",
                )
            except Exception:  # noqa: BLE001
                pass

    async def poll(self, accounts: Iterable[str] | None = None) -> int:
        """Polling path (live): find legs no longer open, look up their state, cancel siblings. Returns fills.

        accounts: only these accounts' brackets (e.g. those whose pushed updates are not arriving); default all.
        """
        fills = 0
        only = None if accounts is None else set(accounts)
        by_account: dict[tuple[str, str], list[Bracket]] = {}
        for b in self.open_brackets():
            if only is None or b.account in only:
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

    async def sweep(self) -> list[ReconcileReport]:
        """Check every watched symbol (see the module docstring): protect naked positions, cancel orphan
        reduce-only orders, drop watches that are clean and past their time. Returns what changed."""
        reports = []
        for key, w in list(self.watches.items()):
            account = self.accounts.get(w.account)
            if account is None:
                self.watches.pop(key, None)
                continue
            ex = account.exchange
            report = ReconcileReport(w.account)
            try:
                positions = [p for p in await ex.fetch_positions([w.symbol])
                             if p.get("symbol") == w.symbol and abs(float(p.get("contracts") or 0)) > 0]
                orders = [o for o in await ex.fetch_open_orders(w.symbol, None, None, dict(TRIGGER))
                          if o.get("symbol") == w.symbol]
            except Exception as exc:
                log.warning("watcher: %s %s not checked (%s), next round", w.account, w.symbol, describe(exc))
                continue
            clean = await self._repair(account, positions, orders, report, known=w)
            if report.changed:
                reports.append(report)
                await self._report(report, "🛡️ Protected", "🛡️ sweep")
            if clean and ex.milliseconds() >= w.until_ms:
                self.watches.pop(key, None)
        return reports

    async def reconcile(self, account: Account, *, unprotected: str = "stop",
                        stop_distance_pct: float = FALLBACK_STOP_PCT,
                        symbols: Iterable[str] = ()) -> ReconcileReport:
        """Start-up check of one account.

        A position without a reduce-only stop gets one (``unprotected='stop'``, ``stop_distance_pct`` from its
        entry price, or the tracked bracket's or watch's stop when known) or is closed at market (``'close'``).
        Reduce-only orders on a symbol with no position are cancelled.

        Open orders are asked per symbol, concurrently: the symbols of the account's positions (a venue may also
        list there the symbols with open orders, as rows without contracts: Binance's account endpoint does),
        of the brackets and watches tracked for it, and ``symbols`` (e.g. what the journal says was traded). On
        Binance that costs 1 per symbol instead of 40 for every open order without a symbol.
        """
        ex = account.exchange
        report = ReconcileReport(account.name)
        rows = await ex.fetch_positions()
        positions = [p for p in rows if abs(float(p.get("contracts") or 0)) > 0]
        asked = sorted({str(p["symbol"]) for p in rows if p.get("symbol")} | set(symbols)
                       | self.symbols_of(account.name))
        listed = await asyncio.gather(*(ex.fetch_open_orders(s, None, None, dict(TRIGGER)) for s in asked))
        orders = [o for s, found in zip(asked, listed, strict=True) for o in found if o.get("symbol") == s]
        await self._repair(account, positions, orders, report, unprotected=unprotected,
                           stop_distance_pct=stop_distance_pct)
        if report.changed:
            await self._report(report, "🔧 Reconciled", "🔧 reconcile")
        return report

    def symbols_of(self, account: str) -> set[str]:
        """Symbols of the brackets and watches tracked for ``account``."""
        return ({b.symbol for b in self.open_brackets() if b.account == account}
                | {w.symbol for w in self.watches.values() if w.account == account})

    async def _repair(self, account: Account, positions: list[dict], orders: list[dict], report: ReconcileReport,
                      *, known: Watch | None = None, unprotected: str = "stop",
                      stop_distance_pct: float = FALLBACK_STOP_PCT) -> bool:
        """Cancel reduce-only orders on symbols without a position, then give every position without a stop one
        (or close it). ``known``: the watch being swept (its signal's stop and ids). True when all was clean or
        repaired."""
        ex = account.exchange
        clean = True
        with_position = {p["symbol"] for p in positions}
        for o in orders:
            if o.get("reduceOnly") and o.get("symbol") not in with_position:
                try:
                    await ex.cancel_order(str(o["id"]), o["symbol"], dict(TRIGGER))
                    report.orphans_cancelled.append(str(o["id"]))
                except Exception as exc:
                    if not is_order_not_found(exc):
                        report.errors.append(f"cancel {o['id']}: {describe(exc)}")
                        clean = False
        for p in positions:
            symbol = p["symbol"]
            long = (p.get("side") or "long") == "long"
            if any(o.get("symbol") == symbol and o.get("reduceOnly") and _is_stop(o, long) for o in orders):
                continue
            clean = await self._protect(account, p, long, report, known=known, unprotected=unprotected,
                                        stop_distance_pct=stop_distance_pct) and clean
        return clean

    async def _protect(self, account: Account, p: dict, long: bool, report: ReconcileReport, *,
                       known: Watch | None, unprotected: str, stop_distance_pct: float) -> bool:
        """One position without a stop: a stop at the known (signal's) price, else ``stop_distance_pct`` from its
        entry; closed at market if asked to, or if the stop is refused (e.g. the price is already beyond it)."""
        ex = account.exchange
        symbol = p["symbol"]
        contracts = abs(float(p["contracts"]))
        exit_side = "sell" if long else "buy"
        if known is None:
            known = self.watches.get((account.name, symbol)) or self._bracket_watch(account.name, symbol)
        if known is not None and known.signal_id and (known.side == "LONG") == long:
            sl_cid = client_order_id(known.signal_id, account.name, "SL")
            close_cid = client_order_id(known.signal_id, account.name, "X")
            price = known.stop_loss
        else:  # deterministic per position, so a lost reply can be looked up and a retry never duplicates
            key = f"reconcile:{symbol}:{p.get('entryPrice')}:{contracts}"
            sl_cid, close_cid, price = client_order_id(key, account.name, "SL"), client_order_id(key, account.name, "X"), None
        if price is None:
            entry = float(p.get("entryPrice") or 0)
            price = entry * (1 - stop_distance_pct if long else 1 + stop_distance_pct)
        if unprotected != "close":
            try:
                price = float(ex.price_to_precision(symbol, price))
                await ex.create_order(symbol, "market", exit_side, contracts, None, {
                    "stopLossPrice": price, "reduceOnly": True, "workingType": "MARK_PRICE", "clientOrderId": sl_cid,
                })
                report.protected.append(f"{symbol} stop {price:g}")
                return True
            except Exception as exc:
                if not is_rejected(exc):  # it may exist: the next round looks
                    report.errors.append(f"{symbol}: {describe(exc)}")
                    return False
                report.errors.append(f"{symbol}: stop {price:g} refused ({describe(exc)}), closing at market")
        try:
            await ex.create_order(symbol, "market", exit_side, contracts, None, {
                "reduceOnly": True, "clientOrderId": close_cid})
            report.closed.append(symbol)
            return True
        except Exception as exc:
            report.errors.append(f"{symbol}: close failed: {describe(exc)}")
            return False

    def _bracket_watch(self, account: str, symbol: str) -> Watch | None:
        b = next((b for b in self.open_brackets() if b.account == account and b.symbol == symbol), None)
        if b is None:
            return None
        return Watch(account=account, symbol=symbol, side=b.side, signal_id=b.signal_id, stop_loss=b.stop_loss,
                     take_profit=b.take_profit)

    async def _report(self, report: ReconcileReport, title: str, log_prefix: str) -> None:
        text = "; ".join(
            [f"stop placed: {', '.join(report.protected)}"] * bool(report.protected)
            + [f"closed: {', '.join(report.closed)}"] * bool(report.closed)
            + [f"orphans cancelled: {len(report.orphans_cancelled)}"] * bool(report.orphans_cancelled)
            + [f"errors: {'; '.join(report.errors)}"] * bool(report.errors)
        )
        log.warning("%s %s: %s", log_prefix, report.account, text)
        try:
            await self.notifier.event(f"{title} - {report.account}", text)
        except Exception:  # noqa: BLE001
            pass


def _is_stop(order: dict, long: bool) -> bool:
    """A reduce-only stop-loss (not a take-profit) for a position of this direction."""
    if order.get("stopLossPrice") is not None:
        return True
    kind = str(order.get("type") or "").lower()
    info = order.get("info") or {}
    raw = str(info.get("orderType") or info.get("type") or "").upper()
    return raw in ("STOP_MARKET", "STOP") or kind in ("stop_market", "stop")
