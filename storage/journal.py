"""Storage room: the execution journal (SQLite / PostgreSQL via DATABASE_URL): each signal's life, each order's
life, per-account executions, state.

Both paper and live record here, so a signal is executed exactly once across crashes:

- ``processed_signals``: a signal is journaled on arrival (status ``received``), ``claimed`` before any order,
  ``done`` once every account has a final outcome. A restart resumes every signal not done (engine/resume.py).
- ``order_intents``: per signal, account and leg (E, SL, TP, X) the order's state — ``intent`` written before its
  request, then ``sent`` (reply lost), ``acknowledged`` or ``failed``: which orders may exist after a crash.
- ``executions``: every account's outcome, written as soon as the account is done (and updated when an
  ``unknown`` one is settled).
- ``state``: JSON documents (the paper venue, brackets, risk ledger); ``instance_lock``: the bot holding the
  database (storage/instance_lock.py).

Order states and outcomes are written through :class:`~storage.writer.GroupWriter` (awaited, group-committed on
one thread); the rest synchronously. ``crash_at`` (FANOUT_CRASH_AT, storage/crash_points.py) ends the process
before a named write, for the crash harness. The tables are the ``journal`` schema component (storage/schema.py):
a new table or column is one more :class:`Step` in ``JOURNAL``.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from dataclasses import fields as dataclass_fields
from typing import Any

from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    delete,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from engine.results import AccountResult, OrderEvent
from storage.crash_points import CrashPoints
from storage.database import DEFAULT_DATABASE_URL, display_url, open_engine, sqlite_file_missing
from storage.schema import Component, Step, add_column, create_table, ensure_schema, widen_to_text
from storage.writer import GroupWriter

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
    Column("status", String(16), nullable=False, server_default="done"),  # received | claimed | done
)
RECEIVED, CLAIMED, DONE = "received", "claimed", "done"

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

order_intents = Table(
    "order_intents", metadata,
    Column("signal_id", String(64), primary_key=True),
    Column("account", Text, primary_key=True),
    Column("leg", String(4), primary_key=True),  # E, SL, TP, X (engine/ids.py)
    Column("mode", String(16), nullable=False),
    Column("client_order_id", String(64), nullable=False),
    Column("state", String(16), nullable=False),  # intent | sent | acknowledged | failed
    Column("order_id", String(64)),
    Column("amount", Float),
    Column("price", Float),
    Column("margin", Float),
    Column("notional", Float),
    Column("leverage", Integer),
    Column("detail", Text),
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
    Step(5, "processed_signals.status: a signal's life (received, claimed, done; older rows are done)",
         add_column(processed_signals, "status")),
    Step(6, "order_intents: every order's state, its intent written before it is sent", create_table(order_intents)),
))


class JournalMissing(LookupError):
    """``Journal(url, create=False)`` found no journal there; the message shows the URL with its password masked."""


class Journal:
    """Thin SQLAlchemy Core wrapper; creates or upgrades the tables on open (storage/schema.py).

    ``create=False`` opens an existing journal as it is, for reading it (analysis): no file or table is created
    and no schema is upgraded; :class:`JournalMissing` when the database holds no journal. ``crash_at``: an
    injected crash point (storage/crash_points.py), for the crash harness only.
    """

    def __init__(self, database_url: str = DEFAULT_DATABASE_URL, *, create: bool = True,
                 crash_at: str | None = None) -> None:
        self.crash = CrashPoints(crash_at)
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
        self.writer = GroupWriter(self.engine)

    def _check_journal(self, shown_url: str) -> None:
        inspector = inspect(self.engine)
        absent = [t.name for t in (processed_signals, executions, state) if not inspector.has_table(t.name)]
        if absent:  # the tables of every journal version (version 1 on)
            raise JournalMissing(f"{shown_url} is not a fanout journal (no table(s) {', '.join(absent)})")

    def __repr__(self) -> str:
        return f"Journal({self.engine.url.render_as_string(hide_password=True)})"

    def checkpoint(self, point: str, account: str | None = None) -> None:
        """A moment of a signal's life with no write of its own (``summary``): the crash point may be here."""
        self.crash.reached(point, account)

    # ------------------------------------------------------------------ signals
    def claim_signal(self, signal_id: str, *, mode: str, source: str, payload: dict) -> bool:
        """Journal a signal as received; False if it was already journaled (never execute it again: a signal not
        done is resumed by :meth:`unfinished_signals`' reader, not claimed twice)."""
        self.crash.reached(RECEIVED)
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(processed_signals).values(
                    signal_id=signal_id, mode=mode, source=source, payload=json.dumps(payload, default=str),
                    received_at=time.time(), status=RECEIVED,
                ))
            return True
        except IntegrityError:
            return False

    def mark_claimed(self, signal_id: str) -> None:
        """The signal is prepared and about to trade: from now on orders may exist."""
        self.crash.reached(CLAIMED)
        with self.engine.begin() as conn:
            conn.execute(update(processed_signals).where(processed_signals.c.signal_id == signal_id)
                         .values(status=CLAIMED))

    def release_signal(self, signal_id: str) -> None:
        """Undo a claim when nothing was sent (e.g. no price yet), so the signal can be tried again."""
        with self.engine.begin() as conn:
            conn.execute(delete(processed_signals).where(processed_signals.c.signal_id == signal_id))

    def is_processed(self, signal_id: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(
                select(processed_signals.c.signal_id).where(processed_signals.c.signal_id == signal_id)
            ).first() is not None

    def finish_signal(self, mode: str, signal_id: str, succeeded: int, total: int) -> None:
        """Every account has its final outcome: the signal is done."""
        self.crash.reached(DONE)
        with self.engine.begin() as conn:
            conn.execute(update(processed_signals).where(processed_signals.c.signal_id == signal_id)
                         .values(succeeded=succeeded, total=total, status=DONE))
        log.info("📒 journal: %s signal %s recorded (%d/%d succeeded)", mode, signal_id, succeeded, total)

    def unfinished_signals(self, mode: str) -> list[dict]:
        """Signals of ``mode`` not done, oldest first: signal_id, payload (dict), source, received_at, status."""
        q = (select(processed_signals).where(processed_signals.c.mode == mode, processed_signals.c.status != DONE)
             .order_by(processed_signals.c.received_at, processed_signals.c.signal_id))
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(q)]
        for row in rows:
            row["payload"] = json.loads(row["payload"])
        return rows

    # ------------------------------------------------------------------ orders and outcomes
    async def record_order(self, mode: str, event: OrderEvent) -> None:
        """One state of one order (awaited until committed; an intent must be, before its order is sent)."""
        self.crash.reached(f"{event.leg}.{event.state}", event.account)
        keys = {"signal_id": event.signal_id, "account": event.account, "leg": event.leg}
        if event.state == "intent":
            fields = {k: getattr(event, k) for k in _columns_of(OrderEvent, order_intents) if k not in keys}
        else:  # the intent's amount, price and sizing stay as recorded
            fields = {"state": event.state, "client_order_id": event.client_order_id}
            fields.update({k: v for k, v in (("order_id", event.order_id), ("detail", event.detail)) if v})
        fields.update(mode=mode, updated_at=time.time())

        def write(conn: Any) -> None:
            _upsert(conn, order_intents, keys, fields)

        await self.writer.submit(write)
        if event.state == "intent":
            self.crash.reached(f"{event.leg}.sending", event.account)  # durable, not sent yet

    def order_intents(self, signal_id: str) -> list[dict]:
        """Every order state journaled for ``signal_id`` (one row per account and leg)."""
        q = select(order_intents).where(order_intents.c.signal_id == signal_id).order_by(
            order_intents.c.account, order_intents.c.leg)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    async def record_outcome(self, mode: str, result: AccountResult) -> None:
        """One account's outcome for one signal, as soon as it is known (replacing an earlier one)."""
        self.crash.reached("outcome", result.account)
        keys, fields = _execution_row(mode, result)

        def write(conn: Any) -> None:
            _upsert(conn, executions, keys, fields)

        await self.writer.submit(write)

    def outcomes(self, signal_id: str) -> list[dict]:
        """The executions rows of ``signal_id``."""
        q = select(executions).where(executions.c.signal_id == signal_id).order_by(executions.c.account)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def record_results(self, mode: str, results: list[AccountResult], succeeded: int, total: int) -> None:
        """Every account's outcome at once (replacing earlier ones) and the signal done."""
        if not results:
            return
        now = time.time()
        with self.engine.begin() as conn:
            for r in results:
                _upsert(conn, executions, *_execution_row(mode, r, now))
        self.finish_signal(mode, results[0].signal_id, succeeded, total)

    def executions(self, mode: str | None = None) -> list[dict]:
        q = select(executions)
        if mode:
            q = q.where(executions.c.mode == mode)
        with self.engine.connect() as conn:
            order = (executions.c.recorded_at, executions.c.signal_id, executions.c.account)
            return [dict(r._mapping) for r in conn.execute(q.order_by(*order))]

    # ------------------------------------------------------------------ state
    def save_state(self, key: str, value: Any) -> None:
        text = json.dumps(value, separators=(",", ":"))
        with self.engine.begin() as conn:
            _upsert(conn, state, {"key": key}, {"value": text, "updated_at": time.time()})

    def load_state(self, key: str) -> Any | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(state.c.value).where(state.c.key == key)).first()
        return json.loads(row[0]) if row else None

    def close(self) -> None:
        self.writer.close()
        self.engine.dispose()


