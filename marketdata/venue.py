"""Market-data room: which Binance USDⓈ-M venue a ccxt instance talks to (production, demo trading, or a URL override)."""

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


def select_venue(exchange: Any, *, demo: bool, api_url: str | None) -> str:
    """Configure ``exchange`` for the venue and return a label for logs (a host name, never a key).

    demo: Binance demo trading (``enable_demo_trading``; the old futures testnet is gone).
    api_url: replaces the base of every USDⓈ-M endpoint, after the demo switch (a relay in front of either).
    """
    if demo:
        if not hasattr(exchange, "enable_demo_trading"):
            raise RuntimeError("this ccxt version has no enable_demo_trading(); upgrade ccxt (>= 4.5.27)")
        exchange.enable_demo_trading(True)
    if api_url:
        override_api_url(exchange, api_url)
    return usdm_host(exchange)


def usdm_base(exchange: Any) -> str:
    """The scheme://host[:port][/prefix] the instance's USDⓈ-M private endpoints use."""
    url = exchange.urls["api"]["fapiPrivate"]
    parts = urlsplit(url)
    prefix = parts.path[: -len("/fapi/v1")] if parts.path.endswith("/fapi/v1") else parts.path
    return f"{parts.scheme}://{parts.netloc}{prefix}"


def usdm_host(exchange: Any) -> str:
    return urlsplit(exchange.urls["api"]["fapiPrivate"]).netloc
