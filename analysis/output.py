"""Analysis room: backtest outputs: trades.csv, skipped.csv, equity.csv, summary.json, equity.png, and the terminal table."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from simulator.backtest import BacktestResult

TRADE_COLUMNS = [
    "account", "signal_id", "symbol", "side", "entry_time", "entry_price", "quantity", "margin", "notional",
    "leverage", "stop_loss", "take_profit", "exit_time", "exit_price", "exit_reason", "fees", "pnl",
]


def _iso(ms) -> str:
    return pd.Timestamp(int(ms), unit="ms", tz="UTC").isoformat()


def max_drawdown(curve: np.ndarray) -> tuple[float, float]:
    """Largest peak-to-trough fall of an equity curve: (dollars, fraction of the peak)."""
    if len(curve) == 0:
        return 0.0, 0.0
    peaks = np.maximum.accumulate(curve)
    dd = peaks - curve
    k = int(dd.argmax())
    return float(dd[k]), float(dd[k] / peaks[k]) if peaks[k] > 0 else 0.0


def summarize(result: BacktestResult) -> dict:
    """Per-account and total figures (the content of summary.json)."""
    trades = pd.DataFrame(result.trades, columns=TRADE_COLUMNS)
    skipped = pd.DataFrame(result.skipped, columns=["account", "signal_id", "reason"])
    accounts = {}
    for name, start in result.accounts.items():
        t = trades[trades["account"] == name]
        wins = int((t["pnl"] > 0).sum())
        losses = int((t["pnl"] <= 0).sum())
        dd_usd, dd_pct = max_drawdown(result.equity.get(name, np.array([start])))
        end = result.end_balance[name]
        accounts[name] = {
            "start_balance": round(start, 8),
            "end_balance": round(end, 8),
            "trades": int(len(t)),
            "wins": wins,
            "losses": losses,
            "win_rate": round(wins / len(t), 4) if len(t) else 0.0,
            "pnl": round(float(t["pnl"].sum()), 8),
            "fees": round(float(t["fees"].sum()), 8),
            "return_pct": round((end / start - 1) * 100, 4) if start else 0.0,
            "max_drawdown": round(dd_usd, 8),
            "max_drawdown_pct": round(dd_pct * 100, 4),
            "skipped": int((skipped["account"] == name).sum()),
            "exits": {k: int(v) for k, v in t["exit_reason"].value_counts().items()},
        }
    n_trades = sum(a["trades"] for a in accounts.values())
    n_wins = sum(a["wins"] for a in accounts.values())
    totals = {
        "accounts": len(accounts),
        "start_balance": round(sum(a["start_balance"] for a in accounts.values()), 8),
        "end_balance": round(sum(a["end_balance"] for a in accounts.values()), 8),
        "trades": n_trades,
        "wins": n_wins,
        "losses": sum(a["losses"] for a in accounts.values()),
        "win_rate": round(n_wins / n_trades, 4) if n_trades else 0.0,
        "pnl": round(sum(a["pnl"] for a in accounts.values()), 8),
        "fees": round(sum(a["fees"] for a in accounts.values()), 8),
        "skipped": sum(a["skipped"] for a in accounts.values()),
        "signals": result.stats.get("signals", 0),
    }
    return {
        "candles": {"source": result.candles_source, "synthetic": result.synthetic},
        "accounts": accounts,
        "totals": totals,
        "engine_stats": {k: v for k, v in result.stats.items() if k != "per_account"},
    }


def write_outputs(result: BacktestResult, out_dir: str | Path, *, plot: bool = True,
                  candles_meta: dict | None = None) -> dict:
    """Write every output file into ``out_dir``; return the summary dict.

    candles_meta: how to find the candles again (path and timeframe, or the synthetic seed, start and minutes),
    recorded under summary.json ``candles`` for reports and notebooks.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    trades = pd.DataFrame(result.trades, columns=TRADE_COLUMNS)
    for col in ("entry_time", "exit_time"):
        trades[col] = [_iso(v) for v in trades[col]]
    num = ["entry_price", "quantity", "margin", "notional", "stop_loss", "take_profit", "exit_price", "fees", "pnl"]
    trades[num] = trades[num].astype(float).round(8)
    trades.to_csv(out / "trades.csv", index=False)
    pd.DataFrame(result.skipped, columns=["account", "signal_id", "reason"]).to_csv(out / "skipped.csv", index=False)
    equity = pd.DataFrame(result.equity, index=pd.to_datetime(result.equity_time, unit="ms", utc=True))
    equity.index.name = "time"
    equity.round(6).to_csv(out / "equity.csv")
    summary = summarize(result)
    if candles_meta:
        summary["candles"].update(candles_meta)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if plot:
        plot_equity(equity, out / "equity.png", synthetic=result.synthetic)
    return summary


