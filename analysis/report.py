"""Analysis room: analysis of backtest run folders — loading, drawdown, tables, sizing study, paper fills, charts.

Everything here works on a folder written by ``fanout backtest --out DIR`` (analysis/output.py) and is
shared by the notebooks (notebooks/) and ``fanout report``. Charts are matplotlib ``Figure`` objects built without
pyplot (no global state, no backend switch): show them in Jupyter or ``fig.savefig(path)``. Charts of runs on
synthetic candles say SYNTHETIC in the title and across the plot.

Async work (the backtest runner, the executor) runs through :func:`_run_sync`, which works both in scripts and
inside Jupyter, whose kernel already runs an event loop (``asyncio.run`` refuses to run there).
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from collections.abc import Callable, Coroutine, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.output import TRADE_COLUMNS, equity_figure, summarize, write_outputs
from engine import Account, ExecutionConfig, MultiAccountExecutor, Signal
from marketdata.candles import Candles, load_candles, resample, timeframe_to_ms
from marketdata.rules import MarketRules
from marketdata.synthetic import generate_candles
from simulator.backtest import BacktestRunner
from simulator.exchange import SimulatedVenue
from simulator.fills import first_hit

RUN_FILES = ("trades.csv", "skipped.csv", "equity.csv", "summary.json")
SKIP_COLUMNS = ["account", "signal_id", "reason"]
ACCOUNT_KEYS = ("start_balance", "end_balance", "trades", "wins", "losses", "win_rate", "pnl", "fees",
                "max_drawdown", "max_drawdown_pct", "skipped")
RECORD_COLUMNS = ["signal_id", "account", "fill_price", "quantity", "time"]
DEFAULT_SIZING_BALANCES = (100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000)
DEMO_START = "2024-01-01"
DEMO_MINUTES = 30 * 24 * 60
SYNTHETIC_NOTE = "SYNTHETIC candles (generated, not market data)"
_CHART_TIMEFRAMES = ("1m", "5m", "15m", "30m", "1h", "2h", "4h", "12h", "1d")
_EXIT_STYLE = {  # exit_reason -> (marker, colour)
    "take_profit": ("o", "tab:green"),
    "stop_loss": ("X", "tab:red"),
    "liquidation": ("P", "black"),
    "end_of_data": ("s", "tab:gray"),
}


class RunDirError(ValueError):
    """A backtest run folder is missing, incomplete or unreadable; the message names the folder and file."""


class CandlesUnavailable(LookupError):
    """The candles of a run cannot be located; the message says why and how to pass them."""


# --- loading ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Run:
    """A loaded backtest run folder.

    path: the folder.
    trades: trades.csv, one row per closed position; ``entry_time`` / ``exit_time`` are UTC Timestamps.
    skipped: skipped.csv (account, signal_id, reason) plus ``category`` from :func:`skip_category`.
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


def skip_category(reason: str) -> str:
    """Group an engine skip reason: min_size, low_balance, open_position, max_open, daily_loss, reward_risk,
    stop_beyond_liquidation, leverage_bracket, no_candles, failed, other.

    ``min_size`` is the exchange minimum: quantity below the step minimum or notional below the minimum notional
    (the reasons written by engine/sizing.py and engine/risk.py).
    """
    text = str(reason or "")
    if text.startswith("failed:"):
        return "failed"
    rules = (
        (r"^(quantity .*below minimum|quantity .*truncates to zero|notional .*below exchange minimum)", "min_size"),
        (r"^balance .*below minimum", "low_balance"),
        (r"already has an open", "open_position"),
        (r"max open positions", "max_open"),
        (r"daily loss limit", "daily_loss"),
        (r"reward:risk", "reward_risk"),
        (r"beyond the liquidation price", "stop_beyond_liquidation"),
        (r"^leverage .* above the", "leverage_bracket"),
        (r"no candles for|after the last candle", "no_candles"),
    )
    for pattern, name in rules:
        if re.search(pattern, text):
            return name
    return "other"


# --- figures over a run ----------------------------------------------------------------------------------------

def drawdown(equity: pd.DataFrame) -> pd.DataFrame:
    """Underwater curves: percent below the running peak per account (0 at a new high, negative below it)."""
    peaks = equity.cummax()
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (equity / peaks - 1.0) * 100.0
    return out.where(peaks > 0, 0.0)


