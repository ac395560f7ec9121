"""`fanout sweep`: one signal history over a grid of balances × leverage × position % × margin cap (× min-RR,
× slippage); prints a table, writes sweep.csv and sweep.png. Local process pool, or a Ray cluster (``--ray``)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from analysis.charts import plot_sweep
from analysis.sweep import DEFAULT_GRID, SweepGrid, local_map, ray_map, sweep
from fanout import argtypes
from fanout.cmd_backtest import add_data_options, load_inputs
from fanout.options import add_fee_options, add_sizing_options, config_from_args
from simulator.parallel import default_workers

_AXES = {  # flag -> (grid field, value type, help)
    "--balances": ("balance", argtypes.number(low=0, low_open=True), "starting balances (USDT)"),
    "--leverage": ("leverage", argtypes.LEVERAGE, "leverages"),
    "--position-pct": ("position_pct", argtypes.number(low=0, high=100, low_open=True),
                       "margin as %% of the free balance"),
    "--max-position": ("max_position", argtypes.number(low=0, low_open=True), "margin caps per trade (USDT)"),
    "--min-rr": ("min_rr", argtypes.number(low=0), "minimum reward:risk values (0 = off)"),
    "--slippage-bps": ("slippage_bps", argtypes.SLIPPAGE_BPS, "market-fill slippages (basis points)"),
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="sizing sweep: balances × leverage × position %% × margin cap (no arguments: demo)",
                       description="Backtest one signal history over a grid of sizing settings, one simulated "
                                   "account per cell; prints a table and writes sweep.csv and sweep.png (heatmaps "
                                   "of final equity, max drawdown and skipped share). With no arguments, sweeps the "
                                   "bundled demo. Runs on local worker processes, or on a Ray cluster with --ray.")
    add_data_options(p)
    g = p.add_argument_group("the grid (comma-separated values; each axis defaults as shown)")
    for flag, (field, _, text) in _AXES.items():
        default = ",".join(f"{v:g}" for v in DEFAULT_GRID[field])
        g.add_argument(flag, dest=f"grid_{field}", type=argtypes.values(_AXES[flag][1]), metavar="V,V,...",
                       help=f"{text} (default {default})")
    add_sizing_options(p, skip=("--leverage", "--position-pct", "--max-position", "--min-rr"))
    add_fee_options(p)
    p.add_argument("--workers", type=argtypes.whole(low=1), default=None, metavar="N",
                   help="local worker processes (default: this machine's CPUs)")
    p.add_argument("--ray", metavar="ADDRESS", default=os.environ.get("RAY_ADDRESS"),
                   help="run the cells on a Ray cluster: ray://HEAD:10001, auto, or 'local' for a Ray instance on "
                        "this machine (default $RAY_ADDRESS; without it, local processes); needs fanout[ray]")
    p.add_argument("--out", metavar="DIR", default="out/sweep", help="output folder (default out/sweep)")
    p.add_argument("--no-plot", action="store_true", help="skip sweep.png")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    grid = SweepGrid(**{field: tuple(getattr(args, f"grid_{field}") or DEFAULT_GRID[field])
                        for field, _, _ in _AXES.values()})
    config = config_from_args(args)
    data = load_inputs(args, len(grid))
    if args.ray:
        mapper = ray_map(None if args.ray == "local" else args.ray)
        where = "this machine's Ray instance" if args.ray == "local" else f"the Ray cluster at {args.ray}"
    else:
        workers = args.workers or default_workers()
        mapper, where = local_map(workers), f"{workers} local worker process{'es' * (workers > 1)}"
    tasks = len(grid.tasks())
    print(f"🧮 {len(grid)} cells ({tasks} backtests of {len(grid.balance)} balances) on {where}", file=sys.stderr)
    logging.getLogger("fanout.executor").setLevel(logging.WARNING)
    logging.getLogger("fanout.watcher").setLevel(logging.WARNING)
    cells = sweep(data.all_candles, data.signals, grid, config, mapper=mapper, rules=data.rules,
                  fine=data.fine or None, funding=[s.funding for s in data.series if s.funding is not None] or None,
                  mark=[s.mark for s in data.series if s.mark is not None] or None, taker_fee=args.taker_fee,
                  maker_fee=args.maker_fee)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cells.to_csv(out / "sweep.csv", index=False)
    synthetic = bool(getattr(data.candles, "synthetic", False))
    if not args.no_plot:
        plot_sweep(cells, synthetic=synthetic).savefig(out / "sweep.png", dpi=100)
    if synthetic:
        print("⚠️  SYNTHETIC candles (generated, not market data) — `fanout data download` for real ones")
    print(format_cells(cells))
    print(f"\n📁 {out}/: sweep.csv" + ("" if args.no_plot else ", sweep.png"))
    return 0


def format_cells(cells, limit: int = 30) -> str:
    """The cells as a table (the first ``limit`` in grid order, then the five best final equities)."""
    head = (f"{'balance':>10}{'lev':>5}{'pos%':>6}{'cap':>8}{'minRR':>7}{'slip':>6}{'final':>12}{'ret%':>8}"
            f"{'maxDD%':>8}{'trades':>8}{'skip%':>7}")

    def line(r) -> str:
        return (f"{r.balance:>10,.0f}{r.leverage:>5.0f}{r.position_pct:>6g}{r.max_position:>8,.0f}{r.min_rr:>7g}"
                f"{r.slippage_bps:>6g}{r.final_equity:>12,.2f}{r.return_pct:>8.2f}{r.max_drawdown_pct:>8.2f}"
                f"{r.trades:>8}{r.skipped_share * 100:>7.1f}")

    rows = list(cells.itertuples(index=False))
    lines = [head, "-" * len(head), *(line(r) for r in rows[:limit])]
    if len(rows) > limit:
        lines.append(f"... {len(rows) - limit} more cells in sweep.csv; best final return:")
        best = cells.sort_values("return_pct", ascending=False, kind="stable").head(5)
        lines.extend(line(r) for r in best.itertuples(index=False))
    return "\n".join(lines)
