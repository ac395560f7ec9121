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
        self._kept: tuple[int, int, dict] | None = None  # (events when asked, ms, raw reply)
        self._last_event_ms = 0
        # positions in the order of events (``events`` counts): no two things happen at the same count
        self._changed_at = 0  # the last ACCOUNT_UPDATE, or the stream coming up or going down
        self._account_update_at = 0  # the last ACCOUNT_UPDATE
        self._position_seen_at: int | None = None  # asked then, the last reply showed a position (None: none)
        self._asked_at: int | None = None  # the last read made for a snapshot (None: none, or it must be redone)
        self._asked_ms = 0

    def stream_changed(self, up: bool) -> None:
        """The user-data stream came up or went down: what was read before may miss events."""
        self.stream_up = up
        self.event()
        self._changed_at = self.events

    def event(self, *, account_update: bool = False) -> None:
        """A user-data event arrived: the account may have changed, the kept reply is dropped."""
        self.events += 1
        self._kept = None
        self._last_event_ms = self.now_ms()
        if account_update:
            self._changed_at = self._account_update_at = self.events

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
        along, nothing arrived since, and the account holds no position. Any reply (the reconciliation's too)
        tells whether the account holds a position: one that does is not read ahead until it changes."""
        if not isinstance(reply, dict):
            return
        rows, assets = reply.get("positions"), reply.get("assets")
        if not isinstance(rows, list) or not isinstance(assets, list):
            return
        if any(_amount(row) != 0 for row in rows):
            self._position_seen_at = events  # its profit, and so the available balance, moves with the price
            return
        self._position_seen_at = None
        if not self.stream_up:
            return
        if events != self.events:
            self._asked_at = None  # something arrived meanwhile: read again once the stream has settled
            return
        self._kept = (events, self.now_ms(), copy.deepcopy(reply))

    def asked(self) -> None:
        """A read for a snapshot is being made."""
        self._asked_at = self.events
        self._asked_ms = self.now_ms()

    def wants_refresh(self, *, settle: bool = True) -> bool:
        """Whether reading the account now could give the next signal a snapshot: the stream is up, none is held,
        the stream has been quiet ``SETTLE_MS`` (unless ``settle`` is False: just connected), the last reply
        showed no position unless an ACCOUNT_UPDATE came since, and the account has not been read for a snapshot
        since it last changed (an ACCOUNT_UPDATE or the stream coming up) or for ``MAX_AGE_MS``."""
        if not self.stream_up or self.fresh() is not None:
            return False
        now = self.now_ms()
        if settle and now - self._last_event_ms < SETTLE_MS:
            return False
        if self._position_seen_at is not None and self._position_seen_at >= self._account_update_at:
            return False  # still holding it: read when an ACCOUNT_UPDATE says it changed
        asked = self._asked_at
        return asked is None or asked < self._changed_at or now - self._asked_ms >= MAX_AGE_MS


def _amount(row: Any) -> float:
    try:
        return float(row.get("positionAmt") or 0) if isinstance(row, dict) else 1.0
    except (TypeError, ValueError):
        return 1.0  # unreadable: treated as a position (nothing kept)
