"""Tests for simulator/exchange.py: ccxt-shaped replies, Binance rejections with ccxt classes, fees, liquidation."""

from __future__ import annotations

import ccxt
import pytest

from simulator.venue import SimulatedVenue

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"
T0 = 1_704_067_200_000
HOUR = 3_600_000


@pytest.fixture
def ex(venue):
    return venue.add_account("A", 1_000)


async def long_position(ex, qty=0.008, leverage=20):
    await ex.set_margin_mode("isolated", BTC)
    await ex.set_leverage(leverage, BTC)
    return await ex.create_order(BTC, "market", "buy", qty, None, {"clientOrderId": "entry-1"})


def open_algo(ex):
    return [o for o in ex.algo_orders.values() if o["status"] == "open"]


# --- rejections --------------------------------------------------------------------------------------------------

async def test_insufficient_funds(venue):
    ex = venue.add_account("poor", 10)
    await ex.set_leverage(1, BTC)
    with pytest.raises(ccxt.InsufficientFunds, match='"code":-2019'):
        await ex.create_order(BTC, "market", "buy", 0.004)  # $200 of margin at 1x
    assert not ex.positions and ex.wallet == 10


async def test_insufficient_funds_counts_the_fee(venue):
    ex = venue.add_account("exact", 5)
    await ex.set_leverage(20, BTC)
    with pytest.raises(ccxt.InsufficientFunds):
        await ex.create_order(BTC, "market", "buy", 0.002)  # $5 margin + $0.05 fee > $5


async def test_below_min_notional(ex):
    with pytest.raises(ccxt.InvalidOrder, match='"code":-4164') as e:
        await ex.create_order(BTC, "market", "buy", 0.001)  # $50 < BTCUSDT's $100
    assert "no smaller than 100" in str(e.value)
    await ex.create_order(BTC, "market", "buy", 0.002)  # $100 is enough


async def test_stop_that_would_trigger_immediately(ex):
    await long_position(ex)
    with pytest.raises(ccxt.OrderImmediatelyFillable, match='"code":-2021') as e:
        await ex.create_order(BTC, "market", "sell", 0.008, None, {"stopLossPrice": 50_100, "reduceOnly": True})
    assert isinstance(e.value, ccxt.InvalidOrder)  # ccxt's hierarchy: handled as an invalid order too
    with pytest.raises(ccxt.OrderImmediatelyFillable):
        await ex.create_order(BTC, "market", "sell", 0.008, None, {"takeProfitPrice": 49_900, "reduceOnly": True})
    with pytest.raises(ccxt.OrderImmediatelyFillable):  # a trigger exactly at the mark fires at once
        await ex.create_order(BTC, "market", "sell", 0.008, None, {"stopLossPrice": 50_000, "reduceOnly": True})
    assert not open_algo(ex)


async def test_short_stop_that_would_trigger_immediately(ex):
    await ex.create_order(BTC, "market", "sell", 0.008)
    with pytest.raises(ccxt.OrderImmediatelyFillable):
        await ex.create_order(BTC, "market", "buy", 0.008, None, {"stopLossPrice": 49_900, "reduceOnly": True})
    await ex.create_order(BTC, "market", "buy", 0.008, None, {"stopLossPrice": 50_100, "reduceOnly": True})


@pytest.mark.parametrize("symbol", ["FOO/USDT:USDT", "BTC/USD", "NOPE"])
async def test_unknown_symbol(ex, symbol):
    with pytest.raises(ccxt.BadSymbol):
        ex.market(symbol)
    with pytest.raises(ccxt.BadSymbol):
        await ex.create_order(symbol, "market", "buy", 1)
    with pytest.raises(ccxt.BadSymbol):
        await ex.set_leverage(20, symbol)
    with pytest.raises(ccxt.BadSymbol):
        await ex.fetch_market_leverage_tiers(symbol)


async def test_reduce_only_without_position(ex):
    with pytest.raises(ccxt.InvalidOrder, match='"code":-2022'):
        await ex.create_order(BTC, "market", "sell", 0.008, None, {"reduceOnly": True})
    with pytest.raises(ccxt.InvalidOrder, match='"code":-2022'):
        await ex.create_order(BTC, "market", "sell", 0.008, None, {"stopLossPrice": 49_500, "reduceOnly": True})
    await long_position(ex)
    with pytest.raises(ccxt.InvalidOrder, match='"code":-2022'):  # reduce-only on the wrong side
        await ex.create_order(BTC, "market", "buy", 0.008, None, {"reduceOnly": True})


