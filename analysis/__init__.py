"""Analysis room: run folders, charts, sizing studies, paper-vs-backtest (reads runs and the journal, trades nothing).

The public surface, used by ``fanout report``, ``fanout backtest`` and the notebooks (``import analysis``):

- run folders (analysis/runs.py, analysis/output.py): :func:`load_run` -> :class:`Run`, :func:`run_backtest`,
  :func:`write_outputs`, :func:`format_table`; the run's candles again: :func:`locate_candles`;
- tables (analysis/tables.py): :func:`account_table`, :func:`symbol_table`, :func:`drawdown`, :func:`skip_category`;
- charts (analysis/charts.py): ``plot_*``, :func:`equity_figure` and :func:`symbols_figure` (per symbol);
- the sizing study (analysis/sizing.py): :func:`sizing_study`; the sizing sweep (analysis/sweep.py): :func:`sweep`
  over a :class:`SweepGrid`, on :func:`local_map` or :func:`ray_map`, drawn by :func:`plot_sweep`;
- paper vs backtest (analysis/paper_vs_backtest.py, analysis/paper_replay.py): :func:`load_paper_records`,
  :func:`compare_fills`, :func:`slippage_by_account`, and the recorded-price stand-in :func:`recorded_price_paper`.
"""

from analysis.charts import (
    SYNTHETIC_NOTE,
    equity_figure,
    plot_drawdown,
    plot_equity,
    plot_per_account,
    plot_sizing,
    plot_slippage,
    plot_sweep,
    plot_symbols,
    plot_trades,
    symbols_figure,
)
from analysis.output import format_symbol_table, format_table, write_outputs
from analysis.paper_replay import RecordedPrices, recorded_price_paper
from analysis.paper_vs_backtest import compare_fills, load_paper_records, slippage_by_account
from analysis.run_candles import CandlesUnavailable, locate_candles
from analysis.runs import Run, RunDirError, load_run, run_backtest
from analysis.sizing import DEFAULT_SIZING_BALANCES, sizing_study
from analysis.sweep import SweepGrid, local_map, ray_map, sweep
from analysis.tables import account_table, drawdown, skip_category, symbol_table

__all__ = [
    "DEFAULT_SIZING_BALANCES", "SYNTHETIC_NOTE", "CandlesUnavailable", "RecordedPrices", "Run", "RunDirError",
    "SweepGrid", "local_map", "plot_sweep", "ray_map", "sweep",
    "account_table", "compare_fills", "drawdown", "equity_figure", "format_symbol_table", "format_table", "load_paper_records",
    "load_run", "locate_candles", "plot_drawdown", "plot_equity", "plot_per_account", "plot_sizing",
    "plot_slippage", "plot_symbols", "plot_trades", "symbols_figure", "recorded_price_paper", "run_backtest", "sizing_study", "skip_category", "symbol_table",
    "slippage_by_account", "write_outputs",
]
