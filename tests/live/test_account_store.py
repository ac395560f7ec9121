"""Tests for live/account_store.py: the encrypted user_api_keys table, each test on SQLite and on PostgreSQL."""

from __future__ import annotations

import sys

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from live.account_store import (
    AccountNotFound,
    AccountStore,
    user_api_keys,
)
from live.credentials import AccountConfigError
from storage.database import DatabaseUrlError, open_engine

KEY_A = "akey" + "1" * 56 + "aend"
KEY_B = "bkey" + "2" * 56 + "bend"
SECRET_A = "SECRET-A-" + "x" * 55
SECRET_B = "SECRET-B-" + "y" * 55


@pytest.fixture
def url(database_url) -> str:
    return database_url


@pytest.fixture
def fkey() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture
def store(url, fkey):
    with AccountStore(url, fkey) as s:
        yield s


def raw_rows(url: str) -> list:
    engine = open_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(user_api_keys)).all()
    finally:
        engine.dispose()


def test_round_trip_and_encrypted_at_rest(store, url, fkey):
    id_a = store.add("alpha", KEY_A, SECRET_A)
    id_b = store.add("  beta ", KEY_B, SECRET_B)
    assert (id_a, id_b) == (1, 2)
    creds = store.active_credentials()
    assert [(c.number, c.name, c.api_key, c.api_secret, c.source, c.variable) for c in creds] == [
        (1, "alpha", KEY_A, SECRET_A, "database", "user_api_keys#1"),
        (2, "beta", KEY_B, SECRET_B, "database", "user_api_keys#2"),
    ]
    rows = raw_rows(url)
    assert [r.label for r in rows] == ["alpha", "beta"]
    for row, secret in zip(rows, (SECRET_A, SECRET_B), strict=True):
        assert row.api_secret != secret and secret not in row.api_secret  # encrypted at rest
        assert Fernet(fkey).decrypt(row.api_secret.encode()).decode() == secret  # a Fernet token, nothing else
        assert row.exchange == "binanceusdm" and row.is_active and row.created_at is not None


def test_list_redacts_and_never_holds_secrets(store):
    store.add("alpha", KEY_A, SECRET_A)
    (row,) = store.list()
    assert row.api_key == "akey…aend"
    assert SECRET_A not in repr(row) and KEY_A not in repr(row)
    assert (row.id, row.label, row.exchange, row.is_active) == (1, "alpha", "binanceusdm", True)


def test_created_at_is_utc_whatever_the_database_time_zone(url, fkey):
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import text

    engine = open_engine(url)
    if engine.dialect.name == "postgresql":  # the server answers in the session's zone: make it far from UTC
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f'ALTER DATABASE "{engine.url.database}" SET timezone TO \'Pacific/Kiritimati\''))
    engine.dispose()
    before = datetime.now(UTC)
    with AccountStore(url, fkey) as s:
        s.add("alpha", KEY_A, SECRET_A)
        (row,) = s.list()
    assert row.created_at.tzinfo is UTC
    assert before - timedelta(seconds=1) <= row.created_at <= datetime.now(UTC)


def test_disable_by_id_and_by_label(store):
    store.add("alpha", KEY_A, SECRET_A)
    store.add("beta", KEY_B, SECRET_B)
    disabled = store.disable("beta")
    assert (disabled.id, disabled.is_active) == (2, False)
    assert [c.name for c in store.active_credentials()] == ["alpha"]
    assert store.disable(1).is_active is False
    assert store.disable("1").id == 1  # disabling twice is harmless
    assert store.active_credentials() == []
    assert [r.is_active for r in store.list()] == [False, False]
    assert store.list(active_only=True) == []


def test_disable_unknown_raises(store):
    store.add("alpha", KEY_A, SECRET_A)
    with pytest.raises(AccountNotFound):
        store.disable("nobody")
    with pytest.raises(AccountNotFound):
        store.disable(99)
    store.disable("alpha")
    with pytest.raises(AccountNotFound):
        store.disable("alpha")  # labels match active rows only