async def test_quantity_limits(ex):
    with pytest.raises(ccxt.InvalidOrder):
        await ex.create_order(BTC, "market", "buy", 0.0004)  # under the 0.001 step: ccxt refuses to format it
    with pytest.raises(ccxt.InvalidOrder, match='"code":-4005'):
        await ex.create_order(BTC, "market", "buy", 121)  # MARKET_LOT_SIZE max 120


async def test_amount_is_truncated_to_the_step(ex):
    order = await ex.create_order(BTC, "market", "buy", 0.0089999)
    assert order["amount"] == order["filled"] == 0.008


async def test_duplicate_client_order_id_of_an_open_order(ex):
    await long_position(ex)
    params = {"stopLossPrice": 49_500, "reduceOnly": True, "clientOrderId": "dup"}
    await ex.create_order(BTC, "market", "sell", 0.008, None, params)
    with pytest.raises(ccxt.InvalidOrder, match='"code":-4116'):
        await ex.create_order(BTC, "market", "sell", 0.008, None, params)


async def test_leverage_rules(ex):
    with pytest.raises(ccxt.BadRequest, match='"code":-4028'):
        await ex.set_leverage(126, BTC)
    with pytest.raises(ccxt.BadRequest, match='"code":-4028'):
        await ex.set_leverage(0, BTC)
    answer = await ex.set_leverage(125, BTC)
    assert answer["leverage"] == 125 and float(answer["maxNotionalValue"]) == 50_000
    rich = ex.venue.add_account("rich", 100_000)
    await rich.set_leverage(20, BTC)
    await rich.create_order(BTC, "market", "buy", 1.2)  # $60,000: above 125x's $50,000 cap
    with pytest.raises(ccxt.OperationRejected, match='"code":-2027'):
        await rich.set_leverage(125, BTC)


async def test_position_above_the_leverage_cap(venue):
    rich = venue.add_account("rich", 100_000)
    await rich.set_leverage(125, BTC)
    with pytest.raises(ccxt.OperationRejected, match='"code":-2027'):
        await rich.create_order(BTC, "market", "buy", 1.2)


async def test_margin_mode(ex):
    with pytest.raises(ccxt.BadRequest):
        await ex.set_margin_mode("portfolio", BTC)
    await long_position(ex)
    with pytest.raises(ccxt.ExchangeError, match='"code":-4048'):
        await ex.set_margin_mode("cross", BTC)
    await ex.set_margin_mode("isolated", BTC)  # unchanged: fine


async def test_max_ten_trigger_orders_per_symbol(ex):
    await long_position(ex)
    for i in range(10):
        await ex.create_order(BTC, "market", "sell", 0.008, None, {"stopLossPrice": 49_000 + i, "reduceOnly": True})
    with pytest.raises(ccxt.InvalidOrder, match='"code":-4045'):
        await ex.create_order(BTC, "market", "sell", 0.008, None, {"stopLossPrice": 48_000, "reduceOnly": True})


async def test_only_market_orders(ex):
    with pytest.raises(ccxt.NotSupported):
        await ex.create_order(BTC, "limit", "buy", 0.008, 49_000)
    with pytest.raises(ccxt.InvalidOrder):
        await ex.create_order(BTC, "market", "long", 0.008)


async def test_no_price_yet(ex):
    with pytest.raises(ccxt.ExchangeNotAvailable):
        await ex.create_order(ETH, "market", "buy", 1)


# --- fees, balances, positions -------------------------------------------------------------------------------------

async def test_taker_fee_default(ex):
    order = await long_position(ex)
    assert order["fee"] == {"cost": pytest.approx(0.2), "currency": "USDT"}  # 0.05% of $400
    assert ex.wallet == pytest.approx(999.8) and ex.fees_paid == pytest.approx(0.2)


async def test_taker_fee_configurable(rules):
    venue = SimulatedVenue(rules, taker_fee=0.001)
    venue.set_price(BTC, 50_000, T0)
    ex = venue.add_account("A", 1_000)
    order = await ex.create_order(BTC, "market", "buy", 0.008)
    assert order["fee"]["cost"] == pytest.approx(0.4)
    await ex.create_order(BTC, "market", "sell", 0.008, None, {"reduceOnly": True})
    assert ex.fees_paid == pytest.approx(0.8)
    assert ex.closed[-1].fees == pytest.approx(0.8) and ex.closed[-1].pnl == pytest.approx(-0.8)
    assert ex.wallet == pytest.approx(999.2)


