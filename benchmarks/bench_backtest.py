"""Benchmark room: our 100-account backtest against backtesting.py on one account, same candles and signals.

Prints both wall-clock times, the ratio (ours / theirs) and both trade counts; asserts nothing. See
benchmarks/README.md for what is timed, how the two sides are aligned and the latest figures.

    .venv/bin/python benchmarks/bench_backtest.py            # or: make bench
    .venv/bin/python benchmarks/bench_backtest.py --runs 1 --ours-only --dump /tmp/bench-out   # profiling, diffs
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import os
import platform
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from engine import ExecutionConfig
from engine.signal import Signal, parse_signal
from marketdata.candles import Candles, load_candles
from marketdata.synthetic import demo_signals
from simulator.parallel import default_workers, run_backtest

ROOT = Path(__file__).resolve().parents[1]
REAL_CANDLES = ROOT.parent / "shared" / "data" / "BTCUSDT-1m-2023-03-01--2023-03-21.binanceus.csv"
SYMBOL = "BTC/USDT:USDT"
YEAR_MINUTES = 525_600
COMMISSION = 0.0005
LEVERAGE = 20
POSITION_PCT = 0.02          # ours: margin = 2 % of free balance (capped at $100); theirs: size=0.02 of margin
THEIR_CASH = 5_000.0         # one account whose 2 % margin ($100) sits right at our cap
UNIT = 0.001                 # backtesting.py trades whole units: trade in 0.001 BTC (BTCUSDT's step) units


def tile_candles(base: Candles, minutes: int) -> Candles:
    """Repeat ``base`` until ``minutes`` candles: times shifted, each tile's prices rescaled to start at the
    previous tile's last close, so the series is continuous."""
    n = len(base)
    tiles = math.ceil(minutes / n)
    span = int(base.time[-1] - base.time[0]) + base.timeframe_ms
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("time", "open", "high", "low", "close", "volume")}
    scale = 1.0
    for k in range(tiles):
        parts["time"].append(base.time + k * span)
        for col in ("open", "high", "low", "close"):
            parts[col].append(getattr(base, col) * scale)
        parts["volume"].append(base.volume)
        scale = parts["close"][-1][-1] / base.open[0]
    cut = {k: np.concatenate(v)[:minutes] for k, v in parts.items()}
    return Candles(symbol=base.symbol, timeframe=base.timeframe, **cut,
                   source=f"{base.source} tiled x{tiles} to {minutes:,} candles (prices chained)")


def account_balances(count: int) -> dict[str, float]:
    """``count`` accounts with balances log-spaced from $100 to $100,000."""
    values = np.geomspace(100.0, 100_000.0, count) if count > 1 else np.array([10_000.0])
    return {f"Account {i + 1:03d}": round(float(v), 2) for i, v in enumerate(values)}


# ---------------------------------------------------------------------------------------------- ours
def run_ours(candles: Candles, signals: list[Signal], balances: dict[str, float], workers: int):
    """Our backtest on ``workers`` processes: starting them, sending the data and merging the shards is timed."""
    config = ExecutionConfig(leverage=LEVERAGE, position_size_pct=POSITION_PCT)
    return run_backtest([candles], signals, balances, config, workers=workers, taker_fee=COMMISSION)


# ---------------------------------------------------------------------------------------------- theirs
def their_frame(candles: Candles):
    return candles.to_frame().rename(columns=str.capitalize)


def run_theirs(frame, candles: Candles, signals: list[Signal]):
    """backtesting.py, one account: market entry on the bar before each signal's candle (fills at its open)."""
    import backtesting.backtesting as bt_module
    from backtesting import Strategy
    from backtesting.lib import FractionalBacktest

    bt_module._tqdm = lambda seq, **_: seq  # no progress bar (its overhead would count against them)

    # backtesting.py calls next() after bar k closes and fills a market order at bar k+1's open; our entry
    # fills at the open of the first candle with open time >= signal time, so each signal is placed on the bar
    # before that one.
    plan: dict[int, tuple[bool, float, float]] = {}
    for s in signals:
        i = int(np.searchsorted(candles.time, s.time, side="left"))
        if 1 <= i < len(candles):
            plan.setdefault(i - 1, (s.side == "LONG", s.stop_loss * UNIT, s.take_profit * UNIT))

    class SignalStrategy(Strategy):
        def init(self) -> None:
            pass

        def next(self) -> None:
            order = plan.get(len(self.data) - 1)
            if order is None or self.position:  # one position at a time, like ours (one per symbol)
                return
            long, sl, tp = order
            if long:
                self.buy(size=POSITION_PCT, sl=sl, tp=tp)
            else:
                self.sell(size=POSITION_PCT, sl=sl, tp=tp)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bt = FractionalBacktest(frame, SignalStrategy, cash=THEIR_CASH, commission=COMMISSION,
                                margin=1 / LEVERAGE, finalize_trades=True, fractional_unit=UNIT)
        return bt.run()


