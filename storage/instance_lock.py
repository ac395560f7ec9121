"""Storage room: one trading bot per database — a PostgreSQL advisory lock or a SQLite file lock, and its holder's name.

The lock is what keeps two bots apart: on PostgreSQL a session-level advisory lock held by one dedicated
connection (released by the server the moment that process or its connection dies; ``idle_session_timeout`` bounds
how long a vanished host keeps it), on SQLite an exclusive ``flock`` on ``<database file>.<role>.lock`` (released by the
kernel when the process dies). The ``instance_lock`` row (storage/journal.py) only names the holder — host, pid,
since when, last heartbeat — so a refusal can say who holds the database and what to do.

:func:`hold` takes the lock for a role (``paper``, ``live``): at once, or as a standby that waits until the holder
is gone, or refuses with :class:`InstanceLocked`; with ``excludes`` it also refuses (:class:`RoleConflict`) while
a bot of another role holds the database. While held, a heartbeat task records the time and notices a lost lock (a
dropped PostgreSQL connection, a removed lock file): it logs, sets ``lost`` and calls the ``on_lost`` callbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from sqlalchemy import Connection, delete, insert, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from storage.database import DatabaseUrlError, display_url, open_engine
from storage.journal import JOURNAL, instance_lock
from storage.schema import open_versioned

log = logging.getLogger("fanout.storage")
HEARTBEAT_SECONDS = 10.0
# PostgreSQL ends the lock's session after this long without a heartbeat (a host that vanished without closing
# its connection), so a standby can take over; PostgreSQL 14 or later (older servers keep TCP keepalives only).
IDLE_SESSION_TIMEOUT = "60s"
PG_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
                 "tcp_user_timeout": 30_000}


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds the database for a role: host, pid, since (epoch s), last heartbeat (epoch s)."""

    host: str
    pid: int
    started_at: float
    heartbeat_at: float

    def describe(self, now: float | None = None) -> str:
        since = datetime.fromtimestamp(self.started_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        ago = max(0.0, (time.time() if now is None else now) - self.heartbeat_at)
        return f"host {self.host}, pid {self.pid}, since {since} (last heartbeat {ago:.0f} s ago)"


class InstanceLocked(RuntimeError):
    """Another process holds the database for this role; the message names it and says what to do."""

    def __init__(self, role: str, url: str, holder: Holder | None) -> None:
        self.role, self.holder = role, holder
        who = holder.describe() if holder else "a process that has not written its name yet"
        super().__init__(
            f"another {role} bot holds the database {display_url(url)}: {who}. Only one {role} bot may trade on a "
            f"database: stop that one first (docker compose stop bot, or kill {holder.pid if holder else 'it'} on "
            f"its host), or send it the signal instead (its webhook or signals file); `fanout run` without "
            f"--no-standby waits as a standby and takes over when it stops")


class RoleConflict(InstanceLocked):
    """A bot of another role (paper versus live) holds the database, which the two must not share."""

    def __init__(self, role: str, other: str, url: str, holder: Holder | None) -> None:
        RuntimeError.__init__(
            self,
            f"a {other} bot holds the database {display_url(url)}: "
            f"{holder.describe() if holder else 'a process that has not written its name yet'}. A {role} bot "
            f"may not run beside it on one database: both would claim signals in the same journal (a signal one "
            f"takes, the other never executes). Give the {role} bot its own DATABASE_URL (e.g. "
            f"sqlite:///{role}.db), or stop the {other} bot first")
        self.role, self.other, self.holder = role, other, holder


class InstanceLockLost(RuntimeError):
    """The lock this process held is gone (connection dropped, lock file removed): stop trading."""


def _pg_key(role: str) -> int:
    return int.from_bytes(hashlib.sha256(f"fanout instance {role}".encode()).digest()[:8], "big", signed=True)


def _sqlite_file(url: str) -> Path | None:
    db = make_url(url).database
    return None if db in (None, "", ":memory:") else Path(db)


class InstanceLock:
    """The lock for ``role`` on the database at ``url``; :meth:`try_acquire`, :meth:`heartbeat`, :meth:`release`."""

    def __init__(self, url: str, role: str = "live") -> None:
        self.url, self.role = url, role
        self.engine = open_versioned(url, JOURNAL)  # the instance_lock table is the journal's
        self.dialect = self.engine.dialect.name
        if self.dialect not in ("postgresql", "sqlite"):
            self.engine.dispose()
            raise DatabaseUrlError(f"DATABASE_URL: the one-bot-per-database lock needs SQLite or PostgreSQL, "
                                   f"not {self.dialect}")
        self._conn: Connection | None = None  # PostgreSQL: the connection holding the advisory lock
        self._file: IO[bytes] | None = None  # SQLite: the flock'ed file
        self._lock_engine = None
        self.held = False
        self.lost = False  # set when the heartbeat found the lock gone
        self._lost_callbacks: list[Callable[[], None]] = []
        self._heartbeat_task: asyncio.Task | None = None
        self.started_at = 0.0

    def __repr__(self) -> str:
        return f"InstanceLock({self.role!r}, {display_url(self.url)}, held={self.held})"

    def try_acquire(self) -> bool:
        """Take the lock if free (and write our name); False if another process holds it."""
        if self.held:
            return True
        got = self._try_pg() if self.dialect == "postgresql" else self._try_file()
        if got:
            self.held, self.started_at = True, time.time()
            self._write_holder()
        return got

    def _try_pg(self) -> bool:
        if self._lock_engine is None:
            self._lock_engine = open_engine(self.url, connect_args=PG_KEEPALIVES)
        conn = self._lock_engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _pg_key(self.role)}).scalar())
        except BaseException:
            conn.close()
            raise
        if not got:
            conn.close()
            return False
        try:
            conn.execute(text(f"SET idle_session_timeout = '{IDLE_SESSION_TIMEOUT}'"))
        except DBAPIError:  # PostgreSQL before 14: TCP keepalives still end a dead session, only later
            log.info("PostgreSQL has no idle_session_timeout (before 14): a vanished host's lock ends with TCP "
                     "keepalives only")
        self._conn = conn
        return True

    def _try_file(self) -> bool:
        path = _sqlite_file(self.url)
        if path is None:  # an in-memory database belongs to this process alone
            return True
        lock_path = path.with_name(f"{path.name}.{self.role}.lock")
        handle = open(lock_path, "a+b")  # noqa: SIM115 — held open for as long as the lock
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        if os.fstat(handle.fileno()).st_ino != os.stat(lock_path).st_ino:  # removed and made again meanwhile
            handle.close()
            return self._try_file()
        self._file = handle
        return True

    def is_free(self) -> bool:
        """True when no process holds this role's lock: taken for a moment and given back, no name written (a
        bot of the same role starting in that moment finds it taken once, and as a standby tries again)."""
        if self.held:
            return False
        got = self._try_pg() if self.dialect == "postgresql" else self._try_file()
        self._let_go()
        return got

    def _write_holder(self) -> None:
        row = {"host": socket.gethostname(), "pid": os.getpid(), "started_at": self.started_at,
               "heartbeat_at": self.started_at}
        with self.engine.begin() as conn:
            conn.execute(delete(instance_lock).where(instance_lock.c.role == self.role))
            conn.execute(insert(instance_lock).values(role=self.role, **row))

    def holder(self) -> Holder | None:
        """The name the current (or last) holder wrote, or None."""
        t = instance_lock
        with self.engine.connect() as conn:
            row = conn.execute(select(t.c.host, t.c.pid, t.c.started_at, t.c.heartbeat_at)
                               .where(t.c.role == self.role)).first()
        return Holder(row.host, int(row.pid), float(row.started_at), float(row.heartbeat_at)) if row else None

    def heartbeat(self) -> None:
        """Check the lock is still ours, then record a heartbeat; raises :class:`InstanceLockLost` when the lock is
        gone. Failing to write the heartbeat time (a busy SQLite file) is only logged: the lock still holds."""
        if not self.held or (self.dialect == "postgresql" and self._conn is None):
            raise InstanceLockLost(f"the {self.role} lock is not held")
        if self._conn is not None:  # a session-level lock lives exactly as long as its session
            try:
                self._conn.execute(text("SELECT 1"))
            except SQLAlchemyError as exc:
                self.held = False
                reason = type(getattr(exc, "orig", None) or exc).__name__
                raise InstanceLockLost(f"the database connection holding the {self.role} lock failed: {reason}") \
                    from None
        elif self._file is not None:
            lock_path = Path(self._file.name)
            if not lock_path.exists() or os.stat(lock_path).st_ino != os.fstat(self._file.fileno()).st_ino:
                self.held = False
                raise InstanceLockLost(f"the lock file {lock_path} was removed")
        try:
            with self.engine.begin() as conn:
                conn.execute(update(instance_lock).where(instance_lock.c.role == self.role)
                             .values(heartbeat_at=time.time()))
        except SQLAlchemyError as exc:
            log.warning("heartbeat time not recorded (%s); the %s lock is still held", type(exc).__name__, self.role)

    def on_lost(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (e.g. the bot's stop) if the heartbeat finds the lock gone."""
        self._lost_callbacks.append(callback)

    def start_heartbeat(self, interval: float = HEARTBEAT_SECONDS) -> None:
        """Heartbeat every ``interval`` s on the running event loop while the lock is held (:func:`hold` starts it:
        a PostgreSQL lock's session must not sit idle past IDLE_SESSION_TIMEOUT)."""
        self._heartbeat_task = asyncio.get_running_loop().create_task(self._beat(interval))

    async def _beat(self, interval: float) -> None:
        while self.held:
            await asyncio.sleep(interval)
            try:
                self.heartbeat()
            except InstanceLockLost as exc:
                log.critical("🛑 %s; stopping: another %s bot may take over this database", exc, self.role)
                self.lost = True
                for callback in self._lost_callbacks:
                    callback()
                return

    def release(self) -> None:
        """Give the lock up (and clear our name); closes the connections. Safe to call twice."""
        task, self._heartbeat_task = self._heartbeat_task, None
        if task is not None and not task.done():
            with contextlib.suppress(RuntimeError):  # its event loop may be closed already
                task.cancel()
        if self.held:
            with contextlib.suppress(SQLAlchemyError):
                with self.engine.begin() as conn:
                    conn.execute(delete(instance_lock).where(
                        (instance_lock.c.role == self.role) & (instance_lock.c.pid == os.getpid())
                        & (instance_lock.c.host == socket.gethostname())))
        self.held = False
        self._let_go()
        self.engine.dispose()

    def _let_go(self) -> None:
        """Unlock and close what holds the lock (the PostgreSQL connection, the lock file)."""
        if self._conn is not None:
            with contextlib.suppress(SQLAlchemyError):  # a dropped connection has nothing left to unlock
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _pg_key(self.role)})
            with contextlib.suppress(SQLAlchemyError):
                self._conn.close()
            self._conn = None
        if self._file is not None:
            self._file.close()  # closing drops the flock
            self._file = None
        if self._lock_engine is not None:
            self._lock_engine.dispose()
            self._lock_engine = None


