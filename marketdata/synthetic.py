"""Market-data room: the project's own synthetic BTC one-minute candles and demo signals (offline demos, benchmark).

The generator is a stochastic-volatility random walk, deterministic for a seed (numpy PCG64):

- volatility: a base per-minute level times an intraday (UTC hour) and weekend seasonality, times exp of two
  AR(1) log-volatility factors (half-lives 30 minutes and 2 days, capped at 5x) — volatility clusters;
- returns: Student-t (6 degrees of freedom) shocks, plus rare jumps (about 3 a week, 0.5–3 % in all, played
  out as a 3–12 minute cascade) that also lift volatility about 3-fold for a while;
- candles: open = previous close, prices on the 0.1 tick; high / low are the maximum / minimum of a Brownian
  bridge from open to close, so wicks are consistent with the body and the minute's volatility;
- volume (BTC) rises with the absolute return and the volatility, with log-normal noise.

Tuned against the real Binance 1m candles of March 2023 (see the figures in ``generate_candles``).
"""

from __future__ import annotations

import math

import numpy as np

from marketdata.candles import Candles
from marketdata.times import UNIT_MS, format_time, parse_time

TICK = 0.1
MINUTE_MS = UNIT_MS["m"]
# relative volatility per UTC hour (quiet Asian night, busy US session), from real BTC 1m data; mean 1
_HOURLY = np.array([1.00, 1.05, 0.90, 0.75, 0.70, 0.72, 0.74, 0.78, 0.85, 0.88, 0.88, 0.90,
                    1.15, 1.25, 1.35, 1.40, 1.25, 1.10, 1.05, 1.10, 1.05, 1.05, 1.00, 0.95])
_HOURLY = _HOURLY / _HOURLY.mean()
_WEEKEND = 0.7
_BASE_SIGMA = 0.00062        # per-minute log-return scale before seasonality and the volatility factors
_NU = 6.0                    # Student-t degrees of freedom
_FAST = (30.0, 0.55)         # log-volatility factor: half-life (minutes), stationary std
_SLOW = (2 * 1440.0, 0.40)
_LOG_VOL_CAP = 1.6          # volatility factors stay within 1/5x .. 5x
_JUMPS_PER_WEEK = 3.0
_JUMP_RANGE = (0.005, 0.03)
_WICK_SCALE = 0.33           # bridge volatility relative to the minute's sigma (real wicks are tighter than BM)
_BASE_VOLUME = 150.0         # BTC per minute in a typical minute


def _ar1(shocks: np.ndarray, half_life: float, std: float) -> np.ndarray:
    """A stationary AR(1) series with the given half-life (in steps) and standard deviation."""
    phi = 0.5 ** (1.0 / half_life)
    scale = std * math.sqrt(1.0 - phi * phi)
    out = np.empty(len(shocks))
    x = 0.0
    for i, e in enumerate(shocks.tolist()):
        x = phi * x + scale * e
        out[i] = x
    return out


