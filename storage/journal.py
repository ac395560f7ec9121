"""Storage room: the execution journal (SQLite / PostgreSQL via DATABASE_URL): processed signals, per-account executions, state.

Both paper and live record here, so a restart never executes a signal twice: a signal id is claimed in
``processed_signals`` before any order is sent, and every account's outcome lands in ``executions``.
Paper mode also keeps the simulated venue's state under ``state`` (a JSON document per key).
"""

from __future__ import annotations

import json
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
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from engine.results import AccountResult
from storage.database import DEFAULT_DATABASE_URL, open_engine

metadata = MetaData()

processed_signals = Table(
    "processed_signals", metadata,
    Column("signal_id", String(64), primary_key=True),
    Column("mode", String(16), nullable=False),
    Column("source", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    Column("received_at", Float, nullable=False),
    Column("succeeded", Integer),
    Column("total", Integer),
)

executions = Table(
    "executions", metadata,
    Column("signal_id", String(64), primary_key=True),
    Column("account", String(128), primary_key=True),
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


class Journal:
    """Thin SQLAlchemy Core wrapper; create tables on first use."""

    def __init__(self, database_url: str = DEFAULT_DATABASE_URL) -> None:
        self.engine = open_engine(database_url)
        metadata.create_all(self.engine)

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

    def executions(self, mode: str | None = None) -> list[dict]:
        q = select(executions)
        if mode:
            q = q.where(executions.c.mode == mode)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q.order_by(executions.c.recorded_at))]

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
