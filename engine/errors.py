"""Engine room: ccxt's exception classes recognised by name, so engine/ never imports ccxt (the simulator raises the
same), and the one rule for an order request that raised: rejected, rate-limited, or *maybe sent*.

| class of the exception                          | means                                   | the engine             |
|-------------------------------------------------|-----------------------------------------|------------------------|
| ``DDoSProtection`` / ``RateLimitExceeded``      | refused before acting (429, -1003)      | resends, same id       |
| a named subclass of ``ExchangeError``           | the venue answered: refused (-2019 …)   | reports it             |
| (``InsufficientFunds``, ``InvalidOrder`` …)     |                                         |                        |
| anything else: ``RequestTimeout``, ``ExchangeNotAvailable`` (5xx, dropped connection), ``NetworkError``, ``BadResponse``, the generic ``ExchangeError`` (a cut-off or unreadable body), any other exception | the request may have reached the matching engine | **maybe sent**: looks the order up by client order id before anything else |

Unknown is never final: "maybe sent" is resolved by a lookup, never taken as "not sent".
"""

from __future__ import annotations

RATE_LIMITED = ("DDoSProtection", "RateLimitExceeded")


def is_error(exc: BaseException, *names: str) -> bool:
    """True if ``exc`` is an instance of a class with one of these names (ccxt's hierarchy, by MRO)."""
    return any(cls.__name__ in names for cls in type(exc).__mro__)


def is_transient(exc: BaseException) -> bool:
    """Refused before acting (rate limit): safe to resend with the same client order id."""
    return is_error(exc, *RATE_LIMITED)


def is_rejected(exc: BaseException) -> bool:
    """The venue answered and refused: a named subclass of ccxt's ``ExchangeError`` (Binance's error code was
    read). ccxt raises the generic ``ExchangeError`` itself for answers it could not read (a truncated body): that
    is not a rejection."""
    return type(exc).__name__ != "ExchangeError" and is_error(exc, "ExchangeError")


def is_outcome_unknown(exc: BaseException) -> bool:
    """The request may have reached the matching engine (see the module table): look the order up before
    resending it or reporting it as not sent."""
    return not is_transient(exc) and not is_rejected(exc)


def is_order_not_found(exc: BaseException) -> bool:
    return is_error(exc, "OrderNotFound")


def describe(exc: BaseException) -> str:
    """One line for results and alerts: class name and message, trimmed."""
    text = str(exc).strip().replace("\n", " ")
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
