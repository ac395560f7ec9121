"""Benchmark room: how long reading and writing a year of one-minute candles takes, per format; asserts nothing.

    .venv/bin/python benchmarks/bench_candles.py [--rows 525600] [--runs 3]

Synthetic candles (marketdata.synthetic, seed 1) are written once per format into a temporary folder, then each
reader runs ``--runs`` times and the best wall time is printed with that run's CPU time: ``load_candles`` on
pyarrow's CSV dialect (quoted header, ``2023-03-01 00:00:00.000Z``), on the download cache's CSV and on Parquet,
and the download cache's own ``read_cache`` (rows kept as written, keyed by open time).
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv

from marketdata.cache import read_cache, write_cache
from marketdata.candles import load_candles, save_candles
from marketdata.synthetic import generate_candles


def best_of(runs: int, job: Callable[[], object]) -> tuple[float, float]:
    """Best wall time of ``runs`` calls, with that call's CPU time (the machine may be shared)."""
    best = (float("inf"), 0.0)
    for _ in range(runs):
        gc.collect()
        wall, cpu = time.perf_counter(), time.process_time()
        job()
        best = min(best, (time.perf_counter() - wall, time.process_time() - cpu))
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=525_600, help="one-minute candles (default a year)")
    parser.add_argument("--runs", type=int, default=3, help="best of N (default 3)")
    args = parser.parse_args(argv)
    candles = generate_candles(start="2024-01-01", minutes=args.rows, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pyarrow_csv = folder / "pyarrow.csv"
        table = pa.table({"open_time": pa.array(candles.time, pa.timestamp("ms", tz="UTC")), "open": candles.open,
                          "high": candles.high, "low": candles.low, "close": candles.close,
                          "volume": candles.volume})
        pa_csv.write_csv(table, pyarrow_csv)
        cache_csv = folder / "BTCUSDT-1m.csv"
        wall, cpu = best_of(1, lambda: save_candles(candles, cache_csv))
        print(f"save_candles  cache CSV  {args.rows:>9,} rows  {wall:6.2f} s wall  {cpu:6.2f} s CPU")
        parquet = save_candles(candles, folder / "candles.parquet")
        for label, path in (("pyarrow CSV", pyarrow_csv), ("cache CSV", cache_csv), ("Parquet", parquet)):
            wall, cpu = best_of(args.runs, lambda p=path: load_candles(p))
            print(f"load_candles  {label:<10} {args.rows:>9,} rows  {wall:6.2f} s wall  {cpu:6.2f} s CPU  "
                  f"({path.stat().st_size / 1e6:.1f} MB)")
        rows, _ = read_cache(cache_csv)
        wall, cpu = best_of(args.runs, lambda: read_cache(cache_csv))
        print(f"read_cache    cache CSV  {len(rows):>9,} rows  {wall:6.2f} s wall  {cpu:6.2f} s CPU")
        wall, cpu = best_of(args.runs, lambda: write_cache(cache_csv, rows))
        print(f"write_cache   cache CSV  {len(rows):>9,} rows  {wall:6.2f} s wall  {cpu:6.2f} s CPU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
