"""What a search computes (`SearchConfig`) and how it runs (`RunOptions`), as parsed values.

`SearchConfig` holds everything that changes which candidate wins; two searches with equal
configs give the same candidates and the same scores. `RunOptions` holds what only changes
speed or memory (executor, workers, threads, device, memory format, checkpointing): a search
may be resumed with other run options.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any

from ..data.spec import DataSpec, parse_data
from ..devices import check_device, usable_cpus
from ..errors import BlockSwapError, choices
from ..fields import check_fields, rules
from ..proxies.execution import PRECISIONS
from ..proxies.fisher import MEMORY_FORMATS
from ..proxies.ranking import MeanRank, parse_rank_by
from ..proxies.registry import ProxyOptions, Signal, parse_signal
from ..registry import Registry
from ..space.blocks import BlockType, default_candidates, parse_candidates
from ..space.budget import Budget, parse_budget
from ..space.latency import LatencyTable, load_latency_table
from ..space.networks import NetworkSpec, network_spec
from ..tasks import Task, get_task

# Fields that are values held for the run, not settings: `to_dict` leaves them out of run.json.
NOT_RECORDED = {"recorded": False}


@dataclass(frozen=True)
class SearchConfig:
    """What a search computes. Strings are accepted and parsed once in `__post_init__`, which
    reads no file (a latency table is read at the edge: `with_latency_table`, `run_search`).

    Defaults follow the paper (Sec. 4 and 4.3): 1000 samples, one minibatch of the training batch
    size (128 on CIFAR), ranked by Fisher potential; the +-2.5% window is the authors' code's.
    """

    model: "str | NetworkSpec" = "wrn-40-2"  # network whose blocks are swapped (`space.networks`)
    budget: Budget = Budget("params", 800_000, 0.025)  # or text: "800k" (params), "macs=90M"
    tolerance: float | None = None  # window; None: the budget's (2.5% for a text budget, as the authors' code)
    candidates: tuple[BlockType, ...] = tuple(default_candidates())  # or "S,G(4),..."; the paper's 23
    samples: int = 1000  # distinct accepted genotypes to score (paper Sec. 4.3: 1000)
    data: DataSpec = DataSpec("synthetic")  # or "cifar10:PATH", "imagenet:PATH", "digits", ...
    batch_size: int | None = None  # the Fisher minibatch = the training batch size; None: the task's (128, Sec. 4)
    seed: int = 0  # the run seed: sampling, the minibatch and every candidate's init derive from it
    signals: tuple[Signal, ...] = (Signal("fisher"),)  # or names; recorded for every candidate, the first ranks
    # What ranks: a signal or an aggregate ("mean_rank(fisher,macs,synflow)"); None: the first of
    # `signals` (fisher by default, the paper's). Its signals are put first in `signals`.
    rank_by: "Signal | MeanRank | None" = None
    augment: bool = False  # False: un-augmented training images (the authors' loader augments)
    input_size: int | None = None  # None: the task's (the model's 32 for WRN, 224 for ResNet; 800 detection)
    halving: bool = False  # successive halving: slice first, then the full minibatch for the top
    halving_slice: float = 0.25  # fraction of the minibatch used in the first round
    halving_keep: float = 0.1  # fraction of candidates rescored on the full minibatch
    # The screened search (docs/search.md, "Screened search"), halving generalised: round one
    # ("screen") ranks every candidate on `screen_slice` of the minibatch in `screen_precision`;
    # round two ("full") rescores the top `screen_keep` in float32 on the whole minibatch (the
    # paper's score), whose best wins. `screen_keep`: a count (an int >= 1) or a fraction (a float < 1).
    screen: bool = False
    screen_slice: float = 0.25  # fraction of the minibatch in round one (1.0: all of it)
    screen_keep: float = 100  # candidates rescored in round two: count, or fraction if below 1
    screen_precision: str = field(default="float32", metadata=rules(choices=tuple(PRECISIONS)))
    micro_batch: int | None = None  # APPROXIMATE: BN statistics per chunk of this many examples
    # A latency budget's cost model: `latency`, a parsed `blockswap latency-table` file; recorded
    # are its path and its digest, and on resume the content must match (the digest), not the path.
    latency_table: str | None = field(default=None, compare=False, metadata=rules(path=True))
    latency_table_sha256: str | None = field(default=None, compare=False)  # None: the table's
    latency: LatencyTable | None = field(default=None, compare=False, repr=False, metadata=NOT_RECORDED)
    min_acceptance: float = 1e-3  # below this acceptance rate the budget is reported as rare
    max_draws: int = 20_000_000  # give up after this many proposals (never loop forever)
    # What the students are (`blockswap.tasks`): "classification", or "detection" (Mask R-CNN
    # backbones, paper Sec. 7). A name here and in run.json, resolved to the `Task` value.
    task: str | Task = "classification"
    # The network `model` names, resolved once here (`model` may also be given as a NetworkSpec):
    # pickled with the config to worker processes and Ray actors, so a space registered at run
    # time (`nn.discover.register_students_space`) is scored there too; `model` stays the name
    # (run.json, resume, seeds).
    spec: NetworkSpec = field(default=None, init=False, compare=False, repr=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        check_fields(self)  # types first: halving="false" or tolerance="0.1" are refused, named
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen)
        set_("task", get_task(self.task))
        set_("spec", network_spec(self.model))
        set_("model", self.spec.name)
        tolerance = self.tolerance
        if tolerance is None:
            tolerance = self.budget.tolerance if isinstance(self.budget, Budget) else 0.025
        set_("budget", parse_budget(self.budget, tolerance))
        set_("tolerance", self.budget.tolerance)
        set_("candidates", tuple(parse_candidates(_candidate_list(self.candidates))))
        set_("data", parse_data(self.data))
        signals = (self.signals,) if isinstance(self.signals, (str, Signal)) else tuple(self.signals)
        if not signals:
            raise BlockSwapError("give at least one ranking signal, e.g. fisher")
        signals = tuple(parse_signal(s) for s in signals)
        set_("rank_by", signals[0] if self.rank_by is None else parse_rank_by(self.rank_by))
        needed = self.rank_by.components
        set_("signals", tuple(dict.fromkeys((*needed, *signals))))
        if isinstance(self.rank_by, MeanRank) and (self.halving or self.screen):
            raise BlockSwapError(f"a two-round search ranks its first round by one signal, not {self.rank_by.name}; "
                                 "drop --halving/--screen or rank by one signal")
        self._check_screen()
        if self.batch_size is None:
            set_("batch_size", self.task.batch_size)
        for name in ("samples", "batch_size", "max_draws", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if name == "seed" else 1):
                raise BlockSwapError(f"{name} must be a {'non-negative' if name == 'seed' else 'positive'} "
                                     f"integer, got {value!r}")
        if self.batch_size < 2:
            raise BlockSwapError("batch_size must be at least 2 (train-mode BN needs two examples)")
        for name in ("halving_slice", "halving_keep"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise BlockSwapError(f"{name} must be in (0, 1], got {value!r}")
        if self.first_stage is not None and self.slice_size < 2:
            what = "halving" if self.halving else "screen"
            raise BlockSwapError(f"{what} slice of {getattr(self, what + '_slice')} x {self.batch_size} examples "
                                 f"is below 2; raise {what}_slice or batch_size")
        if not 0 <= self.min_acceptance < 1:
            raise BlockSwapError(f"min_acceptance must be in [0, 1), got {self.min_acceptance!r}")
        if self.input_size is not None and (not isinstance(self.input_size, int) or self.input_size < 8):
            raise BlockSwapError(f"input size must be an integer >= 8 pixels, got {self.input_size!r}")
        ProxyOptions(micro_batch=self.micro_batch)
        self._hold_latency()
        self.task.check(self)

    def _check_screen(self) -> None:
        if self.screen and self.halving:
            raise BlockSwapError("choose one of halving and screen (halving is screen in float32), not both")
        keep = self.screen_keep
        if not (isinstance(keep, int) and keep >= 1 or isinstance(keep, float) and 0 < keep < 1):
            raise BlockSwapError(f"screen_keep must be a count (an integer >= 1) or a fraction in (0, 1), got {keep!r}")
        if not 0 < self.screen_slice <= 1:
            raise BlockSwapError(f"screen_slice must be in (0, 1], got {self.screen_slice!r}")
        if self.screen and self.screen_precision == "bf16" and self.signals[0] != Signal("fisher"):
            raise BlockSwapError(f"--screen-precision bf16 screens by the Fisher potential at initialisation only, "
                                 f"not {self.signals[0].name}; rank by fisher or screen in float32")

    def _hold_latency(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen)
        if self.latency_table is not None:
            set_("latency_table", str(self.latency_table))
        if self.latency is not None:
            if not isinstance(self.latency, LatencyTable):
                raise BlockSwapError(f"latency must be a LatencyTable (blockswap.space.latency.load_latency_table), "
                                     f"got {type(self.latency).__name__}")
            recorded, digest = self.latency_table_sha256, self.latency.sha256()
            # A recorded config given another table holds none: resuming it then compares
            # digests (`search.run`), and a new search with it refuses to sample.
            if recorded not in (None, digest):
                set_("latency", None)
            set_("latency_table_sha256", recorded or digest)
        elif self.budget.metric == "latency" and self.latency_table is None and self.latency_table_sha256 is None:
            raise BlockSwapError("a latency budget needs a latency table: add --latency-table FILE "
                                 "(made by `blockswap latency-table --model ...`)")

    def with_latency_table(self) -> "SearchConfig":
        """This config holding the table read from its `latency_table` path (if it holds none).

        A recorded config (`from_dict`) whose table moved or changed stays usable: it then holds
        no table (a missing file is an error only when no digest was recorded)."""
        if self.latency is not None or self.latency_table is None:
            return self
        try:
            table = load_latency_table(self.latency_table)
        except BlockSwapError:
            if self.latency_table_sha256 is None:
                raise
            return self
        return replace(self, latency=table)

    @property
    def spec_input_size(self) -> int:
        """Input side for costs: `input_size`, else the task's (the network's, or the detector's 800)."""
        return self.task.input_size(self.spec, self.input_size)

    @property
    def rank_signal(self) -> Signal:
        return self.signals[0]

    @property
    def signal_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.signals)

    @property
    def first_stage(self) -> str | None:
        """The stage name of a two-round search's first round: "slice" (halving, the name its
        results files hold), "screen", or None for the exhaustive search."""
        return "slice" if self.halving else "screen" if self.screen else None

    @property
    def first_precision(self) -> str:
        """The arithmetic of the first round ("float32" for halving)."""
        return self.screen_precision if self.screen else "float32"

    @property
    def slice_size(self) -> int:
        """Examples of the minibatch the first round sees."""
        fraction = self.screen_slice if self.screen else self.halving_slice
        return max(2, round(fraction * self.batch_size)) if fraction < 1 else self.batch_size

    @property
    def keep(self) -> int:
        """Candidates rescored on the whole minibatch in round two (halving or screen)."""
        if self.screen:
            count = self.screen_keep if isinstance(self.screen_keep, int) else math.ceil(self.screen_keep * self.samples)
            return max(1, min(self.samples, count))
        return max(1, math.ceil(self.halving_keep * self.samples))

    @property
    def steps(self) -> int:
        """Minibatches the signals need (k of the "@k" training signals)."""
        return max(s.steps for s in self.signals)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values that `from_dict` reads back into an equal config."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if not f.init or f.metadata.get("recorded", True) is False:
                continue  # a held value, not a setting
            value = getattr(self, f.name)
            if f.name == "budget":
                value = value.text
            elif f.name == "candidates":
                value = [b.name for b in value]
            elif f.name == "signals":
                value = [s.name for s in value]
            elif f.name == "rank_by":
                value = value.name
            elif f.name in ("data", "task"):
                value = str(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SearchConfig":
        """A config from `to_dict` output, also that of BlockSwap 0.1 (whose run-only settings
        `checkpoint` and `channels_last` are ignored and whose `candidates` may be null).
        Reads no file: `with_latency_table` reads the recorded table if it is needed."""
        if not isinstance(data, dict):
            raise BlockSwapError(f"a search config is a dict of settings, got {type(data).__name__}")
        known = {f.name for f in fields(cls) if f.init and f.metadata.get("recorded", True) is not False}
        values = {k: v for k, v in data.items() if k in known}
        if values.get("candidates") is None:
            values.pop("candidates", None)
        return cls(**values)


def _candidate_list(candidates: Any) -> Any:
    """`candidates` as `parse_candidates` takes it, or a one-line error naming the argument."""
    if candidates is None or isinstance(candidates, str):
        return candidates
    if isinstance(candidates, (list, tuple)) and all(isinstance(c, (str, BlockType)) for c in candidates):
        return list(candidates)
    raise BlockSwapError(f"candidates must be block types as text ('S,G(4),B(2)'), a candidate set name "
                         f"('paper') or a list of block types, got {candidates!r}")


# Where candidates are scored (`RunOptions.executor`): name -> what it is (messages, --help). Each
# has its context manager under the same name in `search.executors` (checked there on import).
EXECUTORS: Registry[str] = Registry("executor")
EXECUTORS.add("local", "this process")
EXECUTORS.add("process", "spawned worker processes")
EXECUTORS.add("ray", "Ray actors, on a local Ray or a cluster")


def default_workers() -> int:
    """One single-threaded scoring process per core (the fastest layout: docs/search.md,
    "Executors"), at most 4: beyond that, the memory of each worker adds up."""
    return max(1, min(4, usable_cpus()))


@dataclass(frozen=True)
class RunOptions:
    """How a search runs; none of it changes which candidate wins (scores agree to float32
    rounding whatever the executor, workers, threads and memory format)."""

    # local: this process (no start-up cost); process: spawned worker processes whose OpenMP
    # threads spin only briefly (WORKER_ENV), robust when the cores are shared (a script must
    # then guard its entry point with `if __name__ == "__main__":`); ray: a Ray cluster.
    executor: str = "local"
    workers: int = 1  # worker processes or Ray actors (process / ray executors)
    address: str | None = None  # Ray cluster address ("auto", "ray://host:10001"); None: a local Ray
    threads: int | None = None  # torch threads per scorer; None: this process's threads / workers
    device: str = "cpu"  # torch device for scoring ("cpu", "cuda", "cuda:1", "mps")
    memory_format: str = "channels_last"  # or "contiguous": the same scores, another speed
    checkpoint: bool = False  # recompute blocks in the backward pass: less memory, same value
    progress: bool = True  # a progress bar on stderr
    top_k: int = 10  # runner-ups kept in top.json and the final table

    @property
    def scorer_threads(self) -> int:
        import torch

        return self.threads or max(1, torch.get_num_threads() // self.workers)

    def __post_init__(self) -> None:
        check_fields(self)
        EXECUTORS.get(self.executor)  # unknown: the valid names and the nearest
        if self.memory_format not in MEMORY_FORMATS:
            raise BlockSwapError(f"unknown memory format {self.memory_format!r}; valid: {choices(MEMORY_FORMATS)}")
        for name in ("workers", "top_k"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise BlockSwapError(f"{name} must be a positive integer, got {value!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise BlockSwapError(f"threads must be a positive integer, got {self.threads!r}")
        if self.address is not None and self.executor != "ray":
            raise BlockSwapError("a cluster address only applies to the ray executor (add --executor ray)")
        check_device(self.device)  # before any file: a missing GPU must not leave a results file

    def proxy_options(self, config: SearchConfig) -> ProxyOptions:
        return ProxyOptions(checkpoint=self.checkpoint, micro_batch=config.micro_batch,
                            memory_format=self.memory_format)
