"""Market-data room: time for every series (candles now; funding rates and mark prices alike): the timeframe table,
the time parser, the ISO-8601 formatter, ``Gap`` and the gap finder.

Times are epoch milliseconds (int, UTC) everywhere in fanout; text is parsed and written only here.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
"""Milliseconds per timeframe unit: a timeframe is ``<n><unit>`` (``1m``, ``15m``, ``4h``, ``1d``)."""

BINANCE_TIMEFRAMES = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d")
"""Binance USDⓈ-M kline intervals that `fanout data download` fetches and caches: those whose candles open on
whole multiples of their length since the epoch (Binance's ``3d``, ``1w`` and ``1M`` do not, so they are left out)."""

_ISO_EXAMPLE = "e.g. 2023-03-01T12:00"


# --- timeframes -----------------------------------------------------------------------------------------------


def timeframe_to_ms(timeframe: str, *, choices: Collection[str] | None = None) -> int:
    """``'1m'``, ``'15m'``, ``'4h'``, ``'1d'`` (any ``<n><s|m|h|d|w>``) → milliseconds in one candle.

    ``choices`` narrows what is accepted (e.g. :data:`BINANCE_TIMEFRAMES`); ValueError names the timeframe.
    """
    if choices is not None and timeframe not in choices:
        raise ValueError(f"timeframe {timeframe!r} is not one of {', '.join(choices)}")
    m = re.fullmatch(r"(\d+)([smhdw])", str(timeframe).strip())
    if not m or int(m.group(1)) == 0:
        raise ValueError(f"timeframe {timeframe!r} is not like '1m', '5m', '15m', '1h', '4h' or '1d'")
    return int(m.group(1)) * UNIT_MS[m.group(2)]


def ms_to_timeframe(ms: int) -> str:
    """Milliseconds → the largest-unit timeframe string (60000 → '1m', 3600000 → '1h')."""
    for unit in ("w", "d", "h", "m", "s"):
        if ms % UNIT_MS[unit] == 0:
            return f"{ms // UNIT_MS[unit]}{unit}"
    raise ValueError(f"timeframe of {ms} ms is not a whole number of seconds")


def align_up(ms: int, step: int) -> int:
    """The first multiple of ``step`` at or after ``ms`` (an open time on the timeframe's grid)."""
    return -(-ms // step) * step


# --- formatting -----------------------------------------------------------------------------------------------


def format_time(ms: int, *, sep: str = "T", zone: str = "Z") -> str:
    """Epoch ms → ISO-8601 UTC: ``2023-03-01T00:00:00Z``; one value of :func:`format_times`."""
    return format_times([ms], sep=sep, zone=zone)[0]


def format_times(ms: Sequence[int] | np.ndarray, *, sep: str = "T", zone: str = "Z") -> list[str]:
    """Epoch ms → ISO-8601 UTC text, ``2023-03-01T00:00:00Z``, for many times at once (a year of candles).

    ``sep=" ", zone="+00:00"`` gives the CSV form ``2023-03-01 00:00:00+00:00`` (the cache, saved candles).
    A fraction of a second is written only when there is one, as ``datetime.isoformat`` does (``.250000``).
    """
    t = np.asarray(ms, dtype=np.int64)
    seconds = np.datetime_as_string(t.astype("datetime64[ms]"), unit="s").tolist()
    text = [f"{s[:10]}{sep}{s[11:]}{zone}" for s in seconds]
    for i in np.flatnonzero(t % 1000).tolist():
        text[i] = f"{seconds[i][:10]}{sep}{seconds[i][11:]}.{int(t[i] % 1000) * 1000:06d}{zone}"
    return text


# --- parsing --------------------------------------------------------------------------------------------------


class TimeParseError(ValueError):
    """A time that is not epoch seconds / milliseconds nor ISO-8601.

    field: where the value came from (a column, an option such as ``--since``).
    index: 0-based position among the values parsed together (None for a single value).
    reason: the problem without the field, e.g. ``'yesterday' is not an ISO-8601 date ...``.
    """

    def __init__(self, field: str, reason: str, index: int | None = None):
        super().__init__(f"{field}: {reason}")
        self.field, self.reason, self.index = field, reason, index


def parse_time(value: Any, field: str = "time") -> int:
    """One time → epoch ms, by the rules of :func:`parse_times`; TimeParseError naming ``field``."""
    try:
        return int(parse_times(pd.Series([value]), field)[0])
    except TimeParseError as exc:
        raise TimeParseError(field, exc.reason) from None


def parse_times(values: pd.Series | Sequence[Any], field: str = "time") -> np.ndarray:
    """Times → int64 epoch ms: datetimes, epoch numbers or ISO-8601 text (the first value decides which).

    Epoch numbers may be seconds, milliseconds, microseconds or nanoseconds: the largest value decides (below 1e11
    is seconds, i.e. milliseconds before 1973 are not expected). ISO-8601 text without a zone is UTC
    (``2023-03-01``, ``2023-03-01T12:00``, ``2023-03-01 00:00:00+00:00``, ``...Z``). Raises TimeParseError naming
    ``field`` and the index of the first bad value.
    """
    series = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
    raw = series.iloc
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        parsed = series if getattr(series.dtype, "tz", None) else series.dt.tz_localize("UTC")
        _first_bad(parsed.isna().to_numpy(), field, lambda i: "missing time")
        return parsed.dt.tz_convert("UTC").dt.as_unit("ms").astype("int64").to_numpy()
    if pd.api.types.is_bool_dtype(series.dtype):
        raise TimeParseError(field, "holds booleans, not times", 0)
    if pd.api.types.is_numeric_dtype(series.dtype):
        numbers = series.to_numpy(dtype=np.float64, na_value=np.nan)
    elif len(series) and _is_number(series.iloc[0]):  # the first value decides between epoch numbers and ISO text
        numbers = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        numbers = None
    if numbers is not None:
        _first_bad(~np.isfinite(numbers), field,
                   lambda i: f"{raw[i]!r} is not an epoch time like the other rows (or is missing)")
        _first_bad(numbers < 0, field, lambda i: f"{raw[i]!r} is a negative epoch time")
        if not len(numbers):
            return np.zeros(0, dtype=np.int64)
        top = numbers.max()
        scale = 1e3 if top < 1e11 else 1.0 if top < 1e14 else 1e-3 if top < 1e17 else 1e-6
        return np.rint(numbers * scale).astype(np.int64)
    text = series.astype("string").str.strip()
    parsed = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")
    _first_bad(parsed.isna().to_numpy(), field,
               lambda i: f"{raw[i]!r} is not an ISO-8601 date or date-time ({_ISO_EXAMPLE}) "
                         f"nor epoch seconds or milliseconds")
    return parsed.dt.as_unit("ms").astype("int64").to_numpy()


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _first_bad(mask: np.ndarray, field: str, reason) -> None:
    if mask.any():
        i = int(np.argmax(mask))
        raise TimeParseError(field, reason(i), i)


# --- gaps -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Gap:
    """A run of missing entries in a fixed-interval series (candles, funding rates, mark prices).

    start_ms: open time of the first missing entry (epoch ms).
    end_ms: open time of the next entry present, or the end of the range looked at (exclusive).
    missing: how many entries are missing, ``ceil((end_ms - start_ms) / timeframe)``.
    """

    start_ms: int
    end_ms: int
    missing: int


def find_gaps(times: Sequence[int] | np.ndarray, timeframe_ms: int, since: int | None = None,
              until: int | None = None) -> list[Gap]:
    """Runs of missing open times, given the sorted open times present.

    Without ``since`` / ``until`` only the runs between the first and last time present count; with them the
    range is ``[since, until)`` and a leading run (nothing from ``since`` on) or a trailing one counts too.
    """
    t = np.asarray(times, dtype=np.int64)
    lo = 0 if since is None else int(np.searchsorted(t, since, side="left"))
    hi = len(t) if until is None else int(np.searchsorted(t, until, side="left"))
    points = t[lo:hi]
    if since is not None:
        points = np.r_[np.int64(since - timeframe_ms), points]
    if until is not None:
        points = np.r_[points, np.int64(until)]
    step = np.diff(points)
    return [Gap(start_ms=int(points[i] + timeframe_ms), end_ms=int(points[i + 1]),
                missing=int(-(-(step[i] - timeframe_ms) // timeframe_ms)))
            for i in np.flatnonzero(step > timeframe_ms)]
