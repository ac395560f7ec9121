"""Simulator room: the fill rules of the simulator — the one list of assumptions (each bullet has a test in tests/simulator/).

1. Market orders fill at the venue's current price: in a backtest, the **open of the first candle whose open
   time ≥ the signal time**; in paper mode, the last traded price. Optional slippage (``slippage_bps``) moves
   every market fill (entries, stop-market, take-profit-market, closes) against the trader. A backtest signal
   whose entry candle is not in the data (a whole candle or more before the first one) is skipped with the
   reason ``signal before the first candle``, never entered at the first candle.
2. Stops, targets and liquidations are checked from the entry candle on (the entry candle's high and low count).
3. A candle that **opens beyond a level fills at its open** (a gap): a stop fills at the worse open price, a
   target at the better open price.
4. Inside one candle the price is assumed to go **open → adverse extreme → favourable extreme → close**: a long
   meets levels below the open first, a short levels above it. So when a stop and a target both lie inside one
   candle **the stop is assumed first** — unless candles of a finer timeframe are supplied (e.g. 1m under 1h),
   which then decide the order, candle by candle with this same rule.
5. **Liquidation** (isolated margin): the position is liquidated when its liquidation price — Binance's isolated
   formula with the maintenance-margin rate and ``cum`` of its notional's bracket — is crossed before its stop.
   With a stop inside the liquidation price this happens only on a gap past both (the open is beyond the
   liquidation price), in which case liquidation wins; a stop placed beyond the liquidation price is never
   reached. A liquidation loses the position's whole isolated margin; the exit price reported is the
   liquidation price.
6. Fees: taker (default 0.05%) on every market and trigger fill, charged on the fill's notional; maker (0.02%)
   applies to resting limit orders, which the engine does not send. Funding: rule 9.
7. **Mark price**: with mark-price candles (``--mark``, a ``…-mark…`` file in a candles folder, or the cache),
   stop and take-profit triggers placed with ``workingType`` MARK_PRICE and the liquidation price are judged on
   the mark candle of the same open time (rules 2-5 with its open, high and low; a missing mark candle: the trade
   candle stands in), triggers placed with CONTRACT_PRICE on the trade candles. A trigger the mark crosses fills
   at its level, or at the trade candle's open when the mark opened beyond it (the market order it becomes); a
   liquidation at the liquidation price. Without mark candles, candle prices stand in for the mark price (both
   working types behave alike), and so do they inside ``--fine-candles`` and in paper mode.
8. **End of data**: a backtest closes every position still open at the close of its symbol's last candle, at
   that candle's end, with a reduce-only market fill without slippage (taker fee charged); the exchange then
   cancels the symbol's open stop and target orders (``SimulatedVenue.close_all``).
9. **Funding** at each funding time in the data (``fundingTime``, never an assumed 8-hour grid): every position
   opened at or before that time and not yet closed (an exit in the candle that opens at the funding time or
   earlier comes first) pays notional × rate when long and the rate is positive, receives it when short
   (negative rates the other way round). Notional = contracts × the funding's ``markPrice`` when the data gives
   one, else × the **open of the candle the funding time falls in**. The amount is taken from / added to the
   wallet at once (Binance moves it through an isolated position's margin; the simulator keeps the liquidation
   price where the entry put it) and reported with the trade (trades.csv ``funding``, included in ``pnl``).
   Events outside a symbol's candles are ignored; a symbol without funding data is reported "funding unknown",
   never counted as 0 (``SimulatedVenue.apply_funding``).

Rules 2–5 are applied in one place, ``SimulatedAccount.apply_candle`` (simulator/account.py), through the venue's
fill loop ``SimulatedVenue.apply_candle`` (simulator/venue.py) or the backtest's scheduler (simulator/backtest.py).
"""

from __future__ import annotations

from typing import NamedTuple

TAKER_FEE = 0.0005  # bullet 6: Binance USDⓈ-M's regular-tier fees, the defaults of every simulated venue
MAKER_FEE = 0.0002
LIQUIDATION = "liquidation"
STOP_LOSS = "stop_loss"
TAKE_PROFIT = "take_profit"
END_OF_DATA = "end_of_data"
_GAP_PRIORITY = {LIQUIDATION: 0, STOP_LOSS: 1, TAKE_PROFIT: 2}


