"""Live room: ``LiveExchange`` (ccxt's async binanceusdm, one per account) and the factory that builds them.

One ccxt instance per account; markets are loaded once, by the first instance, and shared with the rest (100
accounts make one exchangeInfo request). ``fetchCurrencies`` is off, rate limiting on, timeouts explicit, and
``close_all`` closes every HTTP session. The venue is production, Binance demo trading (``demo=True``), or any
base URL given as ``api_url`` (a relay, or a local stand-in at ``http://127.0.0.1:PORT``), see marketdata/venue.py.

Binance specifics handled here, not in the engine:

- stop-loss / take-profit orders (``stopLossPrice`` / ``takeProfitPrice``) go to the algo-order endpoint; ccxt
  does this itself (>= 4.5.27). Fetch or cancel them with ``{'trigger': True}``.
- ccxt picks its per-market error table (-2019 → InsufficientFunds, -2021 → OrderImmediatelyFillable …) from the
  request's host; with ``api_url`` the host is unknown to ccxt, so :meth:`LiveExchange.get_exceptions_by_url`
  maps the override to the USDⓈ-M table and errors keep their classes.
- -4046 "No need to change margin type" is already success in ccxt's ``set_margin_mode``.
- exception messages lose ``signature`` / ``timestamp`` query values, and ccxt's request logging (which prints
  the API-key header at DEBUG) goes to a logger that never emits DEBUG.
- every REST request first asks the IP's :class:`~live.budget.WeightBudget` (shared by all accounts built
  together) with Binance's weight of that endpoint and a priority: the context's (live.budget.request_priority,
  default entry), raised to protective for reduce-only orders and cancels. The response's weight / order-count
  headers, 429 and 418 go back to the budget; a request Binance refused with 429 (not executed) is sent again
  once the budget's pause is over, so one 429 wave does not fail the accounts caught in it. ccxt's own
  per-instance throttle is off: it knows nothing of the other accounts on the IP.
- ``fetch_balance`` reads ``/fapi/v3/account``, which lists the open positions too; a ``fetch_positions()``
  right after it (within ``ACCOUNT_REUSE_MS``, as the executor does for each signal) is answered from that same
  response instead of ``/fapi/v3/positionRisk``: weight 5 instead of 10 per account and signal, one round trip
  fewer. ``fetch_positions()`` of every symbol reads the same endpoint (weight 5), whose rows also name the
  symbols with open orders but no position (zero contracts), entry prices derived from notional and profit:
  reconciliation asks for open orders per symbol (weight 1 each) instead of without a symbol (weight 40).
  ``fetch_positions(symbols)`` goes to positionRisk.
- the class is ``ccxt.pro``'s binanceusdm (REST as before, plus the user-data stream, live/user_stream.py).
  ccxt rebuilds its large ``describe()`` dict for every instance; it is built once per class here and copied
  (a hundred accounts start in about a second instead of three), and its constructor's walk over ``dir()`` is
  cut to the data attributes after the first instance (``LiveExchange.__dir__``).
- the accounts built together share one HTTP connection pool and one TLS context (:func:`http_pool`): ccxt
  would build both per instance, and loading the CA bundle alone takes ~80 ms each (24 s for 300 accounts).
  The markets' round trip runs while the other accounts' instances are built.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import pickle
import re
import socket
import ssl
import types
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import ccxt
import ccxt.async_support as ccxt_async
import ccxt.pro as ccxt_pro
import certifi

from engine.ports import Account
from live.budget import Ticket, WeightBudget
from live.budget_config import Priority, current_priority
from live.idle_account import IdleAccount
from live.weights import request_cost
from marketdata.venue import select_venue, usdm_base

log = logging.getLogger("fanout.live.exchange")
_ccxt_log = logging.getLogger("fanout.live.ccxt")
_ccxt_log.setLevel(logging.WARNING)  # ccxt logs request headers (the API key) at DEBUG

DEFAULT_TIMEOUT_MS = 10_000
MAX_CONNECTIONS = 512  # the shared pool's limit (one IP's accounts together)
RATE_LIMIT_RESENDS = 3  # a request refused with 429 / 418 is sent again after the pause, this many times
ACCOUNT_REUSE_MS = 2_000  # a balance's account snapshot answers the positions request that follows it
_ACCOUNT_PATH = "account"
OPTIONS = {
    "defaultType": "swap",
    "fetchCurrencies": False,  # a signed /sapi call per instance, useless for USDⓈ-M
    "adjustForTimeDifference": False,  # no GET /fapi/v1/time before every signed request
    "warnOnFetchOpenOrdersWithoutSymbol": False,  # fanout asks per symbol; a caller without one is not warned
    # user-data events are a few hundred bytes: ccxt's permessage-deflate offer would cost inflating each one
    # (~0.1 ms) for next to no bytes saved
    "ws": {"compress": 0},
}
_VOLATILE = re.compile(r"\b(signature|timestamp)=[^&\s]*")
_ticket: ContextVar[Ticket | None] = ContextVar("fanout_budget_ticket", default=None)
_PROTECTIVE_PATHS = ("/fapi/v1/order", "/fapi/v1/algoOrder", "/fapi/v1/batchOrders")
_describe_cache: dict[type, bytes] = {}
_describe_api: dict[type, dict] = {}
_data_names: dict[type, list[str]] = {}  # LiveExchange.__dir__


class LiveExchange(ccxt_pro.binanceusdm):
    """ccxt's ``binanceusdm`` for one account, with the adaptations listed in the module docstring.

    account: label for logs and reprs (never a key).
    budget: the IP's weight budget (None: ccxt's own per-instance throttle, as before).
    """

    def __init__(self, config: dict | None = None, *, account: str = "", budget: WeightBudget | None = None) -> None:
        config = dict(config or {})
        if budget is not None:
            config["enableRateLimit"] = False
        super().__init__(config)
        self.account_name = account
        self.budget = budget
        self.verbose = False
        self.logger = _ccxt_log
        self._override_base: str | None = None
        self.stream_hook: Callable[[Any, dict], bool] | None = None  # live/user_stream.py
        self._account_snapshot: tuple[int, dict] | None = None  # (ms, raw /fapi/v3/account) of the last balance
        self.idle = IdleAccount(self.milliseconds)  # a flat account's /fapi/v3/account while its stream is quiet
        self.http_pool: HttpPool | None = None  # set by build_exchange
        if budget is not None:
            budget.register(account)

    def __dir__(self) -> list[str]:
        """After the class's first instance, its data attributes only: ccxt's constructor walks ``dir(self)`` to
        alias every snake_case name in camelCase, and the methods' aliases are set on the class by the first
        instance, so later ones need only their data attributes (1 ms per account instead of 4)."""
        names = _data_names.get(type(self))
        if names is None:  # the first walk: everything; remember what is data at this point of construction
            every = super().__dir__()
            missing = object()
            values = ((n, getattr(self, n, missing)) for n in every)
            _data_names[type(self)] = [n for n, v in values if v is not missing and not isinstance(v, types.MethodType)]
            return every
        return list(names)

    def describe(self) -> Any:
        cls = type(self)
        if cls not in _describe_cache:
            described = super().describe()
            _describe_api[cls] = described.pop("api")  # ~45 % of it, read by ccxt only (its endpoint methods)
            _describe_cache[cls] = pickle.dumps(described)
        described = pickle.loads(_describe_cache[cls])  # a deep copy: instances never share a mutable dict ...
        described["api"] = _describe_api[cls]  # ... but the endpoint table, which nothing writes
        return described

    def __repr__(self) -> str:
        return f"LiveExchange(account={self.account_name!r}, venue={self.venue!r})"

    __str__ = __repr__

    @property
    def venue(self) -> str:
        return usdm_base(self)

    def use_venue(self, *, demo: bool, api_url: str | None, ws_url: str | None = None) -> str:
        """Select production, demo trading or an override base URL (and stream URL); returns the host for logs."""
        host = select_venue(self, demo=demo, api_url=api_url, ws_url=ws_url)
        self._override_base = usdm_base(self) if api_url else None
        return host

    def share_markets(self, source: ccxt_async.binanceusdm) -> None:
        """Use ``source``'s loaded markets (same objects, no request)."""
        self.set_markets_from_exchange(source)

    def get_exceptions_by_url(self, url: str | None, exactOrBroad: str) -> dict:
        found = super().get_exceptions_by_url(url, exactOrBroad)
        if found or url is None or self._override_base is None:
            return found
        if url.startswith(self._override_base + "/fapi/") or url.startswith(self._override_base + "/futures/"):
            return self.safe_dict(self.safe_dict(self.exceptions, "linear", {}), exactOrBroad, {})
        return found

    async def fetch2(self, path: Any, api: Any = "public", method: str = "GET", params: Any = None,
                     config: Any = None) -> Any:
        """Every REST request: a flat, quiet account's ``/fapi/v3/account`` from its snapshot (no request), else
        wait for the IP's weight budget, then send (ccxt signs after the wait)."""
        if path == _ACCOUNT_PATH and method == "GET" and not params and _is_v3(api):
            kept = self.idle.fresh()
            if kept is not None:
                return copy.deepcopy(kept)
            events = self.idle.events
            reply = await self._send(path, api, method, params, config)
            self.idle.keep(events, reply)
            return reply
        return await self._send(path, api, method, params, config)

    async def _send(self, path: Any, api: Any, method: str, params: Any, config: Any) -> Any:
        params = {} if params is None else params
        config = {} if config is None else config
        if self.budget is None:
            return await super().fetch2(path, api, method, params, config)
        endpoint = self._endpoint_path(api, path)
        weight, orders = request_cost(method, endpoint, params if isinstance(params, dict) else {})
        priority = _priority_of(method, endpoint, params)
        for attempt in range(RATE_LIMIT_RESENDS + 1):
            async with self.budget.request(account=self.account_name, weight=weight, orders=orders,
                                           priority=priority) as ticket:
                token = _ticket.set(ticket)
                try:
                    return await super().fetch2(path, api, method, params, config)
                except ccxt.DDoSProtection:
                    # 429 / 418: refused unexecuted; the budget now holds every account until the pause or the
                    # ban ends, so asking again waits for that (or is refused if too long) — never sent into it
                    if not ticket.rate_limited or attempt == RATE_LIMIT_RESENDS:
                        raise
                finally:
                    _ticket.reset(token)
        raise AssertionError("unreachable")

    async def refresh_idle_account(self) -> None:
        """Read ``/fapi/v3/account`` (weight 5) so that the next signal need not (kept if the account is flat and
        quiet: live/idle_account.py)."""
        self.idle.asked()
        await self.fapiPrivateV3GetAccount()

    async def fetch_balance(self, params: dict | None = None) -> Any:
        balance = await super().fetch_balance(params or {})
        info = balance.get("info") if isinstance(balance, dict) else None
        self._account_snapshot = (self.milliseconds(), info) if isinstance(info, dict) and "positions" in info else None
        return balance

    async def fetch_positions(self, symbols: list[str] | None = None, params: dict | None = None) -> Any:
        snapshot, self._account_snapshot = self._account_snapshot, None  # used once at most
        if not params and snapshot is not None and self.milliseconds() - snapshot[0] <= ACCOUNT_REUSE_MS:
            positions = self.parse_account_positions(snapshot[1], True)
            return self.filter_by_array_positions(positions, "symbol", symbols)
        if symbols is None and not params:
            return await self._every_position()
        return await super().fetch_positions(symbols, params or {})

    async def _every_position(self) -> list:
        """Every position from the account endpoint (weight 5), with the symbols it names for their open orders as
        rows without contracts. Its rows carry no entry price: it is (notional − unrealized profit) / amount."""
        await self.load_markets()
        rows = self.parse_account_positions(await self.fapiPrivateV3GetAccount(), False)
        for row in rows:
            info = row.get("info") or {}
            amount = float(info.get("positionAmt") or 0)
            if row.get("entryPrice") is None and amount:
                entry = (float(info.get("notional") or 0) - float(info.get("unrealizedProfit") or 0)) / amount
                row["entryPrice"] = float(self.price_to_precision(row["symbol"], entry)) if entry > 0 else None
        return rows

    def handle_message(self, client: Any, message: Any) -> Any:
        """User-data stream messages: the stream's hook sees each event first (True: consumed), then ccxt."""
        if self.stream_hook is not None and isinstance(message, dict) and self.stream_hook(client, message):
            return None
        return super().handle_message(client, message)

    def _endpoint_path(self, api: Any, path: str) -> str:
        name = api[0] if isinstance(api, (list, tuple)) else api
        base = self.safe_string(self.urls.get("api", {}), name) or ""
        return urlsplit(f"{base}/{path}").path

    def handle_errors(self, code: int, reason: str, url: str, method: str, headers: dict, body: str,
                      response: Any, requestHeaders: Any, requestBody: Any) -> Any:
        if self.budget is not None:
            self.budget.observe(_ticket.get(), code, headers, body)
        return super().handle_errors(code, reason, url, method, headers, body, response, requestHeaders,
                                     requestBody)

    async def fetch(self, url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
        try:
            return await super().fetch(url, method, headers, body)
        except ccxt.BaseError as exc:
            exc.args = tuple(self.redact(a) if isinstance(a, str) else a for a in exc.args)
            exc.account = self.account_name  # so an error shown far from here names the account, never the key
            raise

    def redact(self, text: str) -> str:
        """Drop signature / timestamp values and, defensively, this instance's key and secret from ``text``."""
        text = _VOLATILE.sub(lambda m: f"{m.group(1)}=***", text)
        for secret in (self.apiKey, self.secret):
            if secret and len(secret) >= 8:
                text = text.replace(secret, "***")
        return text


def _is_v3(api: Any) -> bool:
    name = api[0] if isinstance(api, (list, tuple)) and api else api
    return name == "fapiPrivateV3"


def _priority_of(method: str, endpoint: str, params: Any) -> Priority:
    """The context's priority, raised to protective for cancels and reduce-only orders (an open position's)."""
    priority = current_priority()
    if endpoint.endswith(_PROTECTIVE_PATHS):
        if method == "DELETE":
            return Priority.PROTECTIVE
        if method == "POST" and isinstance(params, dict) and str(params.get("reduceOnly")).lower() == "true":
            return Priority.PROTECTIVE
    return priority


def _check_credentials(credentials: list[Any]) -> None:
    if not credentials:
        raise ValueError("credentials: no accounts given")
    names = []
    for i, c in enumerate(credentials, 1):
        name = getattr(c, "name", None)
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"credentials[{i}].name is missing or empty")
        for attr in ("api_key", "api_secret"):
            value = getattr(c, attr, None)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"account {name!r}: {attr} is missing or empty")
        names.append(name)
    if len(set(names)) != len(names):
        raise ValueError(f"credentials: account names must be unique, got {names}")


