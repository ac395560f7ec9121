"""Analysis room: run a coroutine to completion from plain code, also inside Jupyter's running event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def run_sync(make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """``asyncio.run(make())`` — in a worker thread when this thread already runs an event loop.

    Jupyter's kernel runs an event loop, where ``asyncio.run`` refuses to start; the backtest runner and the
    executor are async, so the notebook helpers (backtests, sizing study, paper replay) go through here.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()