def _execution_row(mode: str, result: AccountResult, now: float | None = None) -> tuple[dict, dict]:
    row = {k: getattr(result, k) for k in _columns_of(AccountResult, executions)}
    keys = {"signal_id": row.pop("signal_id"), "account": row.pop("account")}
    row.update(mode=mode, time=result.time, recorded_at=time.time() if now is None else now)
    return keys, row


@functools.cache
def _columns_of(record: type, table: Table) -> tuple[str, ...]:
    """The fields of the dataclass ``record`` that are columns of ``table`` (all scalars: read, not deep-copied)."""
    return tuple(f.name for f in dataclass_fields(record) if f.name in table.c)


def _upsert(conn: Any, table: Table, keys: dict, fields: dict) -> None:
    """Update the row with these keys, or insert it (SQLAlchemy Core, the same on SQLite and PostgreSQL)."""
    update_statement, insert_statement = _upsert_statements(table, tuple(keys), tuple(fields))
    params = {f"k_{k}": v for k, v in keys.items()}
    params.update({f"v_{k}": v for k, v in fields.items()})
    if conn.execute(update_statement, params).rowcount == 0:
        conn.execute(insert_statement, params)


@functools.cache
def _upsert_statements(table: Table, keys: tuple[str, ...], fields: tuple[str, ...]) -> tuple[Any, Any]:
    """The UPDATE and INSERT for these key and field columns, built once with bound parameters (``k_``/``v_``
    names): a journal write then costs an execution, not a statement's construction and cache-key walk."""
    where = [table.c[k] == bindparam(f"k_{k}") for k in keys]
    values = {k: bindparam(f"v_{k}") for k in fields}
    return (update(table).where(*where).values(values),
            insert(table).values({**{k: bindparam(f"k_{k}") for k in keys}, **values}))