def account_table(run: Run) -> pd.DataFrame:
    """Per-account figures: balances, pnl, fees, return, trades, win rate (%), max drawdown (%), skipped."""
    rows = []
    for name, a in run.summary["accounts"].items():
        start = float(a["start_balance"])
        rows.append({
            "account": name,
            "start_balance": start,
            "end_balance": float(a["end_balance"]),
            "pnl": float(a["pnl"]),
            "fees": float(a["fees"]),
            "return_pct": float(a.get("return_pct", (float(a["end_balance"]) / start - 1) * 100 if start else 0.0)),
            "trades": int(a["trades"]),
            "wins": int(a["wins"]),
            "win_rate_pct": float(a["win_rate"]) * 100,
            "max_drawdown_pct": float(a["max_drawdown_pct"]),
            "skipped": int(a["skipped"]),
        })
    return pd.DataFrame(rows).set_index("account")


# --- candles ---------------------------------------------------------------------------------------------------

def locate_candles(run: Run, path: str | Path | None = None) -> Candles:
    """The candles a run was made on: ``path`` if given, else what summary.json's ``candles`` says.

    Synthetic candles ("synthetic (generated by fanout, seed N)") are regenerated with
    :func:`marketdata.synthetic.generate_candles` — ``start`` / ``minutes`` from summary.json when recorded, else the
    demo's 2024-01-01 and 30 days — and checked against the run's equity and entries. A file source is loaded if
    it still exists. Raises :class:`CandlesUnavailable` otherwise.
    """
    symbols = run.trades["symbol"].dropna()
    symbol = str(symbols.mode().iloc[0]) if len(symbols) else "BTC/USDT:USDT"
    if path is not None:
        return load_candles(path, symbol=symbol)
    info = run.summary.get("candles") or {}
    source = run.candles_source
    if info.get("path") and Path(str(info["path"])).is_file():
        candles = load_candles(str(info["path"]), symbol=symbol, timeframe=info.get("timeframe"))
        return _checked(run, candles, f"candles file {info['path']}")
    seed = info.get("seed")
    found = re.search(r"synthetic.*seed (\d+)", source)
    if seed is None and found:
        seed = int(found.group(1))
    if seed is not None:
        start = str(info.get("start") or DEMO_START)
        minutes = int(info.get("minutes") or DEMO_MINUTES)
        candles = generate_candles(symbol=symbol, start=start, minutes=minutes, seed=int(seed))
        return _checked(run, candles, f"synthetic candles (seed {seed}, {minutes} minutes from {start})")
    match = re.fullmatch(r"(.*?)(?: \(resampled to (\w+)\))?", source)
    file, timeframe = (match.group(1), match.group(2)) if match else (source, None)
    if file and Path(file).is_file():
        candles = load_candles(file, symbol=symbol)
        if timeframe:
            candles = resample(candles, timeframe)
        return _checked(run, candles, f"candles file {file}")
    raise CandlesUnavailable(
        f"the run's candles (summary.json candles.source {source!r}) are not a file here; pass the candles path "
        "(notebook CANDLES_PATH, `fanout report --candles PATH`)"
    )


def _checked(run: Run, candles: Candles, what: str) -> Candles:
    """Raise unless the candles cover the run's equity curve and hold its entry prices."""
    if len(candles) == 0:
        raise CandlesUnavailable(f"{what}: no candles")
    t0 = pd.Timestamp(int(candles.time[0]), unit="ms", tz="UTC")
    t1 = pd.Timestamp(int(candles.time[-1]) + candles.timeframe_ms, unit="ms", tz="UTC")
    eq = run.equity.index
    if len(eq) and (eq[0] < t0 or eq[-1] > t1):
        raise CandlesUnavailable(f"{what} span {t0}..{t1} but the run's equity spans {eq[0]}..{eq[-1]}; pass the "
                                 "candles path")
    trades = run.trades[run.trades["symbol"] == candles.symbol]
    if len(trades):
        at = _ms(trades["entry_time"])
        i = np.clip(np.searchsorted(candles.time, at, side="right") - 1, 0, len(candles) - 1)
        price = trades["entry_price"].to_numpy(dtype=float)
        inside = (price >= candles.low[i] * 0.99) & (price <= candles.high[i] * 1.01)
        if inside.mean() < 0.9:
            raise CandlesUnavailable(f"{what} do not hold the run's entry prices ({inside.mean():.0%} inside their "
                                     "candle); pass the candles path")
    return candles


