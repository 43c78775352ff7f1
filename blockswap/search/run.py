"""The search (paper Sec. 4): sample students under a budget, rank them by Fisher potential on
one shared minibatch, keep the best. Resumable, parallel, optionally faster.

Every scored candidate is committed to the results file as it arrives (`store`), so a
``kill -9`` loses only the candidates in flight and ``resume=True`` continues without
re-scoring. Optional two-round searches: successive halving (`SearchConfig.halving`) ranks
everything on a slice of the minibatch (stage "slice"), then rescores only the top fraction on
the whole minibatch; the screened search (`SearchConfig.screen`) generalises it (stage "screen":
a slice, optionally in bf16; then the top k in float32 on the whole minibatch). The winner is
always the best float32 whole-minibatch score (stage "full").

Outputs in the run folder: ``results.sqlite`` (every candidate), ``winner.json`` (the genotype),
``top.json`` (the top-k), ``candidates.csv`` (all candidates) and ``run.json`` (the run record).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import BlockSwapError
from ..files import FileFormat, atomic_write_json, atomic_write_text, versions
from ..outdir import RunFolder, claim_folder
from ..proxies.execution import cpu_has_bf16
from ..progress import progress
from ..seeding import derive_seed
from ..space.costs import CostTable
from ..space.genotype import Genotype
from .config import RunOptions, SearchConfig
from .executors import executor
from .sampler import sample_genotypes
from .scorer import ScoringData, candidate_seed, scoring_data
from .store import RESULTS_FILE, SCORING_VERSION, Candidate, ResultStore, candidates_csv

SEARCH_RECORD = FileFormat("blockswap.search-run", 1, "BlockSwap search record")  # run.json of a search
TOP_FILE = FileFormat("blockswap.search-top", 1, "BlockSwap top-k list")  # top.json
SEARCH_FOLDER = RunFolder("search", RESULTS_FILE, (RESULTS_FILE, "winner.json", "top.json", "candidates.csv", "run.json"),
                          companions=(f"{RESULTS_FILE}-wal", f"{RESULTS_FILE}-shm"))


@dataclass
class SearchResult:
    """The outcome of `run_search`."""

    best: Genotype
    params: int
    macs: int
    score: float
    signal: str
    scored: int  # candidates with a full-minibatch score
    scored_now: int  # full-minibatch scores computed by this invocation (the rest came from the results file)
    seconds: float  # wall time of this invocation
    top: list[dict[str, Any]]
    sampling: dict[str, Any]
    out: Path
    timings: dict[str, float] = field(default_factory=dict)
    slice_scored: int = 0  # halving / screen: candidates ranked in round one
    slice_scored_now: int = 0  # halving / screen: round-one scores computed by this invocation

    def summary(self) -> dict[str, Any]:
        return {"best": self.best.text, "network": self.best.network, "params": self.params,
                "macs": self.macs, "score": self.score, "signal": self.signal, "scored": self.scored,
                "scored_now": self.scored_now, "scored_slice": self.slice_scored,
                "scored_slice_now": self.slice_scored_now, "seconds": self.seconds, "acceptance": self.sampling["acceptance"],
                "rare": self.sampling["rare"], "out": str(self.out), "winner": str(self.out / "winner.json"),
                "top": self.top}


def run_search(config: SearchConfig, out: "str | Path", *, resume: bool = False, overwrite: bool = False,
               run: RunOptions = RunOptions(), log: Callable[[str], None] | None = None) -> SearchResult:
    """Run (or with `resume`, continue) a search, writing its files to folder `out`.

    A folder that holds a search is refused unless `resume` (continue it) or `overwrite`
    (delete its results first); the folder is locked while the search writes (`outdir`).
    """
    started = time.perf_counter()
    _check_arguments(config, out, run, log, resume=resume, overwrite=overwrite)
    say = log or (lambda _msg: None)
    config = config.with_latency_table()  # the edge: the config reads no file itself
    run.proxy_options(config)  # validates checkpoint with micro_batch before any work
    _warn_emulated_bf16(config, run, say)
    with claim_folder(out, SEARCH_FOLDER, resume=resume, overwrite=overwrite) as out:
        path = out / RESULTS_FILE
        holds = _holds_search(path)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        data = scoring_data(config)  # first: bad data fails before anything is written
        timings["data"] = time.perf_counter() - t0
        # A new search samples before its results file exists, so an impossible budget writes nothing.
        sampled = None if holds else _sample(config, timings, say, data.num_classes)
        with ResultStore(path) as store:
            if sampled is None:
                _check_resumable(store, config)
                sampling = store.get_meta("sampling")
                say(f"resuming {path}: " + ", ".join(
                    f"{len(store.scores(stage))} of {total} {what} already computed"
                    for stage, what, total in _stages(config)))
            else:
                sampling, rows = sampled
                store.start(config, sampling, rows)
            try:
                if sampling["rare"]:
                    say(f"note: acceptance {sampling['acceptance']:.2e} is below {config.min_acceptance:g}: "
                        "the budget is reachable but rare for these candidates")
                _check_scoring_version(store, config)
                t0 = time.perf_counter()
                scored_now = _score_all(store, config, run, data)
                timings["scoring"] = time.perf_counter() - t0
                return _finish(store, config, run, sampling, out, scored_now, timings, started)
            except BaseException:
                if sampled is not None and not any(store.scores(stage) for stage, _, _ in _stages(config)):
                    store.close()  # a new search that scored nothing leaves nothing to block a rerun
                    for name in (RESULTS_FILE, *SEARCH_FOLDER.companions):
                        (out / name).unlink(missing_ok=True)
                raise


def _check_arguments(config: Any, out: Any, run: Any, log: Any, **flags: Any) -> None:
    """`run_search`'s arguments, each named in a one-line error (not an AttributeError deep inside)."""
    if not isinstance(config, SearchConfig):
        hint = (" (build one: SearchConfig(**settings) or SearchConfig.from_dict(settings))"
                if isinstance(config, dict) else "")
        raise BlockSwapError(f"run_search: config must be a SearchConfig, got {type(config).__name__}{hint}")
    if not isinstance(out, (str, os.PathLike)) or not str(out):
        raise BlockSwapError(f"run_search: out must be a folder path (str or Path), got {out!r}")
    if not isinstance(run, RunOptions):
        raise BlockSwapError(f"run_search: run must be a RunOptions, got {type(run).__name__}")
    if log is not None and not callable(log):
        raise BlockSwapError(f"run_search: log must be a function of one message or None, got {log!r}")
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise BlockSwapError(f"run_search: {name} must be True or False, got {value!r}")


