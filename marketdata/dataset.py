"""Market-data room: the market data a multi-symbol backtest replays, gathered per symbol from files, folders and
the download cache: trade candles, funding rates (or "funding unknown") and mark-price candles.

Where each symbol's series come from, first match wins:

- candles: ``SYMBOL=PATH``; a file whose name starts with a snapshot symbol (``ETHUSDT-1m-….csv``); a folder (every
  candle file in it, by that rule); ``--symbols`` from the cache (``<ID>-<timeframe>.csv``). A single file whose
  name names no symbol belongs to the default symbol.
- funding: ``SYMBOL=PATH`` or a file with a ``symbol`` column; a funding file found in a candles folder (told
  apart by its ``fundingRate`` column); the cache's ``<ID>-funding.csv``. None of these: funding unknown.
- mark prices: ``SYMBOL=PATH``; a ``…-mark…`` candle file in a candles folder; the cache's
  ``<ID>-<timeframe>-mark.csv``. None: candle prices stand in.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

from marketdata.cache import MarketDataError, cache_path, funding_path, market_id, unified_symbol
from marketdata.candles import CandleError, Candles, load_candles
from marketdata.funding import FundingError, FundingRates, load_funding

_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")
_MARK_NAME = re.compile(r"(^|[-_.])mark([-_.]|$)", re.IGNORECASE)


class DatasetError(ValueError):
    """Market data that cannot be assembled: names the option, the file and what to do."""


@dataclass(frozen=True, slots=True)
class SymbolData:
    """One symbol's series for a backtest.

    symbol: unified symbol. candles: trade candles. funding: its funding events, None when unknown.
    mark: mark-price candles, None when absent (candle prices stand in). origin / funding_origin / mark_origin:
    where each came from, for the run's output.
    """

    symbol: str
    candles: Candles
    origin: str
    funding: FundingRates | None = None
    funding_origin: str | None = None
    mark: Candles | None = None
    mark_origin: str | None = None


def split_assignment(value: str, option: str) -> tuple[str | None, Path]:
    """``BTCUSDT=path`` → (``BTC/USDT:USDT``, path); ``path`` → (None, path). DatasetError names ``option``."""
    head, sep, tail = value.partition("=")
    if not sep or Path(value).exists():
        return None, Path(value)
    try:
        return unified_symbol(head), Path(tail)
    except MarketDataError as exc:
        raise DatasetError(f"{option} {value!r}: {exc} (expected SYMBOL=PATH)") from None


def symbol_from_name(path: Path, known_ids: Collection[str]) -> str | None:
    """The symbol a file name starts with (``ETHUSDT-1m-2023-07.csv``, ``btcusdt_1h.parquet``), if the snapshot knows
    it; None otherwise."""
    token = re.split(r"[-_. ]", path.name, maxsplit=1)[0].upper()
    return unified_symbol(token) if token in known_ids else None


def _data_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(_SUFFIXES)
                  and not p.name.startswith("."))


def _is_funding(path: Path) -> bool:
    if not path.name.lower().endswith((".csv", ".csv.gz")):
        return False
    try:
        import pandas as pd

        return "fundingRate" in [str(c).strip() for c in pd.read_csv(path, nrows=0).columns]
    except (OSError, ValueError):
        return False


def _load_candles(path: Path, symbol: str, timeframe: str | None, option: str) -> Candles:
    try:
        return load_candles(path, symbol=symbol, timeframe=timeframe)
    except CandleError as exc:
        raise DatasetError(f"{option}: {exc}") from None


def _load_funding(path: Path, symbol: str | None, option: str) -> FundingRates:
    try:
        return load_funding(path, symbol)
    except FundingError as exc:
        raise DatasetError(f"{option}: {exc}") from None


class _Plan:
    """Which file serves which symbol and series (a symbol named twice for one series is an error)."""

    def __init__(self) -> None:
        self.candles: dict[str, tuple[Path, str]] = {}
        self.timeframes: dict[str, str] = {}  # candles read from the cache: their timeframe (one file can't tell)
        self.rates: dict[Path, FundingRates] = {}  # funding files already read (to learn their symbol)
        self.funding: dict[str, tuple[Path, str]] = {}
        self.mark: dict[str, tuple[Path, str]] = {}

    def put(self, table: dict[str, tuple[Path, str]], symbol: str, path: Path, how: str, what: str) -> None:
        if symbol in table and table[symbol][0] != path:
            raise DatasetError(f"{what} for {symbol} given twice: {table[symbol][0]} and {path}")
        table[symbol] = (path, how)


def gather(
    *,
    candles: Iterable[str] = (),
    symbols: Iterable[str] = (),
    funding: Iterable[str] = (),
    mark: Iterable[str] = (),
    timeframe: str | None = None,
    symbol_hint: str | None = None,
    default_symbol: str | None = None,
    known_ids: Collection[str] = (),
    cache_root: str | Path | None = None,
) -> list[SymbolData]:
    """Every symbol's series for a backtest, in symbol order. Raises DatasetError naming the option and file.

    candles: ``--candles`` values (a file, a folder, or ``SYMBOL=PATH``); symbols: ``--symbols`` (read from the
    cache at ``timeframe``); funding / mark: ``--funding`` / ``--mark`` values (``SYMBOL=PATH``, or a path whose
    file tells the symbol). A lone candle file belongs to ``symbol_hint`` (``--symbol``) when given, else to the
    symbol its name starts with, else to ``default_symbol``.
    known_ids: Binance ids the rules snapshot knows (a file name must start with one to name its symbol).
    """
    plan = _Plan()
    loose: list[Path] = []
    for value in candles:
        symbol, path = split_assignment(value, "--candles")
        if symbol is not None:
            plan.put(plan.candles, symbol, path, f"candles from {path}", "candles")
        elif path.is_dir():
            _plan_folder(plan, path, known_ids)
        else:  # a missing or unreadable file is refused by the loader, naming it and why
            loose.append(path)
    for path in loose:
        named = symbol_from_name(path, known_ids)
        lone = len(loose) == 1 and not plan.candles
        symbol = (symbol_hint or named or default_symbol) if lone else named
        if symbol is None and not path.exists():
            raise DatasetError(f"--candles: {path}: file not found")
        if symbol is None:
            raise DatasetError(f"--candles: cannot tell the symbol of {path} from its name: give it as "
                               f"SYMBOL=PATH (e.g. BTCUSDT={path})")
        plan.put(plan.candles, unified_symbol(symbol), path, f"candles from {path}", "candles")
    for raw in symbols:
        for part in (p.strip() for p in raw.split(",") if p.strip()):
            try:
                symbol = unified_symbol(part)
            except MarketDataError as exc:
                raise DatasetError(f"--symbols: {exc}") from None
            if timeframe is None:
                raise DatasetError("--symbols needs --timeframe (the cached candles to read)")
            path = cache_path(symbol, timeframe, cache_root)
            if not path.is_file():
                raise DatasetError(f"--symbols: no cached {timeframe} candles for {symbol} ({path}); run `fanout "
                                   f"data download {market_id(symbol)} {timeframe} --since YYYY-MM-DD` first")
            plan.put(plan.candles, symbol, path, f"real candles from cache {path}", "candles")
            plan.timeframes[symbol] = timeframe
    for value in funding:
        symbol, path = split_assignment(value, "--funding")
        rates = plan.rates[path] = _load_funding(path, symbol, "--funding")
        plan.put(plan.funding, rates.symbol, path, f"funding from {path}", "funding")
    for value in mark:
        symbol, path = split_assignment(value, "--mark")
        symbol = symbol or symbol_from_name(path, known_ids)
        if symbol is None:
            raise DatasetError(f"--mark: cannot tell the symbol of {path}: give it as SYMBOL=PATH")
        plan.put(plan.mark, symbol, path, f"mark prices from {path}", "mark prices")
    return [_assemble(plan, symbol, timeframe, cache_root) for symbol in sorted(plan.candles)]


def _plan_folder(plan: _Plan, folder: Path, known_ids: Collection[str]) -> None:
    found = 0
    for path in _data_files(folder):
        symbol = symbol_from_name(path, known_ids)
        if symbol is None:
            continue
        if _is_funding(path):
            plan.put(plan.funding, symbol, path, f"funding from {path}", "funding")
        elif _MARK_NAME.search(path.name.split(".")[0]):
            plan.put(plan.mark, symbol, path, f"mark prices from {path}", "mark prices")
        else:
            plan.put(plan.candles, symbol, path, f"candles from {path}", "candles")
            found += 1
    if not found:
        raise DatasetError(f"--candles: no candle file in {folder} whose name starts with a symbol (BTCUSDT-….csv)")


def _assemble(plan: _Plan, symbol: str, timeframe: str | None, cache_root: str | Path | None) -> SymbolData:
    path, origin = plan.candles[symbol]
    candles = _load_candles(path, symbol, plan.timeframes.get(symbol), "--candles")
    rates = funding_origin = None
    if symbol in plan.funding:
        fpath, funding_origin = plan.funding[symbol]
        rates = plan.rates.get(fpath) or _load_funding(fpath, symbol, "--funding")
    elif funding_path(symbol, cache_root).is_file():
        fpath = funding_path(symbol, cache_root)
        rates, funding_origin = _load_funding(fpath, symbol, "funding cache"), f"funding from cache {fpath}"
    marks = mark_origin = None
    mark_file = plan.mark.get(symbol)
    if mark_file is None and cache_path(symbol, candles.timeframe, cache_root, series="mark").is_file():
        mpath = cache_path(symbol, candles.timeframe, cache_root, series="mark")
        mark_file = (mpath, f"mark prices from cache {mpath}")
    if mark_file is not None:
        marks = _load_candles(mark_file[0], symbol, None, "--mark")
        mark_origin = mark_file[1]
    return SymbolData(symbol=symbol, candles=candles, origin=origin, funding=rates, funding_origin=funding_origin,
                      mark=marks, mark_origin=mark_origin)