def generate_candles(symbol: str = "BTC/USDT:USDT", start: str = "2024-01-01", minutes: int = 30 * 24 * 60,
                     start_price: float = 42000.0, seed: int = 7) -> Candles:
    """Deterministic synthetic one-minute candles (``synthetic=True``) starting at ``start`` (ISO-8601, UTC when
    no zone is given, or epoch ms; rounded down to the minute).

    With the defaults (30 days, seed 7) the per-minute log-return std is 0.079 %, the excess kurtosis 21 and
    the mean high-low range 0.10 % of price (seeds 1–12: 0.05–0.08 %, 20–33, 0.07–0.11 %); the real Binance
    candles of 1–21 March 2023 (a turbulent month) measure 0.090 %, 28.6 and 0.091 %.
    """
    if minutes < 1:
        raise ValueError(f"minutes must be >= 1, got {minutes!r}")
    if not start_price > 0:
        raise ValueError(f"start_price must be > 0, got {start_price!r}")
    t0_ms = parse_time(start, "start")
    t0_ms -= t0_ms % MINUTE_MS
    time = t0_ms + MINUTE_MS * np.arange(minutes, dtype=np.int64)
    rng = np.random.Generator(np.random.PCG64(seed))
    n = minutes

    hour = (time // UNIT_MS["h"]) % 24
    weekday = (time // UNIT_MS["d"] + 3) % 7          # 1970-01-01 was a Thursday; 5, 6 = Saturday, Sunday
    season = _HOURLY[hour] * np.where(weekday >= 5, _WEEKEND, 1.0)

    jump_at = rng.random(n) < _JUMPS_PER_WEEK / (7 * 1440)
    jump_size = np.exp(rng.uniform(np.log(_JUMP_RANGE[0]), np.log(_JUMP_RANGE[1]), n))
    jump_sign = rng.choice([-1.0, 1.0], n)
    jump_len = rng.integers(3, 13, n)
    jump = np.zeros(n)
    for j in np.flatnonzero(jump_at).tolist():
        # a jump is a cascade over a few minutes, most of the move first
        length = min(int(jump_len[j]), n - j)
        weights = 0.75 ** np.arange(length)
        jump[j:j + length] += jump_sign[j] * jump_size[j] * weights / weights.sum()
    # a jump lifts volatility about 3-fold, decaying with the fast factor's half-life
    fast_scale = _FAST[1] * math.sqrt(1.0 - 0.25 ** (1.0 / _FAST[0]))
    shock_fast = rng.standard_normal(n) + np.where(jump_at, math.log(3.0) / fast_scale, 0.0)
    log_vol = _ar1(shock_fast, *_FAST) + _ar1(rng.standard_normal(n), *_SLOW)
    log_vol = np.clip(log_vol, -_LOG_VOL_CAP, _LOG_VOL_CAP)   # no 10x-volatility minutes stacked on a t tail
    sigma = _BASE_SIGMA * season * np.exp(log_vol - 0.5 * (_FAST[1] ** 2 + _SLOW[1] ** 2))

    t_shock = rng.standard_t(_NU, n) / math.sqrt(_NU / (_NU - 2.0))
    ret = sigma * t_shock + jump
    close = np.round(start_price * np.exp(np.cumsum(ret)), 1)
    close = np.maximum(close, TICK)
    open_ = np.r_[round(start_price, 1), close[:-1]]

    # Brownian-bridge extremes in log space: max excess above the body given the minute's volatility
    body = np.log(close / open_)
    wick_sigma = np.maximum(sigma, np.abs(jump) / 3) * _WICK_SCALE
    up = 0.5 * (np.abs(body) + np.sqrt(body ** 2 - 2 * wick_sigma ** 2 * np.log(rng.random(n)))) - np.abs(body) / 2
    down = 0.5 * (np.abs(body) + np.sqrt(body ** 2 - 2 * wick_sigma ** 2 * np.log(rng.random(n)))) - np.abs(body) / 2
    top = np.maximum(open_, close)
    bottom = np.minimum(open_, close)
    high = np.maximum(np.round(top * np.exp(up), 1), top)
    low = np.minimum(np.round(bottom * np.exp(-down), 1), bottom)
    low = np.maximum(low, TICK)

    activity = (0.35 + 0.65 * np.abs(ret) / (sigma + 1e-12) / math.sqrt(2 / math.pi)) * (sigma / _BASE_SIGMA)
    volume = np.round(_BASE_VOLUME * activity * rng.lognormal(-0.32, 0.8, n), 3)

    return Candles(symbol=symbol, timeframe="1m", time=time, open=open_, high=high, low=low, close=close,
                   volume=volume, synthetic=True, source=f"synthetic (generated by fanout, seed {seed})")


def demo_signals(candles: Candles, n: int | None = None, seed: int = 11, *, lookback: int = 60,
                 id_prefix: str = "demo") -> list[dict]:
    """A deterministic set of plausible signals over ``candles`` (default: one per ~500 candles).

    Signals are spread evenly with jitter. Each follows the momentum of the previous ``lookback`` candles
    (LONG after a rise, SHORT after a fall), enters at the close just before its time, risks 0.6–1.2 % to the
    stop and targets 1.5–2 times the risk. Dicts: id, time (ISO-8601 UTC), symbol (e.g. ``BTCUSDT``), side,
    entry, stop_loss, take_profit — the shape :func:`engine.signal.parse_signal` accepts. Stops and targets are
    rounded to 0.1 from $1,000 up, to five significant digits below (a coin at $0.07 keeps its levels); ids are
    ``{id_prefix}-0001``….
    """
    total = len(candles)
    if n is None:
        n = max(1, total // 500)
    first, last = lookback + 1, total - 1
    if n < 1 or last - first + 1 < n:
        raise ValueError(f"n={n} signals do not fit in {total} candles (lookback {lookback})")
    rng = np.random.Generator(np.random.PCG64(seed))
    edges = np.linspace(first, last + 1, n + 1)
    at = np.floor(edges[:-1] + rng.random(n) * (edges[1:] - edges[:-1])).astype(np.int64)
    at = np.clip(at, first, last)
    risk = rng.uniform(0.006, 0.012, n)
    reward = rng.uniform(1.5, 2.0, n)
    base, quote = candles.symbol.split(":")[0].split("/") if "/" in candles.symbol else (candles.symbol, "")
    symbol = f"{base}{quote}"
    out = []
    for k, i in enumerate(at.tolist()):
        entry = float(candles.close[i - 1])
        side = "LONG" if entry >= candles.close[i - 1 - lookback] else "SHORT"
        sign = 1.0 if side == "LONG" else -1.0
        digits = max(1, 4 - math.floor(math.log10(entry)))  # 0.1 from $1,000 up, 5 significant digits below
        stop = round(float(entry * (1 - sign * risk[k])), digits)
        target = round(float(entry + sign * abs(entry - stop) * reward[k]), digits)
        out.append({
            "id": f"{id_prefix}-{k + 1:04d}",
            "time": format_time(candles.time[i]),
            "symbol": symbol, "side": side, "entry": entry, "stop_loss": stop, "take_profit": target,
        })
    return out
