"""Live room: one account's API credentials and the value checks both account loaders (env and database) apply.

:class:`ApiCredentials` is what :mod:`live.accounts` (environment variables) and :mod:`live.account_store`
(the ``user_api_keys`` table) both produce; :class:`AccountConfigError` is what both raise, naming the variable
or field and never the value. :class:`CredentialStore` is the one thing the account policy asks of a database
of accounts, so the policy needs no database import. This module imports neither loader.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

SOURCES = ("env", "database", "fallback")
LABEL_MAX_CHARS = 100


class AccountConfigError(ValueError):
    """Bad account configuration. ``variable`` names the offending variable (or field); never holds a value."""

    def __init__(self, message: str, variable: str) -> None:
        super().__init__(message)
        self.variable = variable


def redact(key: str) -> str:
    """First 4 and last 4 characters of an API key (``abcd…wxyz``); keys of 12 characters or fewer become ``****``."""
    key = key or ""
    if len(key) <= 12:
        return "****"
    return f"{key[:4]}…{key[-4:]}"


def check_credential(value: object, name: str) -> str:
    """An API key or secret stripped; empty, missing or containing whitespace → :class:`AccountConfigError`.

    name: the variable or field the value came from (``BINANCE_API_KEY_2``, ``api_secret``), used in the error.
    """
    text = "" if value is None else str(value).strip()
    if not text:
        raise AccountConfigError(f"{name} is empty", name)
    if any(c.isspace() for c in text):
        raise AccountConfigError(f"{name} contains whitespace", name)
    return text


def check_label(label: str) -> str:
    """A database account label stripped: not empty, not all digits (digits mean an id), at most 100 characters."""
    text = (label or "").strip()
    if not text:
        raise AccountConfigError("label is empty", "label")
    if text.isdigit():
        raise AccountConfigError("label must not be all digits (digits mean an id)", "label")
    if len(text) > LABEL_MAX_CHARS:
        raise AccountConfigError(f"label is longer than {LABEL_MAX_CHARS} characters", "label")
    return text


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiCredentials:
    """One account's API credentials. repr / str show only the redacted key.

    number: account number (N of ``BINANCE_API_KEY_N``, 1 for the primary key; database accounts 1..n by id).
    name: display name: the ``BINANCE_ACCOUNT_NAME[_N]`` / database label, else ``Account N``.
    api_key, api_secret: the credentials themselves (never logged).
    source: ``env`` | ``database`` | ``fallback``.
    variable: where it came from: ``BINANCE_API_KEY_N`` or ``user_api_keys#<id>``.
    """

    number: int
    name: str
    api_key: str = field(repr=False)
    api_secret: str = field(repr=False)
    source: str
    variable: str

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"ApiCredentials field 'source' must be one of {SOURCES}, got {self.source!r}")

    @property
    def redacted_key(self) -> str:
        return redact(self.api_key)

    def __repr__(self) -> str:
        return (
            f"ApiCredentials(number={self.number}, name={self.name!r}, api_key={self.redacted_key!r}, "
            f"source={self.source!r}, variable={self.variable!r})"
        )

    __str__ = __repr__


class CredentialStore(Protocol):
    """A database of accounts as the account policy sees it (:class:`live.account_store.AccountStore` is one)."""

    def active_credentials(self) -> list[ApiCredentials]:
        """The active accounts, decrypted, numbered 1..n; raises :class:`AccountConfigError` when unreadable."""
        ...
