"""Run an experiment: every run of its grid, phase by phase, locally or on a Ray cluster.

Teachers first, then the searches, then the students (a student needs its teacher and, for
blockswap and random, its search). Runs are written to ``OUT/runs/<key>`` by the ordinary
`train_model` and `run_search`, always with ``resume=True``: a run that was interrupted
continues from its last checkpoint, a finished one (done in the store) is skipped. The store
(`store.ExperimentStore`) is written by this process only, as each run ends.

Executors: ``local`` runs one after another in this process; ``ray`` submits every ready run
of a phase as a Ray task with ``cpus_per_run`` CPUs (and ``gpus_per_run`` GPUs) and records
results as they complete. On a cluster, OUT must be a folder every node sees (a shared file
system), since the runs write their checkpoints there.
"""

from __future__ import annotations

import contextlib
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import BlockSwapError
from ..files import atomic_write_json, versions
from ..outdir import RunFolder, claim_folder
from ..progress import progress as progress_bar
from ..registry import Registry
from .grid import Run, expand, teacher_key
from .methods import METHODS
from .spec import ExperimentSpec
from .store import STORE_FILE, ExperimentStore, folder_in_use

# Where an experiment's runs execute (`ExperimentOptions.executor`): name -> what it is.
EXECUTORS: Registry[str] = Registry("executor")
EXECUTORS.add("local", "one run after another in this process")
EXECUTORS.add("ray", "Ray tasks, on a local Ray or a cluster")
EXPERIMENT_FOLDER = RunFolder("experiment", STORE_FILE, (STORE_FILE,))


@dataclass(frozen=True)
class ExperimentOptions:
    """How an experiment runs; none of it changes a result."""

    executor: str = "local"  # "local": one run after another here; "ray": Ray tasks
    address: str | None = None  # Ray cluster ("auto", "host:6379", "ray://host:10001"); None: local Ray
    cpus_per_run: int = 1  # Ray: CPUs (torch threads) of each run
    gpus_per_run: float = 0  # Ray: GPUs of each run (e.g. 1)
    device: str | None = None  # torch device of every run (None: cuda if present)
    threads: int | None = None  # local: torch threads (None: torch's choice)
    limit: int | None = None  # run at most this many runs in this invocation (then stop)
    progress: bool = True

    def __post_init__(self) -> None:
        EXECUTORS.get(self.executor)  # unknown: the valid names and the nearest
        if self.address is not None and self.executor != "ray":
            raise BlockSwapError("a cluster address only applies to the ray executor (add --executor ray)")
        if not isinstance(self.cpus_per_run, int) or self.cpus_per_run < 1:
            raise BlockSwapError(f"cpus_per_run must be a positive integer, got {self.cpus_per_run!r}")
        if not self.gpus_per_run >= 0:
            raise BlockSwapError(f"gpus_per_run must be >= 0, got {self.gpus_per_run!r}")


@dataclass
class ExperimentResult:
    out: Path
    total: int
    done: int
    failed: dict[str, str] = field(default_factory=dict)  # key -> one-line error
    ran_now: int = 0
    seconds: float = 0.0


def run_experiment(spec: ExperimentSpec, out: "str | Path", options: ExperimentOptions = ExperimentOptions(),
                   *, overwrite: bool = False,
                   on_run_done: Callable[[str, dict[str, Any]], None] | None = None) -> ExperimentResult:
    """Run every run of `spec` not yet done into folder `out` (created, or continued: an
    experiment folder always resumes; `overwrite` deletes its results first)."""
    from ..devices import check_device

    if options.device is not None:
        check_device(options.device)
    started = time.perf_counter()
    runs = expand(spec)
    check_experiment(spec, runs)
    # Ray first: an unreachable cluster fails before the folder is touched.
    with _executor(options) as submit, \
            claim_folder(out, EXPERIMENT_FOLDER, resume=not overwrite, overwrite=overwrite) as out:
        if overwrite and (out / "runs").exists():
            shutil.rmtree(out / "runs")  # the runs' checkpoints are results of the experiment too
        with ExperimentStore(out / STORE_FILE) as store:
            store.bind(spec.to_dict(), runs)
            store.add(runs)
            atomic_write_json(out / "experiment.json", {"spec": spec.to_dict(), "versions": versions(),
                                                         "runs": len(runs)})
            result = ExperimentResult(out, len(runs), 0)
            keys = [r.key for r in runs]
            bar = progress_bar(len(runs), f"experiment {spec.name}", "run", enabled=options.progress)
            bar.update(store.counts(keys)["done"])
            left = options.limit if options.limit is not None else len(runs)
            for wave in WAVES:
                if left <= 0:
                    break
                ready = []
                for r in runs:
                    if r.phase not in wave or store.status(r.key) == "done":
                        continue
                    try:
                        ready.append((r, _resolve(r, spec, out, store)))
                    except BlockSwapError as exc:  # its teacher or search failed or is missing
                        store.mark(r.key, "failed", error=str(exc))
                        result.failed[r.key] = str(exc)
                # Network-major: a network's seeds run together, so a study stopped part-way (or by
                # --limit) holds networks complete on every seed, not every network on some seeds.
                ready.sort(key=lambda item: item[0].detail.get("candidate", -1))
                ready = ready[:left]
                left -= len(ready)
                for r, _ in ready:
                    store.mark(r.key, "running")
                for key, status, payload, seconds in submit(ready, spec, out):
                    if status == "done":
                        store.mark(key, "done", result=payload, seconds=seconds)
                        bar.update(1)
                        result.ran_now += 1
                        if on_run_done is not None:
                            on_run_done(key, payload)
                    else:
                        store.mark(key, "failed", error=payload, seconds=seconds)
                        result.failed[key] = payload
                    bar.set_postfix(failed=len(result.failed), refresh=False)
            bar.close()
            result.done = store.counts(keys)["done"]
    result.seconds = time.perf_counter() - started
    return result


