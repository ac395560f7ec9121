"""Simulator room: one backtest's accounts sharded over worker processes, merged into the single-process result.

Accounts are independent given the candles and the signals: each has its own wallet, positions and orders on the
venue, its own risk-ledger day, stats row and executor caches (keyed by account), and what accounts share — the
market rules, the clock and last prices set by the signals, the memoised precision answers and level scans — is
the same in every shard. So each worker replays every signal for its share of the accounts, and the shards are
merged back in the order one process produces them: trades by (entry time, account) with each account's own
order kept, skipped rows by (signal, account), equity curves, end balances and per-account stats in account
order, per-signal "N/M succeeded" totals summed. ``workers=1`` is the single process, and any N gives the same
output files byte for byte (tests/simulator/test_parallel.py, the baseline runs).

Only the standard library: ``concurrent.futures.ProcessPoolExecutor``. Workers get the candles, signals and
settings once (at start-up) and one shard of accounts each; nothing they need is a module-level global of the
parent, so any start method works (``start_method``; see :func:`start_method` for the default).
"""

from __future__ import annotations

import multiprocessing
import os
import queue as queue_module
import sys
import threading
import time
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from typing import Any

from engine import ExecutionConfig, Signal
from marketdata.rules import MarketRules
from simulator.backtest import TRADE_ORDER, BacktestResult, BacktestRunner, _cyclic_gc_paused
from simulator.records import TradeRow

_PROGRESS_EVERY_S = 0.2  # how often a worker reports its signals done (one small message each time)


def default_workers() -> int:
    """The CPUs this process may run on (``fanout backtest --workers``' default)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_start_method() -> str:
    """``fork`` on Linux when this process runs one thread (workers start in milliseconds, sharing the parent's
    imported modules and candles copy-on-write); otherwise the platform's safe default (``forkserver`` / ``spawn``:
    forking a process with other threads can deadlock on a lock one of them held)."""
    if sys.platform == "linux" and threading.active_count() == 1:
        return "fork"
    methods = multiprocessing.get_all_start_methods()
    return "forkserver" if "forkserver" in methods else "spawn"


def shard_accounts(balances: dict[str, float], shards: int) -> list[dict[str, float]]:
    """``balances`` dealt round-robin into at most ``shards`` non-empty shards (accounts are often listed by size,
    and a large account trades more than a small one: dealing evens the work out)."""
    names = list(balances)
    k = max(1, min(int(shards), len(names)))
    return [{n: balances[n] for n in names[i::k]} for i in range(k)]


@dataclass(frozen=True, slots=True)
class _Job:
    """What every worker needs besides its accounts (sent once per worker)."""

    candles: list
    signals: list[Signal]
    config: ExecutionConfig | None
    options: dict[str, Any] = field(default_factory=dict)


_job: _Job | None = None
_progress: Any = None


def _init_worker(job: _Job, progress: Any) -> None:
    global _job, _progress
    _job, _progress = job, progress


class _Reporter:
    """A worker's progress callback: signals done, sent to the parent at most every ``_PROGRESS_EVERY_S``."""

    def __init__(self, sink: Any, weight: int) -> None:
        self.sink, self.weight, self.pending, self.last = sink, weight, 0, time.monotonic()

    def __call__(self, n: int) -> None:
        self.pending += n
        now = time.monotonic()
        if now - self.last >= _PROGRESS_EVERY_S:
            self.flush()
            self.last = now

    def flush(self) -> None:
        if self.pending:
            self.sink.put(self.pending * self.weight)
            self.pending = 0


def _run_shard(balances: dict[str, float]) -> tuple[BacktestResult, list[int]]:
    """A worker's task: the whole backtest for ``balances``; the result and each skipped row's signal index."""
    job = _job
    assert job is not None, "worker not initialised"
    reporter = _Reporter(_progress, len(balances)) if _progress is not None else None
    runner = BacktestRunner(job.candles, job.signals, balances, job.config, progress=reporter or False,
                            **job.options)
    result = runner.run()
    if reporter is not None:
        reporter.flush()
    result.trades = list(map(tuple, result.trades))  # plain tuples pickle without a Python call per row
    return result, runner.skip_signal_index