@dataclass(frozen=True, slots=True)
class HttpPool:
    """One HTTP session (connection pool) and TLS context shared by many accounts' ccxt instances."""

    session: aiohttp.ClientSession
    tls: ssl.SSLContext


def http_pool(connections: int = MAX_CONNECTIONS) -> HttpPool:
    """ccxt's own connector settings, built once (call inside the event loop)."""
    context = ssl.create_default_context(cafile=certifi.where())
    connector = aiohttp.TCPConnector(ssl=context, limit=connections, enable_cleanup_closed=True,
                                     family=socket.AF_UNSPEC, happy_eyeballs_delay=0)
    return HttpPool(aiohttp.ClientSession(connector=connector), context)


def build_exchange(
    credential: Any, *, demo: bool = False, api_url: str | None = None, timeout_ms: int = DEFAULT_TIMEOUT_MS,
    budget: WeightBudget | None = None, ws_url: str | None = None, pool: HttpPool | None = None,
) -> LiveExchange:
    """One configured (not yet connected) :class:`LiveExchange` for a credentials object (name, api_key, api_secret).

    pool: a shared :func:`http_pool` (closed by :func:`close_all`), else ccxt opens its own session.
    """
    config = {
        "apiKey": credential.api_key.strip(),
        "secret": credential.api_secret.strip(),
        "enableRateLimit": True,
        "timeout": timeout_ms,
        "options": dict(OPTIONS),
    }
    if pool is not None:
        config["session"] = pool.session
    ex = LiveExchange(config, account=credential.name, budget=budget)
    if pool is not None:
        ex.http_pool = pool
        ex.ssl_context = pool.tls  # else ccxt loads the CA bundle again for this instance
    ex.use_venue(demo=demo, api_url=api_url, ws_url=ws_url)
    return ex