# Runs of one wave need nothing of each other and run side by side: teachers and searches
# (a search scores untrained candidates), then the students, which need both.
WAVES = (("teacher", "search"), ("student",))


# ---- checks before any run: what a dry run shows ------------------------------------------
def check_experiment(spec: ExperimentSpec, runs: list[Run]) -> None:
    """Everything a run would find wrong before it trains: the data's folder, the given
    teacher's weights file, every search's settings (`SearchConfig`)."""
    from ..data.spec import parse_data

    data = parse_data(spec.data)
    if data.path is not None and not Path(data.path).expanduser().exists():
        raise BlockSwapError(f"{spec.source}: the folder of data {spec.data!r} does not exist; "
                             f"give yours with --data {data.name}:PATH")
    if spec.teacher_weights is not None and spec.distill and not Path(spec.teacher_weights).expanduser().is_file():
        raise BlockSwapError(f"{spec.source}: teacher_weights {spec.teacher_weights!r} is not a file; "
                             "give it with --teacher-weights FILE")
    for r in runs:
        if r.phase == "search":
            try:
                _search_config(r, spec)
            except BlockSwapError as exc:
                raise BlockSwapError(f"{spec.source} ({r.key}): {exc}") from None


def plan(spec: ExperimentSpec, out: "str | Path") -> list[tuple[Run, str]]:
    """Every run of `spec` and its status in `out` ("new" if unknown), after every check a run
    makes; ``running`` with no process holding the folder shows as ``interrupted``."""
    runs = expand(spec)
    check_experiment(spec, runs)
    path = Path(out).expanduser() / STORE_FILE
    status: dict[str, str] = {}
    if path.is_file():
        with ExperimentStore(path, readonly=True) as store:
            store.check(spec.to_dict(), runs)
            status = {r["key"]: r["status"] for r in store.rows()}
        if not folder_in_use(path.parent):
            status = {k: "interrupted" if v == "running" else v for k, v in status.items()}
    return [(r, status.get(r.key, "new")) for r in runs]


# ---- what each run needs, resolved by the driver -------------------------------------------
def run_folder(out: Path, key: str) -> Path:
    return out / "runs" / key.replace("(", "_").replace(")", "").replace(",", "-")


def _resolve(run: Run, spec: ExperimentSpec, out: Path, store: ExperimentStore) -> dict[str, Any]:
    """What a run needs beyond its detail: its teacher's folder, its genotype from a search."""
    need: dict[str, Any] = {}
    if run.phase != "student":
        return need
    method = METHODS[run.method]
    if spec.distill and spec.teacher_model is not None:
        need.update(teacher=spec.teacher_model, teacher_weights=spec.teacher_weights)
    elif spec.distill or method.from_teacher_weights:
        teacher = teacher_key(spec.teacher_of(run.seed))
        if store.result(teacher) is None:
            raise BlockSwapError(f"its teacher ({teacher}) did not finish")
        need["teacher"] = str(run_folder(out, teacher))
        if method.from_teacher_weights:
            need["start_from"] = need["teacher"]
    search = run.detail.get("search")
    if search is not None:
        if store.result(search) is None:
            raise BlockSwapError(f"its search ({search}) did not finish")
        need.update(_from_search(run_folder(out, search), method, run.detail))
    return need


