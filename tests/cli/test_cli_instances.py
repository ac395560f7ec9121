"""Two `fanout run` processes of one mode on one database (SQLite and PostgreSQL), on the Binance stand-in
(tests/standin/server.py on 127.0.0.1): exactly one trades, the other waits as a standby naming it; killing the
first (SIGKILL, no clean-up) lets the standby take over, and no signal is executed twice across the hand-over
(paper: the standby resumes the paper accounts the first saved, never overwrites them). A one-shot `fanout
signal` meanwhile is refused naming the bot that holds the database, and so is a bot of the other mode."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from engine.ids import client_order_id
from fanout.cli import main
from marketdata.rules import MarketRules
from simulator.paper_session import resume_venue
from storage.journal import Journal
from tests.standin import cli_flows as flows
from tests.standin.cli_record import serving
from tests.standin.public_market import MINUTE, MarketStandIn
from tests.standin.server import StandIn

ROOT = Path(__file__).resolve().parents[2]
NAMES = flows.NAMES
HEADER = "id,symbol,side,entry,stop_loss,take_profit\n"
S1 = "handover-1,BTCUSDT,LONG,50000,49500,51000\n"
S2 = "handover-2,ETHUSDT,LONG,3000,2970,3060\n"
WAIT = 90  # seconds: a bound for a broken run, never a pause
# `fanout run` as typed, except that ccxt's client-side rate limiter is off (as in tests/standin/cli_flows.isolate:
# the stand-in needs none, and the start-up reconciliation's weight-40 requests would hold each account 2 s)
FANOUT = """
import ccxt.async_support

async def no_throttle(self, cost=None):
    return None

ccxt.async_support.Exchange.throttle = no_throttle
from fanout.cli import main
raise SystemExit(main())
"""


class Bot:
    """A `fanout run` subprocess; its merged output is read line by line on a thread."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", FANOUT, *argv], cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, text: str) -> str:
        """The first output line (from now on) containing ``text``; fails if the process ends first."""
        deadline = time.monotonic() + WAIT
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no line {text!r} within {WAIT} s:\n" + "\n".join(self.lines))
            if line is None:
                pytest.fail(f"bot exited ({self.proc.wait()}) before printing {text!r}:\n" + "\n".join(self.lines))
            self.lines.append(line)
            if text in line:
                return line

    def finish(self) -> int:
        code = self.proc.wait(WAIT)
        while (line := self._queue.get(timeout=WAIT)) is not None:
            self.lines.append(line)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(WAIT)


@pytest.fixture
def standin():
    venue = StandIn(prices={"BTCUSDT": 50_000.0, "ETHUSDT": 3_000.0})
    for c, balance in zip(flows.credentials(), flows.BALANCES.split(","), strict=True):
        venue.add_account(c.name, c.api_key, c.api_secret, float(balance))
    with serving(venue, 0) as url:
        venue.url = url
        yield venue


def test_two_live_bots_one_trades_the_standby_takes_over_and_nothing_runs_twice(tmp_path, database_url, standin,
                                                                               monkeypatch, capsys):
    env_file = flows.write_env(tmp_path / "live.env", mode="live", database=database_url, api_url=standin.url)
    with env_file.open("a") as f:
        f.write("LIVE_STANDBY_POLL_SECONDS=0.1\nLIVE_POLL_SECONDS=600\n")
    signals = tmp_path / "signals.csv"
    signals.write_text(HEADER + S1)
    env = {k: v for k, v in os.environ.items() if not k.startswith(flows.ENV_PREFIXES)}
    run = ["run", "--mode", "live", "--signals", str(signals), "--env-file", str(env_file)]

    first = Bot(run, env)
    second = None
    try:
        first.wait_for("🔴 LIVE TRADING")
        first.wait_for("📒 journal: live signal handover-1 recorded (3/3 succeeded)")

        second = Bot(run, env)
        line = second.wait_for("⏸️ standby: another live bot holds the database")
        assert f"pid {first.proc.pid}, since " in line and "host " in line

        flows.isolate(monkeypatch, tmp_path)  # a one-shot signal in this process: refused, nothing sent
        sent = len(standin.log)
        assert main(flows.signal_argv(env_file, "live", "one-shot")) == 3
        err = capsys.readouterr().err
        assert "another live bot holds the database" in err and "stop that one first" in err
        assert f"pid {first.proc.pid}, since " in err
        assert main([*run, "--once"]) == 3  # `run --once` does not wait as a standby either (nor --no-standby)
        assert f"pid {first.proc.pid}, since " in capsys.readouterr().err
        assert not [r for r in standin.log[sent:] if r[1] != "GET"], "a refused command sent an order"

        first.proc.send_signal(signal.SIGKILL)  # a crash: no clean-up, the lock must still be freed
        assert first.finish() == -signal.SIGKILL
        second.wait_for("▶️ took over the database as the live bot")
        second.wait_for("🔴 LIVE TRADING")
        second.wait_for("⏭️ signal handover-1 already processed, not executing again")
        with signals.open("a") as f:
            f.write(S2)
        second.wait_for("📒 journal: live signal handover-2 recorded (3/3 succeeded)")
        second.proc.send_signal(signal.SIGTERM)
        assert second.finish() == 0, "\n".join(second.lines)
    finally:
        first.kill()
        if second is not None:
            second.kill()

    assert "📊 live: 1 signals, 3 account trades, 3 succeeded, 0 failed, 0 skipped" in second.lines
    assert not [line for line in second.lines[: second.lines.index(next(
        x for x in second.lines if "took over" in x))] if "LIVE TRADING" in line], "the standby traded early"
    # every account's entry of each signal reached the venue exactly once, whichever bot sent it
    entries = Counter(p.get("newClientOrderId") for _a, m, path, p in standin.log
                      if (m, path) == ("POST", "/fapi/v1/order"))
    for sid in ("handover-1", "handover-2"):
        for name in NAMES:
            assert entries[client_order_id(sid, name, "E")] == 1, (sid, name, entries)
    assert "one-shot" not in str(entries)
    journal = Journal(database_url)
    try:
        rows = journal.executions("live")
        assert sorted((r["signal_id"], r["account"], r["status"]) for r in rows) == [
            (sid, name, "success") for sid in ("handover-1", "handover-2") for name in NAMES]
        assert journal.is_processed("handover-1") and journal.is_processed("handover-2")
        assert not journal.is_processed("one-shot")
    finally:
        journal.close()


