"""Tests room: a local Binance USDⓈ-M stand-in HTTP server, used only to record vcrpy cassettes."""
