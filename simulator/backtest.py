"""Simulator room: the backtest runner — replays candles through simulated accounts and the shared engine.

Signals execute through :class:`engine.MultiAccountExecutor` exactly as live, in time order. Between signals the
runner jumps straight to the next candle where some position's stop, target or liquidation can be crossed (numpy
scans, simulator/scan.py; a heap of one entry per open position): the scheduling is what makes it fast. What
such a candle does to the position is decided where paper mode decides it, ``SimulatedAccount.apply_candle``
(rules: simulator/fills.py). Order updates go to the engine's watcher through ``SimulatedVenue.drain_updates``,
which cancels the sibling order like it does live; data's end is ``SimulatedVenue.close_all``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import heapq
import logging
import operator
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from engine import Account, ExecutionConfig, MultiAccountExecutor, Signal
from engine.results import SKIPPED
from marketdata.funding import FundingRates
from marketdata.rules import MarketRules
from marketdata.times import format_time
from simulator.exchange import SimulatedExchange
from simulator.fills import END_OF_DATA, MAKER_FEE, TAKER_FEE, Level
from simulator.records import TRADE_FIELDS, ClosedPosition, Exit, TradeRow
from simulator.scan import LevelScanner
from simulator.venue import SimulatedVenue

log = logging.getLogger("fanout.backtest")
EXIT_REASONS = ("take_profit", "stop_loss", "liquidation", END_OF_DATA)
_FUNDING = 1 << 62  # a funding event's heap index: after every exit candle of the same time
TRADE_ORDER = operator.itemgetter(TRADE_FIELDS.index("entry_time"), TRADE_FIELDS.index("account"))  # trades.csv


@dataclass
class BacktestResult:
    """Everything a run produced; analysis/output.py writes it to disk."""

    accounts: dict[str, float]
    trades: list[TradeRow]  # trades.csv rows (read by column name too: ``row["pnl"]``)
    skipped: list[dict]
    equity_time: np.ndarray
    equity: dict[str, np.ndarray]
    end_balance: dict[str, float]
    stats: dict
    synthetic: bool
    candles_source: str
    summaries: list[dict] = field(default_factory=list)
    symbols: list[str] = field(default_factory=list)  # the symbols with candles, in the run's order
    funding_known: list[str] = field(default_factory=list)  # symbols whose funding was simulated (rule 9)
    mark_known: list[str] = field(default_factory=list)  # symbols whose mark prices were given (rule 7)


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (reference counting still frees everything a run discards).

    A run builds up hundreds of thousands of long-lived, acyclic objects (orders, results, trades) that each of
    the collector's passes would walk again: about a sixth of a 100-account run. The runner's own cycles are
    collected once it is dropped. On the way out they are moved straight to the oldest generation
    (``freeze`` + ``unfreeze``), so the first young collection after the run does not walk them all.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.unfreeze()
        if was_enabled:
            gc.enable()


class _Replay:
    """Per-symbol candle arrays and scanners (the mark's too, on the candles' index, when mark prices are given)."""

    def __init__(self, candles, fine=None, mark=None) -> None:
        self.c = candles
        self.fine = fine
        self.scanner = LevelScanner(candles.high, candles.low, candles.open)
        self.tf_ms = int(candles.timeframe_ms)
        self.mark = None
        self.mark_scanner = None
        if mark is not None:
            self.mark = _aligned_mark(candles, mark)
            self.mark_scanner = LevelScanner(self.mark[1], self.mark[2], self.mark[0])


def _aligned_mark(candles, mark) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The mark candles' open, high and low at each trade candle's index (fills.py rule 7): the mark candle of the
    same open time, the trade candle's own prices where there is none."""
    if mark.timeframe != candles.timeframe:
        from marketdata.candles import resample

        mark = resample(mark, candles.timeframe)
    o, h, low = candles.open.copy(), candles.high.copy(), candles.low.copy()
    idx = np.searchsorted(candles.time, mark.time)
    ok = idx < len(candles.time)
    ok[ok] = candles.time[idx[ok]] == mark.time[ok]
    o[idx[ok]], h[idx[ok]], low[idx[ok]] = mark.open[ok], mark.high[ok], mark.low[ok]
    return o, h, low