def chart_candles(candles: Candles, max_bars: int = 600) -> Candles:
    """The candles resampled to the finest usual timeframe that keeps at most ``max_bars`` bars."""
    if len(candles) <= max_bars:
        return candles
    span = int(candles.time[-1] - candles.time[0]) + candles.timeframe_ms
    for tf in _CHART_TIMEFRAMES:
        ms = timeframe_to_ms(tf)
        if ms > candles.timeframe_ms and ms % candles.timeframe_ms == 0 and span / ms <= max_bars:
            return resample(candles, tf)
    return resample(candles, _CHART_TIMEFRAMES[-1])


def _utc(value: Any) -> pd.Timestamp | None:
    """A UTC Timestamp (naive values are taken as UTC), or None."""
    if value is None:
        return None
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _ms(times: pd.Series) -> np.ndarray:
    return pd.DatetimeIndex(times).as_unit("ms").asi8


# --- running backtests -------------------------------------------------------------------------------------------

def _run_sync(make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """``asyncio.run(make())`` — in a worker thread when this thread already runs an event loop (Jupyter)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


def run_backtest(candles: Candles, signals: Iterable[Signal], balances: dict[str, float], out_dir: str | Path,
                 config: ExecutionConfig | None = None, **runner_options: Any) -> Run:
    """Backtest like ``fanout backtest``, write the run folder (no PNG) and load it; works inside Jupyter.

    ``runner_options`` go to :class:`simulator.backtest.BacktestRunner` (taker_fee, slippage_bps, fine, ...).
    """
    runner = BacktestRunner([candles], list(signals), balances, config, **runner_options)
    result = _run_sync(runner.arun)
    write_outputs(result, out_dir, plot=False)
    return load_run(out_dir)


def sizing_study(candles: Candles, signals: Iterable[Signal], balances: Sequence[float] = DEFAULT_SIZING_BALANCES,
                 config: ExecutionConfig | None = None, **runner_options: Any) -> pd.DataFrame:
    """The same signals on one simulated account per starting balance; one row per balance.

    Columns: trades, skipped (all reasons), skipped_min_size (below the exchange minimum quantity / notional),
    skipped_other, margin_mean / quantity_mean / notional_mean over the account's trades, end_balance, pnl,
    fees, return_pct, max_drawdown_pct. Accounts are independent, so one run holds them all.
    """
    values = [float(b) for b in balances]
    if not values:
        raise ValueError("sizing_study: balances must list at least one balance")
    if any(not np.isfinite(b) or b <= 0 for b in values):
        raise ValueError(f"sizing_study: balances must be finite numbers > 0, got {values}")
    names = {f"${b:,.2f}".replace(".00", ""): b for b in values}
    if len(names) != len(values):
        raise ValueError(f"sizing_study: balances must be distinct, got {values}")
    runner = BacktestRunner([candles], list(signals), names, config, **runner_options)
    result = _run_sync(runner.arun)
    summary = summarize(result)
    trades = pd.DataFrame(result.trades, columns=TRADE_COLUMNS)
    skipped = pd.DataFrame(result.skipped, columns=SKIP_COLUMNS)
    skipped["category"] = skipped["reason"].map(skip_category)
    rows = []
    for name, balance in names.items():
        t = trades[trades["account"] == name]
        s = skipped[skipped["account"] == name]
        a = summary["accounts"][name]
        min_size = int((s["category"] == "min_size").sum())
        rows.append({
            "balance": balance, "account": name, "trades": len(t), "skipped": len(s),
            "skipped_min_size": min_size, "skipped_other": len(s) - min_size,
            "margin_mean": float(t["margin"].mean()) if len(t) else np.nan,
            "quantity_mean": float(t["quantity"].mean()) if len(t) else np.nan,
            "notional_mean": float((t["quantity"] * t["entry_price"]).mean()) if len(t) else np.nan,
            "end_balance": float(a["end_balance"]), "pnl": float(a["pnl"]), "fees": float(a["fees"]),
            "return_pct": float(a["return_pct"]), "max_drawdown_pct": float(a["max_drawdown_pct"]),
        })
    return pd.DataFrame(rows).set_index("balance")


# --- paper records and fill slippage ----------------------------------------------------------------------------

def recorded_price_paper(candles: Candles, signals: Iterable[Signal], balances: dict[str, float],
                         config: ExecutionConfig | None = None, *, delay_ms: int = 60_000,
                         rules: MarketRules | None = None, taker_fee: float = 0.0005,
                         slippage_bps: float = 0.0) -> pd.DataFrame:
    """A STAND-IN for paper-mode execution records, built from recorded candle prices (not a live feed).

    Each signal runs through :class:`engine.MultiAccountExecutor` on a :class:`SimulatedVenue` whose price is a
    recorded "live" tick: the close of the candle in progress ``delay_ms`` after the signal's candle opened (with
    1m candles and the default 60 s, the signal candle's close, one minute after its open — where a backtest
    fills at that candle's open). Between signals, candles close positions as paper mode does (a candle only
    touches positions opened before it began). Returns one row per (signal, account): signal_id, account,
    fill_price (NaN unless filled), quantity, time (the tick, UTC), status, reason, symbol, side, margin, source.
    """
    if delay_ms <= 0:
        raise ValueError(f"delay_ms must be > 0, got {delay_ms!r}")
    ordered = sorted(signals, key=lambda s: (s.time if s.time is not None else 0, s.id))
    return _run_sync(lambda: _paper_records(candles, ordered, balances, config or ExecutionConfig(), delay_ms,
                                            rules or MarketRules.load(), taker_fee, slippage_bps))


async def _paper_records(candles: Candles, signals: list[Signal], balances: dict[str, float],
                         config: ExecutionConfig, delay_ms: int, rules: MarketRules, taker_fee: float,
                         slippage_bps: float) -> pd.DataFrame:
    venue = SimulatedVenue(rules, taker_fee=taker_fee, slippage_bps=slippage_bps)
    exchanges = {name: venue.add_account(name, balance) for name, balance in balances.items()}
    executor = MultiAccountExecutor([Account(n, ex) for n, ex in exchanges.items()], config, retries=0,
                                    retry_delay=0.0)
    updates: list[tuple[str, dict]] = []
    venue.listeners.append(lambda account, order: updates.append((account, order)))
    symbol, c = candles.symbol, candles
    rows: list[dict] = []
    done = 0  # next candle to apply
    for signal in signals:
        i = c.index_at_or_after(signal.time) if signal.time is not None else len(c)
        if signal.symbol != symbol or i >= len(c):
            reason = f"no candles for {signal.symbol}" if signal.symbol != symbol else "signal after the last candle"
            rows += [_record(signal, name, "skipped", reason, None) for name in exchanges]
            continue
        tick = int(c.time[i]) + delay_ms
        j = max(i, int(np.searchsorted(c.time, tick, side="left")) - 1)
        for k in range(done, j + 1):
            if not any(symbol in ex.positions for ex in exchanges.values()):
                break
            t = int(c.time[k])
            for ex in exchanges.values():
                pos = ex.positions.get(symbol)
                if pos is None or pos.opened_at > t:
                    continue
                hit = first_hit(pos.long, ex.position_levels(symbol), float(c.open[k]), float(c.high[k]),
                                float(c.low[k]))
                if hit is not None:
                    ex.apply_level(symbol, hit[0], hit[1], t)
            while updates:
                account, order = updates.pop(0)
                await executor.watcher.on_order_update(account, order)
        done = j + 1
        venue.set_price(symbol, float(c.close[j]), tick)
        summary = await executor.execute(signal)
        while updates:
            account, order = updates.pop(0)
            await executor.watcher.on_order_update(account, order)
        rows += [_record(signal, r.account, r.status, r.reason, r, tick) for r in summary.results]
    df = pd.DataFrame(rows, columns=[*RECORD_COLUMNS, "status", "reason", "symbol", "side", "margin", "source"])
    df["time"] = pd.to_datetime(df["time"], unit="ms", utc=True)
    return df


def _record(signal: Signal, account: str, status: str, reason: str, result: Any, tick: int | None = None) -> dict:
    ok = result is not None and result.ok
    return {
        "signal_id": signal.id, "account": account, "fill_price": result.fill_price if ok else np.nan,
        "quantity": result.quantity if ok else 0.0, "time": tick if tick is not None else np.nan,
        "status": status, "reason": reason, "symbol": signal.symbol, "side": signal.side,
        "margin": result.margin if ok else 0.0, "source": "recorded candle close (stand-in for live ticks)",
    }


_ALIASES = {
    "fill_price": ("fill_price", "price", "average", "avg_price", "avgprice", "fill"),
    "quantity": ("quantity", "filled", "amount", "qty", "executed_qty"),
    "time": ("time", "timestamp", "filled_at", "executed_at", "datetime"),
}


def load_paper_records(path: str | Path, *, mode: str | None = "paper") -> pd.DataFrame:
    """Paper execution records from a CSV export or a SQLite database (the journal's ``executions`` table).

    The result has at least signal_id, account, fill_price, quantity, time (UTC; epoch ms / s or ISO-8601 in the
    source) plus whatever else the source holds (status, reason, side, ...). From SQLite, the ``executions`` table
    is read (rows of ``mode`` when it has a mode column; None reads all), else the first table with the needed
    columns. Column aliases: price / average / avg_price for fill_price, filled / amount / qty for quantity,
    timestamp / filled_at for time. Raises ValueError naming the file and the missing column.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"paper records file not found: {p}")
    with open(p, "rb") as fh:
        is_sqlite = fh.read(16) == b"SQLite format 3\x00"
    if is_sqlite:
        df = _sqlite_records(p, mode)
    else:
        try:
            df = pd.read_csv(p, dtype={"signal_id": str, "account": str})
        except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise ValueError(f"paper records {p}: cannot be read as CSV ({exc})") from None
    return _normalize_records(df, str(p))


