"""Tables and plots of results: searches (read from their results file) and training runs
(``record.json``). Plots use matplotlib's Agg backend and are written atomically."""

from .plots import pyplot, save_figure
from .runs import load_records, method, plot_runs, run_groups
from .search import SearchTable, plot_search, search_table
from .table import format_table

__all__ = ["SearchTable", "format_table", "load_records", "method", "plot_runs", "plot_search", "pyplot",
           "run_groups", "save_figure", "search_table"]
