"""Analysis room: tables over a run: skip reasons grouped, underwater curves, the per-account figures."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from analysis.runs import Run

_SKIP_RULES = (  # (pattern over the engine's skip reason, category); engine/sizing.py and engine/risk.py write them
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


def skip_category(reason: str) -> str:
    """Group an engine skip reason: min_size, low_balance, open_position, max_open, daily_loss, reward_risk,
    stop_beyond_liquidation, leverage_bracket, no_candles, failed, other.

    ``min_size`` is the exchange minimum: quantity below the step minimum or notional below the minimum notional
    (the reasons written by engine/sizing.py and engine/risk.py).
    """
    text = str(reason or "")
    if text.startswith("failed:"):
        return "failed"
    for pattern, name in _SKIP_RULES:
        if re.search(pattern, text):
            return name
    return "other"


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


def symbol_table(run: Run) -> pd.DataFrame:
    """Per-symbol totals over every account: summary.json ``symbols`` for a run over several symbols (with
    skips and funding, ``None`` = funding unknown), else the same figures from trades.csv."""
    per_symbol = run.summary.get("symbols")
    if per_symbol:
        table = pd.DataFrame.from_dict(per_symbol, orient="index")
        table["win_rate_pct"] = table.pop("win_rate") * 100
        return table.drop(columns=["exits"])
    t = run.trades
    funding = "funding" in t.columns
    rows = {}
    for symbol, g in t.groupby("symbol", sort=True):
        rows[symbol] = {"trades": len(g), "accounts_traded": g["account"].nunique(), "wins": int((g["pnl"] > 0).sum()),
                        "pnl": g["pnl"].sum(), "fees": g["fees"].sum(),
                        "funding": g["funding"].sum() if funding else None,
                        "win_rate_pct": float((g["pnl"] > 0).mean() * 100)}
    return pd.DataFrame.from_dict(rows, orient="index")