def _sqlite_records(path: Path, mode: str | None) -> pd.DataFrame:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        ordered = (["executions"] if "executions" in tables else []) + [t for t in tables if t != "executions"]
        for table in ordered:
            cols = {r[1].lower() for r in conn.execute(f'PRAGMA table_info("{table}")')}
            if {"signal_id", "account"} <= cols and cols & set(_ALIASES["fill_price"]):
                query, args = f'SELECT * FROM "{table}"', ()
                if mode is not None and "mode" in cols:
                    query, args = query + " WHERE mode = ?", (mode,)
                return pd.read_sql_query(query, conn, params=args, dtype={"signal_id": str, "account": str})
    raise ValueError(f"paper records {path}: no table with columns signal_id, account and fill_price "
                     f"(tables: {', '.join(tables) or 'none'})")


def _normalize_records(df: pd.DataFrame, source: str) -> pd.DataFrame:
    df = df.rename(columns={c: str(c).strip().lower() for c in df.columns})
    for name, aliases in _ALIASES.items():
        if name not in df.columns:
            found = next((a for a in aliases if a in df.columns), None)
            if found is not None:
                df = df.rename(columns={found: name})
    lacking = [c for c in ("signal_id", "account", "fill_price") if c not in df.columns]
    if lacking:
        raise ValueError(f"paper records {source}: missing column(s) {', '.join(lacking)}; found "
                         f"{', '.join(df.columns) or 'none'}")
    if "quantity" not in df.columns:
        df["quantity"] = np.nan
    df["fill_price"] = pd.to_numeric(df["fill_price"], errors="coerce")
    df["quantity"] = pd.to_numeric(df["quantity"], errors="coerce")
    df["signal_id"] = df["signal_id"].astype(str)
    df["account"] = df["account"].astype(str)
    df["time"] = _parse_times(df["time"], source) if "time" in df.columns else pd.NaT
    rest = [c for c in df.columns if c not in RECORD_COLUMNS]
    return df[RECORD_COLUMNS + rest].reset_index(drop=True)


