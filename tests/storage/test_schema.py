"""storage/schema.py on SQLite and PostgreSQL: fresh databases, databases from before schema versions (adopted as
version 1, then upgraded), databases from a newer fanout (refused), ordered steps, failed steps, concurrent opens."""

from __future__ import annotations

import threading

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    inspect,
    select,
    update,
)

from live.account_store import ACCOUNTS, AccountStore
from storage.database import DatabaseUrlError, open_engine
from storage.journal import JOURNAL, Journal
from storage.schema import (
    Component,
    SchemaVersionError,
    Step,
    add_column,
    create_table,
    ensure_schema,
    schema_version,
)


def fanout_v1_metadata() -> MetaData:
    """The tables exactly as fanout made them before schema versions (commit 962baea): journal and accounts."""
    m = MetaData()
    Table("processed_signals", m, Column("signal_id", String(64), primary_key=True),
          Column("mode", String(16), nullable=False), Column("source", String(64), nullable=False),
          Column("payload", Text, nullable=False), Column("received_at", Float, nullable=False),
          Column("succeeded", Integer), Column("total", Integer))
    Table("executions", m, Column("signal_id", String(64), primary_key=True),
          Column("account", String(128), primary_key=True), Column("mode", String(16), nullable=False),
          Column("status", String(16), nullable=False), Column("reason", Text), Column("symbol", String(32)),
          Column("side", String(8)), Column("margin", Float), Column("notional", Float), Column("quantity", Float),
          Column("leverage", Integer), Column("fill_price", Float), Column("stop_loss", Float),
          Column("take_profit", Float), Column("entry_order_id", String(64)), Column("stop_loss_order_id", String(64)),
          Column("take_profit_order_id", String(64)), Column("time", Float), Column("recorded_at", Float,
                                                                                    nullable=False))
    Table("state", m, Column("key", String(64), primary_key=True), Column("value", Text, nullable=False),
          Column("updated_at", Float, nullable=False))
    Table("user_api_keys", m, Column("id", Integer, primary_key=True, autoincrement=True),
          Column("label", String(100), nullable=False), Column("exchange", String(32), nullable=False),
          Column("api_key", String(256), nullable=False), Column("api_secret", Text, nullable=False),
          Column("is_active", Boolean, nullable=False), Column("created_at", DateTime(timezone=True), nullable=False))
    return m


def make_v1_database(url: str) -> None:
    """A database as the fanout before schema versions left it: tables, a claimed signal, a state row."""
    engine = open_engine(url)
    try:
        m = fanout_v1_metadata()
        m.create_all(engine)
        with engine.begin() as conn:
            conn.execute(insert(m.tables["processed_signals"]).values(
                signal_id="old-1", mode="live", source="webhook", payload="{}", received_at=1.0, succeeded=3, total=3))
            conn.execute(insert(m.tables["state"]).values(key="live_brackets", value="[]", updated_at=1.0))
    finally:
        engine.dispose()


def versions(url: str) -> dict[str, int]:
    engine = open_engine(url)
    try:
        with engine.connect() as conn:
            return {r.component: r.version for r in conn.execute(select(schema_version))}
    finally:
        engine.dispose()


def shape(url: str, tables: list[str]) -> dict:
    """Per table: primary key, and per column its nullability (and its type on PostgreSQL, where types are
    enforced; SQLite keeps the declared text of old columns, e.g. VARCHAR(64), and enforces no length)."""
    engine = open_engine(url)
    try:
        insp = inspect(engine)
        strict = engine.dialect.name == "postgresql"
        return {t: (tuple(insp.get_pk_constraint(t)["constrained_columns"]),
                    {c["name"]: (c["nullable"], str(c["type"]) if strict else None) for c in insp.get_columns(t)})
                for t in tables}
    finally:
        engine.dispose()


def test_fresh_database_gets_the_latest_versions(database_url):
    Journal(database_url).close()
    AccountStore(database_url).close()
    assert versions(database_url) == {"journal": JOURNAL.latest, "accounts": ACCOUNTS.latest}
    assert JOURNAL.latest == 6
    Journal(database_url).close()  # opening again changes nothing
    assert versions(database_url) == {"journal": JOURNAL.latest, "accounts": ACCOUNTS.latest}