def _stages(config: SearchConfig) -> list[tuple[str, str, int]]:
    """(stage, what it is, how many) of each round of scoring."""
    if config.first_stage is None:
        return [("full", "candidates scored", config.samples)]
    return [(config.first_stage, f"{config.first_stage} scores ({config.slice_size} examples, "
             f"{config.first_precision})", config.samples),
            ("full", "full-minibatch rescores", config.keep)]


_WARNED_BF16 = []  # once per process: a CPU without bf16 instructions


def _warn_emulated_bf16(config: SearchConfig, run: RunOptions, say: Callable[[str], None]) -> None:
    """bf16 screening is allowed on any CPU; where it has no bf16 instructions, oneDNN emulates
    them, which gives the same kind of values but may be slower than float32: said once."""
    if config.first_precision != "bf16" or not run.device.startswith("cpu") or cpu_has_bf16() or _WARNED_BF16:
        return
    _WARNED_BF16.append(True)
    say("warning: this CPU has no avx512_bf16/amx_bf16 instructions: bf16 screening is emulated and "
        "may be slower than --screen-precision float32")


def _holds_search(path: Path) -> bool:
    """Whether `path` is a results file of a started search (not absent, not left empty)."""
    if not path.exists():
        return False
    with ResultStore(path) as store:
        return store.started()


def _check_resumable(store: ResultStore, config: SearchConfig) -> None:
    """Only settings that change results must match, compared as parsed values (a budget of
    ``30k`` is one of ``30000``); run options (executor, threads, ...) may differ."""
    stored = store.config()
    shown_old, shown_new = stored.to_dict(), config.to_dict()
    diff = [f"{f.name}={shown_old[f.name]!r} (now {shown_new[f.name]!r})" for f in fields(SearchConfig)
            if f.compare and f.init and getattr(stored, f.name) != getattr(config, f.name)]
    if stored.latency_table_sha256 != (config.latency.sha256() if config.latency else None):
        diff.append(f"the latency table's content (sha256 {str(stored.latency_table_sha256)[:12]}, now "
                    f"{config.latency_table!r} with {config.latency.sha256()[:12] if config.latency else 'none'})")
    if diff:
        raise BlockSwapError(f"{store.path} holds a search with other settings: {'; '.join(diff)}; "
                             "resume with the same settings or use another output folder")


def _check_scoring_version(store: ResultStore, config: SearchConfig) -> None:
    """A store scored by another arithmetic may be re-exported, not extended."""
    stored = store.get_meta("scoring")
    if stored == SCORING_VERSION or len(store.scores("full")) >= config.samples:
        return
    raise BlockSwapError(
        f"{store.path} was scored by BlockSwap 0.1, whose channels-last Fisher potentials differ from "
        f"this version's by up to 3e-3 per block; new scores would be ranked against old ones. "
        "Start a new search in another output folder (or finish this one with BlockSwap 0.1)")


