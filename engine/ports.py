"""Engine room: the ports — the Exchange (ccxt's unified async API, a subset), the Notifier and the ExecutionJournal
the engine calls, and the StateStore and Session a running mode (paper or live) is built from.

The engine talks to an exchange only through these methods, with ccxt's names, arguments and return shapes, so
a ``ccxt.async_support.binanceusdm`` instance fits unchanged and the simulator mirrors it.

| method                                   | used for                                              |
|------------------------------------------|-------------------------------------------------------|
| ``market(symbol)``                       | step, minimums, contract info (ccxt market dict)      |
| ``amount_to_precision(symbol, amount)``  | truncating quantity to the step (returns a string)    |
| ``price_to_precision(symbol, price)``    | stop / target prices on the tick (returns a string)   |
| ``milliseconds()``                       | the exchange's clock (simulated time in backtests)    |
| ``fetch_balance()``                      | free / total USDT                                     |
| ``fetch_positions(symbols=None)``        | open positions (risk: max open, one per symbol)       |
| ``fetch_market_leverage_tiers(symbol)``  | leverage brackets and maintenance-margin rates        |
| ``set_margin_mode('isolated', symbol)``  | isolated margin, once per account and symbol          |
| ``set_leverage(leverage, symbol)``       | leverage, once per account, symbol and value          |
| ``create_order(symbol, type, side, amount, price, params)`` | entry, stop-loss, take-profit, emergency close |
| ``fetch_order(id, symbol, params)``      | state lookup by client order id after a timeout       |
| ``cancel_order(id, symbol, params)``     | cancelling the sibling of a filled stop / target      |
| ``fetch_open_orders(symbol, since, limit, params)`` | watcher / reconciliation                   |
| ``fetch_ticker(symbol)``                 | the last price, when a signal is resumed after a restart |

Stop-loss and take-profit orders are trigger (algo) orders: fetch / cancel them with ``{'trigger': True}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from engine.results import AccountResult, OrderEvent, SignalSummary
from engine.signal import Signal


@runtime_checkable
class Exchange(Protocol):
    """The subset of ccxt's unified async API the engine uses (see the module table)."""

    def market(self, symbol: str) -> dict[str, Any]: ...

    def amount_to_precision(self, symbol: str, amount: float) -> str: ...

    def price_to_precision(self, symbol: str, price: float) -> str: ...

    def milliseconds(self) -> int: ...

    async def fetch_balance(self, params: dict | None = None) -> dict[str, Any]: ...

    async def fetch_positions(self, symbols: list[str] | None = None, params: dict | None = None) -> list[dict]: ...

    async def fetch_market_leverage_tiers(self, symbol: str, params: dict | None = None) -> list[dict]: ...

    async def set_margin_mode(self, marginMode: str, symbol: str | None = None, params: dict | None = None) -> Any: ...

    async def set_leverage(self, leverage: int, symbol: str | None = None, params: dict | None = None) -> Any: ...

    async def create_order(
        self,
        symbol: str,
        type: str,
        side: str,
        amount: float,
        price: float | None = None,
        params: dict | None = None,
    ) -> dict[str, Any]: ...

    async def fetch_order(self, id: str, symbol: str | None = None, params: dict | None = None) -> dict: ...

    async def cancel_order(self, id: str, symbol: str | None = None, params: dict | None = None) -> dict: ...

    async def fetch_open_orders(
        self, symbol: str | None = None, since: int | None = None, limit: int | None = None, params: dict | None = None
    ) -> list[dict]: ...

    async def fetch_ticker(self, symbol: str, params: dict | None = None) -> dict: ...


class Notifier(Protocol):
    """Where execution events go (Discord in live/, nothing in backtests). Must never raise into order flow.

    enabled: False when the notifier drops every call (:class:`NullNotifier`). The engine then does not call
        ``account_executed`` / ``signal_summary`` at all: they come once per account and signal, and a backtest
        of many accounts would otherwise build and await that many coroutines that do nothing. ``event`` (rare:
        failures, reconciliation) is called either way.
    """

    enabled: bool

    async def account_executed(self, signal: Any, result: Any) -> None: ...

    async def signal_summary(self, signal: Any, summary: Any) -> None: ...

    async def event(self, title: str, text: str) -> None: ...


class NullNotifier:
    """A notifier that drops everything: backtests stay silent."""

    enabled = False

    async def account_executed(self, signal: Any, result: Any) -> None:
        return None

    async def signal_summary(self, signal: Any, summary: Any) -> None:
        return None

    async def event(self, title: str, text: str) -> None:
        return None


@dataclass(slots=True)
class Account:
    """One trading account: a display name and the exchange object that trades it.

    name: label shown in logs and alerts ("Account 1" or a user label). Never holds a secret.
    exchange: any object satisfying :class:`Exchange`.
    """

    name: str
    exchange: Exchange = field(repr=False)


class ExecutionJournal(Protocol):
    """Where the executor writes each order's life and each account's outcome as they happen (storage/journal.py
    behind fanout's TradingService; backtests have none). Write-ahead: an order's ``intent`` is recorded before its
    request, and a failure to record it means the order is not sent. After a crash, the journal says which
    orders may exist: they are looked up by client order id, never sent twice (engine/resume.py).
    """

    async def record_order(self, event: OrderEvent) -> None: ...

    async def record_outcome(self, result: AccountResult) -> None: ...


class StateStore(Protocol):
    """JSON documents by key that survive a restart (``storage.journal.Journal`` is one; a dict-backed one in tests)."""

    def save_state(self, key: str, value: Any) -> None: ...

    def load_state(self, key: str) -> Any | None: ...


@runtime_checkable
class Session(Protocol):
    """Where paper and live differ, behind fanout's TradingService (fanout/service.py); everything else is shared.

    | method                      | paper (simulator/paper_session.py)            | live (live/session.py)            |
    |-----------------------------|-----------------------------------------------|-----------------------------------|
    | ``start()``                 | deliver order updates saved with the venue    | reconcile every account           |
    | ``prepare(signal)``         | fetch the last price into the simulated venue | nothing (the exchange has prices) |
    | ``fallback(signal, summ.)`` | None                                          | the single-account retry          |
    | ``tick()``                  | closed candles and the last price → fills →   | the watcher polls the exchange    |
    |                             | order updates to the watcher                  | for filled legs                   |
    | ``persist()``               | save the venue and the feed (a StateStore)    | nothing of its own                |

    The service itself claims signals, runs the executor, records results and saves the engine's state (brackets,
    risk ledger, stats) for both. ``prepare`` raising means nothing was sent: the signal may be tried again.
    ``fallback`` returns the outcome of a retry (its results replace those accounts' results), or None.
    """

    async def start(self) -> None: ...

    async def prepare(self, signal: Signal) -> None: ...

    async def fallback(self, signal: Signal, summary: SignalSummary) -> SignalSummary | None: ...

    async def tick(self) -> None: ...

    def persist(self) -> None: ...
