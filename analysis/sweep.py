"""Analysis room: sizing sweeps — one signal history backtested over a grid of balances and sizing settings.

A cell is one simulated account: a starting balance with a leverage, a position % and a margin cap (and a minimum
reward:risk and a slippage). Cells that differ only by balance share one backtest (accounts are independent), so
the grid runs as one task per (leverage, position %, margin cap, min-RR, slippage): on a local process pool, or on
a Ray cluster (``ray_map``). Every task is a pure function of the candles, signals and its settings, and the rows
come back in grid order whatever finished first, so a cluster run writes the same CSV as a local one.
"""

from __future__ import annotations

import itertools
import math
import multiprocessing
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from analysis.output import summarize
from engine import ExecutionConfig, Signal
from simulator.backtest import BacktestRunner

AXES = ("balance", "leverage", "position_pct", "max_position", "min_rr", "slippage_bps")
METRICS = ("final_equity", "return_pct", "pnl", "fees", "trades", "wins", "win_rate", "skipped", "skipped_share",
           "max_drawdown", "max_drawdown_pct")
DEFAULT_GRID = {
    "balance": (500.0, 1_000.0, 2_500.0, 10_000.0, 50_000.0),
    "leverage": (5, 10, 20),
    "position_pct": (2.0, 5.0, 10.0),
    "max_position": (50.0, 100.0, 250.0),
    "min_rr": (0.0,),
    "slippage_bps": (0.0,),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepGrid:
    """The values of each axis; the grid is their product (``len(grid)`` cells).

    balance: starting balances (USDT, > 0). leverage: whole numbers ≥ 1. position_pct: margin as % of the free
    balance (> 0, ≤ 100). max_position: margin cap per trade (USDT, > 0). min_rr: minimum reward:risk (≥ 0, 0 = off).
    slippage_bps: market-fill slippage (basis points, ≥ 0).
    """

    balance: tuple[float, ...] = DEFAULT_GRID["balance"]
    leverage: tuple[int, ...] = DEFAULT_GRID["leverage"]
    position_pct: tuple[float, ...] = DEFAULT_GRID["position_pct"]
    max_position: tuple[float, ...] = DEFAULT_GRID["max_position"]
    min_rr: tuple[float, ...] = DEFAULT_GRID["min_rr"]
    slippage_bps: tuple[float, ...] = DEFAULT_GRID["slippage_bps"]

    def __post_init__(self) -> None:
        checks = {"balance": lambda v: v > 0, "leverage": lambda v: v >= 1 and float(v).is_integer(),
                  "position_pct": lambda v: 0 < v <= 100, "max_position": lambda v: v > 0,
                  "min_rr": lambda v: v >= 0, "slippage_bps": lambda v: 0 <= v < 10_000}
        for axis, ok in checks.items():
            values = getattr(self, axis)
            if not values:
                raise ValueError(f"sweep axis '{axis}' needs at least one value")
            bad = [v for v in values if not (isinstance(v, int | float) and math.isfinite(v) and ok(v))]
            if bad:
                raise ValueError(f"sweep axis '{axis}': value {bad[0]!r} out of range")
            if len(set(values)) != len(values):
                raise ValueError(f"sweep axis '{axis}' repeats a value: {list(values)}")

    def __len__(self) -> int:
        return math.prod(len(getattr(self, axis)) for axis in AXES)

    def tasks(self) -> list[dict[str, Any]]:
        """One backtest per combination of the settings other than balance, in grid order."""
        return [dict(zip(AXES[1:], values, strict=True))
                for values in itertools.product(*(getattr(self, axis) for axis in AXES[1:]))]


@dataclass(frozen=True, slots=True)
class SweepData:
    """What every task needs: the candles, the signals, the base config and the venue's settings."""

    candles: list
    signals: list[Signal]
    config: ExecutionConfig
    balances: tuple[float, ...]
    options: dict[str, Any]


def run_task(data: SweepData, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """One task: every balance on one (leverage, position %, cap, min-RR, slippage); one row per cell."""
    config = replace(data.config, leverage=int(settings["leverage"]),
                     position_size_pct=settings["position_pct"] / 100, max_position_usd=settings["max_position"],
                     min_reward_risk=settings["min_rr"])
    names = {f"cell {i}": b for i, b in enumerate(data.balances)}
    runner = BacktestRunner(data.candles, data.signals, names, config, slippage_bps=settings["slippage_bps"],
                            **data.options)
    summary = summarize(runner.run())
    rows = []
    signals = len(data.signals)
    for name, balance in names.items():
        a = summary["accounts"][name]
        rows.append({
            "balance": balance, **settings,
            "final_equity": a["end_balance"], "return_pct": a["return_pct"], "pnl": a["pnl"], "fees": a["fees"],
            "trades": a["trades"], "wins": a["wins"], "win_rate": a["win_rate"], "skipped": a["skipped"],
            "skipped_share": round(a["skipped"] / signals, 6) if signals else 0.0,
            "max_drawdown": a["max_drawdown"], "max_drawdown_pct": a["max_drawdown_pct"],
        })
    return rows


Mapper = Callable[[Callable[[SweepData, dict], list[dict]], SweepData, Sequence[dict]], Iterable[list[dict]]]


_data: SweepData | None = None


def _set_data(data: SweepData) -> None:
    global _data
    _data = data


def _run_here(settings: dict[str, Any]) -> list[dict[str, Any]]:
    assert _data is not None, "worker not initialised"
    return run_task(_data, settings)


def local_map(workers: int) -> Mapper:
    """Tasks on a local process pool of ``workers`` (1: in this process), results in task order; each worker
    gets the data once (not with every task)."""
    def run(fn, data, tasks):
        if workers <= 1 or len(tasks) <= 1:
            return [fn(data, t) for t in tasks]
        from simulator.parallel import default_start_method

        ctx = multiprocessing.get_context(default_start_method())
        with ProcessPoolExecutor(min(workers, len(tasks)), mp_context=ctx, initializer=_set_data,
                                 initargs=(data,)) as pool:
            return list(pool.map(_run_here, tasks))
    return run


def ray_map(address: str | None = None, **init: Any) -> Mapper:
    """Tasks on a Ray cluster (``address``: ``ray://host:10001``, ``auto``, or None for a local instance; ``init``
    goes to ``ray.init``), results in task order. The data is put in the object store once for every task."""
    try:
        import ray
    except ImportError:  # the optional extra
        raise RuntimeError("Ray is not installed: pip install 'fanout[ray]'") from None

    def run(fn, data, tasks):
        started = not ray.is_initialized()
        if started:
            ray.init(address=address, logging_level="ERROR", **init)
        try:
            remote = ray.remote(fn)
            ref = ray.put(data)
            return ray.get([remote.remote(ref, t) for t in tasks])
        finally:
            if started:
                ray.shutdown()
    return run


def sweep(candles: Iterable, signals: Iterable[Signal], grid: SweepGrid | None = None,
          config: ExecutionConfig | None = None, *, mapper: Mapper | None = None, **runner_options: Any) -> pd.DataFrame:
    """Backtest every cell of ``grid``; one row per cell (the grid's axes, then :data:`METRICS`), in grid order.

    ``runner_options`` go to :class:`simulator.backtest.BacktestRunner` (rules, taker_fee, maker_fee, fine);
    ``mapper``: :func:`local_map` (default, one process per CPU) or :func:`ray_map`.
    """
    grid = grid or SweepGrid()
    if "slippage_bps" in runner_options:
        raise ValueError("sweep: slippage is an axis of the grid (SweepGrid.slippage_bps), not a runner option")
    data = SweepData(list(candles), list(signals), config or ExecutionConfig(), tuple(grid.balance), runner_options)
    tasks = grid.tasks()
    if mapper is None:
        from simulator.parallel import default_workers

        mapper = local_map(default_workers())
    rows = [row for part in mapper(run_task, data, tasks) for row in part]
    order = {b: i for i, b in enumerate(grid.balance)}
    frame = pd.DataFrame(rows, columns=[*AXES, *METRICS])
    # grid order: balance first, then the other axes as the grid lists them
    keys = [order[b] for b in frame["balance"]]
    task_index = [i for i in range(len(tasks)) for _ in grid.balance]
    frame = frame.assign(_b=keys, _t=task_index).sort_values(["_b", "_t"], kind="stable")
    return frame.drop(columns=["_b", "_t"]).reset_index(drop=True)
