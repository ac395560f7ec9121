"""DATABASE_URL rules: defaults, PostgreSQL routed to psycopg 3, passwords masked, missing SQLite files, waiting
for a server that is still starting."""

import asyncio
import logging

import pytest

from storage.database import (
    DatabaseUrlError,
    database_url,
    display_url,
    normalize_url,
    sqlite_file_missing,
    wait_until_reachable,
)
from tests.postgres_server import PostgresServer, _free_port


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


async def test_wait_returns_at_once_for_sqlite_and_a_running_server(tmp_path, database_url):
    await wait_until_reachable(f"sqlite:///{tmp_path / 'nowhere' / 'x.db'}", timeout=0)  # no server to wait for
    await wait_until_reachable(database_url, timeout=0)


async def test_wait_gives_up_naming_the_setting_without_the_password(caplog, postgres_server):
    url = f"postgresql://fanout:hunter2-secret@127.0.0.1:{_free_port()}/fanout"  # nothing listens there
    now = [1000.0]
    waits: list[float] = []

    async def sleep(seconds: float) -> None:  # time passes at once
        waits.append(seconds)
        now[0] += seconds

    with pytest.raises(DatabaseUrlError) as info:
        await wait_until_reachable(url, timeout=5, interval=2, sleep=sleep, clock=lambda: now[0])
    assert waits == [2, 2]  # attempts at 0, 2 and 4 s; the next would come after the 5 s
    message = str(info.value)
    assert "did not answer within 5 s (DATABASE_WAIT_SECONDS)" in message and "hunter2" not in message
    assert any(m.startswith("⏳ database postgresql://fanout:***@127.0.0.1:") and "not ready" in m
               for m in caplog.messages)
    assert "hunter2" not in caplog.text


async def test_wait_until_a_starting_server_answers(caplog, postgres_server):
    """A bot started beside its database (docker compose) waits for it instead of crashing: the first attempt is
    refused and logged; during the wait the server comes up; the next attempt connects."""
    caplog.set_level(logging.WARNING, logger="fanout.storage")
    server = PostgresServer(port=_free_port())
    waits: list[float] = []

    async def server_starts_meanwhile(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.to_thread(server.start)

    try:
        await wait_until_reachable(server.url(), timeout=120, interval=0.5, sleep=server_starts_meanwhile)
    finally:
        server.stop()
    assert waits == [0.5]
    (line,) = caplog.messages
    assert line.startswith("⏳ database postgresql://fanout@127.0.0.1:") and "not ready" in line
    assert "retrying in 0.5 s" in line