def test_label_and_key_reusable_after_disable(store):
    store.add("alpha", KEY_A, SECRET_A)
    store.disable("alpha")
    assert store.add("alpha", KEY_A, SECRET_B) == 2
    assert [c.api_secret for c in store.active_credentials()] == [SECRET_B]


@pytest.mark.parametrize(
    ("label", "api_key", "api_secret", "field"),
    [
        ("alpha", KEY_B, SECRET_B, "label"),  # duplicate active label
        ("other", KEY_A, SECRET_B, "api_key"),  # duplicate active key
        ("", KEY_B, SECRET_B, "label"),
        ("123", KEY_B, SECRET_B, "label"),
        ("x" * 101, KEY_B, SECRET_B, "label"),
        ("other", "  ", SECRET_B, "api_key"),
        ("other", KEY_B, "", "api_secret"),
        ("other", KEY_B, "has space", "api_secret"),
    ],
)
def test_add_validation_names_the_field(store, label, api_key, api_secret, field):
    store.add("alpha", KEY_A, SECRET_A)
    with pytest.raises(AccountConfigError) as info:
        store.add(label, api_key, api_secret)
    assert info.value.variable == field
    assert SECRET_A not in str(info.value) and SECRET_B not in str(info.value) and KEY_A not in str(info.value)


def test_unsupported_exchange(store):
    with pytest.raises(AccountConfigError) as info:
        store.add("alpha", KEY_A, SECRET_A, exchange="kraken")
    assert info.value.variable == "exchange"


def test_missing_encryption_key_named_but_listing_works(url, fkey):
    with AccountStore(url, fkey) as s:
        s.add("alpha", KEY_A, SECRET_A)
    with AccountStore(url, None) as s:
        assert [r.label for r in s.list()] == ["alpha"]
        assert s.disable("alpha").is_active is False
        for call in (lambda: s.add("beta", KEY_B, SECRET_B), s.active_credentials, s.require_encryption_key):
            with pytest.raises(AccountConfigError) as info:
                call()
            assert info.value.variable == "ENCRYPTION_KEY" and "ENCRYPTION_KEY" in str(info.value)
            assert "Fernet.generate_key" in str(info.value)
    with AccountStore(url, "   ") as s:
        with pytest.raises(AccountConfigError, match="ENCRYPTION_KEY"):
            s.require_encryption_key()


@pytest.mark.parametrize("bad", ["not-a-key", "A" * 44, Fernet.generate_key().decode()[:-4]])
def test_invalid_encryption_key_named(url, bad):
    with pytest.raises(AccountConfigError) as info:
        AccountStore(url, bad)
    assert info.value.variable == "ENCRYPTION_KEY"
    assert bad not in str(info.value)


def test_wrong_encryption_key_cannot_decrypt(url, fkey):
    with AccountStore(url, fkey) as s:
        s.add("alpha", KEY_A, SECRET_A)
    with AccountStore(url, Fernet.generate_key()) as s:
        with pytest.raises(AccountConfigError) as info:
            s.active_credentials()
    assert info.value.variable == "ENCRYPTION_KEY" and "user_api_keys#1" in str(info.value)
    assert SECRET_A not in str(info.value)


def test_postgres_without_driver_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as without the postgres extra: import psycopg fails
    with pytest.raises(DatabaseUrlError) as info:
        AccountStore("postgresql://u:pw@localhost/fanout", Fernet.generate_key())
    assert info.value.variable == "DATABASE_URL" and "fanout[postgres]" in str(info.value)
    assert "pw" not in str(info.value)


def test_store_repr_hides_password(tmp_path):
    with AccountStore(f"sqlite:///{tmp_path / 'r.db'}") as s:
        assert repr(s).startswith("AccountStore('sqlite:///")
