"""Storage room: the execution journal (SQLite / PostgreSQL via DATABASE_URL): processed signals, per-account executions, state.

Both paper and live record here, so a restart never executes a signal twice: a signal id is claimed in
``processed_signals`` before any order is sent, and every account's outcome lands in ``executions``.
Paper mode also keeps the simulated venue's state under ``state`` (a JSON document per key), and
``instance_lock`` names the bot holding the database (storage/instance_lock.py). The tables are the ``journal``
schema component (storage/schema.py): a new table or column is one more :class:`Step` in ``JOURNAL``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from typing import Any

from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from engine.results import AccountResult
from storage.database import DEFAULT_DATABASE_URL, display_url, open_engine, sqlite_file_missing
from storage.schema import Component, Step, create_table, ensure_schema, widen_to_text

log = logging.getLogger("fanout.storage")
metadata = MetaData()

processed_signals = Table(
    "processed_signals", metadata,
    Column("signal_id", String(64), primary_key=True),
    Column("mode", String(16), nullable=False),
    Column("source", Text, nullable=False),  # "file:<name>", "webhook", "cli": any length
    Column("payload", Text, nullable=False),
    Column("received_at", Float, nullable=False),
    Column("succeeded", Integer),
    Column("total", Integer),
)

executions = Table(
    "executions", metadata,
    Column("signal_id", String(64), primary_key=True),
    Column("account", Text, primary_key=True),  # account names are the user's
    Column("mode", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", Text),
    Column("symbol", String(32)),
    Column("side", String(8)),
    Column("margin", Float),
    Column("notional", Float),
    Column("quantity", Float),
    Column("leverage", Integer),
    Column("fill_price", Float),
    Column("stop_loss", Float),
    Column("take_profit", Float),
    Column("entry_order_id", String(64)),
    Column("stop_loss_order_id", String(64)),
    Column("take_profit_order_id", String(64)),
    Column("time", Float),
    Column("recorded_at", Float, nullable=False),
)

state = Table(
    "state", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)

instance_lock = Table(
    "instance_lock", metadata,
    Column("role", String(16), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
)

# Version 1: processed_signals, executions, state (fanout before schema versions). Add steps at the end only.
JOURNAL = Component("journal", metadata, steps=(
    Step(2, "processed_signals.source as TEXT (a long signals-file name broke claims on PostgreSQL)",
         widen_to_text(processed_signals, "source")),
    Step(3, "executions.account as TEXT (account names have no length limit)", widen_to_text(executions, "account")),
    Step(4, "instance_lock: which bot holds the database", create_table(instance_lock)),
))


class JournalMissing(LookupError):
    """``Journal(url, create=False)`` found no journal there; the message shows the URL with its password masked."""


class Journal:
    """Thin SQLAlchemy Core wrapper; creates or upgrades the tables on open (storage/schema.py).

    ``create=False`` opens an existing journal as it is, for reading it (analysis): no file or table is created
    and no schema is upgraded; :class:`JournalMissing` when the database holds no journal.
    """

    def __init__(self, database_url: str = DEFAULT_DATABASE_URL, *, create: bool = True) -> None:
        if not create and sqlite_file_missing(database_url):
            raise JournalMissing(f"no journal at {display_url(database_url)}: the SQLite file does not exist")
        self.engine = open_engine(database_url)
        try:
            if create:
                ensure_schema(self.engine, JOURNAL)
            else:
                self._check_journal(display_url(database_url))
        except BaseException:
            self.engine.dispose()
            raise

    def _check_journal(self, shown_url: str) -> None:
        inspector = inspect(self.engine)
        absent = [t.name for t in (processed_signals, executions, state) if not inspector.has_table(t.name)]
        if absent:  # the tables of every journal version (version 1 on)
            raise JournalMissing(f"{shown_url} is not a fanout journal (no table(s) {', '.join(absent)})")

    def __repr__(self) -> str:
        return f"Journal({self.engine.url.render_as_string(hide_password=True)})"

    def claim_signal(self, signal_id: str, *, mode: str, source: str, payload: dict) -> bool:
        """Record a signal as taken; False if it was already processed (never execute it again)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(processed_signals).values(
                    signal_id=signal_id, mode=mode, source=source, payload=json.dumps(payload, default=str),
                    received_at=time.time(),
                ))
            return True
        except IntegrityError:
            return False

    def release_signal(self, signal_id: str) -> None:
        """Undo a claim when nothing was sent (e.g. no price yet), so the signal can be tried again."""
        with self.engine.begin() as conn:
            conn.execute(delete(processed_signals).where(processed_signals.c.signal_id == signal_id))

    def is_processed(self, signal_id: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(
                select(processed_signals.c.signal_id).where(processed_signals.c.signal_id == signal_id)
            ).first() is not None

    def record_results(self, mode: str, results: list[AccountResult], succeeded: int, total: int) -> None:
        if not results:
            return
        now = time.time()
        with self.engine.begin() as conn:
            for r in results:
                row = {k: v for k, v in asdict(r).items() if k in executions.c and k not in ("time",)}
                row.update(mode=mode, time=r.time, recorded_at=now)
                conn.execute(insert(executions).values(**row))
            conn.execute(update(processed_signals).where(processed_signals.c.signal_id == results[0].signal_id)
                         .values(succeeded=succeeded, total=total))
        log.info("📒 journal: %s signal %s recorded (%d/%d succeeded)", mode, results[0].signal_id, succeeded, total)

    def executions(self, mode: str | None = None) -> list[dict]:
        q = select(executions)
        if mode:
            q = q.where(executions.c.mode == mode)
        with self.engine.connect() as conn:
            order = (executions.c.recorded_at, executions.c.signal_id, executions.c.account)
            return [dict(r._mapping) for r in conn.execute(q.order_by(*order))]

    def save_state(self, key: str, value: Any) -> None:
        text = json.dumps(value, separators=(",", ":"))
        with self.engine.begin() as conn:
            done = conn.execute(update(state).where(state.c.key == key).values(value=text, updated_at=time.time()))
            if done.rowcount == 0:
                conn.execute(insert(state).values(key=key, value=text, updated_at=time.time()))

    def load_state(self, key: str) -> Any | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(state.c.value).where(state.c.key == key)).first()
        return json.loads(row[0]) if row else None

    def close(self) -> None:
        self.engine.dispose()