def test_database_from_before_versions_is_adopted_and_upgraded_like_a_fresh_one(new_database_url, caplog):
    caplog.set_level("INFO", logger="fanout.storage")
    database_url = new_database_url()
    make_v1_database(database_url)
    journal = Journal(database_url)
    try:
        assert journal.is_processed("old-1") and journal.load_state("live_brackets") == []
        assert journal.unfinished_signals("live") == []  # step 5: signals from before are done, never resumed
        source = "file:" + "x" * 200  # step 2: TEXT now
        assert journal.claim_signal("new-1", mode="live", source=source, payload={})
        assert [s["status"] for s in journal.unfinished_signals("live")] == ["received"]
    finally:
        journal.close()
    with AccountStore(database_url, Fernet.generate_key()) as store:
        store.add("alpha", "k" * 64, "s" * 64)
    assert versions(database_url) == {"journal": 6, "accounts": 1}
    assert "🗄️ journal schema: version 1 → 6 (adopted: made before schema versions were recorded)" in caplog.messages
    assert any("upgrading to version 4 (instance_lock" in m for m in caplog.messages)
    assert any("upgrading to version 6 (order_intents" in m for m in caplog.messages)

    fresh = new_database_url()
    Journal(fresh).close()
    AccountStore(fresh).close()
    tables = sorted(JOURNAL.metadata.tables) + sorted(ACCOUNTS.metadata.tables)
    assert shape(database_url, tables) == shape(fresh, tables)


def test_database_from_a_newer_fanout_is_refused_naming_both_versions(database_url):
    Journal(database_url).close()
    engine = open_engine(database_url)
    with engine.begin() as conn:
        conn.execute(update(schema_version).where(schema_version.c.component == "journal").values(version=7))
    engine.dispose()
    with pytest.raises(SchemaVersionError) as info:
        Journal(database_url)
    message = str(info.value)
    assert "journal schema of version 7" in message and "versions up to 6" in message
    assert "Upgrade fanout" in message and isinstance(info.value, DatabaseUrlError)
    assert info.value.variable == "DATABASE_URL"
    assert versions(database_url)["journal"] == 7  # untouched


def _demo_component(steps: int, *, failing: bool = False) -> tuple[Component, Table]:
    m = MetaData()
    notes = Table("demo_notes", m, Column("id", Integer, primary_key=True), Column("body", Text, nullable=False),
                  *([Column("author", String(40))] if steps >= 2 else []),
                  *([Column("stars", Integer, nullable=False, server_default="0")] if steps >= 3 else []))
    tags = Table("demo_tags", m, Column("name", String(40), primary_key=True)) if steps >= 3 else None
    chain = [Step(2, "notes.author", add_column(notes, "author"))]
    if steps >= 3:
        chain.append(Step(3, "tags table, notes.stars", lambda conn: (create_table(tags)(conn),
                                                                        add_column(notes, "stars")(conn))))
    if failing:
        def boom(conn):
            add_column(notes, "author")(conn)
            raise RuntimeError("step failed")
        chain[0] = Step(2, "notes.author then a failure", boom)
    return Component("demo", m, steps=tuple(chain[: steps - 1])), notes


def test_steps_run_in_order_from_the_recorded_version_and_keep_the_rows(database_url):
    v1, notes = _demo_component(1)
    engine = open_engine(database_url)
    try:
        assert ensure_schema(engine, v1) == 0  # fresh
        with engine.begin() as conn:
            conn.execute(insert(notes).values(id=1, body="kept"))
        v3, notes3 = _demo_component(3)
        assert ensure_schema(engine, v3) == 1
        with engine.begin() as conn:
            row = conn.execute(select(notes3)).one()
            conn.execute(insert(v3.metadata.tables["demo_tags"]).values(name="t"))
        assert (row.id, row.body, row.author, row.stars) == (1, "kept", None, 0)
        assert ensure_schema(engine, v3) == 3  # latest: nothing to do
    finally:
        engine.dispose()
    assert versions(database_url) == {"demo": 3}


def test_a_failing_step_leaves_the_database_as_it_was(database_url):
    v1, notes = _demo_component(1)
    engine = open_engine(database_url)
    try:
        ensure_schema(engine, v1)
        broken, _ = _demo_component(2, failing=True)
        with pytest.raises(RuntimeError, match="step failed"):
            ensure_schema(engine, broken)
        assert "author" not in {c["name"] for c in inspect(engine).get_columns("demo_notes")}
    finally:
        engine.dispose()
    assert versions(database_url) == {"demo": 1}


def test_steps_must_be_numbered_from_two_in_order():
    noop = create_table(Table("t", MetaData(), Column("id", Integer, primary_key=True)))
    with pytest.raises(ValueError, match="versions 2, 3"):
        Component("bad", MetaData(), steps=(Step(3, "skips 2", noop),))


def test_concurrent_first_opens_create_the_schema_once(database_url):
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def open_journal() -> None:
        barrier.wait()
        try:
            Journal(database_url).close()
        except BaseException as exc:  # noqa: BLE001 — reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_journal) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert versions(database_url) == {"journal": JOURNAL.latest}
