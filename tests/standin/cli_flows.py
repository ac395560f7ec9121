"""Tests room: the user-facing command flows of tests/cassettes/cli_*.yaml — env files, command lines, the paper
clock and its minute series — shared by the recorder (tests/standin/cli_record.py) and tests/cli/.

A cassette matches on method, path, Binance parameters and account, never on host or port, so the env files
here may name any ``BINANCE_API_URL``: the recorder writes the stand-in's address, the tests :data:`API_URL`.
Everything that reaches a request is fixed: signal ids, the accounts' dummy keys, and in paper mode the clock
(``PaperFeed.poll`` derives the klines ``startTime`` from ``milliseconds()``), see :func:`paper_clock`.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import parse_qsl

from tests.live.cassette_support import APIKEY_HEADER, label_keys
from tests.standin.scenarios import DummyCredentials, dummy_credentials

NAMES = ("Account 1", "Account 2", "Account 3")
BALANCES = "1000,5000,500"  # stand-in wallets (live) and PAPER_BALANCES (paper), in NAMES order
API_URL = "http://127.0.0.1:18080"
SIGNAL = ["BTC/USDT", "long", "--entry", "50000", "--sl", "49500", "--tp", "51000"]
LIVE_SIGNAL_ID = "cli-live-seed"
PAPER_SIGNAL_ID = "cli-paper-seed"
RUN_SIGNAL_ID = "cli-run-seed"
SIGNALS_CSV = f"id,symbol,side,entry,stop_loss,take_profit\n{RUN_SIGNAL_ID},BTCUSDT,LONG,50000,49500,51000\n"
# Variables of the real environment that would change a flow (load_env lets the environment win).
ENV_PREFIXES = ("BINANCE_", "TRADING_MODE", "DATABASE_URL", "ENCRYPTION_KEY", "DISCORD_", "PAPER_", "LIVE_",
                "SIGNALS_FILE", "WEBHOOK_", "POSITION_SIZE_PCT", "MAX_POSITION_USD", "LEVERAGE", "MIN_BALANCE_USD",
                "DAILY_LOSS_LIMIT_PCT", "MAX_OPEN_POSITIONS", "MIN_REWARD_RISK", "WORKING_TYPE")


def credentials(names: tuple[str, ...] = NAMES) -> list[DummyCredentials]:
    """The stand-in's dummy keys, as ``BINANCE_API_KEY`` (Account 1), ``BINANCE_API_KEY_2`` … load them."""
    return dummy_credentials(list(names))


