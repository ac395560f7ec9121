"""CLI room: argparse ``type=`` checks — an option's value is refused where it is parsed, argparse naming the option.

Each factory returns a converter whose ``ArgumentTypeError`` says the rule and the value given; argparse prefixes
it with ``argument --OPTION:`` and the CLI prints that as its one ``error:`` line (exit 2).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

from engine.signal import SignalError, normalize_symbol
from fanout.balances import parse_balances
from marketdata.times import timeframe_to_ms


def number(*, low: float | None = None, high: float | None = None, low_open: bool = False,
           high_open: bool = False, note: str = "") -> Callable[[str], float]:
    """A finite float within [low, high] (``low_open`` / ``high_open``: that end excluded)."""
    rule = _range_words(low, high, low_open, high_open)

    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if (not math.isfinite(value) or (low is not None and (value < low or (low_open and value == low)))
                or (high is not None and (value > high or (high_open and value == high)))):
            raise argparse.ArgumentTypeError(f"must be a number {rule}{note}, got {text!r}")
        return value

    convert.__name__ = "number"
    return convert


def whole(*, low: int, high: int | None = None) -> Callable[[str], int]:
    """A whole number within [low, high]."""
    rule = _range_words(low, high, False, False)

    def convert(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number {rule}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be a whole number {rule}, got {text!r}")
        return value

    convert.__name__ = "whole number"
    return convert


def values(item: Callable[[str], Any]) -> Callable[[str], list]:
    """Comma-separated values, each checked by ``item`` (``number(...)``, ``whole(...)``): ``5,10,20``."""

    def convert(text: str) -> list:
        parts = [p.strip() for p in text.split(",")]
        if not any(parts):
            raise argparse.ArgumentTypeError(f"give at least one value, got {text!r}")
        out = []
        for part in parts:
            try:
                out.append(item(part))
            except argparse.ArgumentTypeError as exc:
                raise argparse.ArgumentTypeError(f"value {part!r}: {exc}") from None
        if len(set(out)) != len(out):
            raise argparse.ArgumentTypeError(f"repeats a value: {text!r}")
        return out

    convert.__name__ = "list of values"
    return convert


def balances(text: str) -> dict[str, float]:
    """``1000,5000,500`` → {"Account 1": 1000.0, …} (each balance a finite number >= 0)."""
    try:
        return parse_balances(text, variable="balances")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("balances: ")) from None


def symbol(text: str) -> str:
    """``BTCUSDT`` / ``BTC/USDT`` / ``BTC/USDT:USDT`` → the unified linear-perpetual symbol."""
    try:
        return normalize_symbol(text)
    except SignalError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("signal field 'symbol': ")) from None


def timeframe(text: str) -> str:
    """A candle length such as ``1m``, ``15m``, ``1h``, ``1d``."""
    try:
        timeframe_to_ms(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text.strip()


def _range_words(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        if not low_open and not high_open:
            return f"from {low:g} to {high:g}"
        return f"{'>' if low_open else '>='} {low:g} and {'<' if high_open else '<='} {high:g}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high:g}"
    return "(finite)"


PRICE = number(low=0, low_open=True)
LEVERAGE = whole(low=1, high=125)
FEE = number(low=0, high=0.01, note=" (a fraction: 0.0005 = 0.05%)")
SLIPPAGE_BPS = number(low=0, high=1000, note=" (basis points: 2 = 0.02%)")
