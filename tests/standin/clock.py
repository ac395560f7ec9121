"""Tests room: a simulated wall clock for the weight budget and the stand-in (minutes pass in no time)."""

from __future__ import annotations

import asyncio

MINUTE_START = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC, on a minute boundary


class SimClock:
    """``time()`` is simulated; ``sleep(s)`` moves it ``s`` forward at once (never back) and yields once.

    Shared by the budget and the stand-in, so the stand-in's per-minute counters turn exactly when the
    budget's do, without real waiting.
    """

    def __init__(self, start: float = MINUTE_START) -> None:
        self.now = float(start)

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        self.now += max(0.0, float(seconds))

    def advance_to(self, moment: float) -> None:
        self.now = max(self.now, float(moment))
