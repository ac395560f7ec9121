"""Scripts: a deterministic multi-coin signal history over a folder of candles (the README's portfolio walkthrough).

    python scripts/portfolio_signals.py ../shared/data/usdm-2023-07 data/portfolio_signals_2023-07.csv

For every symbol in the folder, ``--per-symbol`` signals (marketdata.synthetic.demo_signals: momentum entries,
0.6-1.2 % risk, 1.5-2x reward) inside the window every symbol covers (or ``--since`` / ``--until``), ids
``<coin>-0001``…, all written to one CSV in time order. The output is derived from the candles, not market signals.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from marketdata.dataset import gather  # noqa: E402
from marketdata.rules import MarketRules  # noqa: E402
from marketdata.synthetic import demo_signals  # noqa: E402
from marketdata.times import parse_time  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", help="folder of SYMBOL-….csv candle files")
    p.add_argument("out", help="signals CSV to write")
    p.add_argument("--per-symbol", type=int, default=30, help="signals per symbol (default 30)")
    p.add_argument("--since", help="first time (default: the latest first candle of all symbols)")
    p.add_argument("--until", help="last time (default: the earliest last candle of all symbols)")
    p.add_argument("--seed", type=int, default=11)
    args = p.parse_args(argv)
    series = gather(candles=[args.folder], known_ids=MarketRules.load().ids)
    start = parse_time(args.since) if args.since else max(int(s.candles.time[0]) for s in series)
    end = parse_time(args.until) if args.until else min(int(s.candles.time[-1]) for s in series)
    rows = []
    for k, s in enumerate(series):
        window = s.candles.slice(start, end)
        coin = s.symbol.split("/")[0].lower()
        rows += demo_signals(window, n=args.per_symbol, seed=args.seed + k, id_prefix=coin)
    rows.sort(key=lambda r: (r["time"], r["id"]))
    with open(args.out, "w", newline="") as fh:
        w = csv.DictWriter(fh, ["time", "id", "symbol", "side", "entry", "stop_loss", "take_profit"])
        w.writeheader()
        w.writerows(rows)
    print(f"{len(rows)} signals on {len(series)} symbols -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
