"""Simulator room: ccxt's market lookups and precision formatting for the venue, memoised.

Every answer is a pure function of the market rules (marketdata/rules.py): the market dict, an amount truncated
to the step, a price on the tick, the notional cap of a leverage. Accounts acting on one signal ask the same
questions, so each is asked of ccxt once and then answered from memory.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from typing import Any

from marketdata.rules import MarketRules

_MEMO_LIMIT = 100_000


class RulesMemo:
    """The venue's read-only questions about the market rules, memoised where accounts repeat them."""

    __slots__ = ("rules", "_markets", "_amounts", "_prices", "_caps")

    def __init__(self, rules: MarketRules) -> None:
        self.rules = rules
        self._markets: dict[str, dict] = {}
        self._amounts: dict[str, _TruncationMemo] = {}
        self._prices: dict[tuple[str, float], str] = {}
        self._caps: dict[tuple[str, int], float] = {}

    def market(self, symbol: str) -> dict:
        """ccxt's market dict (the same object ccxt returns); BadSymbol for an unknown symbol."""
        market = self._markets.get(symbol)
        if market is None:
            market = self._markets[symbol] = self.rules.helper.market(symbol)
        return market

    def amount_to_precision(self, symbol: str, amount: float) -> str:
        memo = self._amounts.get(symbol)
        if memo is None:
            memo = self._amounts[symbol] = _TruncationMemo(symbol, self.rules.helper.amount_to_precision)
        return memo(amount)

    def price_to_precision(self, symbol: str, price: float) -> str:
        return _memo(self._prices, self.rules.helper.price_to_precision, symbol, price)

    def max_notional(self, symbol: str, leverage: int) -> float:
        """The largest position notional the leverage brackets allow at ``leverage`` (0 when none does)."""
        key = (symbol, leverage)
        cap = self._caps.get(key)
        if cap is None:
            caps = [t["maxNotional"] for t in self.rules.tiers[symbol] if t["maxLeverage"] >= leverage]
            cap = self._caps[key] = max(caps) if caps else 0.0
        return cap

    def tier(self, symbol: str, notional: float) -> dict:
        """The leverage bracket a position of ``notional`` falls in (the last one above every cap)."""
        tiers = self.rules.tiers[symbol]
        for t in tiers:
            if notional < (t["maxNotional"] or float("inf")):
                return t
        return tiers[-1]


class _TruncationMemo:
    """ccxt's ``amount_to_precision(symbol, amount)`` for one symbol, answered without ccxt where it is known.

    Truncating to the step is monotone in the amount and its string depends only on the truncated value, so an
    amount lying between two amounts that gave the same string gives that string too. Sizing asks for a new
    amount on every account and signal; after a few ccxt calls per step almost all are answered here.
    Non-float, non-positive and non-finite amounts, and amounts ccxt rejects, always go to ccxt.
    """

    __slots__ = ("symbol", "fn", "xs", "outs")

    def __init__(self, symbol: str, fn: Callable[[str, Any], str]) -> None:
        self.symbol, self.fn = symbol, fn
        self.xs: list[float] = []  # amounts asked, ascending
        self.outs: list[str] = []  # ccxt's answer for each

    def __call__(self, amount: Any) -> str:
        if type(amount) is not float or not 0 < amount < math.inf:
            return self.fn(self.symbol, amount)
        xs, outs = self.xs, self.outs
        i = bisect.bisect_left(xs, amount)
        if i < len(xs) and (xs[i] == amount or (i > 0 and outs[i - 1] == outs[i])):
            return outs[i]
        out = self.fn(self.symbol, amount)
        if len(xs) >= _MEMO_LIMIT:
            xs.clear()
            outs.clear()
            i = 0
        xs.insert(i, amount)
        outs.insert(i, out)
        return out


def _memo(cache: dict, fn: Callable[[str, Any], str], symbol: str, value: Any) -> str:
    """``fn(symbol, value)`` memoised for non-zero floats (0.0 and -0.0 compare equal; other types pass through)."""
    if type(value) is not float or value == 0:
        return fn(symbol, value)
    key = (symbol, value)
    out = cache.get(key)
    if out is None:
        if len(cache) >= _MEMO_LIMIT:
            cache.clear()
        out = cache[key] = fn(symbol, value)
    return out
