"""Experiments (paper Sec. 4, 5, 6, Appendices B and C): a grid of budgets x methods x seeds,
run and resumed as one job, locally or on Ray, with results in one SQLite store."""

from .grid import Run, expand, nearest_single_types
from .methods import DEFAULT_SIGNALS, METHODS, Method, MethodSpec
from .paper import paper_results, paper_sets
from .runner import ExperimentOptions, ExperimentResult, run_experiment
from .spec import ExperimentSpec, load_experiment, parse_experiment, presets
from .store import ExperimentStore, open_experiment

__all__ = ["DEFAULT_SIGNALS", "METHODS", "ExperimentOptions", "ExperimentResult", "ExperimentSpec", "ExperimentStore",
           "Method", "MethodSpec", "Run", "expand", "load_experiment", "nearest_single_types", "open_experiment",
           "paper_results", "paper_sets", "parse_experiment", "presets", "run_experiment"]
