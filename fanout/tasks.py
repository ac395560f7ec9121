"""CLI room: background tasks of the long-running bot — each kept referenced, each failure logged once in words.

asyncio keeps only weak references to tasks, and an exception nobody retrieves surfaces at exit as "Task exception
was never retrieved" with a traceback. :class:`BackgroundTasks` holds every task it starts until it finishes, logs
a failure once as ``❌ <what> failed: <words>`` (fanout/errors.py's table) and cancels what is left on close.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fanout.errors import explain

log = logging.getLogger("fanout.tasks")


class BackgroundTasks:
    """Tasks started with :meth:`spawn`; ``on_failure(what, exc)`` is called after a failure is logged."""

    def __init__(self, on_failure: Callable[[str, BaseException], None] | None = None) -> None:
        self._tasks: dict[asyncio.Task, str] = {}
        self.on_failure = on_failure
        self.failures = 0

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, Any], what: str) -> asyncio.Task:
        """Run ``coro`` in the background; ``what`` names it in the log (e.g. "webhook signal sig-1")."""
        task = asyncio.get_running_loop().create_task(coro, name=what)
        self._tasks[task] = what
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task) -> None:
        what = self._tasks.pop(task, task.get_name())
        if task.cancelled():
            return
        exc = task.exception()  # retrieved: asyncio will not complain about it again
        if exc is None:
            return
        self.failures += 1
        log.error("❌ %s failed: %s", what, explain(exc))
        log.debug("%s: the failure's traceback", what, exc_info=exc)  # shown with fanout -v
        if self.on_failure is not None:
            self.on_failure(what, exc)

    async def wait(self) -> None:
        """Wait until every task started so far has finished (their failures are logged, not raised)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        """Cancel what is still running and wait for it."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
