"""Vectorised trigger scanning over candle arrays: the first candle at or after ``start`` that crosses a level."""

from __future__ import annotations

import numpy as np


class LevelScanner:
    """Finds first crossings with numpy in growing chunks, memoised: accounts sharing a signal share levels."""

    def __init__(self, high: np.ndarray, low: np.ndarray, open_: np.ndarray) -> None:
        self.high, self.low, self.open = high, low, open_
        self.n = len(high)
        self._cache: dict[tuple[int, float, bool], int] = {}

    def first_cross(self, start: int, level: float, down: bool) -> int:
        """Index of the first candle ≥ start whose low ≤ level (down) or high ≥ level (up); n if none."""
        key = (start, level, down)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        arr = self.low if down else self.high
        pos, chunk, result = start, 256, self.n
        while pos < self.n:
            end = min(pos + chunk, self.n)
            window = arr[pos:end]
            mask = window <= level if down else window >= level
            k = int(mask.argmax())
            if mask[k]:
                result = pos + k
                break
            pos, chunk = end, chunk * 4
        self._cache[key] = result
        return result