# ---------------------------------------------------------------------------------------------- main
def _cpu() -> float:
    """CPU seconds of this process and of its finished worker processes."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def best_of(runs: int, fn):
    """Best wall-clock time of ``runs`` calls (perf_counter), that run's CPU time (workers' included), the last
    result."""
    best, cpu, result = float("inf"), 0.0, None
    for _ in range(runs):
        gc.collect()
        t0, c0 = time.perf_counter(), _cpu()
        result = fn()
        wall, used = time.perf_counter() - t0, _cpu() - c0
        if wall < best:
            best, cpu = wall, used
    return best, cpu, result


def _own_peak_mb() -> float:
    """This process's peak RSS. Linux keeps ru_maxrss across exec, so a process started by a big parent would
    report the parent's size: /proc/self/status VmHWM is this program's own."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fresh_process(args: argparse.Namespace, accounts: int) -> dict | None:
    """Our side alone in a new process (as `fanout backtest` runs): its time, and the resident memory of it and
    its workers together, sampled every 50 ms with psutil (RSS summed, and PSS, which counts a page shared by
    forked processes once), plus each process's exact peak (getrusage)."""
    try:
        import psutil
    except ImportError:
        print("memory    skipped: psutil is not installed")
        return None
    cmd = [sys.executable, __file__, "--child", "--ours-only", "--runs", "1", "--accounts", str(accounts),
           "--workers", str(args.workers), "--signals", str(args.signals), "--candles", str(args.candles)]
    proc = psutil.Popen(cmd, stdout=subprocess.PIPE, text=True)
    rss = pss = 0
    while proc.poll() is None:
        now_rss = now_pss = 0
        try:
            tree = [proc, *proc.children(recursive=True)]
        except psutil.Error:
            break
        for p in tree:
            try:
                m = p.memory_full_info()
            except psutil.Error:
                continue
            now_rss += m.rss
            now_pss += m.pss
        rss, pss = max(rss, now_rss), max(pss, now_pss)
        time.sleep(0.05)
    out = proc.stdout.read()
    if proc.wait() != 0:
        print(f"fresh run failed: {out}")
        return None
    report = json.loads(out.strip().splitlines()[-1])
    report.update(rss_sum_mb=rss / 2**20, pss_sum_mb=pss / 2**20)
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--accounts", type=int, default=100, help="our simulated accounts (default 100)")
    p.add_argument("--signals", type=int, default=1000, help="signals (default 1000)")
    p.add_argument("--candles", type=int, default=YEAR_MINUTES, help="one-minute candles (default a year)")
    p.add_argument("--runs", type=int, default=3, help="time each side N times, keep the best (default 3)")
    p.add_argument("--ours-only", action="store_true", help="skip backtesting.py (profiling our side)")
    p.add_argument("--dump", metavar="DIR", help="also write our run's trades.csv / summary.json / equity.csv")
    p.add_argument("--workers", type=int, default=default_workers(),
                   help=f"our worker processes (default this machine's CPUs: {default_workers()})")
    p.add_argument("--big", type=int, default=1000, help="accounts of the large run (default 1000, 0: skip it)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # fresh_process's side
    args = p.parse_args(argv)

    if not REAL_CANDLES.exists():
        print(f"benchmark skipped: real candles not found at {REAL_CANDLES} (../shared/data beside the checkout)")
        return 0
    logging.disable(logging.WARNING)  # the engine's per-account INFO lines are not what is measured
    base = load_candles(REAL_CANDLES, symbol=SYMBOL)
    candles = tile_candles(base, args.candles)
    signals = [parse_signal(d) for d in demo_signals(candles, n=args.signals)]
    balances = account_balances(args.accounts)
    if args.child:
        wall, cpu, result = best_of(1, lambda: run_ours(candles, signals, balances, args.workers))
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        print(json.dumps({"wall": wall, "cpu": cpu, "trades": len(result.trades), "self_peak_mb": _own_peak_mb(),
                          "worker_peak_mb": kids.ru_maxrss / 1024}))
        return 0
    print(f"candles   {len(candles):,} x 1m {SYMBOL} ({base.source} tiled, prices chained)")
    print(f"signals   {len(signals):,} (marketdata.synthetic.demo_signals)")
    print(f"machine   {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, best of {args.runs} run(s)")

    n = args.workers
    ours_s, ours_cpu, result = best_of(args.runs, lambda: run_ours(candles, signals, balances, n))
    ok_entries = result.stats.get("successes", 0)
    print(f"ours      {ours_s:8.2f} s  (cpu {ours_cpu:.2f} s, {n} worker{'s' * (n > 1)})  {len(balances)} accounts, "
          f"{len(result.trades):,} trades ({ok_entries:,} entries, {len(result.skipped):,} skips)")
    if args.dump:
        from analysis.output import write_outputs

        write_outputs(result, args.dump, plot=False)
        print(f"dumped    {args.dump}/")
    if args.ours_only:
        return 0

    frame = their_frame(candles)
    theirs_s, theirs_cpu, stats = best_of(args.runs, lambda: run_theirs(frame, candles, signals))
    print(f"theirs    {theirs_s:8.2f} s  (cpu {theirs_cpu:.2f} s)  1 account, {int(stats['# Trades']):,} trades "
          f"(backtesting.py {_version()})")
    one_s, one_cpu = ours_s, ours_cpu
    if n > 1:
        one_s, one_cpu, _ = best_of(args.runs, lambda: run_ours(candles, signals, balances, 1))
        print(f"ours 1    {one_s:8.2f} s  (cpu {one_cpu:.2f} s, 1 process)  {len(balances)} accounts")
    print(f"ratio     {ours_s / theirs_s:8.2f}  (P1: ours, {n} worker{'s' * (n > 1)} / theirs; <= 1 means our "
          f"{len(balances)} accounts run no slower than their one)")
    if n > 1:
        print(f"ratio 1   {one_s / theirs_s:8.2f}  (ours in one process / theirs)")
    print(f"cpu ratio {one_cpu / theirs_cpu:8.2f}  (CPU seconds, ours in one process / theirs: what the load on a "
          f"shared machine changes least)")
    print(compare_largest(result, stats))
    print(f"load      average {' '.join(f'{x:.2f}' for x in os.getloadavg())} after the timed runs")
    for accounts in dict.fromkeys([args.accounts, args.big]):
        if accounts:
            report = fresh_process(args, accounts)
            if report:
                print(f"fresh     {accounts:,} accounts, {n} worker{'s' * (n > 1)}, a new process as the CLI runs: "
                      f"{report['wall']:.2f} s (cpu {report['cpu']:.2f} s), {report['trades']:,} trades; resident "
                      f"together {report['rss_sum_mb']:.0f} MB RSS / {report['pss_sum_mb']:.0f} MB PSS (peak, "
                      f"sampled); peak RSS: main process {report['self_peak_mb']:.0f} MB, largest worker "
                      f"{report['worker_peak_mb']:.0f} MB")
    return 0


def compare_largest(result, stats) -> str:
    """Our largest account against their one account: trades, winners, same entry and exit minutes."""
    name = max(result.accounts, key=result.accounts.get)
    ours = [t for t in result.trades if t["account"] == name]
    theirs = stats["_trades"]
    their_in = {int(t.value // 1_000_000) for t in theirs["EntryTime"]}  # bar open times, like ours
    their_out = {int(t.value // 1_000_000) for t in theirs["ExitTime"]}
    same_in = sum(t["entry_time"] in their_in for t in ours)
    same_out = sum(t["exit_time"] in their_out for t in ours)
    won = sum(t["pnl"] > 0 for t in ours) / len(ours) * 100 if ours else 0.0
    return (f"check     our {name} (${result.accounts[name]:,.0f}): {len(ours)} trades, {won:.1f}% won; theirs: "
            f"{len(theirs)} trades, {stats['Win Rate [%]']:.1f}% won; same entry minute {same_in}/{len(ours)}, "
            f"same exit candle {same_out}/{len(ours)}")


def _version() -> str:
    try:
        from backtesting import __version__
        return str(__version__)
    except ImportError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
