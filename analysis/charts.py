"""Analysis room: every chart: equity (the backtest's equity.png), drawdown, per account, trades on candles, sizing,
the sizing sweep's heatmap, paper-vs-backtest slippage.

Charts are matplotlib ``Figure`` objects built without pyplot (no global state, no backend switch): show them in
Jupyter or ``fig.savefig(path)``. Charts of runs on synthetic candles say SYNTHETIC in the title and across the
plot.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from analysis.paper_vs_backtest import slippage_by_account
from analysis.tables import account_table, drawdown
from marketdata.candles import Candles, resample
from marketdata.times import timeframe_to_ms

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from analysis.runs import Run

SYNTHETIC_NOTE = "SYNTHETIC candles (generated, not market data)"
_CHART_TIMEFRAMES = ("1m", "5m", "15m", "30m", "1h", "2h", "4h", "12h", "1d")
_EXIT_STYLE = {  # exit_reason -> (marker, colour)
    "take_profit": ("o", "tab:green"),
    "stop_loss": ("X", "tab:red"),
    "liquidation": ("P", "black"),
    "end_of_data": ("s", "tab:gray"),
}


def _figure(title: str, synthetic: bool, *, nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] = (11, 5),
            **kwargs: Any) -> tuple[Figure, np.ndarray]:
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


def equity_figure(equity: pd.DataFrame, *, synthetic: bool, max_accounts: int = 20) -> Figure:
    """Equity per account in USDT (top) and as % return (bottom, comparable across balances).

    The one equity chart: `fanout backtest` saves it as equity.png, `fanout report` and the notebooks show it.
    """
    cols, note = _columns(equity, max_accounts)
    fig, axes = _figure("Equity per account" + note, synthetic, nrows=2, figsize=(11, 7), sharex=True,
                        height_ratios=(3, 2))
    ax, ax_pct = axes[0, 0], axes[1, 0]
    for col in cols:
        ax.plot(equity.index, equity[col], label=col, linewidth=1)
        start = equity[col].iloc[0] if len(equity) else 0
        if start:
            ax_pct.plot(equity.index, (equity[col] / start - 1) * 100, label=col, linewidth=1)
    ax.set_ylabel("USDT")
    ax_pct.set_ylabel("return %")
    ax_pct.set_xlabel("time (UTC)")
    ax_pct.axhline(0, color="grey", linewidth=0.6)
    if len(cols) <= 10:
        ax.legend(loc="best", fontsize=8)
    return fig


def symbols_figure(trades: pd.DataFrame, *, synthetic: bool, max_symbols: int = 20) -> Figure:
    """A portfolio run per symbol over every account: cumulative realised pnl by exit time (left) and total pnl
    with trade counts (right). `fanout backtest` saves it as symbols.png when a run covers several symbols."""
    fig, axes = _figure("Results per symbol (all accounts)", synthetic, ncols=2, figsize=(12, 5),
                        width_ratios=(3, 2))
    ax, ax_bar = axes[0, 0], axes[0, 1]
    if len(trades):
        exit_time = pd.to_datetime(trades["exit_time"], utc=True, format="ISO8601") \
            if trades["exit_time"].dtype == object else pd.to_datetime(trades["exit_time"], unit="ms", utc=True)
        frame = trades.assign(exit_time=exit_time).sort_values("exit_time", kind="stable")
        totals = frame.groupby("symbol")["pnl"].agg(["sum", "count"]).sort_values("sum")
        shown = list(totals.index[-max_symbols:])
        for symbol in shown:
            t = frame[frame["symbol"] == symbol]
            ax.step(t["exit_time"], t["pnl"].cumsum(), where="post", label=symbol.split(":")[0], linewidth=1)
        colours = ["tab:green" if v > 0 else "tab:red" for v in totals["sum"]]
        labels = [f"{sym.split(':')[0]} ({n})" for sym, n in zip(totals.index, totals["count"], strict=True)]
        ax_bar.barh(labels, totals["sum"], color=colours)
        if len(shown) <= 12:
            ax.legend(loc="best", fontsize=8)
    ax.set_ylabel("cumulative pnl (USDT)")
    ax.set_xlabel("exit time (UTC)")
    ax.tick_params(axis="x", labelrotation=30)
    ax.axhline(0, color="grey", linewidth=0.6)
    ax_bar.set_xlabel("pnl (USDT); (trades)")
    ax_bar.axvline(0, color="grey", linewidth=0.6)
    return fig


def plot_symbols(run: Run, max_symbols: int = 20) -> Figure:
    """Per-symbol results of a run (the backtest's symbols.png)."""
    return symbols_figure(run.trades, synthetic=run.synthetic, max_symbols=max_symbols)


def plot_equity(run: Run, max_accounts: int = 20) -> Figure:
    """Mark-to-market equity per account: the same chart as the backtest's equity.png."""
    return equity_figure(run.equity, synthetic=run.synthetic, max_accounts=max_accounts)


def plot_drawdown(run: Run, max_accounts: int = 20) -> Figure:
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


def plot_per_account(run: Run, max_accounts: int = 30) -> Figure:
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


def plot_trades(run: Run, candles: Candles, account: str | None = None, *, start: Any = None, end: Any = None,
                max_bars: int = 600) -> Figure:
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


def plot_sizing(study: pd.DataFrame, synthetic: bool = False) -> Figure:
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


def plot_sweep(cells: pd.DataFrame, synthetic: bool = False) -> Figure:
    """The sizing sweep's heatmap (analysis/sweep.py): one column per starting balance, one row per combination of
    the other settings; three panels: final equity (colour: return %), max drawdown %, share of signals skipped."""
    settings = [a for a in ("leverage", "position_pct", "max_position", "min_rr", "slippage_bps")
                if cells[a].nunique() > 1] or ["leverage"]
    row_keys = list(dict.fromkeys(zip(*(cells[a] for a in settings), strict=True)))
    balances = list(dict.fromkeys(cells["balance"]))
    units = {"leverage": "{:g}x", "position_pct": "{:g}%", "max_position": "cap ${:g}", "min_rr": "RR≥{:g}",
             "slippage_bps": "{:g} bps"}
    labels = [" ".join(units[a].format(v) for a, v in zip(settings, key, strict=True)) for key in row_keys]
    where = {key: i for i, key in enumerate(row_keys)}
    col = {b: j for j, b in enumerate(balances)}
    grids = {m: np.full((len(row_keys), len(balances)), np.nan) for m in ("return_pct", "final_equity",
                                                                           "max_drawdown_pct", "skipped_share")}
    for rec in cells.itertuples(index=False):
        i, j = where[tuple(getattr(rec, a) for a in settings)], col[rec.balance]
        for m, g in grids.items():
            g[i, j] = getattr(rec, m)
    height = max(4.0, 0.28 * len(row_keys) + 2)
    fig, axes = _figure(f"Sizing sweep: {len(cells)} cells", synthetic, ncols=3, figsize=(16, height))
    panels = (("return_pct", "final equity (colour: return %)", "RdYlGn", "final_equity"),
              ("max_drawdown_pct", "max drawdown %", "Reds", "max_drawdown_pct"),
              ("skipped_share", "share of signals skipped", "Greys", "skipped_share"))
    annotate = len(cells) <= 400
    for ax, (metric, title, cmap, text) in zip(axes[0], panels, strict=True):
        values = grids[metric]
        if metric == "return_pct":
            span = float(np.nanmax(np.abs(values))) or 1.0
            image = ax.imshow(values, cmap=cmap, vmin=-span, vmax=span, aspect="auto")
        else:
            image = ax.imshow(values, cmap=cmap, vmin=0, vmax=1 if metric == "skipped_share" else None,
                              aspect="auto")
        fig.colorbar(image, ax=ax, shrink=0.8)
        if annotate:
            fmt = {"final_equity": "${:,.0f}", "max_drawdown_pct": "{:.1f}", "skipped_share": "{:.0%}"}[text]
            for (i, j), v in np.ndenumerate(grids[text]):
                if np.isfinite(v):
                    dark = metric != "return_pct" and image.norm(values[i, j]) > 0.6
                    ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=6,
                            color="white" if dark else "black")
        ax.set_xticks(range(len(balances)), [f"${b:,.0f}" for b in balances], rotation=45, fontsize=8)
        ax.set_yticks(range(len(labels)), labels if ax is axes[0][0] else [""] * len(labels), fontsize=7)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("starting balance")
        ax.grid(False)
    return fig


def plot_slippage(fills: pd.DataFrame, synthetic: bool = False, *,
                  title: str = "Paper vs backtest entry fills") -> Figure:
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
