"""BlockSwap search (paper Sec. 4; SPEC, Search): sample students under a budget, rank them by
Fisher potential on one shared minibatch, keep the best. Resumable, parallel, optionally faster.

1. `sample_genotypes`: rejection sampling on the analytic cost tables (`cost.CostTable`), each
   block's type uniform over the candidates that fit its position; no network is built. A budget
   outside the reachable range fails at once; a reachable but rare one is reported.
2. `Scorer`: builds each candidate from a seed derived from (run seed, network, genotype), so a
   score is reproducible on its own, and computes the ranking signals (`fisher.PROXIES`) on the
   same cached minibatch for every candidate.
3. `run_search`: fans the candidates out over an executor (in-process, local processes, or a Ray
   cluster) and commits every score to a SQLite results file as soon as it arrives, so a
   `kill -9` loses only the candidates in flight and ``resume=True`` continues without
   re-scoring. Optional successive halving (`SearchConfig.halving`): rank everything on a slice
   of the minibatch, then rescore only the top fraction on the whole minibatch.

Outputs in the run folder: ``results.sqlite`` (every candidate), ``winner.json`` (the genotype),
``top.json`` (the top-k), ``candidates.csv`` (all candidates) and ``run.json`` (the run record).
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import math
import os
import sqlite3
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from .blocks import parse_candidates
from .cost import Budget, CostTable, format_count, parse_budget
from .data import load_split, parse_data
from .errors import BlockSwapError, choices
from .files import atomic_write_json, atomic_write_text, versions
from .fisher import FisherPotential, ProxyOptions, parse_signal
from .genotype import Genotype
from .models import build_model, network_spec
from .seeding import seed_from, torch_seed

RESULTS_FILE = "results.sqlite"
RUN_FORMAT = "blockswap.search-run"
RUN_VERSION = 1


def derive_seed(run_seed: int, *parts: str) -> int:
    """A 63-bit seed from the run seed and labels; the same in every process and on every machine."""
    return seed_from(json.dumps([int(run_seed), *parts]))


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchConfig:
    """What a search computes. Two searches with equal configs give the same candidates and the
    same scores (bit for bit at equal torch threads per scorer, whatever the executor).

    Defaults follow the paper (Sec. 4): 1000 samples within +-2.5% of the budget, one minibatch
    of the training batch size (128 on CIFAR), ranked by Fisher potential.
    """

    model: str = "wrn-40-2"  # network whose blocks are swapped (SPEC, Networks)
    budget: str = "800k"  # parameters ("800k") or MACs per image ("macs=90M")
    tolerance: float = 0.025  # accept cost within budget * (1 +- tolerance); authors: 2.5%
    candidates: str | None = None  # comma-separated block types; None: the paper's 23
    samples: int = 1000  # distinct accepted genotypes to score (paper Sec. 4.3: 1000)
    data: str = "synthetic"  # cifar10:PATH, cifar100:PATH, imagenet:PATH, digits, synthetic
    batch_size: int = 128  # the Fisher minibatch = the training batch size (paper Sec. 4)
    seed: int = 0  # the run seed: sampling, the minibatch and every candidate's init derive from it
    signals: tuple[str, ...] = ("fisher",)  # signals to record; the first one ranks
    augment: bool = False  # False: un-augmented training images (the authors' loader crops+flips)
    input_size: int | None = None  # None: the model's (32 for WRN, 224 for ResNet)
    halving: bool = False  # successive halving: slice first, then the full minibatch for the top
    halving_slice: float = 0.25  # fraction of the minibatch used in the first round
    halving_keep: float = 0.1  # fraction of candidates rescored on the full minibatch
    checkpoint: bool = False  # recompute blocks in the backward pass: less memory, same value
    micro_batch: int | None = None  # APPROXIMATE: BN statistics per chunk of this many examples
    channels_last: bool = True  # NHWC memory format: faster convs on CPU (oneDNN) and tensor cores
    min_acceptance: float = 1e-3  # below this acceptance rate the budget is reported as rare
    max_draws: int = 20_000_000  # give up after this many proposals (never loop forever)

    def __post_init__(self) -> None:
        object.__setattr__(self, "signals", tuple(parse_signal(s).name for s in self.signals))
        if not self.signals:
            raise BlockSwapError("give at least one ranking signal, e.g. fisher")
        object.__setattr__(self, "model", network_spec(self.model).name)
        self.budget_value  # validates budget and tolerance
        object.__setattr__(self, "data", str(parse_data(self.data)))
        for name in ("samples", "batch_size", "max_draws"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise BlockSwapError(f"{name} must be a positive integer, got {value!r}")
        if self.batch_size < 2:
            raise BlockSwapError("batch_size must be at least 2 (train-mode BN needs two examples)")
        for name in ("halving_slice", "halving_keep"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise BlockSwapError(f"{name} must be in (0, 1], got {value!r}")
        if self.halving and self.slice_size < 2:
            raise BlockSwapError(f"halving slice of {self.halving_slice} x {self.batch_size} examples "
                                 "is below 2; raise halving_slice or batch_size")
        if not 0 <= self.min_acceptance < 1:
            raise BlockSwapError(f"min_acceptance must be in [0, 1), got {self.min_acceptance!r}")
        ProxyOptions(checkpoint=self.checkpoint, micro_batch=self.micro_batch)
        if self.candidates is not None:
            object.__setattr__(self, "candidates", ",".join(b.name for b in parse_candidates(self.candidates)))

    @property
    def budget_value(self) -> Budget:
        return parse_budget(self.budget, self.tolerance)

    @property
    def rank_signal(self):
        return parse_signal(self.signals[0])

    @property
    def slice_size(self) -> int:
        return max(2, round(self.halving_slice * self.batch_size)) if self.halving_slice < 1 else self.batch_size

    @property
    def keep(self) -> int:
        """Candidates rescored on the whole minibatch in halving mode."""
        return max(1, math.ceil(self.halving_keep * self.samples))

    @property
    def steps(self) -> int:
        """Minibatches the signals need (k of the "@k" training signals)."""
        return max(parse_signal(s).steps for s in self.signals)

    @property
    def proxy_options(self) -> ProxyOptions:
        return ProxyOptions(checkpoint=self.checkpoint, micro_batch=self.micro_batch)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SearchConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known})


EXECUTORS = ("local", "process", "ray")


@dataclass(frozen=True)
class RunOptions:
    """How a search runs; none of it changes which candidate wins."""

    # local: this process (no start-up cost); process: spawned worker processes whose OpenMP
    # threads spin only briefly (WORKER_ENV), robust when the cores are shared (the CLI's
    # default; a script must then guard its entry point with `if __name__ == "__main__":`);
    # ray: a Ray cluster.
    executor: str = "local"
    workers: int = 1  # worker processes or Ray actors (process / ray executors)
    address: str | None = None  # Ray cluster address ("auto", "ray://host:10001"); None: a local Ray
    threads: int | None = None  # torch threads per scorer; None: this process's threads / workers
    device: str = "cpu"  # torch device for scoring ("cpu", "cuda", "cuda:1", "mps")
    progress: bool = True  # a progress bar on stderr
    top_k: int = 10  # runner-ups kept in top.json and the final table

    @property
    def scorer_threads(self) -> int:
        return self.threads or max(1, torch.get_num_threads() // self.workers)

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise BlockSwapError(f"unknown executor {self.executor!r}; valid executors: {choices(EXECUTORS)}")
        for name in ("workers", "top_k"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise BlockSwapError(f"{name} must be a positive integer, got {value!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise BlockSwapError(f"threads must be a positive integer, got {self.threads!r}")
        if self.address is not None and self.executor != "ray":
            raise BlockSwapError("a cluster address only applies to the ray executor (add --executor ray)")
        try:
            torch.device(self.device)
        except RuntimeError:
            raise BlockSwapError(f"unknown device {self.device!r}; e.g. cpu, cuda, cuda:1, mps") from None


# --------------------------------------------------------------------------------------------
# 1. Budgeted rejection sampling (no network is built)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleReport:
    """Accepted genotypes (candidate indices, in acceptance order) and how hard they were to find."""

    choices: np.ndarray  # (accepted, blocks) indices into the candidate list
    draws: int  # proposals drawn
    in_window: int  # proposals within the budget window (duplicates included)
    feasible: tuple[int, int]  # smallest and largest reachable cost
    rare: bool  # acceptance below the configured threshold

    @property
    def acceptance(self) -> float:
        return self.in_window / self.draws if self.draws else 0.0

    def summary(self) -> dict[str, Any]:
        return {"accepted": len(self.choices), "draws": self.draws, "in_window": self.in_window,
                "acceptance": self.acceptance, "feasible": list(self.feasible), "rare": self.rare}


def sample_genotypes(table: CostTable, budget: Budget, n: int, rng: np.random.Generator, *,
                     unique: bool = True, min_acceptance: float = 1e-3,
                     max_draws: int = 20_000_000, chunk: int = 1 << 16) -> SampleReport:
    """Draw genotypes, each block's type uniform over the candidates valid there, until `n` fall
    within `budget` (distinct ones if `unique`). Vectorised over chunks of proposals.

    Fails at once with the feasible range when the window cannot be reached; fails with the
    measured acceptance when `n` acceptances would need more than `max_draws` proposals.
    """
    metric = budget.metric
    low, high = table.range(metric)
    where = f"{table.spec.name} with {choices([c.name for c in table.candidates], limit=6)}"
    if budget.upper < low or budget.lower > high:
        raise BlockSwapError(
            f"budget {budget} ({format_count(budget.lower)}..{format_count(budget.upper)} {metric}) is outside "
            f"what {where} can reach: {format_count(low)}..{format_count(high)} {metric} ({low:,}..{high:,})")
    valid_counts = table.valid.sum(axis=1)  # (blocks,)
    # lookup[i, r] = the r-th valid candidate at block i (padding never indexed)
    lookup = np.zeros(table.valid.shape, dtype=np.int64)
    for i, row in enumerate(table.valid):
        idx = np.flatnonzero(row)
        lookup[i, :idx.size] = idx
    positions = np.arange(table.valid.shape[0])
    accepted: list[np.ndarray] = []
    seen: set[bytes] = set()
    draws = in_window = 0
    while len(accepted) < n:
        if draws >= max_draws:
            break
        size = min(chunk, max_draws - draws)
        ranks = rng.integers(0, valid_counts, size=(size, positions.size))
        proposal = lookup[positions[None, :], ranks]
        hits = proposal[budget.contains(table.totals(proposal, metric))]
        draws += size
        in_window += len(hits)
        for row in hits:
            if len(accepted) == n:
                break
            key = row.tobytes()
            if unique and key in seen:
                continue
            seen.add(key)
            accepted.append(row)
        rate = in_window / draws
        if len(accepted) < n and rate > 0 and draws + (n - len(accepted)) / rate > 2 * max_draws:
            break  # hopeless: fail now instead of after max_draws proposals
        if unique and in_window > 50 * n:
            break  # so many hits and still too few distinct ones: the window holds fewer than n
    rate = in_window / draws
    if len(accepted) < n and unique and in_window > 50 * n:
        raise BlockSwapError(
            f"only {len(accepted)} distinct genotypes of {where} fit budget {budget} ({in_window:,} hits in "
            f"{draws:,} proposals), {n} asked; ask fewer samples or widen the tolerance")
    if len(accepted) < n:
        found = "distinct " if unique else ""
        raise BlockSwapError(
            f"budget {budget} is reachable by {where} but rare: {in_window:,} of {draws:,} proposals "
            f"({rate:.2e}) fell in the window and {len(accepted)} {found}genotypes were found, "
            f"{n} asked; widen the tolerance, ask fewer samples, or change the candidates")
    return SampleReport(np.stack(accepted), draws, in_window, (low, high), rate < min_acceptance)


# --------------------------------------------------------------------------------------------
# 2. Scoring one candidate (in any process)
# --------------------------------------------------------------------------------------------

Task = tuple[int, str, str]  # (candidate index, genotype text, stage "full" or "slice")


def candidate_seed(config: SearchConfig, genotype_text: str) -> int:
    """The initialisation seed of one candidate: a function of the run seed and the genotype only."""
    return derive_seed(config.seed, "init", config.model, genotype_text)


class Scorer:
    """Scores candidates of one search on its cached minibatch(es).

    Made once per process (in the main process, a worker process or a Ray actor); the
    minibatch tensors are converted to the scoring layout once and reused for every candidate.
    """

    def __init__(self, config: SearchConfig, batches: Sequence[tuple[Any, Any]], device: str = "cpu",
                 threads: int | None = None):
        if threads is not None:
            torch.set_num_threads(threads)
        self.config = config
        self.device = torch.device(device)
        self.num_classes = parse_data(config.data).num_classes
        self.memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        self.batches = [(torch.as_tensor(x).to(self.device).contiguous(memory_format=self.memory_format),
                         torch.as_tensor(y).to(self.device)) for x, y in batches]
        m = config.slice_size
        self.slice = [(self.batches[0][0][:m], self.batches[0][1][:m])]
        self.signals = [parse_signal(s) for s in config.signals]
        self.options = config.proxy_options

    def build(self, genotype_text: str) -> torch.nn.Module:
        """The candidate at initialisation, from its own seed; the global RNG is left untouched.

        Built on the CPU, then moved, so the initial weights do not depend on the device.
        """
        with torch_seed(candidate_seed(self.config, genotype_text)):
            model = build_model(self.config.model, genotype_text, self.num_classes)
        return model.to(self.device, memory_format=self.memory_format)

    def score(self, task: Task) -> dict[str, Any]:
        index, genotype_text, stage = task
        start = time.perf_counter()
        signals = self.signals[:1] if stage == "slice" else self.signals
        batches = self.slice if stage == "slice" else self.batches
        values: dict[str, float] = {}
        per_block: list[float] = []
        for signal in signals:
            # Every signal gets its own fresh copy of the same initial network.
            result = signal(self.build(genotype_text), batches, self.options)
            if isinstance(result, FisherPotential):
                per_block = list(result.per_block)
                result = result.total
            values[signal.name] = float(result)
        return {"index": index, "stage": stage, "score": values[self.signals[0].name], "signals": values,
                "per_block": per_block, "seconds": time.perf_counter() - start}


# --------------------------------------------------------------------------------------------
# Executors: each yields a function mapping tasks to result rows as they complete
# --------------------------------------------------------------------------------------------

RunTasks = Callable[[Iterable[Task]], Iterator[dict[str, Any]]]


@contextlib.contextmanager
def _local_executor(run: RunOptions, config: SearchConfig, batches) -> Iterator[RunTasks]:
    previous = torch.get_num_threads()
    scorer = Scorer(config, batches, run.device, run.threads)
    try:
        yield lambda tasks: (scorer.score(t) for t in tasks)
    finally:
        torch.set_num_threads(previous)


_WORKER_SCORER: Scorer | None = None


def _init_worker(config: SearchConfig, batches, device: str, threads: int) -> None:
    global _WORKER_SCORER
    _exit_with_parent()
    _WORKER_SCORER = Scorer(config, batches, device, threads)


def _exit_with_parent(interval: float = 1.0) -> None:
    """End this worker when the search process dies (e.g. ``kill -9``): an orphaned worker would
    otherwise wait for tasks forever, holding its memory."""
    import threading

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="blockswap-parent-watch").start()


def _score_in_worker(task: Task) -> dict[str, Any]:
    assert _WORKER_SCORER is not None, "worker not initialised"
    return _WORKER_SCORER.score(task)


def _bounded(submit: Callable[[Task], Any], tasks: Iterable[Task], window: int,
             wait_one: Callable[[set], tuple[list, set]], result: Callable[[Any], dict]) -> Iterator[dict]:
    """Keep at most `window` tasks in flight (a kill loses only those); yield rows as they finish."""
    todo = iter(tasks)
    pending = {submit(t) for t in itertools.islice(todo, window)}
    while pending:
        done, pending = wait_one(pending)
        for handle in done:
            yield result(handle)
            for t in itertools.islice(todo, 1):
                pending.add(submit(t))


# OpenMP threads that spin long while waiting stall every op when the cores are shared: on a
# 2-core machine running other jobs, libgomp's default spin made 2 threads 6x slower than 1.
# Seconds per WRN-40-2 candidate (batch 128 / slice 32, 2 threads), idle -> beside 2 busy
# loops: default 0.58 / 0.16 -> (6.0 / - beside another job); OMP_WAIT_POLICY=PASSIVE 0.69 /
# 0.25 -> 1.40 / 0.44; GOMP_SPINCOUNT=10000 0.62 / 0.17 -> 1.52 / 0.66: near the best in both.
# Workers start a fresh OpenMP runtime, so they get this unless the user set it.
WORKER_ENV = {"GOMP_SPINCOUNT": "10000"}


@contextlib.contextmanager
def _worker_env() -> Iterator[dict[str, str]]:
    """WORKER_ENV in os.environ while workers start (spawned children copy it), then restored."""
    added = {k: v for k, v in WORKER_ENV.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield added
    finally:
        for k in added:
            os.environ.pop(k, None)


@contextlib.contextmanager
def _process_executor(run: RunOptions, config: SearchConfig, batches) -> Iterator[RunTasks]:
    import multiprocessing

    # spawn, not fork: forking a process whose OpenMP pool is running can deadlock the child.
    pool = ProcessPoolExecutor(run.workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker,
                               initargs=(config, batches, run.device, run.scorer_threads))
    env = contextlib.ExitStack()
    env.enter_context(_worker_env())  # the pool spawns its workers at the first submissions

    def wait_one(pending):
        done, rest = wait(pending, return_when=FIRST_COMPLETED)
        return list(done), rest

    try:
        yield lambda tasks: _bounded(lambda t: pool.submit(_score_in_worker, t), tasks, 2 * run.workers,
                                     wait_one, lambda f: f.result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        env.close()


@contextlib.contextmanager
def _ray_executor(run: RunOptions, config: SearchConfig, batches) -> Iterator[RunTasks]:
    try:
        import ray
    except ImportError:
        raise BlockSwapError("the ray executor needs Ray: pip install 'blockswap[ray]'") from None
    threads = run.scorer_threads
    started = not ray.is_initialized()
    if started:
        try:
            if run.address is None:  # a private local instance, sized to the workers asked for
                ray.init(num_cpus=run.workers * threads, include_dashboard=False, log_to_driver=False,
                         configure_logging=False)
            else:
                ray.init(address=run.address, log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise BlockSwapError(f"cannot start or reach Ray at {run.address or 'a local instance'}: "
                                 f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    actor_class = ray.remote(num_cpus=threads, runtime_env={"env_vars": {
        **{k: v for k, v in WORKER_ENV.items() if k not in os.environ}, "OMP_NUM_THREADS": str(threads)}})(Scorer)
    shared = ray.put(batches)
    actors = [actor_class.remote(config, shared, run.device, threads) for _ in range(run.workers)]
    idle = list(actors)
    owner: dict[Any, Any] = {}

    def submit(task):
        actor = idle.pop()
        ref = actor.score.remote(task)
        owner[ref] = actor
        return ref

    def wait_one(pending):
        done, rest = ray.wait(list(pending), num_returns=1)
        for ref in done:
            idle.append(owner.pop(ref))
        return done, set(rest)

    try:
        yield lambda tasks: _bounded(submit, tasks, run.workers, wait_one, ray.get)
    finally:
        for actor in actors:
            ray.kill(actor)
        if started:
            ray.shutdown()


_EXECUTORS = {"local": _local_executor, "process": _process_executor, "ray": _ray_executor}


# --------------------------------------------------------------------------------------------
# 3. The results file: one row per scored candidate, committed as it arrives
# --------------------------------------------------------------------------------------------


class ResultStore:
    """A SQLite results file: the run's config and sampling, the candidates, and their scores.

    Write-ahead logging; every score is its own transaction, so a crash or ``kill -9`` loses
    only candidates that were still being scored.
    """

    SCHEMA = """
        CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS candidates (
            idx INTEGER PRIMARY KEY, genotype TEXT NOT NULL UNIQUE, params INTEGER NOT NULL,
            macs INTEGER NOT NULL, seed INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS scores (
            idx INTEGER NOT NULL REFERENCES candidates(idx), stage TEXT NOT NULL, score REAL,
            signals TEXT NOT NULL, per_block TEXT NOT NULL, seconds REAL NOT NULL,
            PRIMARY KEY (idx, stage));
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.db = sqlite3.connect(self.path)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # durable against process crashes
            self.db.executescript(self.SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise BlockSwapError(f"cannot open results file {str(self.path)!r}: {exc}") from None

    def close(self) -> None:
        self.db.close()

    def get_meta(self, key: str) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def started(self) -> bool:
        return self.get_meta("config") is not None

    def start(self, config: SearchConfig, sampling: dict[str, Any], rows: list[tuple]) -> None:
        with self.db:
            self.db.executemany("INSERT INTO candidates VALUES (?, ?, ?, ?, ?)", rows)
            self.db.executemany("INSERT INTO meta VALUES (?, ?)", [
                ("config", json.dumps(config.to_dict())), ("sampling", json.dumps(sampling)),
                ("versions", json.dumps(versions()))])

    def candidates(self) -> list[tuple[int, str, int, int, int]]:
        return self.db.execute("SELECT idx, genotype, params, macs, seed FROM candidates ORDER BY idx").fetchall()

    def add(self, row: dict[str, Any]) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?, ?, ?)", (
                row["index"], row["stage"], row["score"], json.dumps(row["signals"]),
                json.dumps(row["per_block"]), row["seconds"]))

    def scores(self, stage: str) -> dict[int, dict[str, Any]]:
        out = {}
        for idx, score, signals, per_block, seconds in self.db.execute(
                "SELECT idx, score, signals, per_block, seconds FROM scores WHERE stage = ?", (stage,)):
            out[idx] = {"score": score, "signals": json.loads(signals), "per_block": json.loads(per_block),
                        "seconds": seconds}
        return out


