"""Per-account position sizing: margin from balance, notional from leverage, quantity truncated to the step."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.config import ExecutionConfig


class SizingSkip(Exception):
    """The account cannot take this trade; the message is the reason shown to the user."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Sizing:
    """A sized order. amount is the exchange-formatted quantity string; quantity its float value."""

    margin: float
    notional: float
    quantity: float
    amount: str
    leverage: int


def _limit(market: dict, group: str, key: str) -> float | None:
    node: Any = market.get("limits") or {}
    node = node.get(group) if isinstance(node, dict) else None
    node = node.get(key) if isinstance(node, dict) else None
    return float(node) if node not in (None, "") else None


def tier_for(tiers: list[dict], notional: float) -> dict | None:
    """The leverage bracket (ccxt leverage-tier dict) that a position of this notional falls in."""
    for tier in tiers:
        lo = float(tier.get("minNotional") or 0)
        hi = tier.get("maxNotional")
        if notional >= lo and (hi is None or notional < float(hi)):
            return tier
    return tiers[-1] if tiers else None


def size_position(
    *,
    free_usdt: float,
    entry: float,
    leverage: int,
    config: ExecutionConfig,
    market: dict,
    amount_to_precision: Callable[[str, float], str],
    tiers: list[dict] | None = None,
) -> Sizing:
    """Size one account's order, or raise :class:`SizingSkip` with the reason.

    margin = min(free × position_size_pct, max_position_usd); notional = margin × leverage;
    quantity = notional / entry truncated to the amount step; then minimum quantity, market maximum,
    minimum notional (after truncation) and the leverage bracket are checked.
    """
    symbol = market["symbol"]
    if not math.isfinite(free_usdt) or free_usdt < config.min_balance_usd:
        raise SizingSkip(f"balance ${free_usdt:,.2f} below minimum ${config.min_balance_usd:,.2f}")
    margin = min(free_usdt * config.position_size_pct, config.max_position_usd)
    notional = margin * leverage
    raw_qty = notional / entry
    min_qty = _limit(market, "amount", "min")
    try:
        amount = amount_to_precision(symbol, raw_qty)
    except Exception:  # ccxt raises InvalidOrder when the truncated amount is below precision
        amount = "0"
    quantity = float(amount)
    if quantity <= 0 or (min_qty is not None and quantity < min_qty - 1e-12):
        raise SizingSkip(
            f"quantity {raw_qty:.8g} below minimum {min_qty:g} (margin ${margin:,.2f} × {leverage}x at {entry:g})"
            if min_qty is not None
            else f"quantity {raw_qty:.8g} truncates to zero"
        )
    max_market = _limit(market, "market", "max") or _limit(market, "amount", "max")
    if max_market is not None and quantity > max_market + 1e-12:
        amount = amount_to_precision(symbol, max_market)
        quantity = float(amount)
    real_notional = quantity * entry
    min_notional = _limit(market, "cost", "min")
    if min_notional is not None and real_notional < min_notional - 1e-9:
        raise SizingSkip(f"notional ${real_notional:,.2f} below exchange minimum ${min_notional:,.2f}")
    if tiers:
        tier = tier_for(tiers, real_notional)
        max_lev = tier.get("maxLeverage") if tier else None
        if max_lev is not None and leverage > float(max_lev):
            raise SizingSkip(f"leverage {leverage}x above the {max_lev:g}x allowed for notional ${real_notional:,.2f}")
    return Sizing(
        margin=real_notional / leverage, notional=real_notional, quantity=quantity, amount=amount, leverage=leverage
    )


def isolated_liquidation_price(*, side: str, entry: float, quantity: float, margin: float, mmr: float, cum: float = 0.0) -> float:
    """Binance's isolated one-way liquidation price for a single position (wallet = isolated margin)."""
    if side == "LONG":
        price = (quantity * entry - margin - cum) / (quantity * (1 - mmr))
    else:
        price = (quantity * entry + margin + cum) / (quantity * (1 + mmr))
    return max(price, 0.0)
