"""storage/instance_lock.py on SQLite and PostgreSQL: one holder per role, the refusal names it, a standby takes over
when the holder releases or dies (a real second process, killed), a lost lock is noticed by the heartbeat."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from storage.database import open_engine
from storage.instance_lock import InstanceLock, InstanceLocked, InstanceLockLost, RoleConflict, hold

ROOT = Path(__file__).resolve().parents[2]
HOLDER_SCRIPT = """
import sys
from storage.instance_lock import InstanceLock
lock = InstanceLock(sys.argv[1], "live")
assert lock.try_acquire()
print("held", flush=True)
sys.stdin.read()  # hold until killed
"""


@pytest.fixture
def first(database_url):
    lock = InstanceLock(database_url, "live")
    assert lock.try_acquire()
    yield lock
    lock.release()


async def test_second_holder_is_refused_with_the_first_ones_name(first, database_url):
    other = InstanceLock(database_url, "live")
    try:
        assert other.try_acquire() is False
        holder = other.holder()
        assert (holder.host, holder.pid) == (socket.gethostname(), os.getpid())
        assert holder.started_at == pytest.approx(first.started_at)
    finally:
        other.release()
    with pytest.raises(InstanceLocked) as info:
        await hold(database_url, "live", standby=False)
    message = str(info.value)
    assert f"host {socket.gethostname()}, pid {os.getpid()}, since " in message and " UTC " in message
    assert "stop that one first" in message and "waits as a standby" in message
    assert "another live bot holds the database" in message
    paper = InstanceLock(database_url, "paper")  # roles are independent
    try:
        assert paper.try_acquire()
    finally:
        paper.release()


@pytest.mark.parametrize(("role", "other"), [("paper", "live"), ("live", "paper")])
async def test_a_paper_bot_and_a_live_bot_never_share_a_database(role, other, database_url):
    held = await hold(database_url, other, excludes=[role])
    try:
        for standby in (False, True):  # a misconfiguration: refused at once, never waited for
            with pytest.raises(RoleConflict) as info:
                await hold(database_url, role, standby=standby, excludes=[other])
            message = str(info.value)
            assert f"a {other} bot holds the database" in message and f"pid {os.getpid()}, since " in message
            assert f"own DATABASE_URL (e.g. sqlite:///{role}.db)" in message
            assert isinstance(info.value, InstanceLocked)  # the commands' exit 3
        assert held.held and held.holder().pid == os.getpid()  # the check took nothing from the holder
    finally:
        held.release()
    # the other one gone: the refused attempts left nothing held, and the check leaves the other role free
    mine = await hold(database_url, role, excludes=[other])
    probe = InstanceLock(database_url, other)
    try:
        assert mine.held and probe.is_free() and probe.is_free()
    finally:
        probe.release()
        mine.release()


async def test_refusal_never_shows_the_database_password(postgres_url):
    url = postgres_url.replace("fanout@", "fanout:hunter2-secret@")  # trust auth: any password is accepted
    lock = InstanceLock(url, "live")
    assert lock.try_acquire()
    try:
        with pytest.raises(InstanceLocked) as info:
            await hold(url, "live")
        assert "hunter2-secret" not in str(info.value) and "***" in str(info.value)
        assert "hunter2-secret" not in repr(lock)
    finally:
        lock.release()


async def test_standby_takes_over_when_the_holder_releases(first, database_url):
    waiting = asyncio.create_task(hold(database_url, "live", standby=True, poll_seconds=0.05))
    await asyncio.sleep(0)  # let the standby find the lock taken
    assert not waiting.done()
    first.release()
    second = await asyncio.wait_for(waiting, 30)
    try:
        assert second.held and second.holder().pid == os.getpid()
    finally:
        second.release()


async def test_the_holder_heartbeats_until_released(database_url):
    lock = await hold(database_url, "live", heartbeat_seconds=0.01)
    beat = asyncio.Event()
    real = lock.heartbeat

    def heartbeat() -> None:
        real()
        beat.set()

    lock.heartbeat = heartbeat  # the task calls self.heartbeat(): let it say when it has
    try:
        started = lock.holder().heartbeat_at
        await asyncio.wait_for(beat.wait(), 30)
        assert lock.holder().heartbeat_at > started
        assert lock.held and not lock.lost
    finally:
        lock.release()
    check = InstanceLock(database_url, "live")
    try:
        assert check.holder() is None  # released: our name is cleared
    finally:
        check.release()


async def test_a_lost_lock_is_noticed_and_reported(database_url):
    lock = await hold(database_url, "live", heartbeat_seconds=0.01)
    lost = asyncio.Event()
    lock.on_lost(lost.set)
    try:
        if lock.dialect == "postgresql":  # the server ends the session holding the advisory lock
            engine = open_engine(database_url)
            with engine.connect() as conn:
                pid = lock._conn.execute(text("SELECT pg_backend_pid()")).scalar()
                conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            engine.dispose()
        else:  # someone removes the lock file
            Path(lock._file.name).unlink()
        await asyncio.wait_for(lost.wait(), 30)
        assert lock.lost and not lock.held
        with pytest.raises(InstanceLockLost):
            lock.heartbeat()
        other = InstanceLock(database_url, "live")  # free again for another bot
        try:
            assert other.try_acquire()
        finally:
            other.release()
    finally:
        lock.release()


async def test_killing_the_holding_process_lets_a_standby_take_over(database_url):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER_SCRIPT, database_url], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(InstanceLocked) as info:
            await hold(database_url, "live")
        assert info.value.holder.pid == proc.pid
        waiting = asyncio.create_task(hold(database_url, "live", standby=True, poll_seconds=0.05))
        await asyncio.sleep(0)
        assert not waiting.done()
        os.kill(proc.pid, signal.SIGKILL)  # no clean-up: the database / the kernel must release the lock
        proc.wait(30)
        lock = await asyncio.wait_for(waiting, 60)
        try:
            assert lock.holder().pid == os.getpid()
        finally:
            lock.release()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        proc.stdout.close()
        proc.stdin.close()


def test_in_memory_sqlite_needs_no_lock():
    a, b = InstanceLock("sqlite://", "live"), InstanceLock("sqlite://", "live")
    try:
        assert a.try_acquire() and b.try_acquire()  # each process has its own in-memory database
    finally:
        a.release()
        b.release()