def run_backtest(candles: Iterable, signals: Iterable[Signal], balances: dict[str, float],
                 config: ExecutionConfig | None = None, *, workers: int = 1, progress: bool = False,
                 start_method: str | None = None, **options: Any) -> BacktestResult:
    """A backtest of ``balances`` over ``candles`` and ``signals`` on ``workers`` processes (1: this process).

    ``options`` go to :class:`simulator.backtest.BacktestRunner` (fine, rules, taker_fee, maker_fee,
    slippage_bps, equity_points, funding, mark). The result is the one a single :class:`BacktestRunner` gives.
    """
    candles, signals = list(candles), list(signals)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers!r}")
    shards = shard_accounts(balances, workers) if balances else [balances]
    if len(shards) == 1:
        return BacktestRunner(candles, signals, balances, config, progress=progress, **options).run()
    if options.get("rules") is None:
        options["rules"] = MarketRules.load()  # read once, not once per worker
    ctx = multiprocessing.get_context(start_method or default_start_method())
    sink = ctx.Queue() if progress else None
    job = _Job(candles, signals, config, options)
    # the shards' results are unpickled here as hundreds of thousands of acyclic objects (see _cyclic_gc_paused)
    with _cyclic_gc_paused():
        with ProcessPoolExecutor(len(shards), mp_context=ctx, initializer=_init_worker,
                                 initargs=(job, sink)) as pool:
            futures = [pool.submit(_run_shard, shard) for shard in shards]
            if sink is not None:
                _follow(futures, sink, len(signals) * len(balances))
            parts = [f.result() for f in futures]
        # merged once the workers have exited: their memory and the merged result are never resident together
        return merge_results(balances, parts)


def _follow(futures: list, sink: Any, total: int) -> None:
    """A progress bar over every worker's signals × accounts until all futures are done."""
    from tqdm import tqdm

    bar = tqdm(total=total, unit=" account-signals", unit_scale=True, desc="backtest", leave=False)
    pending = set(futures)
    try:
        while pending:
            _, pending = wait(pending, timeout=_PROGRESS_EVERY_S, return_when=FIRST_COMPLETED)
            while True:
                try:
                    bar.update(sink.get_nowait())
                except queue_module.Empty:
                    break
    finally:
        bar.close()


def merge_results(balances: dict[str, float], parts: list[tuple[BacktestResult, list[int]]]) -> BacktestResult:
    """Shard results (each with its skipped rows' signal indexes) merged in the order one process makes them."""
    results = [r for r, _ in parts]
    first = results[0]
    position = {name: i for i, name in enumerate(balances)}
    # each account's trades come from one shard in that run's order, and (entry_time, account) differs between
    # accounts: a stable sort of the concatenation is the single run's sort
    trades = sorted(map(TradeRow, chain.from_iterable(r.trades for r in results)), key=TRADE_ORDER)
    keyed = [(index, position[row["account"]], row) for r, idx in parts for index, row in zip(idx, r.skipped,
                                                                                             strict=True)]
    keyed.sort(key=itemgetter(0, 1))
    equity = {name: r.equity[name] for r in results for name in r.equity}
    end_balance = {name: r.end_balance[name] for r in results for name in r.end_balance}
    return BacktestResult(
        accounts=dict(balances),
        trades=trades,
        skipped=[row for _, _, row in keyed],
        equity_time=first.equity_time,
        equity={name: equity[name] for name in balances},
        end_balance={name: end_balance[name] for name in balances},
        stats=_merge_stats([r.stats for r in results], balances),
        synthetic=first.synthetic,
        candles_source=first.candles_source,
        symbols=first.symbols,
        funding_known=first.funding_known,
        mark_known=first.mark_known,
        summaries=[{"signal_id": group[0]["signal_id"], "succeeded": sum(s["succeeded"] for s in group),
                    "total": sum(s["total"] for s in group)} for group in zip(*(r.summaries for r in results),
                                                                              strict=True)],
    )


def _merge_stats(stats: list[dict], balances: dict[str, float]) -> dict:
    """ExecutionStats.to_dict() of the shards as one executor's: every shard saw every signal."""
    per_account = {name: row for s in stats for name, row in s["per_account"].items()}
    out = {"signals": stats[0]["signals"]}
    for key in ("trades", "successes", "failures", "skipped"):
        out[key] = sum(s[key] for s in stats)
    out["per_account"] = {name: per_account[name] for name in balances if name in per_account}
    return out
