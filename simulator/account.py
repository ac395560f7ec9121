"""Simulator room: one simulated account's book — wallet, positions, orders — and what fills do to it.

``SimulatedAccount`` holds the state; the ccxt face that validates requests and answers in ccxt's shapes is its
subclass ``SimulatedExchange`` (simulator/exchange.py). Fills land here: market orders, trigger orders firing,
liquidations, the end-of-data close; :meth:`SimulatedAccount.apply_candle` is the one place where a candle meets a
position (rules: simulator/fills.py), called by the venue's fill loop (simulator/venue.py) and the backtest.

Read ``positions``, ``orders``, ``algo_orders``, ``closed`` and the money fields freely; change them only through
the ccxt methods, the venue's fill loop and :meth:`SimulatedAccount.from_state`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import asdict, fields
from typing import TYPE_CHECKING, Any, Self

import ccxt

from simulator.fills import LIQUIDATION, STOP_LOSS, Level, first_hit, levels_for, slipped
from simulator.records import ClosedPosition, Exit, MarketOrder, Position, TriggerOrder, binance_error

if TYPE_CHECKING:
    from simulator.venue import SimulatedVenue

_POSITION_FIELDS = frozenset(f.name for f in fields(Position))
_CLOSED_FIELDS = frozenset(f.name for f in fields(ClosedPosition))
_DAY_MS = 86_400_000
# How long Binance answers queries for a finished order (GET /fapi/v1/order: an order created more than 90 days ago
# is not found, nor a CANCELED / EXPIRED one without fills created more than 3 days ago); the simulator forgets
# orders on the same schedule, so a year-long backtest does not keep every order it ever placed.
ORDER_RETENTION_MS = 90 * _DAY_MS
UNFILLED_RETENTION_MS = 3 * _DAY_MS


class OrderBook(Mapping[str, dict]):
    """A read-only view of order records by key, each read as the simulator's ccxt-shaped dict (a fresh one)."""

    __slots__ = ("_records",)

    def __init__(self, records: Mapping[str, MarketOrder | TriggerOrder]) -> None:
        self._records = records

    def __getitem__(self, key: str) -> dict:
        return self._records[key].ccxt(private=True)

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)


