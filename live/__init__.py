"""Live room: real accounts (env / database loading), the ccxt Binance USDⓈ-M adapter and Discord alerts."""