async def create_live_exchanges(
    credentials: Iterable[Any],
    *,
    demo: bool = False,
    api_url: str | None = None,
    timeout_ms: int = DEFAULT_TIMEOUT_MS,
    budget: WeightBudget | None = None,
    ws_url: str | None = None,
) -> list[Account]:
    """Build one :class:`LiveExchange` per credentials object and load markets once for all of them.

    credentials: objects with ``name``, ``api_key`` and ``api_secret`` (e.g. live.accounts.ApiCredentials).
    demo: Binance demo trading (BINANCE_DEMO=true). api_url: BINANCE_API_URL, replaces every USDⓈ-M base.
    ws_url: BINANCE_WS_URL, the user-data stream's base (default: derived from api_url when that is set).
    timeout_ms: per-request timeout; a timed-out order is looked up by client order id by the engine.
    budget: the egress IP's weight budget, shared by every account (default: a new one for these accounts;
        pass the same budget to every call whose accounts use the same IP).
    On any failure every instance already opened is closed before the error propagates.
    """
    creds = list(credentials)
    _check_credentials(creds)
    if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int) or timeout_ms <= 0:
        raise ValueError(f"timeout_ms must be a positive whole number of milliseconds, got {timeout_ms!r}")
    budget = budget if budget is not None else WeightBudget()
    pool = http_pool()
    exchanges: list[LiveExchange] = []
    markets: asyncio.Task | None = None
    try:
        first = build_exchange(creds[0], demo=demo, api_url=api_url, timeout_ms=timeout_ms, budget=budget,
                               ws_url=ws_url, pool=pool)
        exchanges.append(first)
        # the markets' round trip runs while the other accounts' instances are built (~0.7 ms of CPU each)
        markets = asyncio.get_running_loop().create_task(first.load_markets())
        for c in creds[1:]:
            await asyncio.sleep(0)  # let the markets request go out, and its answer in, between two instances
            exchanges.append(build_exchange(c, demo=demo, api_url=api_url, timeout_ms=timeout_ms, budget=budget,
                                            ws_url=ws_url, pool=pool))
        await markets
        for ex in exchanges[1:]:
            ex.share_markets(first)
    except BaseException:
        if markets is not None:
            markets.cancel()  # no-op once done; gather collects its outcome either way
            await asyncio.gather(markets, return_exceptions=True)
        await _close(exchanges)
        await pool.session.close()
        raise
    log.info("🔌 %d account(s) on %s%s, %d markets loaded once", len(exchanges), first.venue,
             " (demo trading)" if demo else "", len(first.markets))
    return [Account(c.name, ex) for c, ex in zip(creds, exchanges, strict=True)]


async def _close(exchanges: Iterable[Any]) -> None:
    exchanges = list(exchanges)
    pools = {id(p): p for ex in exchanges if (p := getattr(ex, "http_pool", None)) is not None}
    results = await asyncio.gather(*(ex.close() for ex in exchanges), return_exceptions=True)
    results += await asyncio.gather(*(p.session.close() for p in pools.values()), return_exceptions=True)
    for r in results:
        if isinstance(r, Exception):
            log.warning("closing an exchange session failed: %s", type(r).__name__)


async def close_all(accounts: Iterable[Account]) -> None:
    """Close every account's HTTP session (never raises)."""
    await _close(a.exchange for a in accounts if hasattr(a.exchange, "close"))