# --------------------------------------------------------------------------------------------
# The search
# --------------------------------------------------------------------------------------------


@dataclass
class SearchResult:
    """The outcome of `run_search`."""

    best: Genotype
    params: int
    macs: int
    score: float
    signal: str
    scored: int  # candidates with a full-minibatch score
    scored_now: int  # candidates scored by this invocation (the rest came from the results file)
    seconds: float  # wall time of this invocation
    top: list[dict[str, Any]]
    sampling: dict[str, Any]
    out: Path
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"best": self.best.text, "network": self.best.network, "params": self.params,
                "macs": self.macs, "score": self.score, "signal": self.signal, "scored": self.scored,
                "scored_now": self.scored_now, "seconds": self.seconds, "acceptance": self.sampling["acceptance"],
                "rare": self.sampling["rare"], "out": str(self.out), "winner": str(self.out / "winner.json"),
                "top": self.top}


def _fisher_batches(config: SearchConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    """The shared minibatch(es), drawn once from the training split with a seeded generator.

    Un-augmented by default (`SearchConfig.augment`): the Fisher potential then depends only on
    the network and the images drawn. Returned as numpy arrays so they pickle to any worker.
    """
    spec = network_spec(config.model)
    split = load_split(config.data, "train", config.input_size or spec.input_size, "cpu")
    gen = torch.Generator().manual_seed(derive_seed(config.seed, "minibatch"))
    out = []
    for _ in range(config.steps):
        x, y = split.sample(config.batch_size, gen, augment=config.augment)
        out.append((x.numpy(), y.numpy()))
    return out


def _check_resumable(store: ResultStore, config: SearchConfig) -> None:
    stored = store.get_meta("config")
    current = config.to_dict()
    diff = [f"{k}={stored.get(k)!r} (now {current[k]!r})" for k in current if stored.get(k) != current[k]]
    if diff:
        raise BlockSwapError(f"{store.path} holds a search with other settings: {'; '.join(diff)}; "
                             "resume with the same settings or use another output folder")


def run_search(config: SearchConfig, out: str | Path, *, resume: bool = False,
               run: RunOptions = RunOptions(), log: Callable[[str], None] | None = None) -> SearchResult:
    """Run (or with `resume`, continue) a search, writing its files to folder `out`."""
    started = time.perf_counter()
    say = log or (lambda _msg: None)
    out = Path(out)
    path = out / RESULTS_FILE
    holds = _holds_search(path)
    if holds and not resume:
        raise BlockSwapError(f"{str(out)!r} already holds a search ({RESULTS_FILE}); "
                             "add --resume to continue it or choose another output folder")
    spec = network_spec(config.model)
    candidates = parse_candidates(config.candidates)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    batches = _fisher_batches(config)  # first: bad data fails before anything is written
    timings["data"] = time.perf_counter() - t0
    # A new search samples before its results file exists, so an impossible budget writes nothing.
    sampled = None if holds else _sample(config, spec, candidates, timings, say)
    out.mkdir(parents=True, exist_ok=True)
    store = ResultStore(path)
    try:
        if sampled is None:
            _check_resumable(store, config)
            sampling = store.get_meta("sampling")
            say(f"resuming {path}: {len(store.scores('full'))} of {config.samples} candidates already scored")
        else:
            sampling, rows = sampled
            store.start(config, sampling, rows)
        if sampling["rare"]:
            say(f"note: acceptance {sampling['acceptance']:.2e} is below {config.min_acceptance:g}: "
                "the budget is reachable but rare for these candidates")
        cands = store.candidates()
        t0 = time.perf_counter()
        scored_now = _score_all(store, config, run, cands, batches)
        timings["scoring"] = time.perf_counter() - t0
        result = _finish(store, config, run, cands, sampling, out, scored_now, timings, started)
    finally:
        store.close()
    return result


def _holds_search(path: Path) -> bool:
    """Whether `path` is a results file of a started search (not absent, not left empty)."""
    if not path.exists():
        return False
    store = ResultStore(path)
    try:
        return store.started()
    finally:
        store.close()


def _sample(config: SearchConfig, spec, candidates, timings: dict[str, float],
            say: Callable[[str], None]) -> tuple[dict[str, Any], list[tuple]]:
    """Rejection-sample the candidates: (sampling summary, rows of index, genotype, params, MACs, seed)."""
    t0 = time.perf_counter()
    table = CostTable(spec, candidates, config.input_size)
    rng = np.random.default_rng(derive_seed(config.seed, "sampler"))
    report = sample_genotypes(table, config.budget_value, config.samples, rng,
                              min_acceptance=config.min_acceptance, max_draws=config.max_draws)
    rows = []
    params, macs = table.totals(report.choices, "params"), table.totals(report.choices, "macs")
    for i, choice in enumerate(report.choices):
        text = ",".join(candidates[j].name for j in choice)
        rows.append((i, text, int(params[i]), int(macs[i]), candidate_seed(config, text)))
    timings["sampling"] = time.perf_counter() - t0
    say(f"{config.samples} genotypes within {config.budget_value} from {report.draws:,} proposals "
        f"(acceptance {report.acceptance:.2%}, {timings['sampling']:.1f} s, no network built)")
    return report.summary(), rows


def _score_all(store: ResultStore, config: SearchConfig, run: RunOptions,
               cands: list[tuple], batches) -> int:
    """Score every candidate not yet in the results file (both rounds when halving)."""
    scored_now = 0
    with contextlib.ExitStack() as stack:
        run_tasks: RunTasks | None = None
        for stage in ("slice", "full") if config.halving else ("full",):
            if stage == "full" and config.halving:
                ranked = _ranked(store.scores("slice"), config)
                keep = set(ranked[:config.keep])
                todo_cands = [c for c in cands if c[0] in keep]
            else:
                todo_cands = cands
            done = store.scores(stage)
            todo = [(c[0], c[1], stage) for c in todo_cands if c[0] not in done]
            if not todo:
                continue
            if run_tasks is None:
                run_tasks = stack.enter_context(_EXECUTORS[run.executor](run, config, batches))
            bar = _progress(run, len(todo_cands), len(todo_cands) - len(todo), stage, config)
            for row in run_tasks(todo):
                store.add(row)
                scored_now += 1
                bar.update(1)
            bar.close()
    return scored_now


def _progress(run: RunOptions, total: int, initial: int, stage: str, config: SearchConfig):
    from tqdm import tqdm

    desc = {"full": "scoring", "slice": f"slice {config.slice_size}"}[stage]
    return tqdm(total=total, initial=initial, desc=desc, unit="cand", disable=not run.progress,
                file=sys.stderr, dynamic_ncols=True)


def _ranked(scores: dict[int, dict[str, Any]], config: SearchConfig) -> list[int]:
    """Candidate indices, best first; ties broken by index so the order is deterministic."""
    sign = -1.0 if config.rank_signal.higher_is_better else 1.0

    def key(idx: int) -> tuple[float, int]:
        s = scores[idx]["score"]
        s = -math.inf if s is None or math.isnan(s) else s
        return (sign * s, idx)

    return sorted(scores, key=key)


def _finish(store: ResultStore, config: SearchConfig, run: RunOptions, cands: list[tuple],
            sampling: dict[str, Any], out: Path, scored_now: int, timings: dict[str, float],
            started: float) -> SearchResult:
    full = store.scores("full")
    slice_scores = store.scores("slice")
    ranked = _ranked(full, config)
    by_index = {c[0]: c for c in cands}
    top = []
    for rank, idx in enumerate(ranked[:run.top_k], start=1):
        _, text, params, macs, seed = by_index[idx]
        top.append({"rank": rank, "index": idx, "genotype": text, "params": params, "macs": macs,
                    "score": full[idx]["score"], "signals": full[idx]["signals"], "seed": seed})
    best = top[0]
    signal = config.rank_signal.name
    geno = Genotype.from_text(best["genotype"], config.model)
    geno.save(out / "winner.json", signal=signal, score=best["score"], params=best["params"],
              macs=best["macs"], seed=best["seed"], search=str(out))
    atomic_write_json(out / "top.json", {"signal": signal, "higher_is_better": config.rank_signal.higher_is_better,
                                         "top": top})
    atomic_write_text(out / "candidates.csv", _csv(cands, full, slice_scores, config))
    seconds = time.perf_counter() - started
    timings["total"] = seconds
    row_seconds = [r["seconds"] for r in itertools.chain(full.values(), slice_scores.values())]
    timings["candidate_seconds_sum"] = float(sum(row_seconds))
    result = SearchResult(geno, best["params"], best["macs"], best["score"], signal, len(full), scored_now,
                          seconds, top, sampling, out, timings)
    atomic_write_json(out / "run.json", {
        "format": RUN_FORMAT, "version": RUN_VERSION, "command": "search", "config": config.to_dict(),
        "seed": config.seed, "run": asdict(run), "versions": versions(), "sampling": sampling,
        "winner": {"genotype": geno.text, "params": best["params"], "macs": best["macs"],
                   "score": best["score"], "signal": signal, "seed": best["seed"]},
        "scored": len(full), "scored_slice": len(slice_scores), "scored_now": scored_now,
        "timings": timings, "fisher_exact": config.micro_batch is None,
        "files": {"results": RESULTS_FILE, "winner": "winner.json", "top": "top.json",
                  "candidates": "candidates.csv"}})
    return result


def _csv(cands: list[tuple], full: dict, slice_scores: dict, config: SearchConfig) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    header = ["index", "genotype", "params", "macs", "seed", *config.signals, "fisher_per_block", "seconds"]
    if config.halving:
        header.insert(5, f"slice_{config.signals[0]}")
    writer.writerow(header)
    for idx, text, params, macs, seed in cands:
        row = full.get(idx)
        values = [row["signals"].get(s, "") for s in config.signals] if row else [""] * len(config.signals)
        line = [idx, text, params, macs, seed, *values,
                ";".join(f"{v:.6g}" for v in row["per_block"]) if row else "",
                f"{row['seconds']:.4f}" if row else ""]
        if config.halving:
            line.insert(5, slice_scores[idx]["score"] if idx in slice_scores else "")
        writer.writerow(line)
    return buf.getvalue()
