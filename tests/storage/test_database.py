"""DATABASE_URL rules: defaults, PostgreSQL routed to psycopg 3, passwords masked, missing SQLite files."""

import pytest

from storage.database import DatabaseUrlError, database_url, display_url, normalize_url, sqlite_file_missing


def test_urls():
    assert database_url({}) == "sqlite:///fanout.db"
    assert database_url({"DATABASE_URL": "  "}) == "sqlite:///fanout.db"
    assert database_url({"DATABASE_URL": "sqlite:///x.db"}) == "sqlite:///x.db"
    assert normalize_url("postgres://u:pw@db:5432/fanout") == "postgresql+psycopg://u:pw@db:5432/fanout"
    assert normalize_url("postgresql://u:pw@db/fanout") == "postgresql+psycopg://u:pw@db/fanout"
    assert normalize_url("postgresql+psycopg2://u@db/f") == "postgresql+psycopg2://u@db/f"
    assert normalize_url("sqlite:///fanout.db") == "sqlite:///fanout.db"
    assert "pw" not in display_url("postgresql://u:pw@db/fanout")
    with pytest.raises(DatabaseUrlError) as info:
        normalize_url("not a url")
    assert info.value.variable == "DATABASE_URL"


def test_sqlite_file_missing(tmp_path):
    assert sqlite_file_missing(f"sqlite:///{tmp_path / 'none.db'}") is True
    (tmp_path / "yes.db").write_bytes(b"")
    assert sqlite_file_missing(f"sqlite:///{tmp_path / 'yes.db'}") is False
    assert sqlite_file_missing("sqlite://") is False
    assert sqlite_file_missing("sqlite:///:memory:") is False
    assert sqlite_file_missing("postgresql://u@db/f") is False
