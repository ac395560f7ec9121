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
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable
from typing import Any

import ccxt
import ccxt.async_support as ccxt_async

from engine.ports import Account
from marketdata.venue import select_venue, usdm_base

log = logging.getLogger("fanout.live.exchange")
_ccxt_log = logging.getLogger("fanout.live.ccxt")
_ccxt_log.setLevel(logging.WARNING)  # ccxt logs request headers (the API key) at DEBUG

DEFAULT_TIMEOUT_MS = 10_000
OPTIONS = {
    "defaultType": "swap",
    "fetchCurrencies": False,  # a signed /sapi call per instance, useless for USDⓈ-M
    "adjustForTimeDifference": False,  # no GET /fapi/v1/time before every signed request
    "warnOnFetchOpenOrdersWithoutSymbol": False,  # reconciliation lists all open trigger orders
}
_VOLATILE = re.compile(r"\b(signature|timestamp)=[^&\s]*")


class LiveExchange(ccxt_async.binanceusdm):
    """ccxt's ``binanceusdm`` for one account, with the adaptations listed in the module docstring.

    account: label for logs and reprs (never a key).
    """

    def __init__(self, config: dict | None = None, *, account: str = "") -> None:
        super().__init__(config or {})
        self.account_name = account
        self.verbose = False
        self.logger = _ccxt_log
        self._override_base: str | None = None

    def __repr__(self) -> str:
        return f"LiveExchange(account={self.account_name!r}, venue={self.venue!r})"

    __str__ = __repr__

    @property
    def venue(self) -> str:
        return usdm_base(self)

    def use_venue(self, *, demo: bool, api_url: str | None) -> str:
        """Select production, demo trading or an override base URL; returns the host for logs."""
        host = select_venue(self, demo=demo, api_url=api_url)
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


def build_exchange(
    credential: Any, *, demo: bool = False, api_url: str | None = None, timeout_ms: int = DEFAULT_TIMEOUT_MS
) -> LiveExchange:
    """One configured (not yet connected) :class:`LiveExchange` for a credentials object (name, api_key, api_secret)."""
    ex = LiveExchange(
        {
            "apiKey": credential.api_key.strip(),
            "secret": credential.api_secret.strip(),
            "enableRateLimit": True,
            "timeout": timeout_ms,
            "options": dict(OPTIONS),
        },
        account=credential.name,
    )
    ex.use_venue(demo=demo, api_url=api_url)
    return ex


async def create_live_exchanges(
    credentials: Iterable[Any],
    *,
    demo: bool = False,
    api_url: str | None = None,
    timeout_ms: int = DEFAULT_TIMEOUT_MS,
) -> list[Account]:
    """Build one :class:`LiveExchange` per credentials object and load markets once for all of them.

    credentials: objects with ``name``, ``api_key`` and ``api_secret`` (e.g. live.accounts.ApiCredentials).
    demo: Binance demo trading (BINANCE_DEMO=true). api_url: BINANCE_API_URL, replaces every USDⓈ-M base.
    timeout_ms: per-request timeout; a timed-out order is looked up by client order id by the engine.
    On any failure every instance already opened is closed before the error propagates.
    """
    creds = list(credentials)
    _check_credentials(creds)
    if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int) or timeout_ms <= 0:
        raise ValueError(f"timeout_ms must be a positive whole number of milliseconds, got {timeout_ms!r}")
    exchanges: list[LiveExchange] = []
    try:
        for c in creds:
            exchanges.append(build_exchange(c, demo=demo, api_url=api_url, timeout_ms=timeout_ms))
        first = exchanges[0]
        await first.load_markets()
        for ex in exchanges[1:]:
            ex.share_markets(first)
    except BaseException:
        await _close(exchanges)
        raise
    log.info("🔌 %d account(s) on %s%s, %d markets loaded once", len(exchanges), first.venue,
             " (demo trading)" if demo else "", len(first.markets))
    return [Account(c.name, ex) for c, ex in zip(creds, exchanges, strict=True)]


async def _close(exchanges: Iterable[Any]) -> None:
    results = await asyncio.gather(*(ex.close() for ex in exchanges), return_exceptions=True)
    for r in results:
        if isinstance(r, Exception):
            log.warning("closing an exchange session failed: %s", type(r).__name__)


async def close_all(accounts: Iterable[Account]) -> None:
    """Close every account's HTTP session (never raises)."""
    await _close(a.exchange for a in accounts if hasattr(a.exchange, "close"))
