"""Tests room: record tests/cassettes/cli_*.yaml — the real `fanout` commands (fanout.cli.main) against the stand-in.

    .venv/bin/python scripts/record_cassettes.py cli_signal_live cli_run_live cli_signal_paper cli_run_paper

The command runs in this thread exactly as a user would type it (it calls ``asyncio.run`` itself), so the
stand-in serves from a second thread with its own event loop. Between two commands of one flow (a restart)
no request is in flight; the stand-in keeps its state across them, as Binance would.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import ccxt

from tests.live.cassette_support import label_keys, use_cassette
from tests.standin import cli_flows as flows
from tests.standin.public_market import MarketStandIn
from tests.standin.scenarios import SCENARIOS, SYMBOL_ID, build_standin
from tests.standin.server import StandIn


@dataclass(frozen=True)
class CliScenario:
    """One cassette: ``run(url, tmp, standin)`` executes the commands and returns their exit codes."""

    name: str
    description: str
    run: Callable[[str, Path, Any], list[int]]
    paper: bool = False

    @property
    def cassette(self) -> str:
        return self.name


def _cli(argv: list[str]) -> int:
    from fanout.cli import main

    print(f"  $ fanout {' '.join(argv)}")
    return main(argv)


def _signal_live(url: str, tmp: Path, standin: StandIn) -> list[int]:
    env = flows.write_env(tmp / "live.env", mode="live", database=tmp / "live.db", api_url=url)
    return [_cli(flows.signal_argv(env, "live", flows.LIVE_SIGNAL_ID))]


def _run_live(url: str, tmp: Path, standin: StandIn) -> list[int]:
    env = flows.write_env(tmp / "live.env", mode="live", database=tmp / "live.db", api_url=url)
    signals = flows.write_signals(tmp / "signals.csv")
    return [_cli(flows.run_argv(env, "live", signals)), _cli(flows.run_argv(env, "live", signals))]


def _signal_paper(url: str, tmp: Path, standin: MarketStandIn) -> list[int]:
    env = flows.write_env(tmp / "paper.env", mode="paper", database=tmp / "paper.db", api_url=url,
                          paper_balances=flows.BALANCES)
    clock = flows.Clock(flows.ENTRY_CLOCK)
    standin.set_now(clock.now)
    with flows.paper_clock(clock):
        return [_cli(flows.signal_argv(env, "paper", flows.PAPER_SIGNAL_ID))]


def _run_paper(url: str, tmp: Path, standin: MarketStandIn) -> list[int]:
    env = flows.write_env(tmp / "paper.env", mode="paper", database=tmp / "paper.db", api_url=url,
                          paper_balances=flows.BALANCES)
    signals = flows.write_signals(tmp / "signals.csv")
    codes = []
    clock = flows.Clock(flows.ENTRY_CLOCK)
    with flows.paper_clock(clock):
        for now in (flows.ENTRY_CLOCK, flows.TARGET_CLOCK, flows.LATER_CLOCK):
            clock.now = now
            standin.set_now(now)
            codes.append(_cli(flows.run_argv(env, "paper", signals)))
    return codes


CLI_SCENARIOS: dict[str, CliScenario] = {s.name: s for s in (
    CliScenario("cli_signal_live", "fanout signal --mode live: start-up reconcile of three env accounts, then the "
                                   "seed signal's entry, stop-loss and take-profit on each", _signal_live),
    CliScenario("cli_run_live", "fanout run --mode live --once with a one-signal CSV, then the same command again "
                                "(restart: start-up and one poll, nothing executed)", _run_live),
    CliScenario("cli_signal_paper", "fanout signal --mode paper: the last price from the public ticker, three "
                                    "virtual accounts fill at it", _signal_paper, paper=True),
    CliScenario("cli_run_paper", "fanout run --mode paper --once three times: execute at the ticker price; restart "
                                 "after the target minute (take-profit); restart again (nothing to do)",
                _run_paper, paper=True),
)}


@contextmanager
def serving(standin: StandIn, port: int) -> Iterator[str]:
    """Run ``standin`` on its own event loop in a daemon thread; yields its base URL."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="standin", daemon=True)
    thread.start()
    try:
        yield asyncio.run_coroutine_threadsafe(standin.start(port=port), loop).result(10)
    finally:
        asyncio.run_coroutine_threadsafe(standin.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def _metadata(scenario: CliScenario) -> dict:
    return {
        "scenario": scenario.name, "description": scenario.description, "venue": "stand-in",
        "accounts": list(flows.NAMES), "balances": dict(zip(flows.NAMES, map(float, flows.BALANCES.split(",")),
                                                            strict=True)),
        "ccxt": ccxt.__version__, "recorded": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def record_cli(scenario: CliScenario, port: int = 0) -> bool:
    creds = flows.credentials()
    label_keys(creds)
    logging.getLogger("vcr").setLevel(logging.WARNING)  # its INFO lines repeat every request and response
    if scenario.paper:
        standin: StandIn = MarketStandIn(symbol=SYMBOL_ID, candles=flows.CANDLES, now=flows.ENTRY_CLOCK)
    else:
        standin = build_standin(SCENARIOS["seed"], creds)
    # the env files alone configure the commands: the real environment (which load_env lets win) is set aside
    clean = {k: v for k, v in os.environ.items() if not k.startswith(flows.ENV_PREFIXES)}
    with mock.patch.dict(os.environ, clean, clear=True), tempfile.TemporaryDirectory() as tmp, \
            serving(standin, port) as url:
        with use_cassette(scenario.cassette, record=True) as cassette:
            cassette.get_metadata("fanout", _metadata(scenario))
            codes = scenario.run(url, Path(tmp), standin)
    print(f"  {scenario.name}: exit codes {codes}")
    if standin.unknown:
        print(f"  ! stand-in had no handler for: {sorted(set(standin.unknown))}", file=sys.stderr)
        return False
    return not any(codes)


def main(names: list[str], port: int = 0) -> int:
    unknown = [n for n in names if n not in CLI_SCENARIOS]
    if unknown:
        print(f"unknown CLI scenario(s) {unknown}; choose from {list(CLI_SCENARIOS)}", file=sys.stderr)
        return 2
    ok = all([record_cli(CLI_SCENARIOS[n], port) for n in names or CLI_SCENARIOS])
    return 0 if ok else 1
