"""The simulated Binance USDⓈ-M exchange, candle replay, the backtest runner and paper fills."""
