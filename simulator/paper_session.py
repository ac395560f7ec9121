"""Simulator room: paper trading's session — the simulated venue fed live prices, saved in a StateStore.

``PaperSession`` is the paper side of the engine's ``Session`` port (engine/ports.py; the live side is
live/session.py), behind fanout's TradingService:

- ``prepare(signal)``: the last price of the signal's symbol into the venue (``PaperFeed.refresh``), so the
  market entry fills at it; raises when no price can be had (the service then leaves the signal unprocessed).
- ``tick()``: the closed one-minute candles and the last price of every symbol with a position or a tracked
  bracket (``PaperFeed.poll`` → the venue's fill loop), then the resulting order updates to the watcher, which
  cancels the siblings of filled legs as it does live.
- ``persist()`` / :func:`resume_venue`: the venue (``SimulatedVenue.to_state``) and the feed's last processed
  candle per symbol, under ``paper_venue`` / ``paper_feed``, so a restart resumes exactly where it stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from engine import BracketWatcher, Signal, SignalSummary
from engine.ports import StateStore
from marketdata.rules import MarketRules
from simulator.paper import PaperFeed, PriceSource
from simulator.venue import SimulatedVenue

log = logging.getLogger("fanout.paper")
VENUE_KEY = "paper_venue"
FEED_KEY = "paper_feed"


def resume_venue(store: StateStore, rules: MarketRules, balances: Mapping[str, float],
                 **settings: Any) -> SimulatedVenue:
    """The venue a previous paper run saved in ``store`` (or a new one), plus any account of ``balances`` it lacks.

    settings: the venue's ``taker_fee`` / ``slippage_bps`` (settings, not state: today's apply to a resumed venue).
    Saved accounts keep their saved wallets; ``balances`` only seeds accounts that are new.
    """
    saved = store.load_state(VENUE_KEY)
    if saved:
        venue = SimulatedVenue.from_state(saved, rules, **settings)
        log.info("💾 paper state restored: %d accounts, %d open positions", len(venue.accounts),
                 sum(len(ex.positions) for ex in venue.accounts.values()))
    else:
        venue = SimulatedVenue(rules, **settings)
    for name, balance in balances.items():
        if name not in venue.accounts:
            venue.add_account(name, balance)
    return venue


class PaperSession:
    """Paper mode's side of the service: live prices into the simulated venue, fills into the watcher, state saved.

    venue: the simulated accounts (see :func:`resume_venue`). source: live market data (ccxt's public client).
    watcher: the executor's BracketWatcher (order updates go there). store: where state is saved (the journal).
    """

    def __init__(self, venue: SimulatedVenue, source: PriceSource, watcher: BracketWatcher,
                 store: StateStore) -> None:
        self.venue = venue
        self.watcher = watcher
        self.store = store
        self.feed = PaperFeed(venue, source)
        for symbol, t in (store.load_state(FEED_KEY) or {}).items():
            self.feed.last_candle[symbol] = int(t)

    def __repr__(self) -> str:
        return f"PaperSession({len(self.venue.accounts)} accounts)"

    async def start(self) -> None:
        await self.venue.drain_updates(self.watcher)  # updates saved undelivered by the previous run

    async def prepare(self, signal: Signal) -> None:
        price = await self.feed.refresh(signal.symbol)
        log.info("📄 paper: %s last price %.2f", signal.display_symbol, price)
        await self.venue.drain_updates(self.watcher)

    async def fallback(self, signal: Signal, summary: SignalSummary) -> SignalSummary | None:
        return None  # one simulated venue: nothing to fall back to

    async def tick(self) -> None:
        symbols = {s for ex in self.venue.accounts.values() for s in ex.positions}
        symbols |= {b.symbol for b in self.watcher.open_brackets()}
        if symbols:
            await self.feed.poll(symbols)
            await self.venue.drain_updates(self.watcher)

    def persist(self) -> None:
        self.store.save_state(VENUE_KEY, self.venue.to_state())
        self.store.save_state(FEED_KEY, self.feed.last_candle)