def equity_figure(equity: pd.DataFrame, *, synthetic: bool, max_accounts: int = 20):
    """Equity per account in USDT (top) and as % return (bottom, comparable across balances).

    The one equity chart: `fanout backtest` saves it as equity.png, `fanout report` and the notebooks show it.
    """
    from matplotlib.figure import Figure

    cols = list(equity.columns)[:max_accounts]
    title = "Equity per account"
    if len(equity.columns) > len(cols):
        title += f" (first {len(cols)} of {len(equity.columns)} accounts)"
    if synthetic:
        title += " — SYNTHETIC candles (generated, not market data)"
    fig = Figure(figsize=(11, 7), layout="constrained")
    ax, ax_pct = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    fig.suptitle(title, fontsize=11)
    if synthetic:
        fig.text(0.5, 0.5, "SYNTHETIC", fontsize=64, color="tab:red", alpha=0.12, rotation=20,
                 ha="center", va="center", zorder=10)
    for col in cols:
        ax.plot(equity.index, equity[col], label=col, linewidth=1)
        start = equity[col].iloc[0] if len(equity) else 0
        if start:
            ax_pct.plot(equity.index, (equity[col] / start - 1) * 100, label=col, linewidth=1)
    ax.set_ylabel("USDT")
    ax_pct.set_ylabel("return %")
    ax_pct.set_xlabel("time (UTC)")
    ax_pct.axhline(0, color="grey", linewidth=0.6)
    for a in (ax, ax_pct):
        a.grid(alpha=0.3)
    if len(cols) <= 10:
        ax.legend(loc="best", fontsize=8)
    return fig


def plot_equity(equity: pd.DataFrame, path: Path, *, synthetic: bool) -> None:
    """Save :func:`equity_figure` as a PNG."""
    equity_figure(equity, synthetic=synthetic).savefig(path, dpi=100)


def format_table(summary: dict) -> str:
    """The per-account table printed by `fanout backtest`."""
    head = f"{'account':<14}{'start':>12}{'end':>12}{'pnl':>11}{'fees':>9}{'trades':>8}{'win%':>7}{'maxDD%':>8}{'skipped':>9}"
    lines = [head, "-" * len(head)]
    rows = list(summary["accounts"].items())
    shown = rows if len(rows) <= 25 else rows[:20]
    for name, a in shown:
        lines.append(
            f"{name[:13]:<14}{a['start_balance']:>12,.2f}{a['end_balance']:>12,.2f}{a['pnl']:>11,.2f}"
            f"{a['fees']:>9,.2f}{a['trades']:>8}{a['win_rate'] * 100:>7.1f}{a['max_drawdown_pct']:>8.2f}{a['skipped']:>9}"
        )
    if len(shown) < len(rows):
        lines.append(f"... {len(rows) - len(shown)} more accounts in summary.json")
    t = summary["totals"]
    lines.append("-" * len(head))
    lines.append(
        f"{'TOTAL':<14}{t['start_balance']:>12,.2f}{t['end_balance']:>12,.2f}{t['pnl']:>11,.2f}{t['fees']:>9,.2f}"
        f"{t['trades']:>8}{t['win_rate'] * 100:>7.1f}{'':>8}{t['skipped']:>9}"
    )
    if not math.isfinite(t["pnl"]):
        lines.append("warning: non-finite pnl")
    return "\n".join(lines)
