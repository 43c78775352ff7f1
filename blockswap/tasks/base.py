"""What a task is to the search: which network its budget counts, what data it reads, how a
candidate is built and scored, and the row a score makes (`ScoreRow`).

A task is a value (`TASKS["detection"]`), resolved once from its name: the search and the CLI
ask it instead of comparing names. The search config is passed to a task's methods as
`settings` (read only: ``model``, ``seed``, ``data``, ``batch_size``, ``steps``, ``augment``,
``input_size``, ``spec_input_size`` (the side costs and data use, resolved by the config),
``signals``, ``micro_batch``, ``latency_table``, ``latency``); the tasks sit below the search,
so they read those attributes and never import `search`.

The training side of a task (its step and evaluation) lives in `blockswap.train`, keyed by the
same names.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Sequence

from ..errors import BlockSwapError
from ..registry import Registry
from ..seeding import derive_seed

if TYPE_CHECKING:  # the tasks import torch only where they build or score
    import torch

    from ..space.networks import NetworkSpec

Job = tuple[int, str, str]  # (candidate index, genotype text, stage "full", "slice" or "screen")


@dataclass(frozen=True)
class ScoringData:
    """The shared minibatch(es) as numpy arrays (they pickle to any worker), and the number of
    classes of the data (from its class folders for ImageNet layouts; with the background for
    detection)."""

    batches: tuple[Any, ...]
    num_classes: int


@dataclass(frozen=True)
class ScoreRow:
    """One score of one candidate: what the results file stores (`search.store`)."""

    index: int
    stage: str  # "full" (float32, whole minibatch), or round one's: "slice" (halving), "screen"
    score: float | None  # the ranking signal's value; None: non-finite, ranked last
    signals: dict[str, float | None]  # every recorded signal
    per_block: list[float]  # the per-block Fisher potential (empty without it)
    seconds: float  # wall time of building and scoring, this candidate alone

    def __getitem__(self, key: str) -> Any:
        # Mapping access, as the rows were plain dicts up to 0.2 (scripts index them).
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "stage": self.stage, "score": self.score, "signals": dict(self.signals),
                "per_block": list(self.per_block), "seconds": self.seconds}


def candidate_seed(settings: Any, genotype_text: str) -> int:
    """The initialisation seed of one candidate: a function of the run seed, the network's name
    and the genotype only, so any score can be reproduced on its own, in any order and process."""
    return derive_seed(settings.seed, "init", settings.model, genotype_text)


class Task:
    """A kind of student a search finds (paper Sec. 4 for classifiers, Sec. 7 for detectors).

    Subclasses set `name` and `batch_size` and implement the methods below; one instance per
    task is registered in `TASKS`. Instances are stateless: equal when of the same class, and
    pickled by reference to their class (workers and Ray actors receive them with the config).
    """

    name: ClassVar[str]
    batch_size: ClassVar[int]  # the scoring minibatch when the config gives none
    help: ClassVar[str]  # one line for the command line's --task help

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(type(self))

    def __repr__(self) -> str:
        return f"<task {self.name}>"

    def __str__(self) -> str:
        return self.name

    # ---- costs (no network built) --------------------------------------------------------
    def counted_spec(self, spec: "NetworkSpec") -> "NetworkSpec":
        """The network whose parameters and MACs the budget counts."""
        raise NotImplementedError

    def input_size(self, spec: "NetworkSpec", requested: int | None) -> int:
        """The input side in pixels the costs are counted at (`requested`, else the task's)."""
        raise NotImplementedError

    # ---- data ------------------------------------------------------------------------------
    def claims(self, data: Any) -> bool:
        """Whether `data` (a parsed dataset) is this task's alone (another task must refuse it)."""
        return False

    def check(self, settings: Any) -> None:
        """Refuse, in one line, settings this task cannot score (its data, signals, options)."""
        for other in TASKS.values():
            if other != self and other.claims(settings.data):
                raise BlockSwapError(f"{settings.data} is {other.name} data; add --task {other.name}")

    def draw(self, settings: Any) -> ScoringData:
        """Draw the shared minibatch(es) once from the training split, from the run seed."""
        raise NotImplementedError

    def prepare(self, data: ScoringData, device: "torch.device", memory_format: str) -> list[Any]:
        """The drawn minibatches as tensors on `device`, in the scoring layout (done once per process)."""
        raise NotImplementedError

    def memory_format(self, requested: str) -> "torch.memory_format":
        """The memory format candidates are scored in."""
        raise NotImplementedError

    def head(self, batches: list[Any], size: int) -> list[Any]:
        """The first `size` examples of the first minibatch (successive halving's slice)."""
        raise NotImplementedError

    # ---- candidates ----------------------------------------------------------------------
    def build(self, network: Any, genotype_text: str, num_classes: int, settings: Any) -> "torch.nn.Module":
        """A candidate at initialisation on the CPU, weights from torch's global generator (the
        caller seeds it with `candidate_seed`)."""
        raise NotImplementedError

    def measure(self, build: Callable[[], "torch.nn.Module"], batches: list[Any], signals: Sequence[Any],
                options: Any, seed: int) -> tuple[dict[str, float | None], list[float]]:
        """(value of every signal, per-block Fisher) of one candidate; `build` makes a fresh copy
        of it at initialisation, `seed` is its own (`candidate_seed`)."""
        raise NotImplementedError

    def score(self, job: Job, build: Callable[[], "torch.nn.Module"], batches: list[Any],
              signals: Sequence[Any], options: Any, seed: int) -> ScoreRow:
        """The result row of one candidate (`measure`, timed); the first signal ranks."""
        index, _genotype, stage = job
        start = time.perf_counter()
        values, per_block = self.measure(build, batches, signals, options, seed)
        return ScoreRow(index, stage, values[signals[0].name], values, per_block, time.perf_counter() - start)


TASKS: Registry[Task] = Registry("task")


def get_task(task: "str | Task") -> Task:
    """A task from its name (strict, with the nearest name suggested) or itself."""
    if isinstance(task, Task):
        return task
    if not isinstance(task, str):
        raise BlockSwapError(f"task must be a task name ({', '.join(TASKS)}), got {task!r}")
    return TASKS[task]