def _parse_times(values: pd.Series, source: str) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce")
    if len(values) and numbers.notna().sum() == values.notna().sum():
        top = numbers.abs().max()
        unit = "ms" if top >= 1e11 else "s"
        return pd.to_datetime(numbers, unit=unit, utc=True)
    try:
        return pd.to_datetime(values, utc=True, format="ISO8601")
    except (ValueError, TypeError) as exc:
        raise ValueError(f"paper records {source}: column 'time' must be epoch ms / s or ISO-8601 ({exc})") from None


def compare_fills(paper: pd.DataFrame, trades: pd.DataFrame) -> pd.DataFrame:
    """Paper entry fills against the backtest's entries of the same (signal, account), one row per pair.

    ``matched`` is both, paper_only (the backtest skipped it) or backtest_only (paper did not fill it). For
    matched rows: ``slippage`` = paper − backtest price; ``slippage_bps`` is signed so that **positive means
    paper filled worse for the trader** (higher for a LONG, lower for a SHORT); ``slippage_cost`` is that
    difference times the paper quantity in USDT.
    """
    filled = paper[paper["fill_price"].notna()]
    if "status" in filled.columns:
        filled = filled[filled["status"].fillna("success") == "success"]
    p_cols = ["signal_id", "account", "fill_price", "quantity", "time"] + (["side"] if "side" in paper else [])
    p = (filled[p_cols].drop_duplicates(["signal_id", "account"])
         .rename(columns={"fill_price": "paper_price", "quantity": "paper_quantity", "time": "paper_time",
                          "side": "paper_side"}))
    b = (trades[["signal_id", "account", "symbol", "side", "entry_time", "entry_price", "quantity"]]
         .drop_duplicates(["signal_id", "account"])
         .rename(columns={"entry_time": "backtest_time", "entry_price": "backtest_price",
                          "quantity": "backtest_quantity"}))
    for df in (p, b):
        df["signal_id"] = df["signal_id"].astype(str)
        df["account"] = df["account"].astype(str)
    m = b.merge(p, on=["signal_id", "account"], how="outer", indicator=True)
    m["matched"] = m.pop("_merge").map({"both": "both", "left_only": "backtest_only", "right_only": "paper_only"})
    if "paper_side" in m:
        m["side"] = m["side"].fillna(m.pop("paper_side"))
    sign = np.where(m["side"].astype(str).str.upper() == "SHORT", -1.0, 1.0)
    m["slippage"] = m["paper_price"] - m["backtest_price"]
    m["slippage_bps"] = sign * m["slippage"] / m["backtest_price"] * 10_000
    m["slippage_cost"] = sign * m["slippage"] * m["paper_quantity"]
    m["matched"] = m["matched"].astype(str)
    order = m["backtest_time"].fillna(m["paper_time"]) if len(m) else m["backtest_time"]
    m = m.assign(_order=order).sort_values(["_order", "account"], kind="stable").drop(columns="_order")
    cols = ["signal_id", "account", "symbol", "side", "matched", "backtest_time", "backtest_price", "paper_time",
            "paper_price", "slippage", "slippage_bps", "slippage_cost", "backtest_quantity", "paper_quantity"]
    return m[cols].reset_index(drop=True)