@pytest.fixture
def market():
    """The stand-in with public BTCUSDT market data: flat one-minute candles around the real clock (the paper bots
    read it), the last price 50,000."""
    now = int(time.time() * 1000)
    start = (now // MINUTE - 5) * MINUTE
    candles = [(start + k * MINUTE, 50_000.0, 50_010.0, 49_990.0, 50_000.0) for k in range(60)]
    with serving(MarketStandIn(symbol="BTCUSDT", candles=candles, now=now), 0) as url:
        yield url


def test_two_paper_bots_one_trades_the_standby_resumes_its_accounts(tmp_path, database_url, market, monkeypatch,
                                                                   capsys):
    env_file = flows.write_env(tmp_path / "paper.env", mode="paper", database=database_url, api_url=market,
                               paper_balances=flows.BALANCES)
    with env_file.open("a") as f:
        f.write("PAPER_STANDBY_POLL_SECONDS=0.1\nPAPER_POLL_SECONDS=600\n")
    signals = tmp_path / "signals.csv"
    signals.write_text(HEADER + S1)
    env = {k: v for k, v in os.environ.items() if not k.startswith(flows.ENV_PREFIXES)}
    run = ["run", "--mode", "paper", "--signals", str(signals), "--env-file", str(env_file)]

    first = Bot(run, env)
    second = None
    try:
        first.wait_for("📒 journal: paper signal handover-1 recorded (3/3 succeeded)")
        second = Bot(run, env)
        line = second.wait_for("⏸️ standby: another paper bot holds the database")
        assert f"pid {first.proc.pid}, since " in line

        flows.isolate(monkeypatch, tmp_path)  # in this process: refused, nothing read or written
        assert main(flows.signal_argv(env_file, "paper", "one-shot")) == 3
        assert "another paper bot holds the database" in capsys.readouterr().err
        assert main([*run, "--once"]) == 3
        assert f"pid {first.proc.pid}, since " in capsys.readouterr().err
        # a live bot may not share the paper bot's database (nor the reverse: tests/storage/test_instance_lock.py)
        assert main(["run", "--mode", "live", "--once", "--signals", str(signals), "--env-file", str(env_file)]) == 3
        err = capsys.readouterr().err
        assert "a paper bot holds the database" in err and f"pid {first.proc.pid}" in err and "DATABASE_URL" in err

        first.proc.send_signal(signal.SIGKILL)  # a crash: no clean-up, the lock must still be freed
        assert first.finish() == -signal.SIGKILL
        second.wait_for("▶️ took over the database as the paper bot")
        second.wait_for("💾 paper state restored: 3 accounts, 3 open positions")
        second.wait_for("⏭️ signal handover-1 already processed, not executing again")
        with signals.open("a") as f:
            f.write("handover-2,BTCUSDT,LONG,50000,49500,51000\n")
        # the first bot's positions are the standby's: one position per symbol, so the second long is skipped
        second.wait_for("📒 journal: paper signal handover-2 recorded (0/3 succeeded)")
        second.proc.send_signal(signal.SIGTERM)
        assert second.finish() == 0, "\n".join(second.lines)
    finally:
        first.kill()
        if second is not None:
            second.kill()

    journal = Journal(database_url)
    try:
        rows = journal.executions("paper")
        assert sorted((r["signal_id"], r["account"], r["status"]) for r in rows) == [
            (sid, name, status) for sid, status in (("handover-1", "success"), ("handover-2", "skipped"))
            for name in NAMES]
        venue = resume_venue(journal, MarketRules.load(), {})  # what the second bot saved last
        assert {name: [p.contracts for p in ex.positions.values()] for name, ex in venue.accounts.items()} == {
            "Account 1": [0.008], "Account 2": [0.04], "Account 3": [0.004]}
        assert not journal.is_processed("one-shot")
    finally:
        journal.close()
