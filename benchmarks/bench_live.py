"""Benchmarks: live fan-out on one IP against the local stand-in — start-up, signal phase, weight per signal and
account, sibling-cancel latency after a fill — for 1 vs 100 vs 300 accounts. Printed, never asserted.

    .venv/bin/python benchmarks/bench_live.py                       # 1, 100, 300 accounts at 50 ms latency
    .venv/bin/python benchmarks/bench_live.py --accounts 1,100 --latency 0.05

The stand-in (tests/standin/) runs in a child process on 127.0.0.1 and answers every request after ``--latency``
seconds; this process runs the real `fanout run --mode live` composition (fanout/modes.py ``build_live``: env
accounts, the journal on a fresh SQLite file, one weight budget, ccxt over HTTP, user-data streams) against it:

- start-up: ``build_live`` with flat accounts (load markets once, reconcile every account); then until every
  account's user-data stream is up (they connect in the background);
- balance read ahead: once its stream is up the session reads each flat account's balance in the background
  (live/idle_account.py, housekeeping priority: half of a minute's weight, so 100 accounts wait for the next
  minute after start-up's); the signal waits until every account holds one, then 16 s more: a signal arriving
  on quiet accounts finds their balances read and their idle keep-alive connections closed (each size alike);
- signal: ``TradingService.handle`` of one BTCUSDT signal (every account: balance and positions from the read
  ahead, leverage brackets, margin mode, leverage, entry, stop, target; journaled);
- weight: the IP weight the budget charged for that signal, per account (Binance's weights, live/weights.py);
- restart: ``build_live`` again over the same journal, every account holding a position and its bracket;
- sibling cancel: the mark crosses the take-profit; from then until the watcher has cancelled every account's
  stop-loss (pushed by the user-data stream), median / slowest account;
- a second signal on the same symbol after the restart (margin mode and leverage remembered), right after the
  positions closed (so each balance is asked again): time and weight.

Each phase starts in a fresh minute of IP weight (the stand-in's counter is cleared, as if a minute had passed),
so the figures show latency and CPU, not waits for the budget: 300 accounts x weight 10 is more than one
minute's 2,160 usable weight, and a real second signal in the same minute waits (README, "Many accounts").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import ExecutionConfig, parse_signal  # noqa: E402
from engine.ports import NullNotifier  # noqa: E402
from fanout.modes import build_live  # noqa: E402

SYMBOL = "BTCUSDT"
SIGNAL = {"id": "bench-btc", "symbol": SYMBOL, "side": "LONG", "entry": 50_000.0, "stop_loss": 49_500.0,
          "take_profit": 51_000.0}
GUARD_S = 120  # a broken run gives up instead of hanging
QUIET_S = 16  # aiohttp closes a connection idle for 15 s: every size's signal opens its connections afresh
READ_AHEAD_GUARD_S = 300  # reading every account ahead runs at housekeeping priority: after start-up's weight


# ------------------------------------------------------------------------------------------- stand-in process
def _standin_main(conn, accounts: int, latency_s: float) -> None:
    from tests.standin.scenarios import dummy_credentials
    from tests.standin.server import StandIn

    async def serve() -> None:
        standin = StandIn(prices={SYMBOL: 50_000.0}, latency_s=latency_s)
        for c in dummy_credentials([f"Account {i}" for i in range(1, accounts + 1)]):
            standin.add_account(c.name, c.api_key, c.api_secret, 1_000.0)
        conn.send(await standin.start())
        loop = asyncio.get_running_loop()
        while True:
            command = await loop.run_in_executor(None, conn.recv)
            if command[0] == "price":
                standin.set_price(command[1], command[2])
                conn.send(time.perf_counter())
            elif command[0] == "fresh_minute":  # as if a minute had passed on the IP's weight counter
                standin.limits.weight_by_minute.clear()
                conn.send("ok")
            elif command[0] == "stop":
                await standin.stop()
                conn.send("stopped")
                return

    asyncio.run(serve())


class StandInProcess:
    def __init__(self, accounts: int, latency_s: float) -> None:
        self.conn, child = mp.Pipe()
        self.process = mp.get_context("fork").Process(target=_standin_main, args=(child, accounts, latency_s),
                                                      daemon=True)
        self.process.start()
        self.url = self.conn.recv()

    def set_price(self, symbol: str, price: float) -> float:
        self.conn.send(("price", symbol, price))
        return self.conn.recv()

    def fresh_minute(self) -> None:
        self.conn.send(("fresh_minute",))
        self.conn.recv()

    def stop(self) -> None:
        self.conn.send(("stop",))
        self.conn.recv()
        self.process.join(10)


# ------------------------------------------------------------------------------------------------- one size
def live_env(url: str, accounts: int, database: str) -> dict[str, str]:
    from tests.standin.scenarios import dummy_credentials

    env = {"BINANCE_API_URL": url, "DATABASE_URL": f"sqlite:///{database}", "TRADING_MODE": "live",
           "LIVE_POLL_SECONDS": "10"}
    for i, c in enumerate(dummy_credentials([f"Account {i}" for i in range(1, accounts + 1)]), 1):
        suffix = "" if i == 1 else f"_{i}"
        env[f"BINANCE_API_KEY{suffix}"], env[f"BINANCE_API_SECRET{suffix}"] = c.api_key, c.api_secret
    return env


def spent(runtime) -> int:
    budget = runtime.accounts[0].exchange.budget
    return sum(budget.spent.values())


async def start(env: dict[str, str]):
    with contextlib.redirect_stdout(open(os.devnull, "w")):  # noqa: SIM115 — the banner lists every account
        return await build_live(env, ExecutionConfig(), NullNotifier(), standby=False, streams=True)


async def measure(accounts: int, latency_s: float) -> dict[str, float]:
    standin = StandInProcess(accounts, latency_s)
    figures: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            env = live_env(standin.url, accounts, f"{tmp}/journal.db")
            t0, c0 = time.perf_counter(), time.process_time()
            runtime = await start(env)
            figures["startup_s"] = time.perf_counter() - t0
            figures["startup_cpu_s"] = time.process_time() - c0
            streams = runtime.service.session.streams
            down = await streams.wait_up(GUARD_S)  # in the background after start-up; the signal waits for them
            figures["streams_up_s"] = time.perf_counter() - t0
            figures["streams_down"] = len(down)
            standin.fresh_minute()  # the read-ahead in a minute of its own too (housekeeping: half the minute)
            figures["read_ahead"] = await read_ahead(runtime)
            figures["read_ahead_s"] = time.perf_counter() - t0
            await asyncio.sleep(QUIET_S)  # quiet accounts: keep-alive connections closed, as for a real signal
            standin.fresh_minute()
            try:
                before = spent(runtime)
                t0, c0 = time.perf_counter(), time.process_time()
                if os.environ.get("BENCH_PROFILE"):
                    import cProfile
                    import pstats
                    prof = cProfile.Profile()
                    prof.enable()
                summary = await runtime.service.handle(parse_signal(dict(SIGNAL)), "bench")
                figures["signal_s"] = time.perf_counter() - t0
                figures["signal_cpu_s"] = time.process_time() - c0
                if os.environ.get("BENCH_PROFILE"):
                    prof.disable()
                    pstats.Stats(prof).sort_stats("cumulative").print_stats(40)
                figures["weight_per_account"] = (spent(runtime) - before) / accounts
                figures["succeeded"] = summary.succeeded if summary else 0
            finally:
                await runtime.close()
            standin.fresh_minute()
            t0 = time.perf_counter()
            runtime = await start(env)
            figures["restart_s"] = time.perf_counter() - t0
            try:
                figures.update(await sibling_cancel(runtime, standin, accounts))
                # the positions are closed: the same symbol again, after the restart (margin mode and leverage
                # remembered in the journal, leverage brackets asked again by the new process); the accounts have
                # just changed (the close), so their balance is read again, as for a signal right after a close
                standin.set_price(SYMBOL, 50_000.0)
                standin.fresh_minute()
                before = spent(runtime)
                t0 = time.perf_counter()
                summary = await runtime.service.handle(parse_signal(dict(SIGNAL, id="bench-btc-2")), "bench")
                figures["signal2_s"] = time.perf_counter() - t0
                figures["weight2_per_account"] = (spent(runtime) - before) / accounts
                figures["succeeded2"] = summary.succeeded if summary else 0
            finally:
                await runtime.close()
    finally:
        standin.stop()
    return figures


async def read_ahead(runtime) -> int:
    """Until every account's balance has been read once its stream was up (the session does that in the
    background, live/idle_account.py): the signal then finds it, as a signal arriving on quiet accounts does.
    Returns how many accounts hold one (all of them unless the guard ran out)."""
    await runtime.service.session.streams.wait_resynced(READ_AHEAD_GUARD_S)
    return sum(1 for a in runtime.executor.accounts if a.exchange.idle.fresh() is not None)


async def sibling_cancel(runtime, standin: StandInProcess, accounts: int) -> dict[str, float]:
    """Cross the take-profit; seconds until each account's stop-loss is cancelled by the watcher."""
    watcher = runtime.executor.watcher
    streams = getattr(runtime.service.session, "streams", None)
    if streams is not None:
        await streams.wait_up(GUARD_S)
    done: dict[str, float] = {}
    cancel = watcher.__class__._leg_filled

    async def timed(self, bracket, filled_id):
        await cancel(self, bracket, filled_id)
        done[bracket.account] = time.perf_counter()

    watcher._leg_filled = timed.__get__(watcher)  # bench instrumentation only
    crossed = standin.set_price(SYMBOL, 51_000.0)
    deadline = time.perf_counter() + GUARD_S
    while len(done) < accounts and time.perf_counter() < deadline:
        if streams is None or streams.down():
            await runtime.service.tick_once()
        await asyncio.sleep(0.005)
    latencies = sorted(t - crossed for t in done.values())
    if not latencies:
        return {"cancelled": 0}
    return {"cancelled": len(latencies), "cancel_median_s": statistics.median(latencies),
            "cancel_max_s": latencies[-1]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", default="1,100,300", help="comma-separated account counts")
    parser.add_argument("--latency", type=float, default=0.05, help="stand-in answer delay, seconds")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    sizes = [int(x) for x in args.accounts.split(",")]
    load = os.getloadavg()
    print(f"live fan-out on one IP, stand-in at {args.latency * 1000:.0f} ms latency; "
          f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    asyncio.run(measure(1, args.latency))  # warm-up, not shown: imports and ccxt's per-class set-up happen once
    rows = []
    for n in sizes:
        f = asyncio.run(measure(n, args.latency))
        rows.append((n, f))
        print(f"{n:>5} accounts: start-up {f['startup_s']:.2f} s (CPU {f['startup_cpu_s']:.2f} s; every stream up "
              f"at {f['streams_up_s']:.2f} s, {f['streams_down']} not; balance read ahead for {f['read_ahead']:.0f} at "
              f"{f['read_ahead_s']:.2f} s), signal {f['signal_s']:.2f} s "
              f"({f['succeeded']:.0f} ok, CPU {f['signal_cpu_s']:.2f} s), weight {f['weight_per_account']:.1f}/account, restart "
              f"{f['restart_s']:.2f} s, sibling cancel median {f.get('cancel_median_s', float('nan')):.3f} s "
              f"max {f.get('cancel_max_s', float('nan')):.3f} s ({f.get('cancelled', 0):.0f} cancelled); after the "
              f"restart, same symbol: signal {f['signal2_s']:.2f} s ({f['succeeded2']:.0f} ok), weight "
              f"{f['weight2_per_account']:.1f}/account", flush=True)
    base = next((f for n, f in rows if n == 1), None)
    if base is not None:
        for n, f in rows:
            if n > 1:
                print(f"{n} vs 1: start-up x{f['startup_s'] / base['startup_s']:.2f}, signal "
                      f"x{f['signal_s'] / base['signal_s']:.2f}, restart x{f['restart_s'] / base['restart_s']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
