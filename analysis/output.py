"""Analysis room: backtest outputs: trades.csv, skipped.csv, equity.csv, summary.json, equity.png, and the terminal table."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.charts import equity_figure, symbols_figure
from simulator.backtest import BacktestResult
from simulator.records import TRADE_FIELDS

TRADE_COLUMNS = [f for f in TRADE_FIELDS if f != "funding"]  # trades.csv's columns in every run
FUNDING_COLUMN = "funding"  # appended when the run knew some symbol's funding (empty for a symbol it did not)
SKIP_COLUMNS = ["account", "signal_id", "reason"]


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


def trade_frame(result: BacktestResult) -> pd.DataFrame:
    """The run's trades as a DataFrame (times in epoch ms); ``funding`` NaN where the symbol's funding is unknown,
    and no ``funding`` column when the run knew no symbol's funding."""
    trades = pd.DataFrame(result.trades, columns=list(TRADE_FIELDS))
    if not result.funding_known:
        return trades.drop(columns=FUNDING_COLUMN)
    trades.loc[~trades["symbol"].isin(result.funding_known), FUNDING_COLUMN] = np.nan
    return trades


def summarize(result: BacktestResult) -> dict:
    """Per-account and total figures (the content of summary.json)."""
    trades = trade_frame(result)
    skipped = pd.DataFrame(result.skipped, columns=SKIP_COLUMNS)
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
        if result.funding_known:  # included in pnl; symbols with unknown funding count nothing here
            accounts[name]["funding"] = round(float(t[FUNDING_COLUMN].sum()), 8)
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
    out = {
        "candles": {"source": result.candles_source, "synthetic": result.synthetic},
        "accounts": accounts,
        "totals": totals,
        "engine_stats": {k: v for k, v in result.stats.items() if k != "per_account"},
    }
    if result.funding_known:
        totals["funding"] = round(sum(a["funding"] for a in accounts.values()), 8)
    if result.funding_known or len(result.symbols) > 1:
        out["funding"] = {"known": list(result.funding_known),
                          "unknown": [s for s in result.symbols if s not in result.funding_known]}
    if result.mark_known:  # fills.py rule 7: which symbols' MARK_PRICE triggers and liquidations used the mark
        out["mark_prices"] = {"known": list(result.mark_known),
                              "candles_stand_in": [s for s in result.symbols if s not in result.mark_known]}
    if len(result.symbols) > 1:  # a portfolio run: totals per symbol too (a single-symbol run's are its totals)
        out["symbols"] = summarize_symbols(result, trades)
    return out


def summarize_symbols(result: BacktestResult, trades: pd.DataFrame | None = None) -> dict:
    """Totals per symbol over every account (summary.json ``symbols``): the run's symbols in order, then any
    symbol that only had signals (every one of them skipped: no candles)."""
    if trades is None:
        trades = trade_frame(result)
    skipped = pd.DataFrame(result.skipped, columns=[*SKIP_COLUMNS, "symbol"])
    names = list(result.symbols)
    names += sorted(set(skipped["symbol"].dropna()) - set(names))
    out = {}
    for symbol in names:
        t = trades[trades["symbol"] == symbol]
        wins = int((t["pnl"] > 0).sum())
        out[symbol] = {
            "candles": symbol in result.symbols,
            "trades": int(len(t)),
            "accounts_traded": int(t["account"].nunique()),
            "wins": wins,
            "losses": int(len(t)) - wins,
            "win_rate": round(wins / len(t), 4) if len(t) else 0.0,
            "pnl": round(float(t["pnl"].sum()), 8),
            "fees": round(float(t["fees"].sum()), 8),
            "skipped": int((skipped["symbol"] == symbol).sum()),
            "exits": {k: int(v) for k, v in t["exit_reason"].value_counts().items()},
            # included in pnl; None: no funding data for the symbol ("funding unknown"), not 0
            "funding": round(float(t[FUNDING_COLUMN].sum()), 8) if symbol in result.funding_known else None,
        }
    return out


def write_outputs(result: BacktestResult, out_dir: str | Path, *, plot: bool = True,
                  candles_meta: dict | None = None, market_rules: dict | None = None) -> dict:
    """Write every output file into ``out_dir``; return the summary dict.

    candles_meta: how to find the candles again (path and timeframe, or the synthetic seed, start and minutes),
    recorded under summary.json ``candles`` for reports and notebooks.
    market_rules: the snapshot the run used (:meth:`marketdata.rules.MarketRules.describe`), summary.json
    ``market_rules``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    trades = trade_frame(result)
    for col in ("entry_time", "exit_time"):
        trades[col] = [_iso(v) for v in trades[col]]
    num = ["entry_price", "quantity", "margin", "notional", "stop_loss", "take_profit", "exit_price", "fees", "pnl"]
    num += [FUNDING_COLUMN] if FUNDING_COLUMN in trades else []
    trades[num] = trades[num].astype(float).round(8)
    trades.to_csv(out / "trades.csv", index=False)
    pd.DataFrame(result.skipped, columns=SKIP_COLUMNS).to_csv(out / "skipped.csv", index=False)
    equity = pd.DataFrame(result.equity, index=pd.to_datetime(result.equity_time, unit="ms", utc=True))
    equity.index.name = "time"
    equity.round(6).to_csv(out / "equity.csv")
    summary = summarize(result)
    if candles_meta:
        summary["candles"].update(candles_meta)
    if market_rules:
        summary = {"candles": summary.pop("candles"), "market_rules": market_rules, **summary}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if plot:
        equity_figure(equity, synthetic=result.synthetic).savefig(out / "equity.png", dpi=100)
        if len(result.symbols) > 1:
            symbols_figure(trades, synthetic=result.synthetic).savefig(out / "symbols.png", dpi=100)
    return summary


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


def format_symbol_table(summary: dict) -> str:
    """The per-symbol table `fanout backtest` prints after the accounts' for a run over several symbols."""
    head = f"{'symbol':<16}{'trades':>8}{'accts':>7}{'win%':>7}{'pnl':>12}{'fees':>10}{'funding':>10}{'skipped':>9}"
    lines = [head, "-" * len(head)]
    for symbol, s in (summary.get("symbols") or {}).items():
        name = symbol.split(":")[0] + ("" if s["candles"] else " *")
        lines.append(f"{name[:15]:<16}{s['trades']:>8}{s['accounts_traded']:>7}{s['win_rate'] * 100:>7.1f}"
                     f"{s['pnl']:>12,.2f}{s['fees']:>10,.2f}"
                     f"{'unknown' if s['funding'] is None else format(s['funding'], ',.2f'):>10}{s['skipped']:>9}")
    if any(not s["candles"] for s in (summary.get("symbols") or {}).values()):
        lines.append("* no candles: every signal skipped")
    return "\n".join(lines)