def slippage_by_account(fills: pd.DataFrame) -> pd.DataFrame:
    """Per account over :func:`compare_fills` rows: matched / paper_only / backtest_only counts, mean, median,
    mean absolute and worst slippage in bps (positive = paper worse), total cost in USDT, quantity mismatches."""
    rows = []
    for account, g in fills.groupby("account", sort=False):
        both = g[g["matched"] == "both"]
        bps = both["slippage_bps"]
        rows.append({
            "account": account, "matched": len(both), "paper_only": int((g["matched"] == "paper_only").sum()),
            "backtest_only": int((g["matched"] == "backtest_only").sum()),
            "mean_bps": bps.mean(), "median_bps": bps.median(), "mean_abs_bps": bps.abs().mean(),
            "worst_bps": bps.max(), "cost_usdt": both["slippage_cost"].sum(),
            "quantity_mismatches": int((~np.isclose(both["paper_quantity"], both["backtest_quantity"])).sum()),
        })
    cols = ["matched", "paper_only", "backtest_only", "mean_bps", "median_bps", "mean_abs_bps", "worst_bps",
            "cost_usdt", "quantity_mismatches"]
    return pd.DataFrame(rows, columns=["account", *cols]).set_index("account")


# --- charts -----------------------------------------------------------------------------------------------------

def _figure(title: str, synthetic: bool, *, nrows: int = 1, ncols: int = 1, figsize=(11, 5), **kwargs: Any):
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kwargs)
    fig.suptitle(title + (f" — {SYNTHETIC_NOTE}" if synthetic else ""), fontsize=11)
    if synthetic:
        fig.text(0.5, 0.5, "SYNTHETIC", fontsize=64, color="tab:red", alpha=0.12, rotation=20,
                 ha="center", va="center", zorder=10)
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    return fig, axes


def _columns(frame: pd.DataFrame, limit: int) -> tuple[list[str], str]:
    cols = list(frame.columns)[:limit]
    note = f" (first {len(cols)} of {len(frame.columns)} accounts)" if len(frame.columns) > limit else ""
    return cols, note