def write_env(path: Path, *, mode: str, database: Path | str, api_url: str = API_URL,
              names: tuple[str, ...] = NAMES, paper_balances: str | None = None) -> Path:
    """An env file with one ``BINANCE_API_KEY[_N]`` / ``BINANCE_API_SECRET[_N]`` pair per account.
    ``database``: a SQLite file, or a DATABASE_URL."""
    url = database if isinstance(database, str) else f"sqlite:///{database}"
    lines = [f"TRADING_MODE={mode}", f"BINANCE_API_URL={api_url}", f"DATABASE_URL={url}"]
    for i, c in enumerate(credentials(names), 1):
        suffix = "" if i == 1 else f"_{i}"
        lines += [f"BINANCE_API_KEY{suffix}={c.api_key}", f"BINANCE_API_SECRET{suffix}={c.api_secret}"]
    if paper_balances is not None:
        lines.append(f"PAPER_BALANCES={paper_balances}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def isolate(monkeypatch: Any, workdir: Path) -> None:
    """For tests: no variable of the real environment reaches a flow, the working directory (production.env,
    fanout.db) is ``workdir``, the dummy keys are labelled with their account names for the matchers, and
    ccxt's rate limiter is off — a replay needs none, and the weight-40 ``openAlgoOrders`` of every start-up
    reconciliation would hold each account two seconds (ccxt's own throttle, recorded flows stay in order)."""
    import ccxt.async_support as ccxt_async

    async def no_throttle(self: Any, cost: Any = None) -> None:
        return None

    for var in list(os.environ):
        if var.startswith(ENV_PREFIXES):
            monkeypatch.delenv(var)
    monkeypatch.chdir(workdir)
    monkeypatch.setattr(ccxt_async.Exchange, "throttle", no_throttle)
    label_keys(credentials())


def secrets() -> list[str]:
    """Every key and secret value the env files hold (none may be printed or logged)."""
    return [v for c in credentials() for v in (c.api_key, c.api_secret)]


def played(cassette: Any, before: Counter | None = None,
           until: Counter | None = None) -> list[tuple[str, str, str, dict[str, str]]]:
    """(account label or '-', method, path, parameters) of each interaction played, in recorded order.
    ``before`` / ``until``: copies of ``cassette.play_counts`` taken between commands, to pick one command."""
    counts = cassette.play_counts if until is None else until
    out = []
    for i, (req, _resp) in enumerate(cassette.data):
        if counts[i] - (before[i] if before else 0) <= 0:
            continue
        body = req.body.decode() if isinstance(req.body, bytes) else (req.body or "")
        params = dict(req.query) | dict(parse_qsl(body, keep_blank_values=True))
        out.append((req.headers.get(APIKEY_HEADER) or "-", req.method, req.path, params))
    return out


def unplayed(cassette: Any) -> list[str]:
    """Recorded interactions the replay never asked for ('METHOD path')."""
    return [f"{req.method} {req.path}" for i, (req, _r) in enumerate(cassette.data) if not cassette.play_counts[i]]


def write_signals(path: Path) -> Path:
    path.write_text(SIGNALS_CSV, encoding="utf-8")
    return path


def signal_argv(env_file: Path, mode: str, signal_id: str) -> list[str]:
    return ["signal", *SIGNAL, "--id", signal_id, "--env-file", str(env_file), "--mode", mode, "--json"]


def run_argv(env_file: Path, mode: str, signals: Path) -> list[str]:
    return ["run", "--mode", mode, "--once", "--signals", str(signals), "--env-file", str(env_file)]


# ------------------------------------------------------------------------------------------------------ paper
MINUTE = 60_000
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z: the signal arrives 20 s into this minute
# (open time, open, high, low, close): calm around 50,000 before T0; the ticker reads 50,012.30 (the open of the
# minute at T0) when the signal arrives; the minute at T0 + 2 reaches the 51,000 target
CANDLES: tuple[tuple[int, float, float, float, float], ...] = (
    (T0 - 5 * MINUTE, 49_950.0, 50_020.0, 49_900.0, 49_980.0),
    (T0 - 4 * MINUTE, 49_980.0, 50_040.0, 49_930.0, 50_010.0),
    (T0 - 3 * MINUTE, 50_010.0, 50_060.0, 49_960.0, 49_990.0),
    (T0 - 2 * MINUTE, 49_990.0, 50_030.0, 49_940.0, 50_020.0),
    (T0 - 1 * MINUTE, 50_020.0, 50_050.0, 49_970.0, 50_000.0),
    (T0, 50_012.3, 50_100.0, 49_900.0, 50_050.0),
    (T0 + 1 * MINUTE, 50_050.0, 50_300.0, 49_950.0, 50_200.0),
    (T0 + 2 * MINUTE, 50_200.0, 51_200.0, 50_150.0, 51_100.0),
    (T0 + 3 * MINUTE, 51_100.0, 51_150.0, 51_000.0, 51_050.0),
    (T0 + 4 * MINUTE, 51_050.0, 51_080.0, 51_020.0, 51_060.0),
)
ENTRY_CLOCK = T0 + 20_000  # run 1: the signal executes; the poll sees only candles from before the entry
TARGET_CLOCK = T0 + 4 * MINUTE + 5_000  # run 2 (restart): minutes T0 … T0 + 3 have closed, the target is hit
LATER_CLOCK = T0 + 5 * MINUTE + 5_000  # run 3 (restart): nothing open, nothing to execute


class Clock:
    """The one clock of a paper flow: the public client's ``milliseconds()`` and the stand-in's 'now'."""

    def __init__(self, now: int) -> None:
        self.now = now

    def milliseconds(self) -> int:
        return self.now


@contextmanager
def paper_clock(clock: Clock) -> Iterator[list[Any]]:
    """Every public client build_paper makes (marketdata.client.make_exchange, also reachable as
    marketdata.download.make_exchange) reads ``clock``; yields them."""
    import marketdata.client
    import marketdata.download

    real = marketdata.client.make_exchange
    made: list[Any] = []

    def make_exchange(api_url: str | None = None) -> Any:
        exchange = real(api_url)
        exchange.milliseconds = clock.milliseconds
        made.append(exchange)
        return exchange

    with (mock.patch.object(marketdata.client, "make_exchange", make_exchange),
          mock.patch.object(marketdata.download, "make_exchange", make_exchange)):
        yield made