class Level(NamedTuple):  # immutable like a frozen dataclass, and several times cheaper to build
    """A price that ends a position when crossed: ``down`` triggers at price ≤ level, ``up`` at price ≥ level.
    ``mark``: judged on the mark price when mark candles are given (rule 7: MARK_PRICE triggers, liquidation)."""

    kind: str
    price: float
    down: bool
    order_id: str | None = None
    mark: bool = False


def levels_for(long: bool, *, stop_loss: list[tuple[float, str]], take_profit: list[tuple[float, str]],
               liquidation: float | None, mark: frozenset[str] | set[str] = frozenset()) -> list[Level]:
    """Levels of one position: stops and the liquidation on the adverse side, targets on the favourable side.
    ``mark``: ids of the trigger orders placed with workingType MARK_PRICE (the liquidation always watches it)."""
    new = tuple.__new__  # Level(...) without its Python-level __new__ (this runs for every scheduled exit)
    out = [new(Level, (STOP_LOSS, p, long, oid, oid in mark)) for p, oid in stop_loss]
    short = not long
    out += [new(Level, (TAKE_PROFIT, p, short, oid, oid in mark)) for p, oid in take_profit]
    if liquidation is not None and liquidation > 0:
        out.append(new(Level, (LIQUIDATION, liquidation, long, None, True)))
    return out


def first_hit(long: bool, levels: list[Level], o: float, h: float, low: float,
              mark: tuple[float, float, float] | None = None) -> tuple[Level, float] | None:
    """The first level one candle reaches (rules 3–5) and the fill price, or None. ``mark``: the mark candle's
    (open, high, low) at the same time, which the levels that watch the mark are judged on (rule 7)."""
    if mark is not None and any(lv.mark for lv in levels):
        return _first_hit_mark(long, levels, (o, h, low), mark)
    gapped = [lv for lv in levels if (o <= lv.price if lv.down else o >= lv.price)]
    if gapped:
        lv = min(gapped, key=lambda x: _GAP_PRIORITY[x.kind])
        return lv, (lv.price if lv.kind == LIQUIDATION else o)
    down = sorted((lv for lv in levels if lv.down and low <= lv.price), key=lambda x: -x.price)
    up = sorted((lv for lv in levels if not lv.down and h >= lv.price), key=lambda x: x.price)
    path = down + up if long else up + down  # adverse side first
    if not path:
        return None
    lv = path[0]
    return lv, lv.price


def _first_hit_mark(long: bool, levels: list[Level], trade: tuple[float, float, float],
                    mark: tuple[float, float, float]) -> tuple[Level, float] | None:
    """first_hit with each level judged on its own prices: the mark's for mark levels, the trades' otherwise.
    A gap fills a trigger at the trade candle's open (the market order it becomes), a liquidation at its price."""
    o = trade[0]
    gapped = []
    for lv in levels:
        lo = (mark if lv.mark else trade)[0]
        if lo <= lv.price if lv.down else lo >= lv.price:
            gapped.append(lv)
    if gapped:
        lv = min(gapped, key=lambda x: _GAP_PRIORITY[x.kind])
        return lv, (lv.price if lv.kind == LIQUIDATION else o)
    down = sorted((lv for lv in levels if lv.down and (mark if lv.mark else trade)[2] <= lv.price),
                  key=lambda x: -x.price)
    up = sorted((lv for lv in levels if not lv.down and (mark if lv.mark else trade)[1] >= lv.price),
                key=lambda x: x.price)
    path = down + up if long else up + down  # adverse side first
    if not path:
        return None
    return path[0], path[0].price


def slipped(price: float, buy: bool, slippage_bps: float) -> float:
    """Rule 1: slippage always against the trader."""
    if not slippage_bps:
        return price
    k = slippage_bps / 10_000
    return price * (1 + k) if buy else price * (1 - k)