@pytest.mark.parametrize("field, value", [("taker_fee", -0.1), ("taker_fee", 1), ("maker_fee", 2),
                                          ("slippage_bps", -1), ("slippage_bps", 10_000)])
def test_venue_settings_are_validated(rules, field, value):
    with pytest.raises(ValueError, match=field):
        SimulatedVenue(rules, **{field: value})


def test_venue_accounts_and_prices_are_validated(venue):
    venue.add_account("A", 0)
    with pytest.raises(ValueError, match="duplicate"):
        venue.add_account("A", 10)
    with pytest.raises(ValueError, match="'B'"):
        venue.add_account("B", -1)
    with pytest.raises(ValueError, match="price"):
        venue.set_price(BTC, 0)


async def test_round_trip_pnl_and_fees(ex, venue):
    await long_position(ex)
    venue.set_price(BTC, 51_000, T0 + HOUR)
    await ex.create_order(BTC, "market", "sell", 0.008, None, {"reduceOnly": True})
    (cp,) = ex.closed
    assert (cp.entry_price, cp.exit_price, cp.quantity, cp.exit_reason) == (50_000, 51_000, 0.008, "close")
    fees = 400 * 0.0005 + 408 * 0.0005
    assert cp.fees == pytest.approx(fees) and cp.pnl == pytest.approx(8 - fees)
    assert ex.wallet == pytest.approx(1_000 + 8 - fees) and ex.realized_pnl == pytest.approx(8)
    assert not ex.positions


async def test_slippage_is_always_against_the_trader(rules):
    venue = SimulatedVenue(rules, slippage_bps=10)
    venue.set_price(BTC, 50_000, T0)
    long, short = venue.add_account("L", 1_000), venue.add_account("S", 1_000)
    assert (await long.create_order(BTC, "market", "buy", 0.008))["average"] == pytest.approx(50_050)
    assert (await short.create_order(BTC, "market", "sell", 0.008))["average"] == pytest.approx(49_950)
    closed = await long.create_order(BTC, "market", "sell", 0.008, None, {"reduceOnly": True})
    assert closed["average"] == pytest.approx(49_950)


async def test_balance_and_positions(ex, venue):
    await long_position(ex)
    venue.set_price(BTC, 49_000)
    bal = await ex.fetch_balance()
    assert bal["USDT"]["used"] == pytest.approx(20) and bal["USDT"]["free"] == pytest.approx(979.8)
    assert bal["USDT"]["total"] == pytest.approx(999.8 - 8)
    assert bal["free"]["USDT"] == bal["USDT"]["free"] and bal["total"]["USDT"] == bal["USDT"]["total"]
    (p,) = await ex.fetch_positions()
    assert (p["symbol"], p["side"], p["contracts"], p["entryPrice"], p["leverage"], p["marginMode"]) == (
        BTC, "long", 0.008, 50_000, 20, "isolated")
    assert p["unrealizedPnl"] == pytest.approx(-8) and p["initialMargin"] == pytest.approx(20)
    assert p["info"]["positionAmt"] == "0.008"
    assert await ex.fetch_positions([ETH]) == []


async def test_liquidation_price_of_the_seed_position(ex):
    """Binance's isolated formula, 20x long 0.008 BTC at 50,000, first bracket (MMR 0.004, cum 0)."""
    await long_position(ex)
    (p,) = await ex.fetch_positions()
    assert p["liquidationPrice"] == pytest.approx(47_690.76, abs=0.01)
    assert p["liquidationPrice"] == pytest.approx((400 - 20) / (0.008 * (1 - 0.004)))


async def test_liquidation_price_of_a_short_and_in_a_higher_bracket(venue):
    ex = venue.add_account("S", 1_000)
    await ex.create_order(BTC, "market", "sell", 0.008)
    assert ex.positions[BTC].liquidation_price == pytest.approx(420 / (0.008 * 1.004))
    rich = venue.add_account("R", 100_000)
    await rich.create_order(BTC, "market", "buy", 2)  # $100,000 at 20x: second bracket, MMR 0.005, cum 50
    assert rich.positions[BTC].liquidation_price == pytest.approx((100_000 - 5_000 - 50) / (2 * 0.995))