class SimulatedAccount:
    """One simulated account's state on the venue and the fills that change it."""

    def __init__(self, venue: SimulatedVenue, name: str, balance: float) -> None:
        self.venue = venue
        self.name = name
        self.wallet = balance
        self.positions: dict[str, Position] = {}
        self._orders: dict[str, MarketOrder] = {}  # regular orders by id
        self._algo_orders: dict[str, TriggerOrder] = {}  # trigger orders by algo id
        self._by_client_id: dict[str, MarketOrder | TriggerOrder] = {}
        self.leverage: dict[str, int] = {}
        self.margin_mode: dict[str, str] = {}
        self.closed: list[ClosedPosition] = []
        self.realized_pnl = 0.0
        self.fees_paid = 0.0
        self.funding = 0.0  # funding received (+) or paid (-) over the account's life
        self._lookups = venue.lookups
        # ids of possibly-open trigger orders in creation order: every open one is here (added when created, and
        # by from_state); closed or cancelled ones are pruned lazily by _open_algo (an order never reopens)
        self._open_ids: dict[str, None] = {}
        self._unfilled: deque[TriggerOrder] = deque()  # canceled / expired trigger orders, oldest first
        self._next_forget = 0  # the clock time of the next look for orders Binance no longer answers for

    @property
    def orders(self) -> Mapping[str, dict]:
        """Regular (market) orders by id, read-only, each read as ccxt's dict."""
        return OrderBook(self._orders)

    @property
    def algo_orders(self) -> Mapping[str, dict]:
        """Trigger (stop / take-profit) orders by algo id, read-only, each read as ccxt's dict with ``_kind``."""
        return OrderBook(self._algo_orders)

    @property
    def by_client_id(self) -> Mapping[str, dict]:
        """The latest order of each client order id, read-only, as in :attr:`orders` / :attr:`algo_orders`."""
        return OrderBook(self._by_client_id)

    def used_margin(self) -> float:
        return sum(p.margin for p in self.positions.values())

    def unrealized(self, symbol: str | None = None) -> float:
        total = 0.0
        for pos in self.positions.values():
            if symbol is not None and pos.symbol != symbol:
                continue
            mark = self.venue.prices.get(pos.symbol, pos.entry_price)
            total += (mark - pos.entry_price) * pos.contracts * (1 if pos.long else -1)
        return total

    # ---------------------------------------------------------------- fills
    def _fill_market(self, symbol: str, side: str, qty: float, reduce_only: bool, cid: str | None,
                     price: float | None = None, reason: str | None = None) -> MarketOrder:
        buy = side == "buy"
        fill = price if price is not None else slipped(self.venue.price(symbol), buy, self.venue.slippage_bps)
        pos = self.positions.get(symbol)
        if reduce_only:
            if pos is None or pos.long == buy:
                raise binance_error(ccxt.InvalidOrder, -2022, "ReduceOnly Order is rejected.")
            qty = min(qty, pos.contracts)
        elif pos is not None and pos.long != buy:
            raise ccxt.NotSupported("simulator: flipping a position with a non-reduce-only order is not supported")
        notional = qty * fill
        fee = notional * self.venue.taker_fee
        if not reduce_only:
            min_notional = self._lookups.market(symbol)["limits"]["cost"]["min"] or 0
            if notional < min_notional - 1e-9:
                raise binance_error(ccxt.InvalidOrder, -4164,
                                    f"Order's notional must be no smaller than {min_notional:g} (unless you choose reduce only).")
            leverage = self.leverage.get(symbol, 20)
            total_notional = notional + (pos.contracts * pos.entry_price if pos else 0.0)
            if total_notional > self._lookups.max_notional(symbol, leverage):
                raise binance_error(ccxt.OperationRejected, -2027,
                                    "Exceeded the maximum allowable position at current leverage.")
            margin = notional / leverage
            if self.wallet - self.used_margin() < margin + fee - 1e-9:
                raise binance_error(ccxt.InsufficientFunds, -2019, "Margin is insufficient.")
        oid = self.venue.next_id()
        now = self.venue.now_ms
        cid = cid or f"sim{oid}"
        self.wallet -= fee
        self.fees_paid += fee
        if reduce_only:
            self._reduce(symbol, qty, fill, fee, now, reason or "close")
        else:
            self._open(symbol, buy, qty, fill, fee, now, oid, cid)
        order = MarketOrder(oid, cid, now, symbol, side, reduce_only, qty, fill, notional, fee)
        self._orders[oid] = order
        self._by_client_id[cid] = order
        if now >= self._next_forget:
            self._forget_old_orders(now)
        return order

    def _open(self, symbol: str, buy: bool, qty: float, fill: float, fee: float, now: int, oid: str, cid: str) -> None:
        leverage = self.leverage.get(symbol, 20)
        pos = self.positions.get(symbol)
        if pos is None:
            pos = Position(symbol, buy, 0.0, fill, 0.0, leverage, 0.0, now, oid, cid)
            self.positions[symbol] = pos
        total = pos.contracts + qty
        pos.entry_price = (pos.entry_price * pos.contracts + fill * qty) / total
        pos.contracts = total
        pos.margin += qty * fill / leverage
        pos.fees += fee
        pos.version += 1
        tier = self._lookups.tier(symbol, pos.contracts * pos.entry_price)
        cum = float((tier.get("info") or {}).get("cum") or 0)
        mmr = tier["maintenanceMarginRate"]
        if pos.long:
            liq = (pos.contracts * pos.entry_price - pos.margin - cum) / (pos.contracts * (1 - mmr))
        else:
            liq = (pos.contracts * pos.entry_price + pos.margin + cum) / (pos.contracts * (1 + mmr))
        pos.liquidation_price = max(liq, 0.0)

    def _reduce(self, symbol: str, qty: float, fill: float, fee: float, now: int, reason: str) -> ClosedPosition:
        pos = self.positions[symbol]
        part = qty / pos.contracts
        margin = pos.margin * part
        pnl = (fill - pos.entry_price) * qty * (1 if pos.long else -1)
        if reason == LIQUIDATION:
            pnl = -margin  # the whole isolated margin is lost
        self.wallet += pnl
        self.realized_pnl += pnl
        pos.fees += fee
        entry_fee = pos.fees * part if part < 1 else pos.fees
        funding = pos.funding * part if part < 1 else pos.funding  # already in the wallet: reported with the trade
        closed = ClosedPosition(
            account=self.name, symbol=symbol, side="LONG" if pos.long else "SHORT", entry_time=pos.opened_at,
            entry_price=pos.entry_price, quantity=qty, margin=margin, leverage=pos.leverage, exit_time=now,
            exit_price=fill, exit_reason=reason, fees=entry_fee,
            pnl=pnl - entry_fee + funding if funding else pnl - entry_fee,
            entry_order_id=pos.entry_order_id, entry_client_id=pos.entry_client_id, funding=funding,
        )
        self.closed.append(closed)
        if part >= 1 - 1e-12:
            del self.positions[symbol]
        else:
            pos.contracts -= qty
            pos.margin -= margin
            pos.fees -= entry_fee
            pos.funding -= funding
            pos.version += 1
        return closed

    def pay_funding(self, symbol: str, rate: float, price: float) -> float:
        """Funding on the open position on ``symbol`` (fills.py rule 9): notional at ``price`` × ``rate``, paid by a
        long and received by a short when the rate is positive; taken from / added to the wallet. The amount
        received (negative: paid)."""
        pos = self.positions[symbol]
        amount = -pos.contracts * price * rate if pos.long else pos.contracts * price * rate
        self.wallet += amount
        self.funding += amount
        pos.funding += amount
        return amount

    # ---------------------------------------------------------------- what the venue's fill loop does here
    def _open_algo(self) -> list[TriggerOrder]:
        """Open trigger orders in creation order, without walking every order ever placed (see ``_open_ids``)."""
        book = self._algo_orders
        out, stale = [], []
        for oid in self._open_ids:
            o = book[oid]
            if o.status == "open":
                out.append(o)
            else:
                stale.append(oid)
        for oid in stale:
            del self._open_ids[oid]
        return out

    def position_levels(self, symbol: str) -> list[Level]:
        """Levels that can end the position on ``symbol``: its open reduce-only triggers and its liquidation."""
        pos = self.positions[symbol]
        sls, tps, mark = [], [], set()
        for o in self._open_algo():
            if o.symbol != symbol or (o.side == "sell") != pos.long:
                continue
            (sls if o.kind == STOP_LOSS else tps).append((o.trigger, o.id))
            if o.working_type == "MARK_PRICE":
                mark.add(o.id)
        return levels_for(pos.long, stop_loss=sls, take_profit=tps, liquidation=pos.liquidation_price, mark=mark)

    def apply_candle(self, symbol: str, t: int, o: float, h: float, low: float, *,
                     levels: list[Level] | None = None, mark: tuple[float, float, float] | None = None) -> Exit | None:
        """One candle against this account's position on ``symbol`` (fills.py rules 2-5); None if nothing crossed.

        The first level the candle reaches is executed at time ``t``: its trigger order fills (order update
        queued on the venue), or the position is liquidated (its orders cancelled by the exchange, updates
        queued). ``levels``: the position's :meth:`position_levels` when the caller already holds them (the
        backtest's scheduler, which recomputes them whenever the position changes). ``mark``: the mark candle's
        (open, high, low) at ``t`` when mark prices are known (fills.py rule 7).
        """
        pos = self.positions.get(symbol)
        if pos is None:
            return None
        hit = first_hit(pos.long, self.position_levels(symbol) if levels is None else levels, o, h, low, mark)
        if hit is None:
            return None
        level, price = hit
        self.venue.now_ms = t = int(t)
        if level.kind == LIQUIDATION:
            return Exit(level, price, self.liquidate(symbol, level.price, t))
        return Exit(level, price, self.fill_trigger(level.order_id, price, t))

    def fill_trigger(self, algo_id: str, price: float, time_ms: int) -> ClosedPosition | None:
        """A trigger order fires: a reduce-only market order at ``price`` (± slippage); the update is queued."""
        order = self._algo_orders[algo_id]
        symbol, side = order.symbol, order.side
        pos = self.positions.get(symbol)
        now = int(time_ms)
        if pos is None or pos.long != (side == "sell"):
            order.status, order.closed_at = "expired", now
            self._unfilled.append(order)
            self.venue.emit(self.name, order.ccxt())
            return None
        before = len(self.closed)
        fill = slipped(price, side == "buy", self.venue.slippage_bps)
        order.fill = self._fill_market(symbol, side, order.qty, True, None, price=fill, reason=order.kind)
        order.status, order.closed_at = "closed", now
        self.venue.emit(self.name, order.ccxt())
        return self.closed[-1] if len(self.closed) > before else None

    def liquidate(self, symbol: str, price: float, time_ms: int) -> ClosedPosition:
        """Isolated liquidation: the margin is lost and the symbol's open orders are cancelled by the exchange."""
        pos = self.positions[symbol]
        closed = self._reduce(symbol, pos.contracts, price, 0.0, int(time_ms), LIQUIDATION)
        self._cancel_triggers(symbol)
        return closed

    def close_position(self, symbol: str, price: float, reason: str) -> ClosedPosition:
        """Close the whole position at ``price`` (no slippage) for ``reason``; the exchange cancels its orders.

        The venue's clock is the closing time. Used at the end of a backtest's data (fills.py rule 8).
        """
        pos = self.positions[symbol]
        self._fill_market(symbol, "sell" if pos.long else "buy", pos.contracts, True, None, price=price,
                          reason=reason)
        self._cancel_triggers(symbol)
        return self.closed[-1]

    def _cancel_triggers(self, symbol: str) -> None:
        """The exchange cancels the symbol's open trigger orders (the position is gone); updates are queued."""
        for o in self._open_algo():
            if o.symbol == symbol:
                o.status = "canceled"
                self._unfilled.append(o)
                self.venue.emit(self.name, o.ccxt())

    # ---------------------------------------------------------------- trigger orders the ccxt face books
    def _add_trigger(self, order: TriggerOrder) -> None:
        """Book a new open trigger order (created by the ccxt face)."""
        self._algo_orders[order.id] = order
        self._by_client_id[order.client_id] = order
        self._open_ids[order.id] = None
        if order.time >= self._next_forget:
            self._forget_old_orders(order.time)

    def _forget_old_orders(self, now: int) -> None:
        """Drop the finished orders Binance no longer answers for (``ORDER_RETENTION_MS``,
        ``UNFILLED_RETENTION_MS``); looked for at most once a simulated day. Open orders always stay."""
        self._next_forget = now + _DAY_MS
        unfilled = self._unfilled
        while unfilled and unfilled[0].time + UNFILLED_RETENTION_MS < now:
            self._forget(self._algo_orders, unfilled.popleft())
        for book in (self._orders, self._algo_orders):
            old = []
            for o in book.values():  # in creation order
                if o.time + ORDER_RETENTION_MS >= now:
                    break
                if o.status != "open":
                    old.append(o)
            for o in old:
                self._forget(book, o)

    def _forget(self, book: dict, order: MarketOrder | TriggerOrder) -> None:
        if book.get(order.id) is order:
            del book[order.id]
            if book is self._algo_orders:
                self._open_ids.pop(order.id, None)
        if self._by_client_id.get(order.client_id) is order:
            del self._by_client_id[order.client_id]

    def _open_triggers_on(self, symbol: str, limit: int) -> int:
        """How many trigger orders are open on ``symbol`` — exact from ``limit`` up, else possibly an undercount."""
        if len(self._open_ids) < limit:
            return 0  # the index holds every open trigger order: fewer than ``limit`` on any symbol
        return sum(1 for o in self._open_algo() if o.symbol == symbol)

    # ---------------------------------------------------------------- saving and restoring
    def to_state(self) -> dict:
        """This account as a JSON-ready document."""
        return {
            "wallet": self.wallet,
            "positions": [asdict(p) for p in self.positions.values()],
            "orders": [o.ccxt(private=True) for o in self._orders.values()],
            "algo_orders": [o.ccxt(private=True) for o in self._algo_orders.values()],
            "client_ids": {cid: ["algo" if self._algo_orders.get(o.id) is o else "order", o.id]
                           for cid, o in self._by_client_id.items()},
            "leverage": self.leverage,
            "margin_mode": self.margin_mode,
            "closed": [asdict(c) for c in self.closed],
            "realized_pnl": self.realized_pnl,
            "fees_paid": self.fees_paid,
            "funding": self.funding,
        }

    @classmethod
    def from_state(cls, venue: SimulatedVenue, name: str, data: dict[str, Any]) -> Self:
        """The account :meth:`to_state` saved, on ``venue`` (which registers it; see SimulatedVenue.from_state)."""
        ex = cls(venue, name, float(data["wallet"]))
        ex.positions = {p["symbol"]: Position(**{k: v for k, v in p.items() if k in _POSITION_FIELDS})
                        for p in data["positions"]}
        ex._orders = {o["id"]: MarketOrder.from_ccxt(o) for o in data["orders"]}
        ex._algo_orders = {o["id"]: TriggerOrder.from_ccxt(o, ex._orders) for o in data["algo_orders"]}
        client_ids = data.get("client_ids")
        if client_ids is None:  # saved before client_ids were kept: the latest order of each client id
            ex._by_client_id = {o.client_id: o for o in [*ex._orders.values(), *ex._algo_orders.values()]
                                if o.client_id}
        else:
            ex._by_client_id = {cid: (ex._algo_orders if book == "algo" else ex._orders)[oid]
                                for cid, (book, oid) in client_ids.items()}
        ex.leverage = {k: int(v) for k, v in data["leverage"].items()}
        ex.margin_mode = dict(data["margin_mode"])
        ex.closed = [ClosedPosition(**{k: v for k, v in c.items() if k in _CLOSED_FIELDS}) for c in data["closed"]]
        ex.realized_pnl = float(data["realized_pnl"])
        ex.fees_paid = float(data["fees_paid"])
        ex.funding = float(data.get("funding", 0.0))
        ex._open_ids = {oid: None for oid, o in ex._algo_orders.items() if o.status == "open"}
        ex._unfilled = deque(sorted((o for o in ex._algo_orders.values() if o.status in ("canceled", "expired")),
                                    key=lambda o: o.time))
        return ex
