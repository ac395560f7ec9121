"""Tests room: 300 accounts on one IP against the stand-in (real ccxt over HTTP on 127.0.0.1), three signals
within one simulated minute, with another program on the same IP spending weight the budget does not know of.

The stand-in applies Binance's limits per simulated minute (tests/standin/limits.py); the budget and the
stand-in share the simulated clock, so minutes of waiting for weight take no real time.
"""

from __future__ import annotations

import logging
import re

from engine import MultiAccountExecutor, parse_signal
from tests.standin.clock import MINUTE_START, SimClock
from tests.standin.rig import Alerts, live_rig

ACCOUNTS = 300
PRICES = {"BTCUSDT": 50_000.0, "ETHUSDT": 3_000.0, "LTCUSDT": 100.0}
SIGNALS = [
    {"id": "scale-btc", "symbol": "BTCUSDT", "side": "LONG", "entry": 50_000, "stop_loss": 49_500, "take_profit": 51_000},
    {"id": "scale-eth", "symbol": "ETHUSDT", "side": "LONG", "entry": 3_000, "stop_loss": 2_950, "take_profit": 3_100},
    {"id": "scale-ltc", "symbol": "LTCUSDT", "side": "SHORT", "entry": 100, "stop_loss": 102, "take_profit": 96},
]
FOREIGN_WEIGHT = 1_500  # another bot on the same IP, this minute


async def test_300_accounts_three_signals_in_a_minute_never_banned(caplog):
    caplog.set_level(logging.INFO, logger="fanout.live.budget")
    clock = SimClock(MINUTE_START + 5)
    balances = [1_000.0 + 10 * i for i in range(ACCOUNTS)]
    async with live_rig(balances, prices=PRICES, clock=clock) as rig:
        limits = rig.standin.limits
        limits.foreign(FOREIGN_WEIGHT)
        executor = MultiAccountExecutor(rig.accounts, retry_delay=0.01)
        summaries = []
        for i, raw in enumerate(SIGNALS):
            clock.advance_to(MINUTE_START + 5 + 20 * i)  # 0 s, 20 s, 40 s (later if the previous one took longer)
            summaries.append(await executor.execute(parse_signal(dict(raw))))

        assert limits.count(418) == 0
        first = min((d[0] for d in limits.decisions if d[1] == 429), default=clock.time())
        assert all(d[0] < (first // 60 + 1) * 60 for d in limits.decisions), "429s after the budget knew"
        # the foreign weight showed in the first responses' headers; the budget kept the minute under the limit
        assert max(limits.weight_by_minute.values()) <= limits.weight_limit
        waited = {m.group(1) for m in re.finditer(r"⏳ (Account \d+) waits about \d+ s \(\w+\): \S", caplog.text)}
        for summary in summaries:
            for result in summary.results:
                protected = result.ok and result.stop_loss_order_id
                assert protected or (result.reason and result.account in waited), (summary.signal_id, result)
            assert summary.succeeded == ACCOUNTS
        # every position has its stop on the venue
        for name in (a.name for a in rig.accounts):
            account = rig.standin.account(name)
            stops = {a["symbol"] for a in account.algos.values()
                     if a["orderType"] == "STOP_MARKET" and a["algoStatus"] == "NEW"}
            assert stops == set(account.positions) == set(PRICES)
        assert rig.budget.rejections[418] == 0 and rig.budget.refused == 0
        assert waited and max(rig.budget.waited.values()) > 60  # later accounts waited minutes, and said so


async def test_a_429_pauses_every_account_until_the_next_minute_then_all_trade():
    clock = SimClock(MINUTE_START + 30)
    async with live_rig([1_000.0, 5_000.0, 500.0], clock=clock) as rig:
        rig.standin.limits.foreign(2_399)  # someone else used the IP's minute up
        summary = await MultiAccountExecutor(rig.accounts, retry_delay=0.01).execute(parse_signal(dict(SIGNALS[0])))
        assert summary.succeeded == 3
        limits = rig.standin.limits
        assert limits.count(429) >= 1 and limits.count(418) == 0
        assert all(d[0] < MINUTE_START + 60 for d in limits.decisions)  # none once the budget had paused
        assert rig.budget.rejections[429] == limits.count(429) and clock.time() >= MINUTE_START + 60


async def test_a_418_ban_stops_every_account_alerts_and_sends_no_entry_into_it():
    clock = SimClock(MINUTE_START)
    alerts = Alerts()
    async with live_rig([1_000.0, 5_000.0], clock=clock, notifier=alerts) as rig:
        rig.standin.limits.ban(3_600)  # e.g. another program on this IP got it banned for an hour
        executor = MultiAccountExecutor(rig.accounts, retry_delay=0.01)
        summary = await executor.execute(parse_signal(dict(SIGNALS[0])))
        await rig.budget.drain_alerts()
        assert summary.succeeded == 0
        assert all("IP banned by Binance (HTTP 418) until 2026-01-01 01:00:00 UTC" in r.reason and not r.entry_sent
                   for r in summary.results)
        assert rig.standin.limits.count(418) == 2  # the two requests already on the wire; nothing after them
        assert [t for t, _ in alerts.events] == ["🚫 Binance IP ban"]
        assert "until 2026-01-01 01:00:00 UTC" in alerts.events[0][1]