def plot_equity(run: Run, max_accounts: int = 20):
    """Mark-to-market equity per account: the same chart as the backtest's equity.png."""
    return equity_figure(run.equity, synthetic=run.synthetic, max_accounts=max_accounts)


def plot_drawdown(run: Run, max_accounts: int = 20):
    """Underwater curves: percent below each account's running equity peak."""
    dd = drawdown(run.equity)
    cols, note = _columns(dd, max_accounts)
    fig, axes = _figure("Drawdown per account" + note, run.synthetic)
    ax = axes[0, 0]
    for col in cols:
        ax.plot(dd.index, dd[col], label=f"{col} (max {-dd[col].min():.2f}%)", linewidth=1)
    ax.set_ylabel("% below peak")
    ax.set_xlabel("time (UTC)")
    if len(cols) <= 10:
        ax.legend(loc="lower left", fontsize=8)
    return fig


def plot_per_account(run: Run, max_accounts: int = 30):
    """Bars of pnl and fees per account, with trades, win rate and skipped in the labels."""
    table = account_table(run).head(max_accounts)
    note = f" (first {len(table)} of {len(run.accounts)} accounts)" if len(run.accounts) > len(table) else ""
    fig, axes = _figure("PnL and fees per account" + note, run.synthetic)
    ax = axes[0, 0]
    x = np.arange(len(table))
    width = 0.4
    ax.bar(x - width / 2, table["pnl"], width, label="pnl (after fees)",
           color=np.where(table["pnl"] >= 0, "tab:green", "tab:red"))
    ax.bar(x + width / 2, table["fees"], width, label="fees", color="tab:orange")
    ax.axhline(0, color="black", linewidth=0.8)
    labels = [f"{name}\n{int(r.trades)} trades, {r.win_rate_pct:.0f}% won\n{int(r.skipped)} skipped"
              for name, r in table.iterrows()]
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("USDT")
    ax.legend(loc="best", fontsize=8)
    return fig


