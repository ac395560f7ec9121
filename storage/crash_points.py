"""Storage room: injected crash points — a test hook that ends the process at a named moment of a signal's life.

``FANOUT_CRASH_AT=<point>[@<account>]`` makes the process exit at once (``os._exit``: no cleanup, no flush of
anything but the one line saying so, like ``kill -9``) the first time the journal is about to record ``point``
(for that account, when one is named). The crash harness (tests/crash/) runs ``fanout run`` with it, restarts
the bot and checks that nothing was lost, duplicated or left without a stop. Unset in production.

Points, in a signal's life: ``received`` (before the signal is journaled), ``claimed`` (prepared, before trading),
per account and order leg (E entry, SL, TP, X emergency close) ``<leg>.intent`` (before the intent: not sent),
``<leg>.sending`` (the intent is durable, the request not sent), ``<leg>.sent`` (a reply was lost: it may
exist), ``<leg>.acknowledged`` (the venue has it; the journal does not know yet), ``<leg>.failed`` (refused,
not yet journaled), then ``outcome`` (before the account's executions row), ``summary`` (every account done,
before anything is saved) and ``done`` (saved, before the signal is marked done). ``sent``, ``failed`` and the
X legs are reached only when the venue misbehaves (the harness injects that fault too).
"""

from __future__ import annotations

import os
import sys

CRASH_EXIT_CODE = 86
VARIABLE = "FANOUT_CRASH_AT"
LEGS = ("E", "SL", "TP", "X")
ORDER_STATES = ("intent", "sending", "sent", "acknowledged", "failed")
POINTS = ("received", "claimed", *(f"{leg}.{state}" for leg in LEGS for state in ORDER_STATES), "outcome",
          "summary", "done")


class CrashPoints:
    """The crash point of ``FANOUT_CRASH_AT`` (None or empty: never crash)."""

    def __init__(self, spec: str | None = None) -> None:
        self.point: str | None = None
        self.account: str | None = None
        if spec and spec.strip():
            point, _, account = spec.strip().partition("@")
            if point not in POINTS:
                raise ValueError(f"{VARIABLE}={spec!r}: unknown crash point {point!r} (one of {', '.join(POINTS)})")
            self.point, self.account = point, account or None

    def __repr__(self) -> str:
        return f"CrashPoints({self.point!r}, account={self.account!r})"

    def reached(self, point: str, account: str | None = None) -> None:
        """Exit the process now if this is the crash point."""
        if point != self.point or (self.account is not None and account != self.account):
            return
        where = f" ({account})" if account else ""
        sys.stderr.write(f"💥 crash point {point}{where} reached: exiting with code {CRASH_EXIT_CODE}\n")
        sys.stderr.flush()
        os._exit(CRASH_EXIT_CODE)
