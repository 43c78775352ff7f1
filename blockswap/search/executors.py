"""Executors: each maps scoring jobs to result rows as they complete, in this process, in
local worker processes, or on a Ray cluster. Scores never depend on the executor."""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import socket
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, Callable, Iterable, Iterator

import torch

from ..errors import BlockSwapError
from ..tasks import Job, ScoreRow
from ..workers import WORKER_MARK
from .config import EXECUTORS, RunOptions, SearchConfig
from .scorer import Scorer, ScoringData


RunTasks = Callable[[Iterable[Job]], Iterator[ScoreRow]]


@contextlib.contextmanager
def _local_executor(run: RunOptions, config: SearchConfig, data: ScoringData) -> Iterator[RunTasks]:
    previous = torch.get_num_threads()
    scorer = Scorer(config, data, run, run.threads)
    try:
        yield lambda tasks: (scorer.score(t) for t in tasks)
    finally:
        torch.set_num_threads(previous)


_WORKER_SCORER: Scorer | None = None


def _init_worker(config: SearchConfig, data: ScoringData, run: RunOptions, threads: int) -> None:
    global _WORKER_SCORER  # one scorer per worker process, made once by the pool's initializer
    _exit_with_parent()
    _WORKER_SCORER = Scorer(config, data, run, threads)


def _exit_with_parent(interval: float = 1.0) -> None:
    """End this worker when the search process dies (e.g. ``kill -9``): an orphaned worker would
    otherwise wait for tasks forever, holding its memory."""
    import multiprocessing
    import threading

    # The pid the parent recorded when it made this worker, not os.getppid(): a parent killed
    # while this worker was starting has already been replaced by init (the worker would wait forever).
    parent = getattr(multiprocessing.parent_process(), "pid", None) or os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="blockswap-parent-watch").start()


def _score_in_worker(job: Job) -> ScoreRow:
    assert _WORKER_SCORER is not None, "worker not initialised"
    return _WORKER_SCORER.score(job)


def _bounded(submit: Callable[[Job], Any], tasks: Iterable[Job], window: int,
             wait_one: Callable[[set], tuple[list, set]], result: Callable[[Any], ScoreRow]) -> Iterator[ScoreRow]:
    """Keep at most `window` tasks in flight (a kill loses only those); yield rows as they finish."""
    todo = iter(tasks)
    pending = {submit(t) for t in itertools.islice(todo, window)}
    while pending:
        done, pending = wait_one(pending)
        for handle in done:
            yield result(handle)
            for t in itertools.islice(todo, 1):
                pending.add(submit(t))


# OpenMP threads that spin long while waiting stall every op when the cores are shared with other
# jobs; a short spin costs little on an idle machine (measurements: docs/search.md, "Threads").
# Workers start a fresh OpenMP runtime, so they get this unless the user set it.
WORKER_ENV = {"GOMP_SPINCOUNT": "10000"}


@contextlib.contextmanager
def _worker_env() -> Iterator[dict[str, str]]:
    """WORKER_ENV in os.environ while workers start (spawned children copy it), then restored;
    with the mark that makes a worker ignore Ctrl-C and start quietly (`workers.quiet_start`)."""
    added = {k: v for k, v in {**WORKER_ENV, WORKER_MARK: "1"}.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield added
    finally:
        for k in added:
            os.environ.pop(k, None)


@contextlib.contextmanager
def _process_executor(run: RunOptions, config: SearchConfig, data: ScoringData) -> Iterator[RunTasks]:
    import multiprocessing

    # spawn, not fork: forking a process whose OpenMP pool is running can deadlock the child.
    pool = ProcessPoolExecutor(run.workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker,
                               initargs=(config, data, run, run.scorer_threads))
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


# ray.init(address="host:port") retries an unreachable cluster for ever; a TCP connect with a
# deadline turns that hang into an error. Seconds; BLOCKSWAP_RAY_CONNECT_TIMEOUT overrides it.
RAY_CONNECT_TIMEOUT = 10.0
_RAY_HINT = ("start the cluster with `ray start --head`, or use --address auto / omit --address "
             "for a local Ray")


def _connect_timeout() -> float:
    text = os.environ.get("BLOCKSWAP_RAY_CONNECT_TIMEOUT")
    if text is None:
        return RAY_CONNECT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0 or math.isinf(value):
        raise BlockSwapError(f"BLOCKSWAP_RAY_CONNECT_TIMEOUT={text!r} is not a positive number of seconds")
    return value


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of "host:port", "ray://host:port" or "[::1]:port"; None for other forms
    ("auto", a bare host), which are left to Ray."""
    rest = address.strip().removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host.strip("[]"), int(port)


def _probe_cluster(address: str) -> None:
    """Raise `BlockSwapError` unless a TCP connection to `address` opens within the timeout."""
    target = _host_port(address)
    if target is None:
        return
    timeout = _connect_timeout()
    try:
        socket.create_connection(target, timeout=timeout).close()
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc) or type(exc).__name__)
        raise BlockSwapError(f"cannot reach a Ray cluster at {address!r}: {reason} "
                             f"(TCP connect, {timeout:g} s timeout); {_RAY_HINT}") from None


@contextlib.contextmanager
def ray_connection(address: str | None, num_cpus: int | None = None) -> Iterator[Any]:
    """The `ray` module, connected: to the cluster at `address` (probed first, so that an
    unreachable one fails within the timeout instead of hanging), or to a private local instance
    of `num_cpus` CPUs; shut down on exit if this call started it. Errors are one line."""
    try:
        import ray
        from ray.exceptions import RayError
    except ImportError:
        raise BlockSwapError("the ray executor needs Ray: pip install 'blockswap[ray]'") from None
    started = not ray.is_initialized()
    if started:
        if address is not None:
            _probe_cluster(address)
        try:
            if address is None:  # a private local instance, sized to what was asked for
                ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                         configure_logging=False)
            else:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
        except (OSError, RuntimeError, ValueError, RayError) as exc:
            raise BlockSwapError(f"cannot start or reach Ray at {address or 'a local instance'}: "
                                 f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}; "
                                 f"{_RAY_HINT}") from None
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


@contextlib.contextmanager
def _ray_executor(run: RunOptions, config: SearchConfig, data: ScoringData) -> Iterator[RunTasks]:
    with ray_connection(run.address, run.workers * run.scorer_threads) as ray:
        with _ray_actors(ray, run, config, data) as tasks:
            yield tasks


@contextlib.contextmanager
def _ray_actors(ray: Any, run: RunOptions, config: SearchConfig, data: ScoringData) -> Iterator[RunTasks]:
    threads = run.scorer_threads
    actor_class = ray.remote(num_cpus=threads, runtime_env={"env_vars": {
        **{k: v for k, v in WORKER_ENV.items() if k not in os.environ}, "OMP_NUM_THREADS": str(threads)}})(Scorer)
    shared = ray.put(data)
    actors = [actor_class.remote(config, shared, run, threads) for _ in range(run.workers)]
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


# The context manager of each executor of the table `config.EXECUTORS` (names and help live there).
_EXECUTORS = {"local": _local_executor, "process": _process_executor, "ray": _ray_executor}
if sorted(_EXECUTORS) != sorted(EXECUTORS):
    raise ImportError(f"search.config.EXECUTORS ({', '.join(EXECUTORS)}) and search.executors "
                      f"({', '.join(_EXECUTORS)}) name different executors")


def executor(run: RunOptions, config: SearchConfig, data: ScoringData):
    """The context manager of `run.executor`, yielding a function from jobs to result rows."""
    return _EXECUTORS[run.executor](run, config, data)
