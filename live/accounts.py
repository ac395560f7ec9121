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
2. ``database`` — otherwise the active rows of ``user_api_keys``, from the :class:`~live.credentials.CredentialStore`
   the composition root passes in (it opens ``DATABASE_URL`` with :func:`live.account_store.open_account_store`;
   a SQLite file that does not exist is simply empty and is not created). This module opens no database.
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
from dataclasses import dataclass, replace

from engine.results import AccountResult
from live.credentials import AccountConfigError, ApiCredentials, CredentialStore, check_credential

log = logging.getLogger("fanout.accounts")

KEY_VAR = "BINANCE_API_KEY"
SECRET_VAR = "BINANCE_API_SECRET"
NAME_VAR = "BINANCE_ACCOUNT_NAME"
_ACCOUNT_VAR = re.compile(r"^(BINANCE_API_KEY|BINANCE_API_SECRET|BINANCE_ACCOUNT_NAME)(?:_(\w+))?$")


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


def _scan(env: Mapping[str, str | None], logger: logging.Logger) -> tuple[dict[int, set[str]], dict[int, str]]:
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


def load_env_accounts(env: Mapping[str, str | None], logger: logging.Logger | None = None) -> list[ApiCredentials]:
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
        api_key, api_secret = check_credential(env.get(key_var), key_var), check_credential(env.get(secret_var), secret_var)
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
    env: Mapping[str, str | None], store: CredentialStore | None = None, logger: logging.Logger | None = None
) -> AccountSelection:
    """Pick the trading accounts by the priority chain in the module docstring.

    store: the database of accounts (an :class:`live.account_store.AccountStore`, opened by the caller, e.g. with
    :func:`live.account_store.open_account_store`); ``None`` means there is none and the database step finds no
    account. It is asked only when no environment account is set.
    Raises :class:`AccountConfigError` for bad variables; it never skips a misconfigured account silently.
    """
    logger = logger or log
    env_accounts = load_env_accounts(env, logger)
    if env_accounts:
        primary = next((a for a in env_accounts if a.variable == KEY_VAR), None)
        fallback = replace(primary, source="fallback") if primary else None
        return AccountSelection("env", tuple(env_accounts), fallback)

    db_accounts = store.active_credentials() if store is not None else []
    if db_accounts:
        for acc in db_accounts:
            logger.info("✅ Loaded Account %d from database (%s, %s)", acc.number, acc.variable, acc.name)
        logger.info("🎯 Total accounts loaded: %d", len(db_accounts))
        return AccountSelection("database", tuple(db_accounts), None)

    logger.warning("⚠️ No accounts: set BINANCE_API_KEY / BINANCE_API_SECRET or run `fanout accounts add`")
    return AccountSelection("none", (), None)


def fallback_needed(results: Iterable[AccountResult]) -> bool:
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