async def test_liquidation_loses_the_margin_and_cancels_orders(ex, venue, recorder):
    await long_position(ex)
    await ex.create_order(BTC, "market", "sell", 0.008, None, {"stopLossPrice": 49_500, "reduceOnly": True})
    (cp,) = venue.apply_candle(BTC, T0 + HOUR, 47_000, 47_100, 46_000, 46_500)
    assert cp.exit_reason == "liquidation" and cp.exit_price == pytest.approx(47_690.76, abs=0.01)
    assert cp.pnl == pytest.approx(-20 - 0.2)  # the whole isolated margin, plus the entry fee
    assert ex.wallet == pytest.approx(1_000 - 20.2) and not open_algo(ex)
    assert await venue.drain_updates(recorder) == 1
    assert [(account, order["status"]) for account, order in recorder.updates] == [("A", "canceled")]


# --- orders: lookups, cancels, triggers ------------------------------------------------------------------------

async def test_order_lookup_by_id_and_client_id(ex):
    entry = await long_position(ex)
    stop = await ex.create_order(BTC, "market", "sell", 0.008, None,
                                 {"stopLossPrice": 49_500, "reduceOnly": True, "clientOrderId": "sl-1"})
    assert (await ex.fetch_order(entry["id"], BTC))["clientOrderId"] == "entry-1"
    assert (await ex.fetch_order(None, BTC, {"clientOrderId": "entry-1"}))["id"] == entry["id"]
    assert (await ex.fetch_order(None, BTC, {"clientOrderId": "sl-1", "trigger": True}))["id"] == stop["id"]
    assert (await ex.fetch_order(stop["id"], BTC, {"trigger": True}))["stopLossPrice"] == 49_500
    for args in ((None, BTC, {"clientOrderId": "nope"}), (stop["id"], BTC, None), (entry["id"], ETH, None),
                 (None, BTC, {"clientOrderId": "sl-1"})):  # a trigger order is not in the regular book
        with pytest.raises(ccxt.OrderNotFound, match='"code":-2013'):
            await ex.fetch_order(*args)


async def test_trigger_order_shape(ex):
    await long_position(ex)
    o = await ex.create_order(BTC, "market", "sell", 0.008, None,
                              {"takeProfitPrice": 51_000.04, "reduceOnly": True, "workingType": "MARK_PRICE"})
    assert (o["status"], o["triggerPrice"], o["takeProfitPrice"], o["stopLossPrice"], o["reduceOnly"]) == (
        "open", 51_000.0, 51_000.0, None, True)  # the trigger is put on the 0.1 tick
    assert o["info"]["orderType"] == "TAKE_PROFIT_MARKET" and o["info"]["workingType"] == "MARK_PRICE"
    assert not any(k.startswith("_") for k in o)


async def test_cancel_and_open_orders(ex):
    await long_position(ex)
    stop = await ex.create_order(BTC, "market", "sell", 0.008, None, {"stopLossPrice": 49_500, "reduceOnly": True})
    assert [o["id"] for o in await ex.fetch_open_orders(BTC, None, None, {"trigger": True})] == [stop["id"]]
    assert await ex.fetch_open_orders(BTC) == []  # market orders never rest
    cancelled = await ex.cancel_order(stop["id"], BTC, {"trigger": True})
    assert cancelled["status"] == "canceled"
    with pytest.raises(ccxt.OrderNotFound, match='"code":-2011'):
        await ex.cancel_order(stop["id"], BTC, {"trigger": True})
    assert await ex.fetch_open_orders(None, None, None, {"trigger": True}) == []


async def test_trigger_fill_is_queued_for_the_watcher(ex, venue, recorder):
    await long_position(ex)
    stop = await ex.create_order(BTC, "market", "sell", 0.008, None, {"stopLossPrice": 49_500, "reduceOnly": True})
    (cp,) = venue.apply_candle(BTC, T0 + HOUR, 49_900, 49_950, 49_400, 49_450)
    assert (cp.exit_reason, cp.exit_price, cp.exit_time) == ("stop_loss", 49_500, T0 + HOUR)
    await venue.drain_updates(recorder)
    ((account, order),) = recorder.updates
    assert (account, order["id"], order["status"], order["average"]) == ("A", stop["id"], "closed", 49_500)
    assert venue.prices[BTC] == 49_450  # the close becomes the last price


