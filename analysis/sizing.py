"""Analysis room: the sizing study: the same signals on one simulated account per starting balance."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from analysis.output import SKIP_COLUMNS, summarize, trade_frame
from analysis.sync import run_sync
from analysis.tables import skip_category
from engine import ExecutionConfig, Signal
from marketdata.candles import Candles
from simulator.backtest import BacktestRunner

DEFAULT_SIZING_BALANCES = (100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000)


def sizing_study(candles: Candles, signals: Iterable[Signal], balances: Sequence[float] = DEFAULT_SIZING_BALANCES,
                 config: ExecutionConfig | None = None, **runner_options: Any) -> pd.DataFrame:
    """The same signals on one simulated account per starting balance; one row per balance.

    Columns: trades, skipped (all reasons), skipped_min_size (below the exchange minimum quantity / notional),
    skipped_other, margin_mean / quantity_mean / notional_mean over the account's trades, end_balance, pnl,
    fees, return_pct, max_drawdown_pct. Accounts are independent, so one run holds them all. ``runner_options``
    go to :class:`simulator.backtest.BacktestRunner`; works inside Jupyter.
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
    result = run_sync(runner.arun)
    summary = summarize(result)
    trades = trade_frame(result)
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
