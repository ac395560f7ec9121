"""CLI room: ``fanout accounts`` — show which accounts trade, add and disable database accounts."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import sys
from typing import Any

from live.account_store import SUPPORTED_EXCHANGES, AccountNotFound, AccountStore, open_account_store
from live.accounts import KEY_VAR, resolve_accounts
from live.credentials import AccountConfigError, redact
from live.env import DEFAULT_ENV_FILE, load_env
from storage.database import DatabaseUrlError, database_url, display_url


class _RefuseSecret(argparse.Action):
    """``--api-secret`` exists only to refuse it without echoing the value argparse would otherwise print."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option_string: Any = None) -> None:
        parser.error(
            f"{option_string} is not accepted (command lines end up in shell history): "
            "type the secret at the prompt or pipe it on stdin"
        )


def _env_file_parent(default: str) -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--env-file", default=default,
        help=f"settings file read before the real environment, which wins (default ./{DEFAULT_ENV_FILE})",
    )
    return parent


def register(subparsers: Any) -> None:
    """Add ``accounts`` with the actions list (default), add and disable."""
    # The sub-actions get their own --env-file (default SUPPRESS) so `accounts --env-file F list` keeps F.
    env_file = _env_file_parent(argparse.SUPPRESS)
    parser = subparsers.add_parser(
        "accounts", parents=[_env_file_parent(DEFAULT_ENV_FILE)], help="show the trading accounts; add / disable database accounts",
        description="Without an action: list. Environment accounts (BINANCE_API_KEY[_N]) take priority over "
                    "database accounts (DATABASE_URL, ENCRYPTION_KEY). Keys are shown redacted, secrets never.",
    )
    parser.set_defaults(func=handler)
    actions = parser.add_subparsers(dest="accounts_command", metavar="ACTION")
    actions.add_parser("list", parents=[env_file], help="active source and accounts (the default)")

    add = actions.add_parser(
        "add", parents=[env_file], help="store an account in the database (secret encrypted)",
        description="The secret is read from a hidden prompt, or from stdin when stdin is not a terminal "
                    "(first line the key if --api-key is omitted, then the secret). Never from an argument.",
    )
    add.add_argument("--label", required=True, help="display name, unique among active accounts, not all digits")
    add.add_argument("--api-key", help="the API key (prompted for, or read from stdin, when omitted)")
    add.add_argument("--exchange", default=SUPPORTED_EXCHANGES[0], choices=SUPPORTED_EXCHANGES)
    add.add_argument("--api-secret", nargs="?", action=_RefuseSecret, help=argparse.SUPPRESS)

    disable = actions.add_parser("disable", parents=[env_file], help="deactivate a database account")
    disable.add_argument("target", metavar="ID|LABEL", help="row id (digits) or active label")


def handler(args: argparse.Namespace) -> int:
    """Run the chosen action; 0 on success, 1 when the account is not found, 2 for bad configuration."""
    try:
        env = load_env(args.env_file)
        action = getattr(args, "accounts_command", None) or "list"
        if action == "add":
            return _add(args, env)
        if action == "disable":
            return _disable(args, env)
        return _list(env)
    except (AccountConfigError, DatabaseUrlError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _list(env: dict[str, str]) -> int:
    with open_account_store(env) or contextlib.nullcontext() as store:  # None: no database file yet
        selection = resolve_accounts(env, store)
        rows = store.list() if store is not None else []
    count = len(selection.accounts)
    print(f"Active source: {selection.source}" + (f" ({count} account{'s' * (count != 1)})" if count else ""))
    for acc in selection.accounts:
        print(f"  Account {acc.number:<3} {acc.name:<24} {acc.redacted_key:<10} {acc.variable}")
    if selection.fallback is not None:
        fb = selection.fallback
        print(f"Fallback: {fb.name} ({fb.variable}) retried alone, only if no account placed an order")
    else:
        print("Fallback: none")
    if store is None:
        print(f"Database {display_url(database_url(env))}: not created yet (fanout accounts add creates it)")
        return 0
    note = " (not used while environment accounts are set)" if selection.source == "env" and rows else ""
    print(f"Database {store.url}: {len(rows)} row{'s' * (len(rows) != 1)}{note}")
    for row in rows:
        status = "active" if row.is_active else "disabled"
        print(f"  id {row.id:<4} {row.label:<24} {row.api_key:<10} {status:<8} {row.created_at:%Y-%m-%d %H:%M}")
    return 0


def _read(prompt: str, hidden: bool) -> str:
    """A prompt on a terminal (hidden for secrets), else the next line of stdin."""
    if sys.stdin.isatty():
        return getpass.getpass(prompt) if hidden else input(prompt)
    return sys.stdin.readline().rstrip("\r\n")


def _add(args: argparse.Namespace, env: dict[str, str]) -> int:
    with AccountStore(database_url(env), env.get("ENCRYPTION_KEY")) as store:
        store.require_encryption_key()  # before asking for anything
        api_key = args.api_key if args.api_key is not None else _read("API key: ", hidden=False)
        api_secret = _read("API secret (hidden): ", hidden=True)
        new_id = store.add(args.label, api_key, api_secret, exchange=args.exchange)
    print(f"Added account id {new_id} {args.label.strip()!r} (key {redact(api_key.strip())}) to {store.url}")
    if any(k == KEY_VAR or k.startswith(f"{KEY_VAR}_") for k in env):
        print("Note: environment accounts (BINANCE_API_KEY...) are set and take priority over the database.")
    return 0


def _disable(args: argparse.Namespace, env: dict[str, str]) -> int:
    store = open_account_store(env)
    if store is None:
        print(f"error: no database at {display_url(database_url(env))}", file=sys.stderr)
        return 1
    with store:
        try:
            row = store.disable(args.target)
        except AccountNotFound as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    print(f"Disabled account id {row.id} {row.label!r} (key {row.api_key})")
    return 0