class BacktestRunner:
    """Run signals over candles on simulated accounts with given starting balances."""

    def __init__(
        self,
        candles: Iterable,
        signals: Iterable[Signal],
        balances: dict[str, float],
        config: ExecutionConfig | None = None,
        *,
        fine: Iterable | None = None,
        rules: MarketRules | None = None,
        taker_fee: float = TAKER_FEE,
        maker_fee: float = MAKER_FEE,
        slippage_bps: float = 0.0,
        progress: bool | Callable[[int], None] = False,
        equity_points: int = 2000,
        funding: Iterable[FundingRates] | None = None,
        mark: Iterable | None = None,
    ) -> None:
        fine_by_symbol = {f.symbol: f for f in (fine or [])}
        mark_by_symbol = {m.symbol: m for m in (mark or [])}
        self.replays = {c.symbol: _Replay(c, fine_by_symbol.get(c.symbol), mark_by_symbol.get(c.symbol))
                        for c in candles}
        if not self.replays:
            raise ValueError("backtest needs candles for at least one symbol")
        self.signals = sorted(signals, key=lambda s: (s.time if s.time is not None else 0, s.id))
        missing_time = [s.id for s in self.signals if s.time is None]
        if missing_time:
            raise ValueError(f"signal field 'time' is required in backtests (missing for {missing_time[:3]})")
        if not balances:
            raise ValueError("backtest needs at least one account balance")
        self.balances = dict(balances)
        self.config = config or ExecutionConfig()
        self.venue = SimulatedVenue(rules or MarketRules.load(), taker_fee=taker_fee, maker_fee=maker_fee,
                                    slippage_bps=slippage_bps)
        self.exchanges: dict[str, SimulatedExchange] = {
            name: self.venue.add_account(name, bal) for name, bal in self.balances.items()
        }
        self.executor = MultiAccountExecutor(
            [Account(n, ex) for n, ex in self.exchanges.items()], self.config, retries=0, retry_delay=0.0
        )
        self.progress = progress
        self.equity_points = equity_points
        # (time, idx, seq, account, symbol, version, levels); a funding event: (time, _FUNDING, seq, None, symbol,
        # event index, (rate, price))
        self._heap: list[tuple] = []
        self._seq = 0
        # (account, entry order id) -> (signal id, stop, target): what a trade row needs of its entry
        self._entries: dict[tuple[str, str], tuple[str, float | None, float | None]] = {}
        self._skipped: list[dict] = []
        self.skip_signal_index: list[int] = []  # the signal (its index in time order) of each skipped row
        self._signal_index = 0
        self._summaries: list[dict] = []
        self.funding_known: list[str] = []
        self._funding_paid: list[tuple[int, str, float]] = []  # (time, account, amount): the equity curve's
        for rates in funding or ():
            self._queue_funding(rates)

    def _queue_funding(self, rates: FundingRates) -> None:
        """Queue a symbol's funding events inside its candles (fills.py rule 9): at each, the mark price the data
        gives, else the open of the candle the funding time falls in."""
        replay = self.replays.get(rates.symbol)
        if replay is None or rates.symbol in self.funding_known:
            return
        self.funding_known.append(rates.symbol)
        c = replay.c
        end = int(c.time[-1]) + replay.tf_ms
        for k in rates.between(int(c.time[0]) - 1, end - 1):
            t = int(rates.time[k])
            mark = float(rates.mark[k])
            price = mark if mark == mark else float(c.open[int(np.searchsorted(c.time, t, side="right")) - 1])
            self._seq += 1
            # after every exit at the same time (a position closed at the funding time does not pay)
            heapq.heappush(self._heap, (t, _FUNDING, self._seq, None, rates.symbol, k,
                                        (float(rates.rate[k]), price)))

    # ------------------------------------------------------------------ running
    def run(self) -> BacktestResult:
        box: list[BacktestResult] = []

        async def main() -> None:  # the result is not the task's: asyncio.run would repr it (50k trades)
            box.append(await self.arun())

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(main())
        else:  # called from a running loop (Jupyter): run on a worker thread with its own loop
            import threading

            worker = threading.Thread(target=asyncio.run, args=(main(),), name="fanout-backtest")
            worker.start()
            worker.join()
            if not box:
                raise RuntimeError("backtest failed on its worker thread (see the log above)")
        return box[0]

    async def arun(self) -> BacktestResult:
        with _cyclic_gc_paused():
            bar = None
            if callable(self.progress):  # a caller's counter (simulator/parallel.py: a worker's share of the bar)
                done = self.progress
            elif self.progress:
                from tqdm import tqdm

                bar = tqdm(total=len(self.signals), unit="signal", desc="backtest", leave=False)
                done = bar.update
            else:
                done = None
            for i, signal in enumerate(self.signals):
                self._signal_index = i
                await self._signal(signal)
                if done is not None:
                    done(1)
            if bar is not None:
                bar.close()
            await self._drain_events(None)
            await self._close_at_end()
            return self._result()

    async def _signal(self, signal: Signal) -> None:
        replay = self.replays.get(signal.symbol)
        if replay is None:
            self._skip_all(signal, f"no candles for {signal.symbol}")
            return
        c = replay.c
        i = int(np.searchsorted(c.time, signal.time, side="left"))
        if i >= len(c.time):
            self._skip_all(signal, "signal after the last candle")
            return
        if signal.time <= c.time[0] - c.timeframe_ms:  # the candle it would enter on is missing, not the first one
            self._skip_all(signal, f"signal before the first candle ({format_time(int(c.time[0]))})")
            return
        await self._drain_events(int(c.time[i]))
        self.venue.set_price(signal.symbol, float(c.open[i]), int(c.time[i]))
        summary = await self.executor.execute(signal)
        await self.venue.drain_updates(self.executor.watcher)
        self._summaries.append({"signal_id": signal.id, "succeeded": summary.succeeded, "total": summary.total})
        for r in summary.results:
            if r.ok or r.closed:  # an emergency-closed entry is a (one-candle) trade of this signal too
                self._entries[(r.account, r.entry_order_id)] = (r.signal_id, r.stop_loss, r.take_profit)
            if r.ok:
                if signal.symbol in self.exchanges[r.account].positions:
                    self._schedule(r.account, signal.symbol, i)
            else:
                prefix = "" if r.status == SKIPPED else f"{r.status}: "
                self._skip(r.account, r.signal_id, prefix + r.reason)

    def _skip(self, account: str, signal_id: str, reason: str) -> None:
        self._skipped.append({"account": account, "signal_id": signal_id, "reason": reason,
                              "symbol": self.signals[self._signal_index].symbol})
        self.skip_signal_index.append(self._signal_index)

    def _skip_all(self, signal: Signal, reason: str) -> None:
        for name in self.exchanges:
            self._skip(name, signal.id, reason)

    def _schedule(self, account: str, symbol: str, start: int, levels: list[Level] | None = None) -> None:
        """Queue the position's next exit candle, with its levels (``levels`` when already known).

        A position has one queued entry at a time, and nothing changes its orders or liquidation price without
        bumping its version, so the levels are still the position's own when the entry is popped.
        """
        ex = self.exchanges[account]
        pos = ex.positions.get(symbol)
        if pos is None:
            return
        if levels is None:
            levels = ex.position_levels(symbol)
        replay = self.replays[symbol]
        scanner = replay.scanner
        idx = n = scanner.n
        marks = replay.mark_scanner
        for lv in levels:
            k = (marks if marks is not None and lv.mark else scanner).first_cross(start, lv.price, lv.down)
            if k < idx:
                idx = k
        if idx >= n:
            return
        self._seq += 1
        heapq.heappush(self._heap, (int(self.replays[symbol].c.time[idx]), idx, self._seq, account, symbol,
                                    pos.version, levels))

    async def _drain_events(self, until_ms: int | None) -> None:
        """Process position exits in time order for candles opening before ``until_ms`` (all when None)."""
        while self._heap and (until_ms is None or self._heap[0][0] < until_ms):
            t, idx, _, account, symbol, version, levels = heapq.heappop(self._heap)
            if account is None:  # a funding event: levels holds (rate, price)
                for account, amount in self.venue.apply_funding(symbol, t, *levels):
                    self._funding_paid.append((t, account, amount))
                continue
            ex = self.exchanges[account]
            pos = ex.positions.get(symbol)
            if pos is None or pos.version != version:
                continue
            if self._apply(ex, symbol, self.replays[symbol], levels, idx) is None:
                self._schedule(account, symbol, idx + 1, levels)
                continue
            await self.venue.drain_updates(self.executor.watcher)
            if symbol in ex.positions:
                self._schedule(account, symbol, idx)

    @staticmethod
    def _apply(ex: SimulatedExchange, symbol: str, replay: _Replay, levels: list[Level], idx: int) -> Exit | None:
        """Candle ``idx`` against the position (through its finer candles when given); what it crossed, or None."""
        c = replay.c
        t0 = int(c.time[idx])
        if replay.fine is not None:
            f = replay.fine
            a = int(np.searchsorted(f.time, t0, side="left"))
            b = int(np.searchsorted(f.time, t0 + replay.tf_ms, side="left"))
            for j in range(a, b):
                hit = ex.apply_candle(symbol, int(f.time[j]), float(f.open[j]), float(f.high[j]), float(f.low[j]),
                                      levels=levels)
                if hit is not None:
                    return hit
            if b > a:
                return None  # the finer candles say nothing was crossed in this candle
        mark = replay.mark
        return ex.apply_candle(symbol, t0, float(c.open[idx]), float(c.high[idx]), float(c.low[idx]), levels=levels,
                               mark=None if mark is None else (float(mark[0][idx]), float(mark[1][idx]),
                                                               float(mark[2][idx])))

    async def _close_at_end(self) -> None:
        """Positions still open at the end close at their symbol's last close, when its last candle ends."""
        ends = {}
        for symbol, replay in self.replays.items():
            ends[symbol] = int(replay.c.time[-1]) + replay.tf_ms
            self.venue.set_price(symbol, float(replay.c.close[-1]))
        self.venue.close_all(ends)
        await self.venue.drain_updates(self.executor.watcher)

    # ------------------------------------------------------------------ results
    def _trade_row(self, cp: ClosedPosition) -> TradeRow:
        signal_id, stop_loss, take_profit = self._entries.get((cp.account, cp.entry_order_id), ("", None, None))
        return TradeRow((
            cp.account, signal_id, cp.symbol, cp.side, cp.entry_time, cp.entry_price,
            cp.quantity, cp.margin, cp.quantity * cp.entry_price, cp.leverage, stop_loss, take_profit,
            cp.exit_time, cp.exit_price,
            # the only other reduce-only market close a backtest sends is the engine's emergency close after a
            # rejected stop (the price was already past it): it is that trade's stop-loss exit
            cp.exit_reason if cp.exit_reason in EXIT_REASONS else "stop_loss",
            cp.fees, cp.pnl, cp.funding,
        ))

    def _result(self) -> BacktestResult:
        trades = [self._trade_row(cp) for ex in self.exchanges.values() for cp in ex.closed]
        trades.sort(key=TRADE_ORDER)
        grid, equity = self._equity_curves(trades)
        first = next(iter(self.replays.values())).c
        return BacktestResult(
            accounts=self.balances,
            trades=trades,
            skipped=self._skipped,
            equity_time=grid,
            equity=equity,
            end_balance={n: ex.wallet for n, ex in self.exchanges.items()},
            stats=self.executor.stats.to_dict(),
            synthetic=any(bool(getattr(r.c, "synthetic", False)) for r in self.replays.values()),
            candles_source=(str(getattr(first, "source", "")) if len(self.replays) == 1 else
                            "; ".join(str(getattr(r.c, "source", "")) for r in self.replays.values())),
            summaries=self._summaries,
            symbols=list(self.replays),
            funding_known=[s for s in self.replays if s in self.funding_known],
            mark_known=[s for s, r in self.replays.items() if r.mark is not None],
        )

    def _clock_times(self) -> np.ndarray:
        """Every candle open time of the run: one symbol's times, or the union of all symbols' (one clock)."""
        if len(self.replays) == 1:
            return next(iter(self.replays.values())).c.time
        return np.unique(np.concatenate([r.c.time for r in self.replays.values()]))

    def _equity_curves(self, trades: list[TradeRow]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Mark-to-market equity per account on a regular grid (at most ``equity_points`` candles of the run's
        clock): realised pnl plus every open position's floating pnl at its own symbol's last close, and funding
        when it was paid."""
        times = self._clock_times()
        step = max(1, len(times) // self.equity_points)
        grid_t = times[np.arange(0, len(times), step)]
        names = list(self.balances)
        row = {n: i for i, n in enumerate(names)}
        realized = np.zeros((len(names), len(grid_t) + 1))
        floating = np.zeros((len(names), len(grid_t)))
        if trades:
            t = dict(zip(TRADE_FIELDS, zip(*trades, strict=True), strict=True))  # the trades' columns
            # every trade's open grid points [a, b) flattened in trade order: np.add.at adds them one by one in
            # that order, so each cell's floating-point sum is the one a loop over trades would make
            acct = np.array([row[name] for name in t["account"]])
            a = np.searchsorted(grid_t, np.array(t["entry_time"]), side="right")
            b = np.searchsorted(grid_t, np.array(t["exit_time"]), side="right")
            pnl = np.array(t["pnl"], dtype=float)
            if self._funding_paid:  # funding moves the wallet when paid (below), not when the trade closes
                pnl = pnl - np.array(t["funding"], dtype=float)
            np.add.at(realized, (acct, b), pnl)
            span = np.maximum(b - a, 0)
            owner = np.repeat(np.arange(len(trades)), span)  # trade of each (trade, grid point) pair
            cell = np.arange(len(owner)) - np.repeat(np.cumsum(span) - span, span) + a[owner]
            close = np.empty(len(owner))
            symbols = np.array(t["symbol"])
            for sym, r in self.replays.items():  # the close in force at each grid point, per symbol
                mask = symbols[owner] == sym
                if mask.any():
                    k = np.clip(np.searchsorted(r.c.time, grid_t, side="right") - 1, 0, len(r.c.close) - 1)
                    close[mask] = r.c.close[k][cell[mask]]
            entry = np.array(t["entry_price"], dtype=float)
            qty = np.array(t["quantity"], dtype=float)
            direction = np.array([1.0 if side == "LONG" else -1.0 for side in t["side"]])
            margin = np.array(t["margin"], dtype=float)
            entry_fee = entry * qty * self.venue.taker_fee
            move = (close - entry[owner]) * qty[owner] * direction[owner]
            np.add.at(floating, (acct[owner], cell), np.maximum(move, -margin[owner]) - entry_fee[owner])
        if self._funding_paid:
            when, who, amount = zip(*self._funding_paid, strict=True)
            np.add.at(realized, (np.array([row[n] for n in who]), np.searchsorted(grid_t, when, side="right")),
                      np.array(amount, dtype=float))
        out = {}
        for i, (name, start) in enumerate(self.balances.items()):
            out[name] = start + np.cumsum(realized[i])[:-1] + floating[i]
        return grid_t, out
