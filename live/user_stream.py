"""Live room: each account's user-data stream (ccxt.pro), pushing order updates and keeping fees and account state.

One :class:`UserStream` per account, on the account's own ``LiveExchange`` (a ccxt.pro binanceusdm):

- the listen key comes from ccxt's ``authenticate`` (``POST /fapi/v1/listenKey``, through the IP's weight
  budget) and ccxt keeps it alive (``PUT`` every 20 minutes); a ``listenKeyExpired`` event or a failed
  keep-alive ends the session, and the next one gets a new key;
- ``watch_orders`` delivers ``ORDER_TRADE_UPDATE`` / ``ALGO_UPDATE`` as ccxt orders (a stop-loss or
  take-profit's id is its algo id, status ``closed`` once triggered) to ``on_order`` — the bracket watcher's
  ``on_order_update``, so a filled leg's sibling is cancelled as soon as Binance says so;
- ``watch_my_trades`` keeps each fill's real commission by order id (:meth:`UserStream.fee`);
- ``ACCOUNT_UPDATE`` keeps the USDT wallet / cross-wallet balance and the positions it names, and
  ``ACCOUNT_CONFIG_UPDATE`` reports leverage changed outside the bot (``on_config``);
- every event, and the stream going down or coming up, drops the account's kept ``/fapi/v3/account`` reply
  (live/idle_account.py): a signal sizes from it only while the stream has said nothing since it was read;
- when the connection drops the stream is marked down (the owner polls that account meanwhile), reconnects
  with a growing delay (``backoff``), and after every connection calls ``on_connect(account, first)`` so the
  owner can resync over REST what it missed.

Stream sessions run at housekeeping priority in the weight budget (the listen key at entry priority: a stream
that cannot start leaves its account to polling); what ``on_order`` sends (a sibling cancel) is raised to
protective by the exchange itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import ccxt

from live.budget_config import Clock, Priority, SystemClock, request_priority

log = logging.getLogger("fanout.live.stream")
BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
CONNECT_TIMEOUT_S = 15.0

OrderHandler = Callable[[str, dict], Awaitable[Any]]
ConnectHandler = Callable[[str, bool], Awaitable[Any]]
ConfigHandler = Callable[[str, str, int], Any]
_ORDER_EVENTS = ("ORDER_TRADE_UPDATE", "ALGO_UPDATE")
_ACCOUNT_HASHES = (":balance", ":positions")  # ccxt's watch_balance / watch_positions futures on the client


@dataclass(slots=True)
class AccountState:
    """What the stream last said about the account (Binance ids: ``BTCUSDT``; amounts as floats).

    wallet / cross_wallet: USDT ``wb`` / ``cw`` of the last ``ACCOUNT_UPDATE`` (None before the first one).
    positions: symbol id → the last ``P`` row for it (``pa`` 0 once closed).
    updated: clock time of the last account event.
    """

    wallet: float | None = None
    cross_wallet: float | None = None
    positions: dict[str, dict] = field(default_factory=dict)
    updated: float | None = None


class UserStream:
    """One account's user-data stream; see the module docstring. ``start()`` it, ``await stop()`` at the end."""

    def __init__(self, name: str, exchange: Any, *, on_order: OrderHandler | None = None,
                 on_connect: ConnectHandler | None = None, on_config: ConfigHandler | None = None,
                 clock: Clock | None = None, backoff: Iterable[float] = BACKOFF_S,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        self.name = name
        self.exchange = exchange
        self.on_order = on_order
        self.on_connect = on_connect
        self.on_config = on_config
        self.clock: Clock = clock or SystemClock()
        self.backoff = tuple(backoff) or BACKOFF_S
        self.connect_timeout_s = connect_timeout_s
        self.state = AccountState()
        self.trades: dict[str, dict[str, dict]] = {}  # order id → trade id → ccxt trade
        self.connects = 0
        self.resyncs = 0  # connections whose on_connect has finished
        self.down_since: float | None = self.clock.time()
        self.last_error = ""
        self.up = asyncio.Event()
        self.gone = asyncio.Event()  # set while down after having been up (tests, supervisors)
        self._changed = asyncio.Condition()
        self._was_up = False
        self._task: asyncio.Task | None = None
        exchange.options.setdefault("watchPositions", {})["fetchPositionsSnapshot"] = False
        exchange.stream_hook = self._hook
        self._idle = getattr(exchange, "idle", None)  # LiveExchange's IdleAccount (live/idle_account.py)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"user stream {self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.last_error = "stopped"
        self.up.clear()
        if self._idle is not None:
            self._idle.stream_changed(False)
        with contextlib.suppress(Exception):
            await self.exchange.close_ws_clients()

    @property
    def is_up(self) -> bool:
        return self.up.is_set()

    async def wait_connects(self, count: int) -> None:
        """Until the stream has connected ``count`` times in total (tests and start-up await this)."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.connects >= count)

    async def wait_resynced(self, count: int) -> None:
        """Until ``on_connect`` has finished after ``count`` connections (the REST resync and read-ahead done)."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.resyncs >= count)

    async def _run(self) -> None:
        attempt = 0
        with request_priority(Priority.HOUSEKEEPING):
            while True:
                try:
                    await self._session()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 — any failure: down, wait, reconnect
                    self._down(f"{type(exc).__name__}: {str(exc)[:200]}")
                if self._was_up:  # a session that came up starts the delays afresh
                    attempt, self._was_up = 0, False
                delay = self.backoff[min(attempt, len(self.backoff) - 1)]
                attempt += 1
                await self.clock.sleep(delay)

    async def _session(self) -> None:
        ex = self.exchange
        with request_priority(Priority.ENTRY):  # the stream protects (sibling cancels): its key before housekeeping
            await ex.authenticate({"type": "linear"})
        key = (ex.options.get("linear") or {}).get("listenKey")
        if not key:
            raise ccxt.AuthenticationError(f"{self.name}: no listen key")
        loops = [asyncio.ensure_future(self._pump(ex.watch_orders, self._orders)),
                 asyncio.ensure_future(self._pump(ex.watch_my_trades, self._trades))]
        try:
            client = ex.client(ex.get_private_ws_url("linear", key))
            done, _ = await asyncio.wait([asyncio.ensure_future(_connected(client)), *loops],
                                         timeout=self.connect_timeout_s, return_when=asyncio.FIRST_COMPLETED)
            for task in loops:
                if task in done:
                    task.result()  # a loop ended before the connection: raise its error
            if not done:
                raise ccxt.RequestTimeout(f"{self.name}: user-data stream did not connect in "
                                          f"{self.connect_timeout_s:.0f} s")
            await self._came_up()
            done, _ = await asyncio.wait(loops, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            for c in list((ex.clients or {}).values()):
                with contextlib.suppress(Exception):
                    await c.close()

    async def _came_up(self) -> None:
        first = self.connects == 0
        self.connects += 1
        self._was_up = True
        was_down = self.down_since
        self.down_since = None
        self.gone.clear()
        if self._idle is not None:
            self._idle.stream_changed(True)
        self.up.set()
        async with self._changed:
            self._changed.notify_all()
        if first:
            log.info("📡 %s: user-data stream up", self.name)
        else:
            log.info("📡 %s: user-data stream back after %.1f s; resyncing", self.name,
                     self.clock.time() - (was_down or self.clock.time()))
        if self.on_connect is not None:
            try:
                await self.on_connect(self.name, first)
            except Exception as exc:  # noqa: BLE001 — a failed resync is logged, the stream stays up
                log.warning("📡 %s: resync after connecting failed: %s", self.name, type(exc).__name__)
        self.resyncs += 1
        async with self._changed:
            self._changed.notify_all()

    def _down(self, reason: str) -> None:
        self.last_error = reason
        if self.down_since is None:
            self.down_since = self.clock.time()
            log.warning("📡 %s: user-data stream down (%s); its fills are polled until it is back", self.name,
                        reason)
        if self.up.is_set():
            self.gone.set()
        self.up.clear()
        if self._idle is not None:
            self._idle.stream_changed(False)

    async def _pump(self, watch: Callable[[], Awaitable[list]], handle: Callable[[list], Awaitable[None]]) -> None:
        while True:
            items = await watch()
            await handle(items)

    # ------------------------------------------------------------------ events
    async def _orders(self, orders: list[dict]) -> None:
        if self.on_order is None:
            return
        for order in orders:
            try:
                await self.on_order(self.name, order)
            except Exception as exc:  # noqa: BLE001 — one bad update never stops the stream
                log.error("📡 %s: handling order %s failed: %s", self.name, order.get("id"), exc)

    async def _trades(self, trades: list[dict]) -> None:
        for trade in trades:
            order_id = str(trade.get("order"))
            self.trades.setdefault(order_id, {})[str(trade.get("id"))] = trade
        async with self._changed:
            self._changed.notify_all()

    def fee(self, order_id: str) -> tuple[float, str] | None:
        """(commission, currency) of every fill of this order the stream has seen, or None if it saw none."""
        fills = self.trades.get(str(order_id))
        if not fills:
            return None
        cost, currency = 0.0, ""
        for trade in fills.values():
            fee = trade.get("fee") or {}
            cost += float(fee.get("cost") or 0.0)
            currency = fee.get("currency") or currency
        return cost, currency

    async def wait_fee(self, order_id: str, timeout_s: float) -> tuple[float, str] | None:
        """The fee once the stream has seen a fill of this order, waiting up to ``timeout_s`` (None if not)."""
        async def seen() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: str(order_id) in self.trades)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(seen(), timeout_s)
        return self.fee(order_id)

    def _hook(self, client: Any, message: dict) -> bool:
        """Raw events before ccxt parses them: account state, leverage changes, an expired listen key.

        Events whose ccxt parsing nobody reads are consumed here (True): an order or algo order just accepted
        (``NEW``, no fill: the watcher acts on closed / cancelled legs only, the fees on trades), and
        ``ACCOUNT_UPDATE`` unless a ccxt ``watch_balance`` / ``watch_positions`` waits for it. About 4 of a
        signal's 5 events per account, each ~0.3 ms of ccxt parsing and watch re-arming."""
        event = message.get("e")
        if event is not None and self._idle is not None:
            self._idle.event(account_update=event == "ACCOUNT_UPDATE")
        if event in _ORDER_EVENTS:
            order = message.get("o")
            return isinstance(order, dict) and order.get("X") == "NEW" and order.get("x", "NEW") == "NEW"
        if event == "ACCOUNT_UPDATE":
            self._account_update(message.get("a") or {})
            return not any(part in str(h) for h in getattr(client, "futures", None) or {} for part in _ACCOUNT_HASHES)
        elif event == "ACCOUNT_CONFIG_UPDATE":
            config = message.get("ac") or {}
            if self.on_config is not None and config.get("s") and config.get("l") is not None:
                self.on_config(self.name, str(config["s"]), int(config["l"]))
        elif event == "listenKeyExpired":
            log.warning("📡 %s: listen key expired; reconnecting with a new one", self.name)
            self.exchange.options["linear"] = dict(self.exchange.options.get("linear") or {}) | {
                "listenKey": None, "lastAuthenticatedTime": 0}
            client.reject(ccxt.AuthenticationError(f"{self.name}: user-data listen key expired"))
            return True
        return False

    def _account_update(self, update: dict) -> None:
        for balance in update.get("B") or []:
            if balance.get("a") == "USDT":
                self.state.wallet = float(balance.get("wb") or 0.0)
                self.state.cross_wallet = float(balance.get("cw") or 0.0)
        for row in update.get("P") or []:
            if row.get("s"):
                self.state.positions[str(row["s"])] = row
        self.state.updated = self.clock.time()


async def _connected(client: Any) -> None:
    await client.connected


class UserStreams:
    """Every account's stream: started together, asked together (which are down, who to poll)."""

    def __init__(self, streams: Iterable[UserStream]) -> None:
        self.streams = {s.name: s for s in streams}

    def start(self) -> None:
        for stream in self.streams.values():
            stream.start()

    async def stop(self) -> None:
        await asyncio.gather(*(s.stop() for s in self.streams.values()), return_exceptions=True)

    def down(self) -> list[str]:
        """Accounts whose stream is down now (their fills must be polled)."""
        return [name for name, s in self.streams.items() if not s.is_up]

    def get(self, name: str) -> UserStream | None:
        return self.streams.get(name)

    async def wait_up(self, timeout_s: float) -> list[str]:
        """Wait until every stream is up or ``timeout_s`` passes; returns those still down."""
        pending = [asyncio.ensure_future(s.up.wait()) for s in self.streams.values() if not s.is_up]
        if pending:
            _, still = await asyncio.wait(pending, timeout=timeout_s)
            for task in still:
                task.cancel()
        return self.down()

    async def wait_resynced(self, timeout_s: float) -> list[str]:
        """Wait until every stream's first connection has been resynced (``on_connect`` done: brackets polled, the
        balance read ahead) or ``timeout_s`` passes; returns the accounts not done."""
        pending = {s.name: asyncio.ensure_future(s.wait_resynced(1)) for s in self.streams.values()}
        _, still = await asyncio.wait(pending.values(), timeout=timeout_s)
        for task in still:
            task.cancel()
        return [name for name, task in pending.items() if task in still]
