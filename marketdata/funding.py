"""Market-data room: funding-rate series (``GET /fapi/v1/fundingRate``): load and validate a file or the cache.

A file has the endpoint's columns ``symbol, fundingTime, fundingRate[, markPrice]`` (``symbol`` optional when the
caller says whose rates they are; other columns such as ``fundingTime_iso`` are ignored). ``fundingTime`` is epoch
ms or ISO-8601 UTC; ``fundingRate`` a fraction (0.0001 = 0.01%), paid by longs to shorts when positive;
``markPrice`` Binance's mark price at that time, empty when unknown. Funding times are taken as written: Binance
has changed intervals (8h, 4h, 1h) and they carry a millisecond or two of jitter, so no grid is assumed.
The cache file ``<ID>-funding.csv`` (marketdata/cache.py) has the same columns without ``symbol``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from marketdata.cache import MarketDataError, funding_path, unified_symbol
from marketdata.times import TimeParseError, format_time, parse_times

MAX_ABS_RATE = 0.1
"""A rate beyond ±10% per interval is a unit mistake (a percentage for a fraction), not Binance data (caps are a
few percent)."""


class FundingError(ValueError):
    """A funding file failed validation; names the file, the line (1 = header) and the column."""

    def __init__(self, source: str, message: str, *, line: int | None = None, column: str | None = None):
        where = (f" line {line}" if line is not None else "") + (f", column '{column}'" if column else "")
        super().__init__(f"{source}{where}: {message}")
        self.source, self.line, self.column = source, line, column


@dataclass(frozen=True, slots=True)
class FundingRates:
    """The funding events of one symbol.

    symbol: unified symbol (``BTC/USDT:USDT``). time: funding times, epoch ms (int64), strictly increasing.
    rate: the funding rate at each time (float64 fraction, positive: longs pay). mark: Binance's mark price at
    each time (float64, NaN when the source did not say). source: the file, or a description.
    """

    symbol: str
    time: np.ndarray
    rate: np.ndarray
    mark: np.ndarray
    source: str = ""

    def __len__(self) -> int:
        return len(self.time)

    def __repr__(self) -> str:
        span = f"{format_time(self.time[0])}..{format_time(self.time[-1])}" if len(self) else "empty"
        return f"FundingRates({self.symbol} x{len(self)} {span})"

    def between(self, start_ms: int, end_ms: int) -> range:
        """Indices of the funding events at ``start_ms < time <= end_ms``."""
        lo = int(np.searchsorted(self.time, start_ms, side="right"))
        hi = int(np.searchsorted(self.time, end_ms, side="right"))
        return range(lo, hi)


def load_funding(path: str | Path, symbol: str | None = None) -> FundingRates:
    """Load and validate a funding-rate CSV (``.csv``, ``.csv.gz``).

    symbol: whose rates these are (any spelling); required when the file has no ``symbol`` column, checked
    against it otherwise. Raises :class:`FundingError` naming the file, line and column of the first problem.
    """
    path = Path(path)
    source = str(path)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise FundingError(source, "file not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        raise FundingError(source, f"cannot be read: {exc}") from None
    columns = {str(c).strip(): c for c in df.columns}
    found = ", ".join(map(str, df.columns)) or "none"
    for name in ("fundingTime", "fundingRate"):
        if name not in columns:
            raise FundingError(source, f"missing column (found: {found}); expected symbol, fundingTime, "
                                       f"fundingRate[, markPrice]", line=1, column=name)
    if len(df) == 0:
        raise FundingError(source, "no data rows")
    unified = _check_symbol(df[columns["symbol"]] if "symbol" in columns else None, symbol, source)
    lines = np.arange(2, len(df) + 2)
    try:
        time = parse_times(df[columns["fundingTime"]].str.strip(), "fundingTime")
    except TimeParseError as exc:
        raise FundingError(source, exc.reason, line=int(lines[exc.index]), column="fundingTime") from None
    rate = _numbers(df[columns["fundingRate"]], source, "fundingRate", allow_empty=False)
    bad = np.flatnonzero(np.abs(rate) > MAX_ABS_RATE)
    if len(bad):
        i = int(bad[0])
        raise FundingError(source, f"{float(rate[i])!r} is beyond ±{MAX_ABS_RATE:g}: fundingRate is a fraction "
                                   f"(0.0001 = 0.01%), not a percentage", line=i + 2, column="fundingRate")
    mark = (_numbers(df[columns["markPrice"]], source, "markPrice", allow_empty=True) if "markPrice" in columns
            else np.full(len(df), np.nan))
    bad = np.flatnonzero(mark <= 0)
    if len(bad):
        i = int(bad[0])
        raise FundingError(source, f"mark price must be > 0, got {float(mark[i])!r}", line=i + 2, column="markPrice")
    step = np.diff(time)
    for mask, what in ((step < 0, "not sorted: {t} comes after {p}"), (step == 0, "duplicate time {t}")):
        if mask.any():
            i = int(np.argmax(mask)) + 1
            raise FundingError(source, what.format(t=format_time(time[i]), p=format_time(time[i - 1])),
                               line=i + 2, column="fundingTime")
    return FundingRates(symbol=unified, time=time, rate=rate, mark=mark, source=source)


def load_cached_funding(symbol: str, root: str | Path | None = None) -> FundingRates | None:
    """The cached funding rates of ``symbol`` (``<cache>/<ID>-funding.csv``), None when there are none."""
    path = funding_path(symbol, root)
    if not path.is_file():
        return None
    try:
        rates = load_funding(path, symbol)
    except FundingError as exc:
        if "no data rows" in str(exc):
            return None
        raise MarketDataError(str(exc), path) from None
    return rates


def _check_symbol(column: pd.Series | None, symbol: str | None, source: str) -> str:
    if column is None:
        if symbol is None:
            raise FundingError(source, "no 'symbol' column: say whose rates these are (--funding SYMBOL=PATH)",
                               line=1, column="symbol")
        return unified_symbol(symbol)
    names = column.str.strip()
    expected = unified_symbol(symbol) if symbol is not None else _unified(names.iloc[0], source, 2)
    for name in names.unique().tolist():
        line = int(np.argmax((names == name).to_numpy())) + 2
        if _unified(name, source, line) != expected:
            raise FundingError(source, f"{name!r} is not {expected} (one symbol per file)", line=line,
                               column="symbol")
    return expected


def _unified(name: str, source: str, line: int) -> str:
    try:
        return unified_symbol(name)
    except MarketDataError as exc:
        raise FundingError(source, str(exc).removeprefix("symbol: "), line=line, column="symbol") from None


def _numbers(series: pd.Series, source: str, column: str, *, allow_empty: bool) -> np.ndarray:
    text = series.str.strip()
    values = pd.to_numeric(text.where(text != "", None), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    empty = (text == "").to_numpy()
    bad = ~np.isfinite(values) & ~(empty if allow_empty else np.zeros(len(values), dtype=bool))
    if bad.any():
        i = int(np.argmax(bad))
        raise FundingError(source, f"{series.iloc[i]!r} is missing, not a number or not finite", line=i + 2,
                           column=column)
    return values
