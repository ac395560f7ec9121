"""Every perpetual of the market-rules snapshot can be sized and traded in the simulator (issue 8): one signal per
symbol through the engine's executor, with that symbol's own filters and brackets."""

from __future__ import annotations

import asyncio
import math

from engine import Account, ExecutionConfig, MultiAccountExecutor, parse_signal
from marketdata.rules import MarketRules
from simulator.venue import SimulatedVenue


def test_every_perpetual_in_the_snapshot_is_sized_with_its_own_filters():
    rules = MarketRules.load()
    venue = SimulatedVenue(rules)
    failures = {}

    async def trade_each() -> None:
        for k, (symbol, market) in enumerate(sorted(rules.markets.items())):
            name = f"a{k}"
            ex = venue.add_account(name, 100_000)
            step = market["precision"]["amount"]
            entry = 100 / max(market["limits"]["amount"]["min"] or step, step)  # $500 at 5x is ~5 minimum lots
            entry = float(ex.price_to_precision(symbol, entry))
            venue.set_price(symbol, entry, 1_704_067_200_000)
            signal = parse_signal({"symbol": symbol, "side": "long", "entry": entry, "sl": entry * 0.98,
                                   "tp": entry * 1.03, "time": 1_704_067_200_000, "id": f"s{k}"})
            executor = MultiAccountExecutor([Account(name, ex)], ExecutionConfig(leverage=5), retries=0,
                                            retry_delay=0.0)
            summary = await executor.execute(signal)
            (result,) = summary.results
            position = ex.positions.get(symbol)
            if not result.ok or position is None:
                failures[symbol] = result.reason
                continue
            qty = position.contracts
            assert math.isclose(round(qty / step) * step, qty, rel_tol=1e-9), symbol  # truncated to its step
            assert qty * entry >= (market["limits"]["cost"]["min"] or 0) - 1e-9, symbol

    asyncio.run(trade_each())
    assert len(rules.markets) == 342
    assert failures == {}
