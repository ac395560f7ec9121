"""Execution settings shared by every mode (sizing, risk, leverage), validated on creation."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionConfig:
    """Sizing and risk settings. Defaults follow the design document.

    position_size_pct: fraction of available USDT used as margin (POSITION_SIZE_PCT, 0.02 = 2%).
    max_position_usd: cap on margin per trade in USDT (MAX_POSITION_USD, 100).
    leverage: default leverage (LEVERAGE, 20); a signal may override it.
    min_balance_usd: accounts with less available USDT are skipped (MIN_BALANCE_USD, 10).
    daily_loss_limit_pct: stop trading an account for the UTC day once its realised loss reaches this fraction of
        its equity at the start of the day (DAILY_LOSS_LIMIT_PCT, 0.05). 0 disables.
    max_open_positions: per account (MAX_OPEN_POSITIONS, 5). 0 disables.
    min_reward_risk: reject signals whose reward:risk is below this (MIN_REWARD_RISK, 0 = off).
    margin_mode: 'isolated' (the only mode the liquidation model assumes).
    working_type: trigger price of stops, MARK_PRICE or CONTRACT_PRICE.
    resume_max_age_s: after a restart, an entry that was never sent is still sent if its signal arrived at most
        this many seconds ago (RESUME_MAX_AGE_SECONDS, 300); older, it is recorded "expired after restart".
    resume_max_drift_pct: ... and if the last price lies between the stop and the target and at most this
        fraction from the signal's entry (RESUME_MAX_DRIFT_PCT, 0.01 = 1%).
    """

    position_size_pct: float = 0.02
    max_position_usd: float = 100.0
    leverage: int = 20
    min_balance_usd: float = 10.0
    daily_loss_limit_pct: float = 0.05
    max_open_positions: int = 5
    min_reward_risk: float = 0.0
    margin_mode: str = "isolated"
    working_type: str = "MARK_PRICE"
    resume_max_age_s: float = 300.0
    resume_max_drift_pct: float = 0.01

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float | int) and not isinstance(value, bool):
                if not math.isfinite(value) or value < 0:
                    raise ValueError(f"config field '{f.name}' must be a finite number >= 0, got {value!r}")
        if not 0 < self.position_size_pct <= 1:
            raise ValueError(f"config field 'position_size_pct' must be in (0, 1], got {self.position_size_pct!r}")
        if self.max_position_usd <= 0:
            raise ValueError(f"config field 'max_position_usd' must be > 0, got {self.max_position_usd!r}")
        if int(self.leverage) != self.leverage or not 1 <= self.leverage <= 125:
            raise ValueError(f"config field 'leverage' must be a whole number 1..125, got {self.leverage!r}")
        if self.daily_loss_limit_pct >= 1:
            raise ValueError(f"config field 'daily_loss_limit_pct' must be < 1, got {self.daily_loss_limit_pct!r}")
        if self.margin_mode != "isolated":
            raise ValueError(f"config field 'margin_mode' must be 'isolated', got {self.margin_mode!r}")
        if self.working_type not in ("MARK_PRICE", "CONTRACT_PRICE"):
            raise ValueError(f"config field 'working_type' must be MARK_PRICE or CONTRACT_PRICE, got {self.working_type!r}")

    @classmethod
    def from_env(cls, env: dict[str, str]) -> ExecutionConfig:
        """Build from environment-style variables (POSITION_SIZE_PCT given in percent, e.g. 2)."""
        names = {
            "POSITION_SIZE_PCT": ("position_size_pct", lambda v: float(v) / 100),
            "MAX_POSITION_USD": ("max_position_usd", float),
            "LEVERAGE": ("leverage", int),
            "MIN_BALANCE_USD": ("min_balance_usd", float),
            "DAILY_LOSS_LIMIT_PCT": ("daily_loss_limit_pct", lambda v: float(v) / 100),
            "MAX_OPEN_POSITIONS": ("max_open_positions", int),
            "MIN_REWARD_RISK": ("min_reward_risk", float),
            "WORKING_TYPE": ("working_type", str),
            "RESUME_MAX_AGE_SECONDS": ("resume_max_age_s", float),
            "RESUME_MAX_DRIFT_PCT": ("resume_max_drift_pct", lambda v: float(v) / 100),
        }
        kwargs = {}
        for var, (name, conv) in names.items():
            raw = env.get(var)
            if raw is None or str(raw).strip() == "":
                continue
            try:
                kwargs[name] = conv(str(raw).strip())
            except ValueError:
                raise ValueError(f"environment variable {var} is not a valid number: {raw!r}") from None
        try:
            return cls(**kwargs)
        except ValueError as exc:
            for var, (name, _conv) in names.items():  # name the variable whose value is out of range
                if name in kwargs:
                    try:
                        cls(**{name: kwargs[name]})
                    except ValueError as own:
                        raise ValueError(f"environment variable {var}={str(env[var]).strip()!r}: {own}") from None
            raise ValueError(f"{exc} (from environment variables)") from None
