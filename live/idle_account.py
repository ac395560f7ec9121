"""Live room: a flat account's ``/fapi/v3/account`` reply, kept while its user-data stream says nothing changed.

A signal reads every account's balance and positions before sizing (``fetch_balance``, weight 5, one round trip).
For an account holding no position whose user-data stream has been up and quiet since its last read, that read
would return what was read before: Binance pushes an event for every change (ACCOUNT_UPDATE for each balance
change — fills, funding, deposits, transfers — and order updates), and without a position nothing moves the
available balance with the price. :class:`IdleAccount` keeps such a reply and hands it back instead of a request
until any event arrives, the stream drops or comes back, or ``MAX_AGE_MS`` passes; a reply is kept only if no
event arrived while it was being asked (the count of events is compared), so a change in flight is never missed.

The session reads a quiet account again (``LiveExchange.refresh_idle_account``, housekeeping priority) when its
stream comes up and once it has settled after a change (``wants_refresh``), so the next signal finds a snapshot.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

MAX_AGE_MS = 30 * 60_000  # however quiet the stream, a snapshot is read again after this
SETTLE_MS = 2_000  # an account is read for a new snapshot once its stream has been quiet this long


class IdleAccount:
    """One account's kept reply. ``now_ms``: the exchange's clock (milliseconds)."""

    def __init__(self, now_ms: Callable[[], int]) -> None:
        self.now_ms = now_ms
        self.stream_up = False
        self.events = 0  # user-data events seen, and stream ups / downs
        self.kept_replies = 0  # replies kept so far (tests, benchmarks)
        self._kept: tuple[int, int, dict] | None = None  # (events when asked, ms, raw reply)
        self._last_event_ms = 0
        self._changed_ms = 0  # the last ACCOUNT_UPDATE, or the stream coming up
        self._asked_ms: int | None = None  # the last read made for a snapshot

    def stream_changed(self, up: bool) -> None:
        """The user-data stream came up or went down: what was read before may miss events."""
        self.stream_up = up
        self.event(account_update=True)

    def event(self, *, account_update: bool = False) -> None:
        """A user-data event arrived: the account may have changed, the kept reply is dropped."""
        self.events += 1
        self._kept = None
        self._last_event_ms = self.now_ms()
        if account_update:
            self._changed_ms = self._last_event_ms

    def fresh(self) -> dict | None:
        """The kept reply while it is exact without asking again, else None (do not modify it: copy)."""
        kept = self._kept
        if kept is None or not self.stream_up:
            return None
        events, at, reply = kept
        if events != self.events or self.now_ms() - at > MAX_AGE_MS:
            self._kept = None
            return None
        return reply

    def keep(self, events: int, reply: Any) -> None:
        """A ``/fapi/v3/account`` reply asked when ``events`` events had been seen: kept if the stream was up all
        along, nothing arrived since, and the account holds no position."""
        if not self.stream_up or not isinstance(reply, dict):
            return
        if events != self.events:
            self._asked_ms = None  # something arrived meanwhile: read again once the stream has settled
            return
        rows, assets = reply.get("positions"), reply.get("assets")
        if not isinstance(rows, list) or not isinstance(assets, list):
            return
        if any(_amount(row) != 0 for row in rows):
            return  # a position: its profit, and so the available balance, moves with the price
        self._kept = (events, self.now_ms(), copy.deepcopy(reply))
        self.kept_replies += 1

    def asked(self) -> None:
        """A read for a snapshot is being made."""
        self._asked_ms = self.now_ms()

    def wants_refresh(self) -> bool:
        """Whether reading the account now could give the next signal a snapshot: the stream is up, none is held,
        the stream has been quiet ``SETTLE_MS``, and the account has not been read for one since it last changed
        (a held position is not read again until an ACCOUNT_UPDATE) or for ``MAX_AGE_MS``."""
        if not self.stream_up or self.fresh() is not None:
            return False
        now = self.now_ms()
        if now - self._last_event_ms < SETTLE_MS:
            return False
        asked = self._asked_ms
        return asked is None or asked < self._changed_ms or now - asked >= MAX_AGE_MS


def _amount(row: Any) -> float:
    try:
        return float(row.get("positionAmt") or 0) if isinstance(row, dict) else 1.0
    except (TypeError, ValueError):
        return 1.0  # unreadable: treated as a position (nothing kept)
