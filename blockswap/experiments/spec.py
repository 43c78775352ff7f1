"""What an experiment is: one frozen `ExperimentSpec`, read from a TOML file or a named preset.

An experiment compares students of one teacher network at a few budgets (paper Sec. 4 and 5,
Appendix B and C). Its file names the network, the data, the budgets, the seeds, the training
settings of teachers and students, the search, and the methods to compare::

    name = "digits-small"
    model = "wrn-16-1"          # the teacher's network; students swap its blocks
    data = "digits"
    budgets = ["100k"]          # parameter budgets ("macs=20M" for MACs)
    seeds = [0, 1]              # teacher seed s distils the students of seed s (paper Sec. 5)

    [teacher]                   # a recipe and overrides of its fields (train.config.TrainConfig)
    recipe = "digits"
    [student]
    recipe = "digits"
    epochs = 5
    [search]                    # the BlockSwap search (search.config.SearchConfig fields)
    samples = 1000
    [methods.blockswap]         # best Fisher potential of the first n samples (paper Sec. 4.3)
    samples = [10, 100, 1000]
    [methods.random]            # uniform draws from the budget window, scored by every signal
    networks = 40

Methods are registered values (`methods.METHODS`: blockswap, random, single, reduced, l1, snip,
sensitivity), each with its own options; every method may set its own ``seeds``. Every value of
the file is type-checked with its key named (`values.typed`).
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..data.spec import parse_data
from ..errors import BlockSwapError, choices
from ..space.blocks import parse_candidates
from ..space.budget import Budget, parse_budget
from ..space.networks import network_spec
from ..space.refs import is_torchvision
from ..train.config import TrainConfig, recipe
from .methods import DEFAULT_SIGNALS, METHODS, MethodSpec
from .methods.base import seeds_of
from .values import check_keys, typed

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["DEFAULT_SIGNALS", "METHODS", "ExperimentSpec", "MethodSpec", "load_experiment", "parse_experiment",
           "presets"]


@dataclass(frozen=True)
class ExperimentSpec:
    """An experiment as parsed values. `source` is the file or preset it came from (recorded)."""

    name: str
    model: str  # the teacher's network (`space.networks`)
    data: str  # "digits", "cifar10:PATH", ...
    budgets: tuple[Budget, ...]
    seeds: tuple[int, ...]
    teacher: TrainConfig
    student: TrainConfig
    search: dict[str, Any]  # SearchConfig fields besides model, budget, data, input_size, signals
    methods: tuple[MethodSpec, ...]
    distill: bool = True  # students learn by attention transfer from the teacher of their seed
    input_size: int | None = None  # None: the network's (32 for WRN)
    paper: str | None = None  # the paper's published numbers shown beside ours (experiments/paper.json)
    description: str = ""
    source: str = ""
    # A given, trained teacher ("torchvision:resnet34" with a local weights file) instead of
    # teachers of `model` trained by the experiment (paper Sec. 6 uses a pretrained ResNet-34).
    teacher_model: str | None = None
    # One teacher for every student: the seed of the teacher all students learn from (and L1
    # pruning starts from). None: the student of seed s learns from the teacher of seed s (paper
    # Sec. 5), so seed-to-seed differences include the teacher's.
    teacher_seed: int | None = None
    teacher_weights: str | None = None

    def teacher_of(self, seed: int) -> int:
        """The seed of the teacher a student of `seed` learns from."""
        return seed if self.teacher_seed is None else self.teacher_seed

    def method(self, name: str) -> MethodSpec | None:
        return next((m for m in self.methods if m.name == name), None)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ExperimentSpec":
        """The spec that `to_dict` wrote (an experiment store's), parsed and checked again."""
        return parse_experiment({k: v for k, v in data.items() if k in _KEYS and v is not None},
                                data.get("source") or "experiment")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "model": self.model, "data": self.data,
                "budgets": [b.text for b in self.budgets], "seeds": list(self.seeds),
                "teacher": dataclasses.asdict(self.teacher), "student": dataclasses.asdict(self.student),
                "search": self.search, "distill": self.distill, "input_size": self.input_size,
                "methods": {m.name: m.to_dict() for m in self.methods},
                "paper": self.paper, "description": self.description, "source": self.source,
                "teacher_model": self.teacher_model, "teacher_weights": self.teacher_weights,
                **({"teacher_seed": self.teacher_seed} if self.teacher_seed is not None else {})}