def _sample(config: SearchConfig, timings: dict[str, float], say: Callable[[str], None],
            num_classes: int) -> tuple[dict[str, Any], list[Candidate]]:
    """Rejection-sample the candidates: (sampling summary, candidate rows). Costs count the
    network the task's budget counts (`Task.counted_spec`): a classifier of the data's
    `num_classes` (the network the student will be), or a detector's backbone."""
    t0 = time.perf_counter()
    if config.latency_table_sha256 is not None and config.latency is None:
        raise BlockSwapError(f"latency table {config.latency_table!r} is missing or is not the recorded one "
                             f"(sha256 {config.latency_table_sha256[:12]}...)")
    spec = config.task.counted_spec(config.spec.with_classes(num_classes))
    table = CostTable(spec, config.candidates, config.spec_input_size, latency=config.latency)
    rng = np.random.default_rng(derive_seed(config.seed, "sampler"))
    report = sample_genotypes(table, config.budget, config.samples, rng,
                              min_acceptance=config.min_acceptance, max_draws=config.max_draws)
    params, macs = table.totals(report.choices, "params"), table.totals(report.choices, "macs")
    rows = []
    for i, choice in enumerate(report.choices):
        text = ",".join(config.candidates[j].name for j in choice)
        rows.append(Candidate(i, text, int(params[i]), int(macs[i]), candidate_seed(config, text)))
    summary = report.summary()
    if config.latency is not None:  # predicted seconds of every candidate, in index order
        summary["predicted_latency_s"] = [float(v) for v in table.totals(report.choices, "latency")]
    timings["sampling"] = time.perf_counter() - t0
    say(f"{config.samples} genotypes within {config.budget} from {report.draws:,} proposals "
        f"(acceptance {report.acceptance:.2%}, {timings['sampling']:.1f} s, no network built)")
    return summary, rows


def _score_all(store: ResultStore, config: SearchConfig, run: RunOptions, data: ScoringData) -> dict[str, int]:
    """Score every candidate not yet in the results file (both rounds when halving or
    screening); returns the scores computed now, {"first": round one, "full": the float32 stage}."""
    first = config.first_stage
    scored_now = {"first": 0, "full": 0}
    cands = store.candidates()
    with contextlib.ExitStack() as stack:
        run_tasks = None
        for stage in ("full",) if first is None else (first, "full"):
            todo_cands = cands
            if stage == "full" and first is not None:
                keep = set(store.ranked(first)[:config.keep])
                todo_cands = [c for c in cands if c.index in keep]
            done = store.scores(stage)
            todo = [(c.index, c.genotype, stage) for c in todo_cands if c.index not in done]
            if not todo:
                continue
            if run_tasks is None:
                run_tasks = stack.enter_context(executor(run, config, data))
            desc = "scoring" if stage == "full" else f"{stage} {config.slice_size} {config.first_precision}"
            with progress(len(todo_cands), desc, "cand", enabled=run.progress,
                          initial=len(todo_cands) - len(todo)) as bar:
                for row in run_tasks(todo):
                    store.add(row)
                    scored_now["full" if stage == "full" else "first"] += 1
                    bar.update(1)
    return scored_now


def _finish(store: ResultStore, config: SearchConfig, run: RunOptions, sampling: dict[str, Any], out: Path,
            scored_now: dict[str, int], timings: dict[str, float], started: float) -> SearchResult:
    full = store.scores("full")
    slice_scores = store.scores(config.first_stage) if config.first_stage else {}
    by_index = {c.index: c for c in store.candidates()}
    top = []
    signal = config.rank_by  # a signal, or an aggregate whose score is the candidate's mean rank
    score = {i: r["score"] for i, r in full.items()} if signal == config.rank_signal \
        else signal.scores({i: r["signals"] for i, r in full.items()})
    for rank, idx in enumerate(store.ranked("full")[:run.top_k], start=1):
        c = by_index[idx]
        top.append({"rank": rank, "index": idx, "genotype": c.genotype, "params": c.params, "macs": c.macs,
                    "score": score[idx], "signals": full[idx]["signals"], "seed": c.seed})
    best = top[0]
    geno = Genotype.from_text(best["genotype"], config.spec)
    geno.save(out / "winner.json", signal=signal.name, score=best["score"], params=best["params"],
              macs=best["macs"], seed=best["seed"], search=str(out))
    atomic_write_json(out / "top.json", {**TOP_FILE.stamp(), "signal": signal.name,
                                         "higher_is_better": signal.higher_is_better, "top": top})
    atomic_write_text(out / "candidates.csv", candidates_csv(store))
    seconds = time.perf_counter() - started
    timings["total"] = seconds
    timings["candidate_seconds_sum"] = float(sum(
        r["seconds"] for r in itertools.chain(full.values(), slice_scores.values())))
    atomic_write_json(out / "run.json", {
        **SEARCH_RECORD.stamp(), "command": "search", "config": config.to_dict(),
        "seed": config.seed, "run": asdict(run), "versions": versions(), "sampling": sampling,
        "winner": {"genotype": geno.text, "params": best["params"], "macs": best["macs"],
                   "score": best["score"], "signal": signal.name, "seed": best["seed"],
                   **({"predicted_latency_s": config.latency.predict(geno.blocks)} if config.latency else {})},
        "scored": len(full), "scored_slice": len(slice_scores), "scored_now": scored_now["full"],
        "scored_slice_now": scored_now["first"],
        "timings": timings, "fisher_exact": config.micro_batch is None,
        "files": {"results": RESULTS_FILE, "winner": "winner.json", "top": "top.json",
                  "candidates": "candidates.csv"}})
    return SearchResult(geno, best["params"], best["macs"], best["score"], signal.name, len(full),
                        scored_now["full"], seconds, top, sampling, out, timings,
                        slice_scored=len(slice_scores), slice_scored_now=scored_now["first"])
