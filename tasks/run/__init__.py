"""A run: the Prefect tasks the flows call and the bookkeeping behind them (claims, run rows, discovery, windows
through the stages, fan-out, the device concurrency limit, scratch folders, the run report)."""
