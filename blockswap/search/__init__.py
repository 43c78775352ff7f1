"""BlockSwap search (paper Sec. 4): budgeted sampling, one-minibatch scoring, a resumable store.

Data flows one way: `sampler` (costs only, no network) -> `scorer` (build, score) -> `store`
(SQLite, committed per candidate) -> `run` (ranking, exported files), with `executors`
fanning the scoring out over processes or a Ray cluster.
"""

from .config import EXECUTORS, RunOptions, SearchConfig, default_workers
from .run import SearchResult, run_search
from .sampler import SampleReport, sample_genotypes
from .scorer import Job, Scorer, ScoringData, candidate_seed, scoring_data
from ..tasks import ScoreRow
from .store import RESULTS_FILE, Candidate, ResultStore, candidates_csv, open_search

__all__ = ["EXECUTORS", "RESULTS_FILE", "Candidate", "Job", "ResultStore", "RunOptions", "SampleReport", "ScoreRow",
           "Scorer", "ScoringData", "SearchConfig", "SearchResult", "candidate_seed", "candidates_csv",
           "default_workers", "open_search", "run_search", "sample_genotypes", "scoring_data"]
