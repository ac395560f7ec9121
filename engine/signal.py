"""Trading signals: parsing, symbol normalisation and validation (errors name the field)."""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

_SIDES = {"long": "LONG", "buy": "LONG", "short": "SHORT", "sell": "SHORT"}
_QUOTES = ("USDT", "USDC")


class SignalError(ValueError):
    """A signal failed validation; ``field`` names the offending field."""

    def __init__(self, field: str, message: str):
        super().__init__(f"signal field '{field}': {message}")
        self.field = field


def normalize_symbol(raw: Any) -> str:
    """Map ``BTCUSDT``, ``BTC/USDT`` or ``BTC/USDT:USDT`` (any case) to the linear perpetual ``BTC/USDT:USDT``."""
    if not isinstance(raw, str) or not raw.strip():
        raise SignalError("symbol", "missing or empty")
    text = raw.strip().upper().replace("-", "/")
    m = re.fullmatch(r"([A-Z0-9]{1,20})/([A-Z]{3,5})(?::([A-Z]{3,5}))?", text)
    if m:
        base, quote, settle = m.group(1), m.group(2), m.group(3)
        if settle is not None and settle != quote:
            raise SignalError("symbol", f"{raw!r} is not a linear perpetual (settle {settle} != quote {quote})")
        return f"{base}/{quote}:{quote}"
    for quote in _QUOTES:
        if re.fullmatch(rf"[A-Z0-9]{{1,20}}{quote}", text) and len(text) > len(quote):
            return f"{text[: -len(quote)]}/{quote}:{quote}"
    raise SignalError("symbol", f"{raw!r} is not a USDⓈ-M symbol such as BTCUSDT, BTC/USDT or BTC/USDT:USDT")


def parse_time_ms(raw: Any, field: str = "time") -> int:
    """Epoch milliseconds (int, or epoch seconds if small), or an ISO-8601 string (UTC when no zone) → epoch ms."""
    if isinstance(raw, bool):
        raise SignalError(field, f"{raw!r} is not a time")
    if isinstance(raw, (int, float)):
        if not math.isfinite(raw) or raw < 0:
            raise SignalError(field, f"{raw!r} is not a time")
        return int(raw * 1000) if raw < 1e11 else int(raw)
    if isinstance(raw, datetime):
        dt = raw if raw.tzinfo else raw.replace(tzinfo=UTC)
        return int(dt.timestamp() * 1000)
    if isinstance(raw, str):
        text = raw.strip()
        if re.fullmatch(r"\d+(\.\d+)?", text):
            return parse_time_ms(float(text), field)
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise SignalError(field, f"{raw!r} is neither epoch milliseconds nor ISO-8601") from None
        return parse_time_ms(dt, field)
    raise SignalError(field, f"{raw!r} is not a time")


def _positive_number(raw: Any, field: str) -> float:
    if isinstance(raw, bool):
        raise SignalError(field, f"{raw!r} is not a number")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise SignalError(field, f"{raw!r} is not a number") from None
    if not math.isfinite(value):
        raise SignalError(field, f"{raw!r} is not finite")
    if value <= 0:
        raise SignalError(field, f"must be > 0, got {raw!r}")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Signal:
    """A validated trading signal.

    symbol: unified linear-perpetual symbol, e.g. ``BTC/USDT:USDT``.
    side: ``LONG`` or ``SHORT``.
    entry, stop_loss, take_profit: prices; the stop below entry and the target above it for a LONG (mirrored
        for a SHORT).
    id: caller's id, or a deterministic hash of the content and time.
    time: epoch ms the signal was issued (None: "now" at execution).
    leverage: optional override of the configured leverage.
    """

    symbol: str
    side: str
    entry: float
    stop_loss: float
    take_profit: float
    id: str
    time: int | None = None
    leverage: int | None = None

    @property
    def order_side(self) -> str:
        """ccxt side of the entry order."""
        return "buy" if self.side == "LONG" else "sell"

    @property
    def exit_side(self) -> str:
        """ccxt side of the stop-loss, take-profit and emergency close."""
        return "sell" if self.side == "LONG" else "buy"

    @property
    def reward_risk(self) -> float:
        return abs(self.take_profit - self.entry) / abs(self.entry - self.stop_loss)

    @property
    def display_symbol(self) -> str:
        return self.symbol.split(":")[0]


def default_signal_id(symbol: str, side: str, entry: float, stop_loss: float, take_profit: float, time: int | None) -> str:
    """A short deterministic id from the signal's content and time."""
    text = f"{symbol}|{side}|{entry!r}|{stop_loss!r}|{take_profit!r}|{time}"
    return "sig-" + hashlib.sha256(text.encode()).hexdigest()[:12]


def parse_signal(data: dict[str, Any]) -> Signal:
    """Validate a mapping (CSV row, JSON object, webhook body, CLI args) into a :class:`Signal`.

    Accepted keys: symbol, side, entry, stop_loss (or sl), take_profit (or tp), optional id, time, leverage.
    Raises :class:`SignalError` naming the first bad field.
    """
    if not isinstance(data, dict):
        raise SignalError("signal", f"expected an object, got {type(data).__name__}")
    get = data.get
    symbol = normalize_symbol(get("symbol"))
    raw_side = get("side")
    side = _SIDES.get(str(raw_side).strip().lower()) if raw_side is not None else None
    if side is None:
        raise SignalError("side", f"{raw_side!r} is not LONG, SHORT, buy or sell")
    entry = _positive_number(get("entry"), "entry")
    stop_loss = _positive_number(get("stop_loss", get("sl")), "stop_loss")
    take_profit = _positive_number(get("take_profit", get("tp")), "take_profit")
    if side == "LONG":
        if not stop_loss < entry:
            raise SignalError("stop_loss", f"{stop_loss} must be below entry {entry} for a LONG")
        if not take_profit > entry:
            raise SignalError("take_profit", f"{take_profit} must be above entry {entry} for a LONG")
    else:
        if not stop_loss > entry:
            raise SignalError("stop_loss", f"{stop_loss} must be above entry {entry} for a SHORT")
        if not take_profit < entry:
            raise SignalError("take_profit", f"{take_profit} must be below entry {entry} for a SHORT")
    raw_time = get("time")
    time = None if raw_time in (None, "") else parse_time_ms(raw_time)
    raw_lev = get("leverage")
    leverage = None
    if raw_lev not in (None, ""):
        lev = _positive_number(raw_lev, "leverage")
        if lev != int(lev) or not 1 <= lev <= 125:
            raise SignalError("leverage", f"must be a whole number from 1 to 125, got {raw_lev!r}")
        leverage = int(lev)
    raw_id = get("id")
    if raw_id in (None, ""):
        sid = default_signal_id(symbol, side, entry, stop_loss, take_profit, time)
    else:
        sid = str(raw_id).strip()
        if not sid or len(sid) > 64:
            raise SignalError("id", "must be 1 to 64 characters")
    return Signal(
        symbol=symbol, side=side, entry=entry, stop_loss=stop_loss, take_profit=take_profit,
        id=sid, time=time, leverage=leverage,
    )