def presets() -> list[str]:
    """Names of the bundled experiment files (``blockswap/experiments/presets/*.toml``)."""
    folder = resources.files(__package__) / "presets"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_experiment(source: str | Path, **overrides: Any) -> ExperimentSpec:
    """An experiment from a TOML file or a preset name; `overrides` replace top-level keys
    (e.g. ``data="cifar10:/data"``) before parsing."""
    path = Path(source).expanduser()
    if path.suffix.lower() == ".toml" or path.exists():
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise BlockSwapError(f"experiment file {str(path)!r} does not exist; presets: {choices(presets())}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise BlockSwapError(f"cannot read experiment file {str(path)!r}: {exc}") from None
        where = str(path)
    elif str(source) in presets():
        text = (resources.files(__package__) / "presets" / f"{source}.toml").read_text()
        where = f"preset {source}"
    else:
        raise BlockSwapError(f"unknown experiment {str(source)!r}: give a .toml file or a preset; "
                             f"valid presets: {choices(presets())}")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BlockSwapError(f"{where} is not valid TOML: {exc}") from None
    raw.update({k: v for k, v in overrides.items() if v is not None})
    return parse_experiment(raw, where)


# Keys of an experiment file and the type of each value (`values.typed`).
_TYPES: dict[str, Any] = {"name": str, "description": str, "model": str, "data": str, "budgets": tuple[str, ...],
                          "seeds": tuple[int, ...], "teacher": dict, "student": dict, "search": dict,
                          "methods": dict, "distill": bool, "input_size": int | None, "paper": str | None,
                          "teacher_model": str | None, "teacher_weights": str | None,
                          "teacher_seed": int | None}
_KEYS = set(_TYPES)
# [search]: the SearchConfig fields an experiment may set (model, budget, data, input_size and
# signals come from the experiment and its methods).
_SEARCH: dict[str, Any] = {"samples": int, "batch_size": int, "seed": int, "candidates": str, "tolerance": float,
                           "augment": bool, "halving": bool}


def parse_experiment(raw: dict[str, Any], where: str = "experiment") -> ExperimentSpec:
    """Check every key and value of a parsed experiment file; errors name the key and the file."""
    check_keys(raw, _KEYS, where)
    for key in ("model", "data", "budgets", "methods"):
        if key not in raw:
            raise BlockSwapError(f"{where}: missing key {key!r}")
    raw = dict(raw)
    if isinstance(raw["budgets"], list):  # a budget may be written as a number of parameters
        raw["budgets"] = [str(b) if isinstance(b, int) and not isinstance(b, bool) else b for b in raw["budgets"]]
    for key, hint in _TYPES.items():
        if key in raw and hint is not dict:
            raw[key] = typed(raw[key], hint, key, where)
        elif key in raw and not isinstance(raw[key], dict):
            raise BlockSwapError(f"{where}: [{key}] must be a table, got {raw[key]!r}")
    model = network_spec(raw["model"]).name
    parse_data(raw["data"])  # an unknown dataset fails here, before any run
    budgets = tuple(parse_budget(b) for b in raw["budgets"])
    seeds = seeds_of(raw.get("seeds", [0]), "seeds", where)
    if not raw["methods"]:
        raise BlockSwapError(f"{where}: 'methods' must be a table of methods, e.g. [methods.blockswap]; "
                             f"valid methods: {choices(METHODS.names())}")
    methods = tuple(_method(name, opts, seeds, where) for name, opts in raw["methods"].items())
    search = _search(raw.get("search", {}), f"{where} [search]")
    paper = raw.get("paper")
    if paper is not None:
        from .paper import paper_sets

        if paper not in paper_sets():
            raise BlockSwapError(f"{where}: unknown paper results {paper!r}; valid: {choices(paper_sets())}")
    input_size = raw.get("input_size")
    if input_size is not None and input_size < 8:
        raise BlockSwapError(f"{where}: input_size must be an integer >= 8, got {input_size!r}")
    teacher_model = raw.get("teacher_model")
    if teacher_model is not None:
        if not is_torchvision(str(teacher_model)):
            raise BlockSwapError(f"{where}: teacher_model {teacher_model!r} must be torchvision:NAME (a given, "
                                 "trained teacher); leave it out to train the teachers of `model`")
        for m in methods:
            if METHODS[m.name].from_teacher_weights:
                raise BlockSwapError(f"{where}: method {m.name} starts from the weights of a teacher of `model` "
                                     "trained by the experiment; it cannot be used with teacher_model")
    return ExperimentSpec(
        name=raw.get("name", Path(where).stem), model=model, data=raw["data"], budgets=budgets, seeds=seeds,
        teacher=_train_config(raw.get("teacher", {}), "teacher", where),
        student=_train_config(raw.get("student", {}), "student", where), search=search, methods=methods,
        distill=raw.get("distill", True), input_size=input_size, paper=paper,
        description=raw.get("description", ""), source=where, teacher_model=teacher_model,
        teacher_weights=raw.get("teacher_weights"), teacher_seed=_teacher_seed(raw, teacher_model, where))


def _teacher_seed(raw: dict[str, Any], teacher_model: str | None, where: str) -> int | None:
    seed = raw.get("teacher_seed")
    if seed is None:
        return None
    if seed < 0:
        raise BlockSwapError(f"{where}: teacher_seed must be an integer >= 0, got {seed!r}")
    if teacher_model is not None:
        raise BlockSwapError(f"{where}: teacher_seed picks a teacher the experiment trains; with teacher_model "
                             "the teacher is given: leave one out")
    return seed


def _method(name: str, opts: Any, default_seeds: tuple[int, ...], where: str) -> MethodSpec:
    try:
        method = METHODS[name]
    except BlockSwapError as exc:
        raise BlockSwapError(f"{where}: {exc}") from None
    return method.parse(opts, default_seeds, where)


def _search(raw: dict[str, Any], where: str) -> dict[str, Any]:
    check_keys(raw, set(_SEARCH), where)
    search = {k: typed(v, _SEARCH[k], k, where) for k, v in raw.items()}
    for key in ("samples", "batch_size"):
        if key in search and search[key] < 1:
            raise BlockSwapError(f"{where}: {key!r} must be a positive integer, got {search[key]!r}")
    if search.get("seed", 0) < 0:
        raise BlockSwapError(f"{where}: 'seed' must be a non-negative integer, got {search['seed']!r}")
    if "candidates" in search:
        parse_candidates(search["candidates"])  # fails early on a bad block name
    return search


_TRAIN_TYPES = typing.get_type_hints(TrainConfig)


def _train_config(raw: dict[str, Any], role: str, where: str) -> TrainConfig:
    raw = dict(raw)
    here = f"{where} [{role}]"
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    check_keys(raw, fields, here)
    for key, value in raw.items():
        typed(value, _TRAIN_TYPES[key], key, here)
    try:
        return recipe(str(raw.pop("recipe", "cifar")), **raw)
    except BlockSwapError as exc:
        raise BlockSwapError(f"{here}: {exc}") from None
