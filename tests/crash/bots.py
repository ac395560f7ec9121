"""Tests room: `fanout` commands run as separate processes, many times, cheaply — a fork server for the crash harness.

A crash point (storage/crash_points.py) ends its process with ``os._exit``, so each bot of the harness must be a
process of its own. Starting Python and importing ccxt, SQLAlchemy and fanout costs more than a `fanout run
--once` itself; :class:`BotServer` starts one process that imports them once and forks a child per command: the
child sets the command's environment, working directory and output file, then runs ``fanout.cli.main`` and exits
with its code (or with the crash point's). The server runs no thread, so forking it is safe.

In the children ccxt's client-side throttle is off (as in tests/standin/cli_flows.isolate: the stand-in needs
none), and ``paper_faults`` makes a paper bot's simulated exchange misbehave on one account's order leg the way
the stand-in does for live bots (a refusal, or an order placed whose reply is lost), to reach the crash points
that only a fault reaches.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WAIT = 120  # seconds: a bound for a broken run, never a pause

SERVER = r"""
import json, os, sys
import ccxt.async_support
import ccxt.pro  # noqa: F401

async def no_throttle(self, cost=None):
    return None

ccxt.async_support.Exchange.throttle = no_throttle
import fanout.cli, fanout.cmd_run, fanout.modes, live.exchange, live.user_stream  # noqa: E401, F401
import simulator.paper_session, storage.journal  # noqa: E401, F401
from tests.crash.bots import install_paper_faults

for line in sys.stdin:
    request = json.loads(line)
    pid = os.fork()
    if pid == 0:
        try:
            os.chdir(request["cwd"])
            os.environ.clear()
            os.environ.update(request["env"])
            out = os.open(request["output"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.dup2(out, 1)
            os.dup2(out, 2)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            install_paper_faults(request.get("paper_faults") or [])
            code = fanout.cli.main(request["argv"])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            import traceback
            traceback.print_exc()
            code = 99
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    sys.stdout.write(json.dumps({"code": os.waitstatus_to_exitcode(status)}) + "\n")
    sys.stdout.flush()
"""


@dataclass(frozen=True)
class Ran:
    """One command's exit code and its merged output."""

    code: int
    output: str


class BotServer:
    """One forking server process; :meth:`run` runs a `fanout` command line in a fresh child of it."""

    def __init__(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER], cwd=ROOT, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    def run(self, argv: list[str], *, env: dict[str, str], cwd: Path, paper_faults: list[dict] | None = None) -> Ran:
        output = cwd / f"bot-{len(list(cwd.glob('bot-*.log')))}.log"
        request = {"argv": argv, "env": env, "cwd": str(cwd), "output": str(output), "paper_faults": paper_faults}
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the bot server died (exit {self.proc.wait(WAIT)})")
        return Ran(json.loads(line)["code"], output.read_text(encoding="utf-8") if output.exists() else "")

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(WAIT)


def install_paper_faults(faults: list[dict]) -> None:
    """In a bot process: the simulated exchange answers ``create_order`` of one account's leg with a fault, once
    per entry of ``faults`` ({"account", "leg", "kind": "reject" | "lost_reply", "code"}): ``reject`` refuses
    before acting (Binance's error ``code``), ``lost_reply`` places the order and then raises a timeout."""
    if not faults:
        return
    import ccxt

    from simulator.exchange import SimulatedExchange

    pending = [dict(f) for f in faults]
    real = SimulatedExchange.create_order
    errors = {-2019: ccxt.InsufficientFunds, -2021: ccxt.OrderImmediatelyFillable, -2022: ccxt.InvalidOrder}

    async def create_order(self, symbol, type, side, amount, price=None, params=None):  # noqa: A002, ANN001
        cid = str((params or {}).get("clientOrderId") or "")
        fault = next((f for f in pending if f["account"] == self.name and cid.endswith(f"-{f['leg']}")), None)
        if fault is None:
            return await real(self, symbol, type, side, amount, price, params)
        pending.remove(fault)
        if fault["kind"] == "reject":
            code = fault.get("code", -2021)
            raise errors.get(code, ccxt.InvalidOrder)(f'binanceusdm {{"code":{code},"msg":"injected refusal"}}')
        await real(self, symbol, type, side, amount, price, params)
        raise ccxt.RequestTimeout("binanceusdm POST https://fapi.binance.com/fapi/v1/order request timeout "
                                  "(injected: the order was placed, its reply lost)")

    SimulatedExchange.create_order = create_order
