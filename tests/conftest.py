"""Shared test fixtures: the market-rules snapshot, a simulated venue with accounts, the design document's signal,
the offline demo (candles, signals, run folder) and the databases (``database_url``: each test once on SQLite and
once on a throwaway PostgreSQL server)."""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Callable, Iterator

import pytest

from analysis import Run, run_backtest
from engine import Account, Signal, parse_signal
from fanout.balances import parse_balances
from fanout.cmd_backtest import DEMO_DAYS, DEMO_SEED
from fanout.signals_file import read_signals
from marketdata.candles import Candles
from marketdata.paths import demo_signals_file
from marketdata.rules import MarketRules
from marketdata.synthetic import generate_candles
from simulator.venue import SimulatedVenue
from tests.postgres_server import PostgresServer, unavailable

BTC = "BTC/USDT:USDT"
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z


class UpdateRecorder:
    """An order-update sink for ``SimulatedVenue.drain_updates`` that keeps (account, order) pairs."""

    def __init__(self) -> None:
        self.updates: list[tuple[str, dict]] = []

    async def on_order_update(self, account: str, order: dict) -> None:
        self.updates.append((account, order))


@pytest.fixture
def recorder() -> UpdateRecorder:
    """Collects the order updates a test drains from the venue (``await venue.drain_updates(recorder)``)."""
    return UpdateRecorder()


@pytest.fixture(scope="session")
def rules() -> MarketRules:
    """The data/market_rules.json snapshot (read-only: never mutate it in a test)."""
    return MarketRules.load()


@pytest.fixture
def venue(rules: MarketRules) -> SimulatedVenue:
    """A simulated venue with BTC at 50,000 at 2024-01-01 00:00 UTC."""
    v = SimulatedVenue(rules)
    v.set_price(BTC, 50_000.0, T0)
    return v


@pytest.fixture
def make_accounts(venue: SimulatedVenue) -> Callable[..., list[Account]]:
    """``make_accounts(1000, 5000, 500)`` → Account 1..n on the venue with those balances."""

    def make(*balances: float) -> list[Account]:
        return [Account(f"Account {i}", venue.add_account(f"Account {i}", b)) for i, b in enumerate(balances, 1)]

    return make


@pytest.fixture
def seed_signal() -> Signal:
    """The design document's example: BTC/USDT LONG, entry 50,000, SL 49,500, TP 51,000."""
    return parse_signal({"symbol": "BTC/USDT", "side": "long", "entry": 50_000, "sl": 49_500, "tp": 51_000,
                         "id": "seed-1"})


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL cluster for the session (tests/postgres_server.py), stopped and removed at the end.

    Skips with the reason where the server cannot run; with FANOUT_REQUIRE_POSTGRES=1 (set by .ci/run) that is a
    failure instead, so CI never passes without the database tests."""
    reason = unavailable()
    if reason:
        if os.environ.get("FANOUT_REQUIRE_POSTGRES"):
            pytest.fail(f"FANOUT_REQUIRE_POSTGRES is set but {reason}")
        pytest.skip(reason)
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


_database_names = itertools.count(1)


@contextlib.contextmanager
def _postgres_databases(server: PostgresServer) -> Iterator[Callable[[], str]]:
    """A factory of fresh databases on ``server``; they are dropped on exit."""
    made: list[str] = []

    def make() -> str:
        made.append(f"fanout_test_{os.getpid()}_{next(_database_names)}")
        return server.create_database(made[-1])

    try:
        yield make
    finally:
        for name in made:
            server.drop_database(name)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database on the session's PostgreSQL server (a PostgreSQL-only test)."""
    with _postgres_databases(postgres_server) as make:
        yield make()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def new_database_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[Callable[[], str]]:
    """Factory of empty databases on this test's engine: SQLite files in tmp_path, then fresh databases on the
    session's PostgreSQL server (dropped after the test). Each call returns a new DATABASE_URL."""
    if request.param == "sqlite":
        files = (tmp_path / ("fanout.db" if n == 1 else f"fanout{n}.db") for n in itertools.count(1))
        yield lambda: f"sqlite:///{next(files)}"
        return
    with _postgres_databases(request.getfixturevalue("postgres_server")) as make:
        yield make


@pytest.fixture
def database_url(new_database_url: Callable[[], str]) -> str:
    """DATABASE_URL of an empty database: a SQLite file in tmp_path, then a fresh PostgreSQL database."""
    return new_database_url()


@pytest.fixture(scope="session")
def demo_candles() -> Candles:
    """The offline demo's SYNTHETIC candles, as `fanout backtest` with no arguments generates them."""
    return generate_candles(minutes=DEMO_DAYS * 24 * 60, seed=DEMO_SEED)


@pytest.fixture(scope="session")
def demo_signals() -> list[Signal]:
    """The bundled demo signals (data/demo_signals.csv)."""
    return read_signals(demo_signals_file())


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory, demo_candles: Candles, demo_signals: list[Signal]) -> Run:
    """The offline demo backtest (as `fanout backtest` with no arguments) in a run folder, loaded.
    Shared by the session: copy the folder to change it."""
    out = tmp_path_factory.mktemp("runs") / "demo"
    return run_backtest(demo_candles, demo_signals, parse_balances("1000,5000,500"), out)
