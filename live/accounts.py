"""Live room: which Binance accounts trade — environment variables, then the database, then the primary key.

Environment accounts (``production.env`` or the real environment):

| variable                                   | account                                      |
|--------------------------------------------|----------------------------------------------|
| ``BINANCE_API_KEY`` / ``BINANCE_API_SECRET``     | Account 1                              |
| ``BINANCE_API_KEY_N`` / ``BINANCE_API_SECRET_N`` | Account N (N >= 2, no leading zeros)   |
| ``BINANCE_ACCOUNT_NAME`` / ``BINANCE_ACCOUNT_NAME_N`` | optional label of Account 1 / N   |

Every N found is loaded; a gap in the numbering (``_2`` and ``_4`` without ``_3``) keeps the numbers as written
(Account 4 stays Account 4) and logs a warning naming the missing variable. A key without its secret or the
reverse, an empty or whitespace value, a value containing whitespace, ``_0`` / ``_1`` / ``_02`` suffixes, the same
key or secret twice and duplicate account names raise :class:`AccountConfigError` naming the variable, never the
value. Other suffixes (``BINANCE_API_KEY_TESTNET``) are not accounts: they are ignored with a warning.

Priority chain (:func:`resolve_accounts`):

1. ``env`` — every environment account, if there is at least one.
2. ``database`` — otherwise the active rows of ``user_api_keys`` (``DATABASE_URL``, default
   ``sqlite:///fanout.db``; a SQLite file that does not exist is simply empty and is not created).
3. ``fallback`` — the primary key (``BINANCE_API_KEY`` / ``BINANCE_API_SECRET``) alone.

Thought through: the primary key *is* Account 1 of the environment path, so whenever it is set the source is
``env`` and the database is never consulted; the fallback therefore never becomes the source of a selection
(``AccountSelection.source`` is ``env``, ``database`` or ``none``). What remains of step 3 is a second attempt on
the primary account after the environment path, exposed as ``AccountSelection.fallback``. The composition root
runs it only if :func:`fallback_needed` says no account of the first attempt placed any order, so no account
ever receives one signal twice. With the database source the primary key is unset by construction, so
``fallback`` is ``None``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

log = logging.getLogger("fanout.accounts")

KEY_VAR = "BINANCE_API_KEY"
SECRET_VAR = "BINANCE_API_SECRET"
NAME_VAR = "BINANCE_ACCOUNT_NAME"
SOURCES = ("env", "database", "fallback")
_ACCOUNT_VAR = re.compile(r"^(BINANCE_API_KEY|BINANCE_API_SECRET|BINANCE_ACCOUNT_NAME)(?:_(\w+))?$")


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


@dataclass(frozen=True, slots=True)
class AccountSelection:
    """The accounts that trade and where they came from.

    source: ``env`` | ``database`` | ``none`` (no account anywhere).
    accounts: the credentials, in account-number order.
    fallback: the primary account for a second attempt, used only when :func:`fallback_needed` is True
        (``None`` unless the source is ``env`` and ``BINANCE_API_KEY`` is set).
    """

    source: str
    accounts: tuple[ApiCredentials, ...]
    fallback: ApiCredentials | None = None


def _var(base: str, number: int) -> str:
    return base if number == 1 else f"{base}_{number}"


def _clean(env: Mapping[str, Any], var: str) -> str:
    value = env.get(var)
    text = "" if value is None else str(value).strip()
    if not text:
        raise AccountConfigError(f"{var} is empty", var)
    if any(c.isspace() for c in text):
        raise AccountConfigError(f"{var} contains whitespace", var)
    return text


def _scan(env: Mapping[str, Any], logger: logging.Logger) -> tuple[dict[int, set[str]], dict[int, str]]:
    """Map account numbers to the credential variable kinds present (and names), validating suffixes."""
    found: dict[int, set[str]] = {}
    names: dict[int, str] = {}
    for var in sorted(env):
        m = _ACCOUNT_VAR.match(var)
        if not m:
            continue
        base, suffix = m.groups()
        if suffix is None:
            number = 1
        elif suffix.isdigit():
            if suffix.startswith("0") or int(suffix) < 2:
                raise AccountConfigError(
                    f"{var}: account numbers start at 2 without leading zeros ({base} is Account 1)", var
                )
            number = int(suffix)
        else:
            logger.warning("⚠️ %s is not an account variable (expected %s_N with N >= 2); ignored", var, base)
            continue
        if base == NAME_VAR:
            label = "" if env[var] is None else str(env[var]).strip()
            if label:
                names[number] = label
        else:
            found.setdefault(number, set()).add(base)
    return found, names


def load_env_accounts(env: Mapping[str, Any], logger: logging.Logger | None = None) -> list[ApiCredentials]:
    """Load every environment account (see the module table); logs one line per account and the total."""
    logger = logger or log
    found, names = _scan(env, logger)
    accounts: list[ApiCredentials] = []
    seen_keys: dict[str, str] = {}
    seen_secrets: dict[str, str] = {}
    for number in sorted(found):
        key_var, secret_var = _var(KEY_VAR, number), _var(SECRET_VAR, number)
        if KEY_VAR not in found[number]:
            raise AccountConfigError(f"{secret_var} is set but {key_var} is missing", key_var)
        if SECRET_VAR not in found[number]:
            raise AccountConfigError(f"{key_var} is set but {secret_var} is missing", secret_var)
        api_key, api_secret = _clean(env, key_var), _clean(env, secret_var)
        if api_key in seen_keys:
            raise AccountConfigError(f"{key_var} repeats the key of {seen_keys[api_key]}", key_var)
        if api_secret in seen_secrets:
            raise AccountConfigError(f"{secret_var} repeats the secret of {seen_secrets[api_secret]}", secret_var)
        seen_keys[api_key], seen_secrets[api_secret] = key_var, secret_var
        accounts.append(ApiCredentials(
            number=number, name=names.get(number, f"Account {number}"), api_key=api_key, api_secret=api_secret,
            source="env", variable=key_var,
        ))
    for number in sorted(set(names) - set(found)):
        var = _var(NAME_VAR, number)
        logger.warning("⚠️ %s is set but %s is not; the name is ignored", var, _var(KEY_VAR, number))
    _check_unique_names(accounts)
    if accounts:
        missing = [n for n in range(1, accounts[-1].number) if n not in found]
        if missing:
            shown = [_var(KEY_VAR, n) for n in missing]
            gap = ", ".join(shown) if len(shown) <= 4 else f"{shown[0]} … {shown[-1]} ({len(shown)} variables)"
            logger.warning(
                "⚠️ Account numbering has a gap: %s not set; the other accounts keep their numbers as written", gap
            )
    for acc in accounts:
        logger.info("✅ Loaded Account %d from %s", acc.number, acc.variable)
    if accounts:
        logger.info("🎯 Total accounts loaded: %d", len(accounts))
    return accounts


def _check_unique_names(accounts: Iterable[ApiCredentials]) -> None:
    seen: dict[str, ApiCredentials] = {}
    for acc in accounts:
        if acc.name in seen:
            var = _var(NAME_VAR, acc.number)
            raise AccountConfigError(
                f"account name {acc.name!r} is used twice (Account {seen[acc.name].number} and Account "
                f"{acc.number}); set a distinct {var}", var,
            )
        seen[acc.name] = acc


def resolve_accounts(
    env: Mapping[str, Any], store: Any | None = None, logger: logging.Logger | None = None
) -> AccountSelection:
    """Pick the trading accounts by the priority chain in the module docstring.

    store: an :class:`live.account_store.AccountStore`; if ``None`` one is opened from ``DATABASE_URL`` /
    ``ENCRYPTION_KEY`` (default ``sqlite:///fanout.db``) when the database path is reached.
    Raises :class:`AccountConfigError` for bad variables; it never skips a misconfigured account silently.
    """
    logger = logger or log
    env_accounts = load_env_accounts(env, logger)
    if env_accounts:
        primary = next((a for a in env_accounts if a.variable == KEY_VAR), None)
        fallback = replace(primary, source="fallback") if primary else None
        return AccountSelection("env", tuple(env_accounts), fallback)

    db_accounts = _database_accounts(env, store)
    if db_accounts:
        for acc in db_accounts:
            logger.info("✅ Loaded Account %d from database (%s, %s)", acc.number, acc.variable, acc.name)
        logger.info("🎯 Total accounts loaded: %d", len(db_accounts))
        return AccountSelection("database", tuple(db_accounts), None)

    logger.warning("⚠️ No accounts: set BINANCE_API_KEY / BINANCE_API_SECRET or run `fanout accounts add`")
    return AccountSelection("none", (), None)


def _database_accounts(env: Mapping[str, Any], store: Any | None) -> list[ApiCredentials]:
    from live.account_store import AccountStore
    from storage.database import database_url, sqlite_file_missing

    if store is not None:
        return store.active_credentials()
    url = database_url(env)
    if sqlite_file_missing(url):
        return []
    with AccountStore(url, env.get("ENCRYPTION_KEY")) as opened:
        return opened.active_credentials()


def fallback_needed(results: Iterable[Any]) -> bool:
    """True only if no account of the earlier attempt placed (or may have placed) any order.

    ``results`` are the engine's ``AccountResult`` records (e.g. ``summary.results``). Every one must be
    ``failed`` with ``entry_sent`` False (the entry order was never handed to the exchange), no order id and no
    emergency close. A success, or a failure at or after the entry (its order may exist: a lost reply) → False.
    A ``skipped`` result is a risk rule's decision, not a failure, and a fallback must not override it → False.
    No results at all (nothing was attempted) → True.
    """
    for r in results:
        if r.status != "failed" or r.entry_sent or r.closed:
            return False
        if r.entry_order_id or r.stop_loss_order_id or r.take_profit_order_id:
            return False
    return True
