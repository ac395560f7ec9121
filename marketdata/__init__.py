"""Market-data room: candles (load, validate, resample, gaps), downloads and the cache, market-rule snapshots (no accounts)."""
