"""Analysis room: paper-vs-backtest fills: paper execution records (the journal or a CSV export) against a run's entries.

Records come from the execution journal through :class:`storage.journal.Journal` (any DATABASE_URL: SQLite or
PostgreSQL alike; a path to a SQLite journal file is read the same way) or from a CSV export. Slippage is signed
so that positive means paper filled worse for the trader.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from storage.database import DatabaseUrlError, display_url
from storage.journal import Journal, JournalMissing

RECORD_COLUMNS = ["signal_id", "account", "fill_price", "quantity", "time"]
_ALIASES = {  # column names other exports use, by the name used here
    "fill_price": ("fill_price", "price", "average", "avg_price", "avgprice", "fill"),
    "quantity": ("quantity", "filled", "amount", "qty", "executed_qty"),
    "time": ("time", "timestamp", "filled_at", "executed_at", "datetime"),
}
_SQLITE_MAGIC = b"SQLite format 3\x00"


def load_paper_records(source: str | Path, *, mode: str | None = "paper") -> pd.DataFrame:
    """Paper execution records from the journal (a DATABASE_URL or a SQLite journal file) or a CSV export.

    The result has at least signal_id, account, fill_price, quantity, time (UTC; epoch ms / s or ISO-8601 in the
    source) plus whatever else the source holds (status, reason, side, ...). From the journal, the executions of
    ``mode`` are read (None reads every mode). Column aliases in a CSV: price / average / avg_price for
    fill_price, filled / amount / qty for quantity, timestamp / filled_at for time. Raises ValueError naming the
    source (a URL with its password masked) and what is missing.
    """
    text = str(source)
    if "://" in text:
        label = display_url(text)
        return _normalize_records(_journal_records(text, mode, label), label)
    path = Path(source)
    if not path.is_file():
        raise ValueError(f"paper records file not found: {path}")
    with open(path, "rb") as fh:
        is_sqlite = fh.read(len(_SQLITE_MAGIC)) == _SQLITE_MAGIC
    if is_sqlite:
        df = _journal_records(f"sqlite:///{path.resolve()}", mode, str(path))
    else:
        try:
            df = pd.read_csv(path, dtype={"signal_id": str, "account": str})
        except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise ValueError(f"paper records {path}: cannot be read as CSV ({exc})") from None
    return _normalize_records(df, str(path))


def _journal_records(url: str, mode: str | None, label: str) -> pd.DataFrame:
    """The journal's executions (of ``mode``) through :class:`Journal`, opened without creating anything."""
    try:
        journal = Journal(url, create=False)
    except JournalMissing as exc:  # the message names the database (password masked)
        raise ValueError(f"paper records: {exc}") from None
    except DatabaseUrlError as exc:
        raise ValueError(f"paper records {label}: {exc}") from None
    try:
        rows = journal.executions(mode)
    finally:
        journal.close()
    if not rows:
        which = f" of mode {mode!r} (mode=None reads every mode)" if mode else ""
        raise ValueError(f"paper records {label}: the journal holds no executions{which}")
    return pd.DataFrame(rows)


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
