"""Live room: the ``user_api_keys`` table (SQLite or PostgreSQL via SQLAlchemy Core), secrets Fernet-encrypted.

Columns: id, label, exchange, api_key, api_secret, is_active, created_at. ``api_secret`` holds only Fernet tokens
made with ``ENCRYPTION_KEY``; ``api_key`` is stored as is (Binance sends it in a request header; keeping it
readable lets ``fanout accounts list`` show it redacted and refuse duplicates without the encryption key).
Labels are unique among active rows and never all digits, so ``disable 3`` always means id 3.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
    update,
)

from live.credentials import (
    LABEL_MAX_CHARS,
    AccountConfigError,
    ApiCredentials,
    check_credential,
    check_label,
    redact,
)
from storage.database import database_url, display_url, sqlite_file_missing
from storage.schema import Component, open_versioned

SUPPORTED_EXCHANGES = ("binanceusdm",)
GENERATE_KEY_HINT = (
    "generate one with: python -c \"from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())\""
)

metadata = MetaData()
user_api_keys = Table(
    "user_api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("label", String(LABEL_MAX_CHARS), nullable=False),
    Column("exchange", String(32), nullable=False),
    Column("api_key", String(256), nullable=False),
    Column("api_secret", Text, nullable=False),
    Column("is_active", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
# Version 1: user_api_keys as above (fanout before schema versions). Add steps at the end only (storage/schema.py).
ACCOUNTS = Component("accounts", metadata)


class AccountNotFound(LookupError):
    """No row matches the id or active label given to :meth:`AccountStore.disable`."""


@dataclass(frozen=True, slots=True)
class StoredAccount:
    """One ``user_api_keys`` row as shown to people: the key redacted, the secret absent."""

    id: int
    label: str
    exchange: str
    api_key: str
    is_active: bool
    created_at: datetime


def _fernet(encryption_key: str | bytes | None) -> Fernet | None:
    if isinstance(encryption_key, str):
        encryption_key = encryption_key.strip()
    if not encryption_key:
        return None
    try:
        return Fernet(encryption_key)
    except (ValueError, TypeError):
        raise AccountConfigError(
            f"ENCRYPTION_KEY is not a valid Fernet key (32 url-safe base64-encoded bytes); {GENERATE_KEY_HINT}",
            "ENCRYPTION_KEY",
        ) from None


class AccountStore:
    """API keys in a SQL database. The table is created if missing.

    database_url: SQLAlchemy URL (``sqlite:///fanout.db``; ``postgresql://user:pw@host/db`` needs the
        ``postgres`` extra, psycopg 3).
    encryption_key: the Fernet key (``ENCRYPTION_KEY``). Needed to add accounts and to read secrets; listing and
        disabling work without it. An invalid key is refused at once.
    """

    def __init__(self, database_url: str, encryption_key: str | bytes | None = None) -> None:
        self._fernet = _fernet(encryption_key)
        self.engine = open_versioned(database_url, ACCOUNTS)
        self.url = display_url(database_url)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> AccountStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AccountStore({self.url!r})"

    def require_encryption_key(self) -> None:
        """Raise :class:`AccountConfigError` naming ENCRYPTION_KEY unless a key was given."""
        self._require_fernet()

    def _require_fernet(self) -> Fernet:
        if self._fernet is None:
            raise AccountConfigError(f"ENCRYPTION_KEY is not set; {GENERATE_KEY_HINT}", "ENCRYPTION_KEY")
        return self._fernet

    def add(self, label: str, api_key: str, api_secret: str, exchange: str = SUPPORTED_EXCHANGES[0]) -> int:
        """Store an active account (secret encrypted) and return its id."""
        fernet = self._require_fernet()
        label = check_label(label)
        api_key = check_credential(api_key, "api_key")
        api_secret = check_credential(api_secret, "api_secret")
        if exchange not in SUPPORTED_EXCHANGES:
            raise AccountConfigError(f"exchange must be one of {SUPPORTED_EXCHANGES}, got {exchange!r}", "exchange")
        t = user_api_keys
        with self.engine.begin() as conn:
            for row in conn.execute(select(t.c.id, t.c.label, t.c.api_key).where(t.c.is_active.is_(True))):
                if row.label == label:
                    raise AccountConfigError(f"label {label!r} is already used by active account id {row.id}", "label")
                if row.api_key == api_key:
                    raise AccountConfigError(f"api_key is already stored as active account id {row.id}", "api_key")
            token = fernet.encrypt(api_secret.encode()).decode()
            result = conn.execute(insert(t).values(
                label=label, exchange=exchange, api_key=api_key, api_secret=token, is_active=True,
                created_at=datetime.now(UTC),
            ))
            return int(result.inserted_primary_key[0])

    def list(self, active_only: bool = False) -> list[StoredAccount]:
        """Rows in id order, keys redacted, secrets left out."""
        t = user_api_keys
        query = select(t.c.id, t.c.label, t.c.exchange, t.c.api_key, t.c.is_active, t.c.created_at).order_by(t.c.id)
        if active_only:
            query = query.where(t.c.is_active.is_(True))
        with self.engine.connect() as conn:
            return [
                StoredAccount(r.id, r.label, r.exchange, redact(r.api_key), bool(r.is_active), _utc(r.created_at))
                for r in conn.execute(query)
            ]

    def disable(self, id_or_label: int | str) -> StoredAccount:
        """Deactivate a row by id (digits) or by active label; returns the row. Disabling twice is harmless."""
        t = user_api_keys
        key = str(id_or_label).strip()
        cond = t.c.id == int(key) if key.isdigit() else (t.c.label == key) & t.c.is_active.is_(True)
        with self.engine.begin() as conn:
            row = conn.execute(select(t.c.id).where(cond)).first()
            if row is None:
                raise AccountNotFound(f"no account with id or active label {key!r}")
            conn.execute(update(t).where(t.c.id == row.id).values(is_active=False))
        return next(a for a in self.list() if a.id == row.id)

    def active_credentials(self) -> list[ApiCredentials]:
        """Active Binance USDⓈ-M rows decrypted, numbered 1..n in id order, named by label."""
        fernet = self._require_fernet()
        t = user_api_keys
        query = (
            select(t.c.id, t.c.label, t.c.api_key, t.c.api_secret)
            .where(t.c.is_active.is_(True), t.c.exchange.in_(SUPPORTED_EXCHANGES))
            .order_by(t.c.id)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        accounts = []
        for number, r in enumerate(rows, start=1):
            try:
                secret = fernet.decrypt(r.api_secret.encode()).decode()
            except InvalidToken:
                raise AccountConfigError(
                    f"ENCRYPTION_KEY cannot decrypt the secret of user_api_keys#{r.id} (stored with another key?)",
                    "ENCRYPTION_KEY",
                ) from None
            accounts.append(ApiCredentials(
                number=number, name=r.label, api_key=r.api_key, api_secret=secret, source="database",
                variable=f"user_api_keys#{r.id}",
            ))
        return accounts


def _utc(moment: datetime) -> datetime:
    """UTC on both engines: SQLite returns the stored UTC time naive, PostgreSQL in the session's time zone."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def open_account_store(env: Mapping[str, str | None]) -> AccountStore | None:
    """The account database named by ``DATABASE_URL`` (default SQLite ``fanout.db``) with ``ENCRYPTION_KEY``.

    ``None`` when that is a SQLite file that does not exist: it has no accounts and is not created. The caller
    owns the store (``with`` it, or ``close()``). Used by the composition root to hand the store to
    :func:`live.accounts.resolve_accounts`.
    """
    url = database_url(env)
    if sqlite_file_missing(url):
        return None
    return AccountStore(url, env.get("ENCRYPTION_KEY"))
