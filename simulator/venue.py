"""Simulator room: the simulated venue — what all simulated accounts share — and the one fill loop.

``SimulatedVenue`` holds the market rules, the clock, the last prices, fees and slippage, order ids and the queue
of order updates, and owns one ``SimulatedExchange`` per account. Its behaviour is what backtests, paper trading,
reports and tests use instead of reaching into an account:

- :meth:`~SimulatedVenue.apply_candle` — THE fill loop: one candle against every account's position on a symbol
  (each through :meth:`SimulatedAccount.apply_candle <simulator.account.SimulatedAccount.apply_candle>`, rules
  in simulator/fills.py). The backtest schedules which (account, candle) pairs can cross a level and calls that
  per-account step for them; paper mode and the reports call the loop.
- :meth:`~SimulatedVenue.drain_updates` — hand the queued order updates (trigger fills, expiries, cancels by the
  exchange) to the engine's BracketWatcher, as a websocket would live.
- :meth:`~SimulatedVenue.apply_funding` — a funding event: open positions pay or receive (fills.py rule 9).
- :meth:`~SimulatedVenue.close_all` — the end of a backtest's data (fills.py rule 8).
- :meth:`~SimulatedVenue.to_state` / :meth:`~SimulatedVenue.from_state` — a JSON document to resume from
  (paper mode keeps it in the journal).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any, Protocol

import ccxt

from marketdata.rules import MarketRules
from simulator.exchange import SimulatedExchange
from simulator.fills import END_OF_DATA, MAKER_FEE, TAKER_FEE
from simulator.precision import RulesMemo
from simulator.records import ClosedPosition

STATE_VERSION = 1
_FIRST_ID = 1_000_001
_FIRST_ALGO_ID = 3_000_000_001


class OrderUpdateSink(Protocol):
    """Who receives order updates: the engine's BracketWatcher (or a test's recorder)."""

    async def on_order_update(self, account: str, order: dict) -> Any: ...


class SimulatedVenue:
    """State shared by all simulated accounts: market rules, clock, last prices, fees, slippage, order updates.

    rules: the market-rules snapshot (marketdata/rules.py).
    taker_fee / maker_fee: fractions of notional, 0 ≤ fee < 1 (fills.py rule 6).
    slippage_bps: basis points every market fill moves against the trader, 0 ≤ bps < 10,000 (fills.py rule 1).
    """

    def __init__(self, rules: MarketRules, *, taker_fee: float = TAKER_FEE, maker_fee: float = MAKER_FEE,
                 slippage_bps: float = 0.0) -> None:
        for name, value, top in (("taker_fee", taker_fee, 1), ("maker_fee", maker_fee, 1),
                                 ("slippage_bps", slippage_bps, 10_000)):
            if not 0 <= value < top:
                raise ValueError(f"venue field '{name}' out of range: {value!r}")
        self.rules = rules
        self.taker_fee = taker_fee
        self.maker_fee = maker_fee
        self.slippage_bps = slippage_bps
        self.now_ms = 0
        self.prices: dict[str, float] = {}
        self.accounts: dict[str, SimulatedExchange] = {}
        self.lookups = RulesMemo(rules)  # ccxt's market / precision answers, memoised for every account
        self._next_id = _FIRST_ID
        self._next_algo_id = _FIRST_ALGO_ID
        self._updates: deque[tuple[str, dict]] = deque()

    def __repr__(self) -> str:
        return f"SimulatedVenue({len(self.accounts)} accounts, now_ms={self.now_ms}, prices={self.prices})"

    @classmethod
    def from_snapshot(cls, path: str | None = None, **settings: Any) -> SimulatedVenue:
        """A venue on the rules snapshot at ``path`` (default data/market_rules.json)."""
        return cls(MarketRules.load(path), **settings)

    def add_account(self, name: str, balance: float) -> SimulatedExchange:
        if name in self.accounts:
            raise ValueError(f"duplicate simulated account name {name!r}")
        if not balance >= 0:
            raise ValueError(f"balance of {name!r} must be >= 0, got {balance!r}")
        ex = SimulatedExchange(self, name, float(balance))
        self.accounts[name] = ex
        return ex

    # ---------------------------------------------------------------- prices, clock, ids
    def set_price(self, symbol: str, price: float, time_ms: int | None = None) -> None:
        """Set the last/mark price of a symbol (and optionally advance the clock)."""
        if not price > 0:
            raise ValueError(f"price for {symbol} must be > 0, got {price!r}")
        self.prices[symbol] = float(price)
        if time_ms is not None:
            self.now_ms = int(time_ms)

    def price(self, symbol: str) -> float:
        try:
            return self.prices[symbol]
        except KeyError:
            raise ccxt.ExchangeNotAvailable(f"simulator has no price for {symbol} yet") from None

    def next_id(self) -> str:
        n = self._next_id
        self._next_id = n + 1
        return str(n)

    def next_algo_id(self) -> str:
        n = self._next_algo_id
        self._next_algo_id = n + 1
        return str(n)

    # ---------------------------------------------------------------- order updates
    def emit(self, account: str, order: dict) -> None:
        """Queue an order update of ``account`` (what Binance's user-data stream would push)."""
        self._updates.append((account, order))

    async def drain_updates(self, watcher: OrderUpdateSink) -> int:
        """Deliver every queued order update to ``watcher``, oldest first (and any queued meanwhile); the count."""
        updates = self._updates
        n = 0
        while updates:
            account, order = updates.popleft()
            await watcher.on_order_update(account, order)
            n += 1
        return n

    # ---------------------------------------------------------------- the fill loop
    def apply_candle(self, symbol: str, t: int, o: float, h: float, low: float, c: float,
                     opened_before: int | None = None) -> list[ClosedPosition]:
        """Apply one candle (open time ``t``) to every account's position on ``symbol``; the trades it closed.

        Only positions opened at or before ``opened_before`` (default ``t``, the candle's open) are judged: a
        position opened during the candle never meets prices from before its entry. Fills happen at time ``t``
        (their order updates are queued: :meth:`drain_updates`); afterwards ``c`` is the symbol's last price and
        the clock is the later of ``t`` and where it was.
        """
        t = int(t)
        cutoff = t if opened_before is None else int(opened_before)
        clock = max(self.now_ms, t)  # fills run at t; the clock never goes back
        closed = []
        for ex in self.accounts.values():
            pos = ex.positions.get(symbol)
            if pos is None or pos.opened_at > cutoff:
                continue
            hit = ex.apply_candle(symbol, t, o, h, low)
            if hit is not None and hit.closed is not None:
                closed.append(hit.closed)
        self.now_ms = clock
        self.prices[symbol] = float(c)
        return closed

    def apply_funding(self, symbol: str, time_ms: int, rate: float, price: float) -> list[tuple[str, float]]:
        """One funding event of ``symbol`` (fills.py rule 9): every position on it opened at or before ``time_ms``
        pays (long, positive rate) or receives notional at ``price`` × ``rate``, once per event (a position
        remembers the last one: paper mode may see an event again); (account, amount received) each."""
        paid = []
        for ex in self.accounts.values():
            pos = ex.positions.get(symbol)
            if pos is not None and pos.opened_at <= time_ms and pos.funded_at < time_ms:
                paid.append((ex.name, ex.pay_funding(symbol, rate, price)))
                pos.funded_at = time_ms
        return paid

    def close_all(self, at: int | Mapping[str, int], reason: str = END_OF_DATA) -> list[ClosedPosition]:
        """Close every open position at its symbol's last price (fills.py rule 8); the trades it closed.

        at: the closing time, or one per symbol (the data of a multi-symbol backtest ends per symbol). Each close
        is a reduce-only market fill without slippage; the exchange then cancels the symbol's open trigger orders
        (updates queued). Accounts in order, each account's positions in the order they were opened.
        """
        closed = []
        for ex in self.accounts.values():
            for symbol in list(ex.positions):
                self.now_ms = int(at[symbol] if isinstance(at, Mapping) else at)
                closed.append(ex.close_position(symbol, self.price(symbol), reason))
        return closed

    # ---------------------------------------------------------------- saving and restoring
    def to_state(self) -> dict:
        """Everything needed to resume: accounts (wallets, positions, orders, closed trades, leverage), prices,
        clock, the next order ids and any undelivered order updates. JSON-ready (fresh order dicts; the undelivered
        updates are shared: serialise it at once). Fees, slippage and rules are settings, not state."""
        return {
            "version": STATE_VERSION, "now_ms": self.now_ms, "prices": self.prices,
            "accounts": {name: ex.to_state() for name, ex in self.accounts.items()},
            "next_id": self._next_id, "next_algo_id": self._next_algo_id,
            "updates": [[account, order] for account, order in self._updates],
        }

    @classmethod
    def from_state(cls, data: Mapping[str, Any], rules: MarketRules, **settings: Any) -> SimulatedVenue:
        """The venue :meth:`to_state` saved, with these rules and settings (``taker_fee``, ``slippage_bps`` …)."""
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"simulated venue state version {data.get('version')!r} not supported "
                             f"(expected {STATE_VERSION})")
        venue = cls(rules, **settings)
        venue.now_ms = int(data["now_ms"])
        venue.prices.update({k: float(v) for k, v in data["prices"].items()})
        for name, account in data["accounts"].items():
            venue.accounts[name] = SimulatedExchange.from_state(venue, name, account)
        venue._next_id = int(data["next_id"])
        venue._next_algo_id = int(data["next_algo_id"])
        venue._updates.extend((account, order) for account, order in data.get("updates", []))
        return venue
