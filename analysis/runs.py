"""Analysis room: backtest run folders: load one (``load_run`` -> ``Run``), or backtest and write one from Python.

A run folder is what ``fanout backtest --out DIR`` writes (analysis/output.py): trades.csv, skipped.csv,
equity.csv, summary.json. Loading checks each file and names the folder, file and field that is wrong.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.output import SKIP_COLUMNS, TRADE_COLUMNS, write_outputs
from analysis.sync import run_sync
from analysis.tables import skip_category
from engine import ExecutionConfig, Signal
from marketdata.candles import Candles
from simulator.backtest import BacktestRunner

RUN_FILES = ("trades.csv", "skipped.csv", "equity.csv", "summary.json")
ACCOUNT_KEYS = ("start_balance", "end_balance", "trades", "wins", "losses", "win_rate", "pnl", "fees",
                "max_drawdown", "max_drawdown_pct", "skipped")


class RunDirError(ValueError):
    """A backtest run folder is missing, incomplete or unreadable; the message names the folder and file."""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Run:
    """A loaded backtest run folder.

    path: the folder.
    trades: trades.csv, one row per closed position; ``entry_time`` / ``exit_time`` are UTC Timestamps.
    skipped: skipped.csv (account, signal_id, reason) plus ``category`` from :func:`analysis.skip_category`.
    equity: equity.csv, mark-to-market USDT per account (one column each) on a UTC DatetimeIndex.
    summary: summary.json as a dict (per-account figures, totals, candle source).
    """

    path: Path
    trades: pd.DataFrame
    skipped: pd.DataFrame
    equity: pd.DataFrame
    summary: dict

    def __repr__(self) -> str:
        kind = ", SYNTHETIC candles" if self.synthetic else ""
        return (f"Run({str(self.path)!r}: {len(self.accounts)} accounts, {len(self.trades)} trades, "
                f"{len(self.skipped)} skipped{kind})")

    @property
    def accounts(self) -> list[str]:
        return list(self.summary["accounts"])

    @property
    def start_balances(self) -> dict[str, float]:
        return {name: float(a["start_balance"]) for name, a in self.summary["accounts"].items()}

    @property
    def synthetic(self) -> bool:
        return bool((self.summary.get("candles") or {}).get("synthetic"))

    @property
    def candles_source(self) -> str:
        return str((self.summary.get("candles") or {}).get("source") or "")


def load_run(path: str | Path) -> Run:
    """Load a run folder written by ``fanout backtest --out DIR``; :class:`RunDirError` names what is wrong."""
    folder = Path(path)
    if not folder.exists():
        raise RunDirError(f"run folder {str(folder)!r} does not exist (write one with `fanout backtest --out DIR`)")
    if not folder.is_dir():
        raise RunDirError(f"run folder {str(folder)!r} is not a folder")
    missing = [name for name in RUN_FILES if not (folder / name).is_file()]
    if missing:
        raise RunDirError(f"run folder {str(folder)!r} lacks {', '.join(missing)}: not written by `fanout backtest`?")
    summary = _read_summary(folder / "summary.json")
    trades = _read_table(folder / "trades.csv", TRADE_COLUMNS)
    for col in ("entry_time", "exit_time"):
        try:
            trades[col] = pd.to_datetime(trades[col], utc=True, format="ISO8601")
        except (ValueError, TypeError) as exc:
            raise RunDirError(f"{folder / 'trades.csv'}: column {col!r} holds a value that is not a time ({exc})") from None
    skipped = _read_table(folder / "skipped.csv", SKIP_COLUMNS)
    skipped["reason"] = skipped["reason"].fillna("").astype(str)
    skipped["category"] = skipped["reason"].map(skip_category)
    equity = _read_equity(folder / "equity.csv")
    unknown = sorted(set(summary["accounts"]) - set(equity.columns))
    if unknown:
        raise RunDirError(f"{folder / 'equity.csv'}: no column for account(s) {', '.join(unknown)} of summary.json")
    return Run(path=folder, trades=trades, skipped=skipped, equity=equity, summary=summary)


def run_backtest(candles: Candles | Iterable[Candles], signals: Iterable[Signal], balances: dict[str, float],
                 out_dir: str | Path, config: ExecutionConfig | None = None, **runner_options: Any) -> Run:
    """Backtest like ``fanout backtest``, write the run folder (no PNG) and load it; works inside Jupyter.

    candles: one symbol's, or a list of several symbols' (one wallet per account across them).
    ``runner_options`` go to :class:`simulator.backtest.BacktestRunner` (taker_fee, slippage_bps, fine, funding,
    mark, ...).
    """
    series = [candles] if isinstance(candles, Candles) else list(candles)
    runner = BacktestRunner(series, list(signals), balances, config, **runner_options)
    result = run_sync(runner.arun)
    write_outputs(result, out_dir, plot=False)
    return load_run(out_dir)


def _read_summary(path: Path) -> dict:
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RunDirError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    accounts = summary.get("accounts") if isinstance(summary, dict) else None
    if not isinstance(accounts, dict) or not accounts:
        raise RunDirError(f"{path}: field 'accounts' is missing or empty")
    for name, figures in accounts.items():
        lacking = [k for k in ACCOUNT_KEYS if not isinstance(figures, dict) or k not in figures]
        if lacking:
            raise RunDirError(f"{path}: account {name!r} lacks field(s) {', '.join(lacking)}")
    if not isinstance(summary.get("totals"), dict):
        raise RunDirError(f"{path}: field 'totals' is missing")
    return summary


def _read_table(path: Path, columns: list[str]) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, dtype={"account": str, "signal_id": str})
    except pd.errors.EmptyDataError:
        raise RunDirError(f"{path}: empty file (expected a header row: {', '.join(columns)})") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{path}: cannot be read ({exc})") from None
    lacking = [c for c in columns if c not in df.columns]
    if lacking:
        raise RunDirError(f"{path}: missing column(s) {', '.join(lacking)}")
    return df


def _read_equity(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, index_col=0)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{path}: cannot be read ({exc})") from None
    try:
        df.index = pd.DatetimeIndex(pd.to_datetime(df.index, utc=True, format="ISO8601"), name="time")
    except (ValueError, TypeError) as exc:
        raise RunDirError(f"{path}: the first column must hold UTC times ({exc})") from None
    bad = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
    if bad:
        raise RunDirError(f"{path}: column(s) {', '.join(map(str, bad))} are not numbers")
    return df.astype(float)
