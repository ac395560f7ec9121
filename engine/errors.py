"""Recognising ccxt's exception classes by name, so engine/ never imports ccxt (the simulator raises the same)."""

from __future__ import annotations

TRANSIENT = ("DDoSProtection", "RateLimitExceeded", "ExchangeNotAvailable", "OnMaintenance")


def is_error(exc: BaseException, *names: str) -> bool:
    """True if ``exc`` is an instance of a class with one of these names (ccxt's hierarchy, by MRO)."""
    return any(cls.__name__ in names for cls in type(exc).__mro__)


def is_outcome_unknown(exc: BaseException) -> bool:
    """The request may have reached the matching engine: a timeout, or an HTTP 5xx (ccxt's ExchangeNotAvailable;
    Binance documents that a 503 "Unknown error" may have executed). Look an order up before resending it."""
    return is_error(exc, "RequestTimeout", "ExchangeNotAvailable")


def is_transient(exc: BaseException) -> bool:
    """Rejected before acting (rate limit, maintenance): safe to resend with the same client order id."""
    return is_error(exc, *TRANSIENT)


def is_order_not_found(exc: BaseException) -> bool:
    return is_error(exc, "OrderNotFound")


def describe(exc: BaseException) -> str:
    """One line for results and alerts: class name and message, trimmed."""
    text = str(exc).strip().replace("\n", " ")
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