def plot_trades(run: Run, candles: Candles, account: str | None = None, *, start: Any = None, end: Any = None,
                max_bars: int = 600):
    """Candle chart with one account's entries (▲ long / ▼ short) and exits (marker by exit reason).

    ``account`` defaults to the account with most trades; ``start`` / ``end`` (anything pandas reads as a time)
    zoom in. Candles are resampled to keep at most ``max_bars`` bars.
    """
    import matplotlib.dates as mdates

    trades = run.trades[run.trades["symbol"] == candles.symbol]
    if account is None:
        account = str(trades["account"].value_counts().index[0]) if len(trades) else (run.accounts or [""])[0]
    elif account not in run.accounts:
        raise ValueError(f"account {account!r} is not in the run (accounts: {', '.join(run.accounts)})")
    trades = trades[trades["account"] == account]
    lo, hi = _utc(start), _utc(end)
    window = candles.slice(None if lo is None else lo.value // 1_000_000, None if hi is None else hi.value // 1_000_000)
    if lo is not None:
        trades = trades[trades["entry_time"] >= lo]
    if hi is not None:
        trades = trades[trades["entry_time"] < hi]
    bars = chart_candles(window, max_bars)
    title = f"{candles.symbol.split(':')[0]} {bars.timeframe} candles, trades of {account}"
    fig, axes = _figure(title, candles.synthetic or run.synthetic, figsize=(12, 6))
    ax = axes[0, 0]
    if len(bars):
        x = mdates.date2num(bars.time.astype("datetime64[ms]"))
        up = bars.close >= bars.open
        colour = np.where(up, "tab:green", "tab:red")
        width = bars.timeframe_ms / 86_400_000 * 0.7
        ax.vlines(x, bars.low, bars.high, color=colour, linewidth=0.6)
        body = np.maximum(np.abs(bars.close - bars.open), (bars.high.max() - bars.low.min()) * 1e-4)
        ax.bar(x, body, width, bottom=np.minimum(bars.open, bars.close), color=colour, linewidth=0)
    if len(trades):
        ex = mdates.date2num(trades["entry_time"].dt.tz_convert(None).to_numpy())
        xx = mdates.date2num(trades["exit_time"].dt.tz_convert(None).to_numpy())
        long = (trades["side"] == "LONG").to_numpy()
        for i in range(len(trades)):
            ax.plot([ex[i], xx[i]], [trades["entry_price"].iloc[i], trades["exit_price"].iloc[i]], color="tab:blue",
                    linewidth=0.7, alpha=0.6, linestyle=":")
        for sel, marker, colour, label in ((long, "^", "tab:blue", "entry LONG"),
                                           (~long, "v", "purple", "entry SHORT")):
            if sel.any():
                ax.scatter(ex[sel], trades["entry_price"][sel], marker=marker, s=60, color=colour, label=label,
                           zorder=5, edgecolors="white")
        for reason, (marker, colour) in _EXIT_STYLE.items():
            sel = (trades["exit_reason"] == reason).to_numpy()
            if sel.any():
                ax.scatter(xx[sel], trades["exit_price"][sel], marker=marker, s=45, color=colour,
                           label=f"exit {reason.replace('_', ' ')}", zorder=6, edgecolors="white")
        ax.legend(loc="best", fontsize=8)
    ax.xaxis_date()
    ax.set_ylabel("price (USDT)")
    ax.set_xlabel("time (UTC)")
    fig.autofmt_xdate()
    return fig


def plot_sizing(study: pd.DataFrame, synthetic: bool = False):
    """Four panels over the starting balance: mean margin, mean quantity, trades vs skipped, final equity."""
    fig, axes = _figure("Sizing study: the same signals from different starting balances", synthetic, nrows=2,
                        ncols=2, figsize=(12, 8))
    bal = study.index.to_numpy(dtype=float)
    labels = [f"${b:,.0f}" for b in bal]
    ax = axes[0, 0]
    ax.plot(bal, study["margin_mean"], marker="o")
    ax.set_xscale("log")
    ax.set_title("mean margin per trade (USDT)", fontsize=10)
    ax = axes[0, 1]
    ax.plot(bal, study["quantity_mean"], marker="o", color="tab:purple")
    ax.set_xscale("log")
    ax.set_title("mean quantity per trade (base asset)", fontsize=10)
    ax = axes[1, 0]
    x = np.arange(len(bal))
    ax.bar(x, study["trades"], label="traded", color="tab:blue")
    ax.bar(x, study["skipped_min_size"], bottom=study["trades"], label="skipped: below exchange minimum",
           color="tab:red")
    ax.bar(x, study["skipped_other"], bottom=study["trades"] + study["skipped_min_size"],
           label="skipped: other rules", color="tab:gray")
    ax.set_xticks(x, labels, rotation=45, fontsize=8)
    ax.set_title("signals traded and skipped", fontsize=10)
    ax.legend(fontsize=8)
    ax = axes[1, 1]
    ax.bar(x, study["return_pct"], color=np.where(study["return_pct"] >= 0, "tab:green", "tab:red"))
    for i, (ret, end) in enumerate(zip(study["return_pct"], study["end_balance"], strict=True)):
        ax.annotate(f"${end:,.0f}", (i, ret), ha="center", va="bottom" if ret >= 0 else "top", fontsize=7)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(x, labels, rotation=45, fontsize=8)
    ax.set_title("final equity (label) and return %", fontsize=10)
    for ax in axes[0]:
        ax.set_xlabel("starting balance (USDT, log scale)")
    return fig


def plot_slippage(fills: pd.DataFrame, synthetic: bool = False, *, title: str = "Paper vs backtest entry fills"):
    """Per-trade slippage (bps, positive = paper worse) over time, and the per-account mean."""
    both = fills[fills["matched"] == "both"]
    fig, axes = _figure(title, synthetic, ncols=2, figsize=(12, 5), width_ratios=[2, 1])
    ax = axes[0, 0]
    for account, g in both.groupby("account", sort=False):
        ax.scatter(g["backtest_time"], g["slippage_bps"], s=14, label=account, alpha=0.8)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_ylabel("bps (positive: paper filled worse)")
    ax.set_xlabel("entry time (UTC)")
    ax.set_title("per trade", fontsize=10)
    if 0 < both["account"].nunique() <= 10:
        ax.legend(fontsize=8)
    for label in ax.get_xticklabels():
        label.set_rotation(30)
    ax = axes[0, 1]
    table = slippage_by_account(fills)
    ax.bar(table.index.astype(str), table["mean_bps"], color="tab:orange", label="mean")
    ax.scatter(table.index.astype(str), table["mean_abs_bps"], color="black", zorder=5, label="mean |bps|")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_title("per account", fontsize=10)
    ax.legend(fontsize=8)
    for label in ax.get_xticklabels():
        label.set_rotation(30)
    return fig
