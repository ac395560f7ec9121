"""Storage room: the journal's writer thread — writes awaited by the event loop, committed in groups on one thread.

A hundred accounts trading one signal write a few hundred order states, each before its request goes out. Run on
the event loop, every commit (an fsync on SQLite, a round trip on PostgreSQL) would stall every account; here each
write is a function of a connection queued to one thread, which commits whatever is queued when it is free in one
transaction (group commit) and then resolves the waiting coroutines. A write is durable when its ``await`` returns.

A batch that fails is retried one write at a time, so one bad write fails only its own caller. An in-memory SQLite
database (one per thread) is written on the caller's thread instead.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine

log = logging.getLogger("fanout.storage")
Write = Callable[[Connection], Any]
_STOP = object()


class GroupWriter:
    """One writer thread for ``engine`` (started on the first write, stopped by :meth:`close`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.inline = engine.url.get_backend_name() == "sqlite" and engine.url.database in (None, "", ":memory:")
        self.commits = 0

    async def submit(self, write: Write) -> Any:
        """Run ``write(connection)`` in a transaction; returns its result once committed, or raises its error."""
        if self.inline:
            with self.engine.begin() as conn:
                return write(conn)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._start()
        self._queue.put((write, loop, future))
        return await future

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="fanout-journal-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(item is _STOP for item in batch)
            self._commit([item for item in batch if item is not _STOP])
            if stop:
                return

    def _commit(self, batch: list[tuple[Write, asyncio.AbstractEventLoop, asyncio.Future]]) -> None:
        if not batch:
            return
        try:
            with self.engine.begin() as conn:
                results = [write(conn) for write, _, _ in batch]
            self.commits += 1
        except Exception:  # noqa: BLE001 — retried alone, so one bad write fails only its caller
            for item in batch:
                self._commit_one(item)
            return
        _resolve([(loop, future, result, None) for (_, loop, future), result in zip(batch, results, strict=True)])

    def _commit_one(self, item: tuple[Write, asyncio.AbstractEventLoop, asyncio.Future]) -> None:
        write, loop, future = item
        try:
            with self.engine.begin() as conn:
                result = write(conn)
            self.commits += 1
        except Exception as exc:  # noqa: BLE001 — handed to the caller
            _resolve([(loop, future, None, exc)])
            return
        _resolve([(loop, future, result, None)])

    def close(self) -> None:
        """Commit what is queued, then stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(_STOP)
            thread.join()


Outcome = tuple[asyncio.AbstractEventLoop, asyncio.Future, Any, BaseException | None]  # loop, future, result, error


def _resolve(outcomes: list[Outcome]) -> None:
    """Settle the waiting futures, waking each event loop once (not once per write: each wake-up is a self-pipe
    write)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Outcome]] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[0], []).append(outcome)

    def settle(settled: list[Outcome]) -> None:
        for _, future, result, error in settled:
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

    for loop, settled in by_loop.items():
        try:
            loop.call_soon_threadsafe(settle, settled)
        except RuntimeError:  # the loop is closed: nobody waits any more
            log.debug("journal writes finished after their event loop closed")
