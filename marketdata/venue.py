"""Market-data room: which Binance USDⓈ-M venue a ccxt instance talks to (production, demo trading, or a URL override).

REST: ``BINANCE_API_URL`` replaces the base of every USDⓈ-M endpoint. The user-data stream (a ccxt.pro
instance's ``urls['api']['ws']['linear']``): ``BINANCE_WS_URL`` when set, else derived from ``BINANCE_API_URL``
(``http`` → ``ws``, ``https`` → ``wss``, same host, port and prefix), so one local stand-in serves both.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

PRODUCTION = "fapi.binance.com"
DEMO = "demo-fapi.binance.com"


def normalize_api_url(api_url: str, field: str = "BINANCE_API_URL") -> str:
    """Validate an override base URL (``http(s)://host[:port][/prefix]``) and return it without a trailing slash.

    Plain ``http://127.0.0.1:PORT`` is accepted (a local Binance stand-in); a query, fragment or credentials
    in the URL are refused. The error names ``field`` and shows no more than scheme and host.
    """
    text = (api_url or "").strip()
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError on a bad port
    except ValueError:
        raise ValueError(f"{field} is not a valid URL (expected http(s)://host[:port])") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{field} must start with http:// or https:// and name a host, e.g. http://127.0.0.1:8080")
    if parts.username or parts.password:
        raise ValueError(f"{field} must not contain credentials")
    if parts.query or parts.fragment:
        raise ValueError(f"{field} must not contain a query or fragment ({parts.scheme}://{parts.hostname})")
    if port == 0:
        raise ValueError(f"{field} has port 0")
    return text.rstrip("/")


def normalize_ws_url(ws_url: str, field: str = "BINANCE_WS_URL") -> str:
    """Validate a websocket base (``ws(s)://host[:port][/prefix]``) and return it without a trailing slash."""
    text = (ws_url or "").strip()
    scheme = urlsplit(text).scheme
    if scheme not in ("ws", "wss"):
        raise ValueError(f"{field} must start with ws:// or wss:// and name a host, e.g. ws://127.0.0.1:8080")
    as_http = normalize_api_url("http" + text[len("ws"):] if scheme == "ws" else "https" + text[len("wss"):], field)
    return ("ws" if scheme == "ws" else "wss") + as_http[as_http.index("://"):]


def derive_ws_url(api_url: str) -> str:
    """The websocket base beside a REST override: ``http://h:p/x`` → ``ws://h:p/x``, ``https`` → ``wss``."""
    base = normalize_api_url(api_url)
    return ("wss" if base.startswith("https://") else "ws") + base[base.index("://"):]


def override_ws_url(exchange: Any, ws_url: str) -> str:
    """Point a ccxt.pro binanceusdm's USDⓈ-M streams at ``ws_url`` (ccxt adds ``/private/ws?listenKey=…``)."""
    base = normalize_ws_url(ws_url)
    urls = exchange.urls["api"].get("ws")
    if not isinstance(urls, dict) or "linear" not in urls:
        raise RuntimeError("this ccxt instance has no USDⓈ-M websocket URL (urls['api']['ws']['linear'])")
    exchange.urls["api"] = dict(exchange.urls["api"])
    exchange.urls["api"]["ws"] = dict(urls) | {"linear": base + "/ws"}
    return base


def _is_usdm(key: str) -> bool:
    """ccxt's entries for USDⓈ-M REST paths: fapiPublic, fapiPrivate(V2/V3), fapiData ..."""
    return key.startswith("fapi")


def override_api_url(exchange: Any, api_url: str) -> dict[str, str]:
    """Point every USDⓈ-M endpoint of a ccxt binance/binanceusdm instance at ``api_url``.

    Each ``exchange.urls['api']['fapi…']`` keeps its path (``/fapi/v1``, ``/fapi/v3``, ``/futures/data``) and
    gets the new scheme, host and optional prefix. Returns the rewritten entries.
    """
    base = normalize_api_url(api_url)
    api = dict(exchange.urls["api"])
    rewritten = {}
    for key, url in api.items():
        if not _is_usdm(key) or not isinstance(url, str):
            continue
        rewritten[key] = base + urlsplit(url).path
    if not rewritten:
        raise RuntimeError("this ccxt version has no fapi* entries in urls['api']; cannot apply BINANCE_API_URL")
    api.update(rewritten)
    exchange.urls["api"] = api
    return rewritten


def select_venue(exchange: Any, *, demo: bool, api_url: str | None, ws_url: str | None = None) -> str:
    """Configure ``exchange`` for the venue and return a label for logs (a host name, never a key).

    demo: Binance demo trading (``enable_demo_trading``; the old futures testnet is gone).
    api_url: replaces the base of every USDⓈ-M endpoint, after the demo switch (a relay in front of either).
    ws_url: the user-data stream's base (ccxt.pro instances); default derived from ``api_url`` when that is set.
    """
    if demo:
        if not hasattr(exchange, "enable_demo_trading"):
            raise RuntimeError("this ccxt version has no enable_demo_trading(); upgrade ccxt (>= 4.5.27)")
        exchange.enable_demo_trading(True)
    if api_url:
        override_api_url(exchange, api_url)
    if isinstance(exchange.urls["api"].get("ws"), dict):
        if ws_url:
            override_ws_url(exchange, ws_url)
        elif api_url:
            override_ws_url(exchange, derive_ws_url(api_url))
    return usdm_host(exchange)


def usdm_base(exchange: Any) -> str:
    """The scheme://host[:port][/prefix] the instance's USDⓈ-M private endpoints use."""
    url = exchange.urls["api"]["fapiPrivate"]
    parts = urlsplit(url)
    prefix = parts.path[: -len("/fapi/v1")] if parts.path.endswith("/fapi/v1") else parts.path
    return f"{parts.scheme}://{parts.netloc}{prefix}"


def usdm_host(exchange: Any) -> str:
    return urlsplit(exchange.urls["api"]["fapiPrivate"]).netloc
