"""Engine room: margin mode and leverage as set per (account, symbol), so they are sent only when they change.

Binance keeps both per account and symbol until changed, so setting them before every signal costs two requests
per account for nothing. The executor sets them the first time, remembers what it set (saved in the journal's
state by the service, so a restart remembers too), and sets them again only when the signal wants another value,
when the venue reports a change made elsewhere (``changed``: the user-data stream's ACCOUNT_CONFIG_UPDATE), or
after the venue refused an entry (``forget``: the settings there may not be what we think).
"""

from __future__ import annotations

from typing import Any


class SymbolSettings:
    """What margin mode and leverage each (account, symbol) was last known to have."""

    def __init__(self) -> None:
        self.margin_mode: dict[tuple[str, str], str] = {}
        self.leverage: dict[tuple[str, str], int] = {}

    def wants_margin_mode(self, account: str, symbol: str, mode: str) -> bool:
        return self.margin_mode.get((account, symbol)) != mode

    def wants_leverage(self, account: str, symbol: str, leverage: int) -> bool:
        return self.leverage.get((account, symbol)) != leverage

    def set_margin_mode(self, account: str, symbol: str, mode: str) -> None:
        self.margin_mode[(account, symbol)] = mode

    def set_leverage(self, account: str, symbol: str, leverage: int) -> None:
        self.leverage[(account, symbol)] = int(leverage)

    def changed(self, account: str, symbol: str, leverage: int) -> None:
        """The venue says the leverage is now ``leverage`` (changed by us or elsewhere)."""
        self.set_leverage(account, symbol, leverage)

    def forget(self, account: str, symbol: str) -> None:
        self.margin_mode.pop((account, symbol), None)
        self.leverage.pop((account, symbol), None)

    def to_json(self) -> list[list[Any]]:
        keys = sorted(set(self.margin_mode) | set(self.leverage))
        return [[a, s, self.margin_mode.get((a, s)), self.leverage.get((a, s))] for a, s in keys]

    @classmethod
    def from_json(cls, rows: Any) -> SymbolSettings:
        out = cls()
        for row in rows or []:
            try:
                account, symbol, mode, leverage = row
            except (TypeError, ValueError):
                continue  # a malformed saved row is forgotten: the next signal sets it again
            if mode is not None:
                out.margin_mode[(str(account), str(symbol))] = str(mode)
            if leverage is not None:
                out.leverage[(str(account), str(symbol))] = int(leverage)
        return out