async def test_stale_trigger_without_position_expires(ex, venue):
    await long_position(ex)
    stop = await ex.create_order(BTC, "market", "sell", 0.008, None, {"stopLossPrice": 49_500, "reduceOnly": True})
    await ex.create_order(BTC, "market", "sell", 0.008, None, {"reduceOnly": True})
    assert ex.fill_trigger(stop["id"], 49_500, T0 + HOUR) is None
    assert ex.algo_orders[stop["id"]]["status"] == "expired"


# --- fault injection ---------------------------------------------------------------------------------------------

async def test_fail_next_before_acting(ex):
    ex.fail_next("create_order", ccxt.DDoSProtection("rate"))
    with pytest.raises(ccxt.DDoSProtection):
        await ex.create_order(BTC, "market", "buy", 0.008)
    assert not ex.orders
    await ex.create_order(BTC, "market", "buy", 0.008)  # one fault only
    assert len(ex.orders) == 1


async def test_fail_next_after_acting(ex):
    ex.fail_next("create_order", ccxt.RequestTimeout("lost"), after_effect=True)
    with pytest.raises(ccxt.RequestTimeout):
        await ex.create_order(BTC, "market", "buy", 0.008, None, {"clientOrderId": "c1"})
    assert (await ex.fetch_order(None, BTC, {"clientOrderId": "c1"}))["status"] == "closed"


@pytest.mark.parametrize("method, args", [
    ("fetch_balance", ()), ("fetch_positions", ()), ("fetch_market_leverage_tiers", (BTC,)),
    ("set_leverage", (10, BTC)), ("set_margin_mode", ("isolated", BTC)), ("fetch_open_orders", ()),
    ("fetch_order", ("1", BTC)), ("cancel_order", ("1", BTC)),
])
async def test_fail_next_on_every_method(ex, method, args):
    ex.fail_next(method, RuntimeError("boom"))
    with pytest.raises(RuntimeError, match="boom"):
        await getattr(ex, method)(*args)


def test_repr_holds_no_secret(ex):
    assert repr(ex) == "SimulatedExchange('A', wallet=1000.00)"


# --- order history -----------------------------------------------------------------------------------------------

async def test_finished_orders_are_forgotten_when_binance_would_forget_them(venue, ex):
    """GET /fapi/v1/order finds no CANCELED / EXPIRED order without fills after 3 days, and no order after 90."""
    day = 24 * HOUR
    venue.set_price(BTC, 50_000, T0)
    entry = await long_position(ex)
    stop = await ex.create_order(BTC, "market", "sell", 0.008, None, {"stopLossPrice": 49_000, "reduceOnly": True,
                                                                       "clientOrderId": "sl-1"})
    target = await ex.create_order(BTC, "market", "sell", 0.008, None, {"takeProfitPrice": 51_000,
                                                                         "reduceOnly": True, "trigger": True})
    await ex.cancel_order(target["id"], BTC, {"trigger": True})
    venue.set_price(BTC, 50_000, T0 + 3 * day - 1)
    await ex.create_order(BTC, "market", "buy", 0.002)  # any new order: the look happens then
    assert (await ex.fetch_order(target["id"], BTC, {"trigger": True}))["status"] == "canceled"
    venue.set_price(BTC, 50_000, T0 + 4 * day)
    await ex.create_order(BTC, "market", "buy", 0.002)
    with pytest.raises(ccxt.OrderNotFound, match='"code":-2013'):
        await ex.fetch_order(target["id"], BTC, {"trigger": True})
    assert (await ex.fetch_order(stop["id"], BTC, {"trigger": True}))["status"] == "open"  # open: kept
    venue.set_price(BTC, 50_000, T0 + 91 * day)
    await ex.create_order(BTC, "market", "buy", 0.002)
    with pytest.raises(ccxt.OrderNotFound):
        await ex.fetch_order(None, BTC, {"clientOrderId": "entry-1"})
    assert entry["id"] not in ex.orders and "entry-1" not in ex.by_client_id
    assert (await ex.fetch_order(None, BTC, {"clientOrderId": "sl-1", "trigger": True}))["id"] == stop["id"]
    assert len(ex.orders) == 3  # the three placed in the last 90 days