async def hold(url: str, role: str = "live", *, standby: bool = False, poll_seconds: float = 5.0,
               heartbeat_seconds: float = HEARTBEAT_SECONDS, excludes: Iterable[str] = ()) -> InstanceLock:
    """The lock for ``role``, taken now; if another process holds it, wait for it as a standby (``standby``) or
    raise :class:`InstanceLocked` naming the holder. Once taken, :class:`RoleConflict` (never a wait) while a bot
    of a role in ``excludes`` holds the database. The returned lock heartbeats until released."""
    lock = InstanceLock(url, role)
    try:
        if not lock.try_acquire():
            holder = lock.holder()
            if not standby:
                raise InstanceLocked(role, url, holder)
            log.warning("⏸️ standby: another %s bot holds the database (%s); waiting to take over, checking every "
                        "%g s", role, holder.describe() if holder else "name not written yet", poll_seconds)
            while not lock.try_acquire():
                await asyncio.sleep(poll_seconds)
            log.warning("▶️ took over the database as the %s bot (the previous holder is gone)", role)
        for other in excludes:  # checked while holding ours: of two bots starting together, one sees the other
            probe = InstanceLock(url, other)
            try:
                if not probe.is_free():
                    raise RoleConflict(role, other, url, probe.holder())
            finally:
                probe.release()
        lock.start_heartbeat(heartbeat_seconds)
        return lock
    except BaseException:
        lock.release()
        raise
