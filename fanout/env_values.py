"""CLI room: typed settings from the environment / production.env — a bad value is refused naming the variable.

Empty or unset means the default. Values of these variables are not secrets and are shown in the error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _raw(env: Mapping[str, str], name: str) -> str | None:
    text = str(env.get(name) or "").strip()
    return text or None


def env_int(env: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    """A whole number in [low, high]."""
    raw = _raw(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ValueError(f"{name} must be a whole number from {low} to {high}, got {raw!r}")
    return value


def env_seconds(env: Mapping[str, str], name: str, default: float, *, allow_zero: bool = False) -> float:
    """A positive (or, with ``allow_zero``, zero), finite number of seconds."""
    raw = _raw(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be a number of seconds {'>=' if allow_zero else '>'} 0, got {raw!r}")
    return value


def env_flag(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    """true/false, 1/0, yes/no, on/off (any case); anything else is refused rather than guessed."""
    raw = _raw(env, name)
    if raw is None:
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ValueError(f"{name} must be true or false (1/0, yes/no, on/off), got {raw!r}")