def _from_search(folder: Path, method, detail: dict[str, Any]) -> dict[str, Any]:
    from ..search.store import open_search

    with open_search(folder) as s:
        candidates = {c.index: c for c in s.candidates()}
        i = method.pick(s, detail)
        if i not in candidates:
            raise BlockSwapError(f"its search {folder} holds no candidate {i}")
        scores = s.scores("full")
    return {"genotype": candidates[i].genotype, "candidate": i,
            "signals": scores.get(i, {}).get("signals", {})}


# ---- executing one run (in this process or in a Ray task) ------------------------------------
def execute(run: Run, need: dict[str, Any], spec: ExperimentSpec, out: Path, device: str | None,
            threads: int | None) -> tuple[str, str, Any, float]:
    """Run `run` to the end; (key, "done", result, seconds) or (key, "failed", error line, seconds)."""
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    tick = time.perf_counter()
    try:
        result = _execute(run, need, spec, run_folder(out, run.key), device)
        return run.key, "done", result, time.perf_counter() - tick
    except BlockSwapError as exc:
        return run.key, "failed", str(exc), time.perf_counter() - tick
    except Exception as exc:  # noqa: BLE001 - one failed run must not stop the grid
        last = traceback.extract_tb(exc.__traceback__)[-1]
        return (run.key, "failed", f"{type(exc).__name__}: {exc} ({Path(last.filename).name}:{last.lineno})",
                time.perf_counter() - tick)


def _search_config(run: Run, spec: ExperimentSpec):
    from ..search import SearchConfig

    return SearchConfig(model=spec.model, budget=run.budget, data=spec.data, input_size=spec.input_size,
                        seed=run.seed, signals=tuple(run.detail["signals"]),
                        **{**spec.search, "samples": run.detail["samples"],
                           **({"candidates": run.detail["candidates"]} if run.detail.get("candidates") else {})})


def _execute(run: Run, need: dict[str, Any], spec: ExperimentSpec, folder: Path, device: str | None) -> dict[str, Any]:
    from dataclasses import replace

    from ..search import RunOptions, run_search
    from ..train import ModelDesc, train_model

    if run.phase == "search":
        config = _search_config(run, spec)
        res = run_search(config, folder, resume=True, run=RunOptions(device=device or "cpu", progress=False))
        return {"genotype": res.best.text, "params": res.params, "macs": res.macs, "score": res.score,
                "scored": res.scored, "seconds": res.seconds}
    model, genotype = run.detail.get("model", spec.model), run.detail.get("genotype", need.get("genotype"))
    prune = {}
    if run.detail.get("prune"):
        prune = {"prune": run.detail["prune"], "prune_params": run.detail["prune_params"],
                 "prune_source": need.get("start_from")}
    desc = ModelDesc("blockswap", model, genotype, None, spec.input_size, **prune)
    config = replace(spec.teacher if run.phase == "teacher" else spec.student, seed=run.seed)
    teacher = need.get("teacher") if (run.phase == "student" and spec.distill) else None
    record = train_model(config, spec.data, folder, desc, teacher=teacher, teacher_weights=need.get("teacher_weights"),
                         role=run.phase, resume=True,
                         device=device, progress=False)
    keep = ("top1_error", "top5_error", "params", "macs", "nonzero_params", "nonzero_macs", "genotype",
            "epochs_done", "train_img_per_s", "val_loss")
    return {**{k: record.get(k) for k in keep}, "model": model,
            **{k: need[k] for k in ("candidate", "signals") if k in need}}


# ---- executors ------------------------------------------------------------------------------
@contextlib.contextmanager
def _executor(options: ExperimentOptions) -> Iterator[Callable]:
    """Yields ``submit(ready, spec, out)``: an iterator of each run's outcome, as it completes."""
    o = options
    if o.executor == "local":
        yield lambda ready, spec, out: (execute(r, need, spec, out, o.device, o.threads) for r, need in ready)
        return
    from ..devices import usable_cpus
    from ..search.executors import ray_connection

    with ray_connection(o.address, None if o.address else usable_cpus()) as ray:
        task = ray.remote(num_cpus=o.cpus_per_run, num_gpus=o.gpus_per_run,
                          runtime_env={"env_vars": {"OMP_NUM_THREADS": str(o.cpus_per_run)}})(execute)

        def submit(ready, spec, out):
            refs = {task.remote(r, need, spec, out, o.device, o.cpus_per_run): r.key for r, need in ready}
            pending = list(refs)
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    try:
                        yield ray.get(ref)
                    except Exception as exc:  # noqa: BLE001 - a worker that died (memory, node lost)
                        yield refs[ref], "failed", f"Ray task failed: {str(exc).splitlines()[0]}", None

        yield submit
