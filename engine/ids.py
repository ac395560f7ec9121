"""Deterministic client order ids from (signal id, account, leg), within Binance's 36-character alphabet."""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

LEGS = ("E", "SL", "TP", "X")
_VALID = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")


@lru_cache(maxsize=65536)
def _h(text: str, n: int) -> str:
    """Hex digest prefix; memoised (every account and signal is hashed for each of its legs)."""
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def client_order_id(signal_id: str, account: str, leg: str) -> str:
    """``fo-<12 hex of signal>-<8 hex of account>-<leg>``; leg ∈ E (entry), SL, TP, X (emergency close)."""
    if leg not in LEGS:
        raise ValueError(f"leg must be one of {LEGS}, got {leg!r}")
    return f"fo-{_h(signal_id, 12)}-{_h(account, 8)}-{leg}"  # hex, digits and '-': always valid


def is_valid_client_order_id(cid: str) -> bool:
    return bool(_VALID.match(cid))
