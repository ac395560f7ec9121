"""Pre-trade risk checks per account: daily realised-loss limit, open-position limits, signal quality."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.config import ExecutionConfig
from engine.signal import Signal
from engine.sizing import Sizing, isolated_liquidation_price, tier_for

DAY_MS = 86_400_000


class RiskRejection(Exception):
    """The account must not take this trade; the message is the reason."""


@dataclass(slots=True)
class RiskLedger:
    """Per-account wallet balance at the start of each UTC day (persisted by paper mode as plain JSON).

    The realised loss today is the drop of the wallet balance (equity minus unrealised PnL) since the first
    observation of the day: realised PnL and fees move it; open positions' floating PnL does not.
    """

    day_start: dict[str, tuple[int, float]] = field(default_factory=dict)

    def observe(self, account: str, now_ms: int, wallet: float) -> float:
        """Record the day's opening wallet if this is the first look today; return it."""
        day = now_ms // DAY_MS
        known = self.day_start.get(account)
        if known is None or known[0] != day:
            self.day_start[account] = (day, wallet)
            return wallet
        return known[1]

    def to_json(self) -> dict:
        return {k: list(v) for k, v in self.day_start.items()}

    @classmethod
    def from_json(cls, data: dict) -> RiskLedger:
        return cls({k: (int(v[0]), float(v[1])) for k, v in data.items()})


def check_signal_quality(signal: Signal, config: ExecutionConfig) -> None:
    """Signal-level checks that do not depend on the account."""
    if config.min_reward_risk > 0 and signal.reward_risk < config.min_reward_risk - 1e-12:
        raise RiskRejection(f"reward:risk {signal.reward_risk:.2f} below minimum {config.min_reward_risk:.2f}")


def check_account(
    *,
    account: str,
    signal: Signal,
    config: ExecutionConfig,
    ledger: RiskLedger,
    now_ms: int,
    equity: float,
    positions: list[dict],
) -> None:
    """Daily loss limit, max open positions and one position per symbol; raises :class:`RiskRejection`."""
    open_positions: list[dict] = []
    unrealized = 0.0
    for p in positions:
        if abs(float(p.get("contracts") or 0)) > 0:
            open_positions.append(p)
            unrealized += float(p.get("unrealizedPnl") or 0)
    wallet = equity - unrealized
    start = ledger.observe(account, now_ms, wallet)
    if config.daily_loss_limit_pct > 0 and start > 0:
        loss = start - wallet
        limit = start * config.daily_loss_limit_pct
        if loss >= limit - 1e-9:
            raise RiskRejection(
                f"daily loss limit reached: realised loss ${loss:,.2f} ≥ {config.daily_loss_limit_pct:.1%} of ${start:,.2f}"
            )
    if any(p.get("symbol") == signal.symbol for p in open_positions):
        raise RiskRejection(f"already has an open {signal.display_symbol} position")
    if config.max_open_positions > 0 and len(open_positions) >= config.max_open_positions:
        raise RiskRejection(f"max open positions reached ({len(open_positions)}/{config.max_open_positions})")


def check_stop_vs_liquidation(signal: Signal, sizing: Sizing, tiers: list[dict] | None) -> float | None:
    """Reject a stop that lies beyond the isolated liquidation price; return that price (None without tiers)."""
    if not tiers:
        return None
    tier = tier_for(tiers, sizing.notional) or {}
    mmr = float(tier.get("maintenanceMarginRate") or 0)
    cum = float((tier.get("info") or {}).get("cum") or 0)
    liq = isolated_liquidation_price(
        side=signal.side, entry=signal.entry, quantity=sizing.quantity, margin=sizing.margin, mmr=mmr, cum=cum
    )
    beyond = signal.stop_loss <= liq if signal.side == "LONG" else signal.stop_loss >= liq
    if beyond:
        raise RiskRejection(
            f"stop loss {signal.stop_loss:g} lies beyond the liquidation price {liq:,.2f} at {sizing.leverage}x"
        )
    return liq


def check_resume_price(signal: Signal, price: float, config: ExecutionConfig) -> None:
    """Before a signal's entry is sent after a restart: the last price must lie strictly between its stop and its
    target, and at most ``resume_max_drift_pct`` from its entry; raises :class:`RiskRejection` naming both."""
    low, high = sorted((signal.stop_loss, signal.take_profit))
    if not low < price < high:
        raise RiskRejection(f"price {price:g} is no longer between the stop {signal.stop_loss:g} and the target "
                            f"{signal.take_profit:g}")
    drift = abs(price - signal.entry) / signal.entry
    if drift > config.resume_max_drift_pct + 1e-12:
        raise RiskRejection(f"price {price:g} is {drift:.2%} from the entry {signal.entry:g} "
                            f"(at most {config.resume_max_drift_pct:.2%}, RESUME_MAX_DRIFT_PCT)")
