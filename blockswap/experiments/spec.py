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

Methods (`METHODS`): blockswap, random, single (Moonshine: one block type everywhere), reduced
(smaller networks of the teacher's family), l1 and snip (unstructured pruning of the teacher to a
non-zero parameter budget), sensitivity (one block at a time swapped, paper Appendix B). Every
method may set its own ``seeds``.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import BlockSwapError, choices
from ..proxies.registry import parse_signal
from ..space.blocks import parse_block, parse_candidates
from ..space.budget import Budget, parse_budget
from ..space.networks import network_spec
from ..space.refs import is_torchvision
from ..train.config import TrainConfig, recipe

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

METHODS = ("blockswap", "random", "single", "reduced", "l1", "snip", "sensitivity")

# Paper Table 1 and Sec. 4.2: training accuracy, weight L2 norms, gradient norms and Fisher
# potential after k minibatches; our additions: zero-cost proxies and plain parameter count.
DEFAULT_SIGNALS = ("fisher", "fisher@10", "fisher@100", "train_acc@1", "train_acc@10", "train_acc@100",
                   "l2@1", "l2@10", "l2@100", "grad_norm@1", "grad_norm@10", "grad_norm@100",
                   "snip", "synflow", "naswot", "jacob_cov")

# Keys each method accepts besides `seeds`, with their defaults.
_METHOD_KEYS: dict[str, dict[str, Any]] = {
    # samples None: the search's count only; candidates: candidate sets compared, one search each
    # (e.g. ["paper", "paper+structured"]; None: the [search] section's)
    "blockswap": {"samples": None, "candidates": None},
    "random": {"networks": 100, "signals": list(DEFAULT_SIGNALS)},
    "single": {"nearest": 2},  # the single block types whose network cost lies nearest the budget
    "reduced": {"models": []},  # e.g. ["wrn-16-1", "wrn-16-2", "wrn-40-1"] for a WRN-40-2 teacher
    "l1": {},
    "snip": {},
    "sensitivity": {"block": "G(4)"},  # paper Appendix B: one block at a time swapped for G(4)
}


@dataclass(frozen=True)
class MethodSpec:
    """One method of the comparison with its options (parsed) and its seeds."""

    name: str
    seeds: tuple[int, ...]
    options: dict[str, Any] = field(default_factory=dict, compare=False)

    def __hash__(self) -> int:
        return hash((self.name, self.seeds))


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
    teacher_weights: str | None = None

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
                "methods": {m.name: {"seeds": list(m.seeds), **m.options} for m in self.methods},
                "paper": self.paper, "description": self.description, "source": self.source,
                "teacher_model": self.teacher_model, "teacher_weights": self.teacher_weights}


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


_KEYS = {"name", "description", "model", "data", "budgets", "seeds", "teacher", "student", "search", "methods",
         "distill", "input_size", "paper", "teacher_model", "teacher_weights"}  # of an experiment file


def parse_experiment(raw: dict[str, Any], where: str = "experiment") -> ExperimentSpec:
    """Check every key and value of a parsed experiment file; errors name the key and the file."""
    _no_unknown(raw, _KEYS, where)
    for key in ("model", "data", "budgets", "methods"):
        if key not in raw:
            raise BlockSwapError(f"{where}: missing key {key!r}")
    model = network_spec(str(raw["model"])).name
    budgets = tuple(parse_budget(str(b)) for b in _list(raw["budgets"], "budgets", where))
    seeds = _seeds(raw.get("seeds", [0]), "seeds", where)
    if not isinstance(raw["methods"], dict) or not raw["methods"]:
        raise BlockSwapError(f"{where}: 'methods' must be a table of methods, e.g. [methods.blockswap]; "
                             f"valid methods: {choices(METHODS)}")
    methods = tuple(_method(name, opts, seeds, where) for name, opts in raw["methods"].items())
    search = dict(raw.get("search", {}))
    _no_unknown(search, {"samples", "batch_size", "seed", "candidates", "tolerance", "augment", "halving"},
                f"{where} [search]")
    if "candidates" in search:
        parse_candidates(search["candidates"])  # fails early on a bad block name
    paper = raw.get("paper")
    if paper is not None:
        from .paper import paper_sets

        if paper not in paper_sets():
            raise BlockSwapError(f"{where}: unknown paper results {paper!r}; valid: {choices(paper_sets())}")
    input_size = raw.get("input_size")
    if input_size is not None and (not isinstance(input_size, int) or input_size < 8):
        raise BlockSwapError(f"{where}: input_size must be an integer >= 8, got {input_size!r}")
    teacher_model = raw.get("teacher_model")
    if teacher_model is not None:
        if not is_torchvision(str(teacher_model)):
            raise BlockSwapError(f"{where}: teacher_model {teacher_model!r} must be torchvision:NAME (a given, "
                                 "trained teacher); leave it out to train the teachers of `model`")
        if any(m.name == "l1" for m in methods):
            raise BlockSwapError(f"{where}: method l1 prunes a teacher of `model` trained by the experiment; "
                                 "it cannot be used with teacher_model")
    return ExperimentSpec(
        name=str(raw.get("name", Path(where).stem)), model=model, data=str(raw["data"]), budgets=budgets,
        seeds=seeds, teacher=_train_config(raw.get("teacher", {}), "teacher", where),
        student=_train_config(raw.get("student", {}), "student", where), search=search, methods=methods,
        distill=bool(raw.get("distill", True)), input_size=input_size, paper=paper,
        description=str(raw.get("description", "")), source=where,
        teacher_model=None if teacher_model is None else str(teacher_model),
        teacher_weights=None if raw.get("teacher_weights") is None else str(raw["teacher_weights"]))


def _method(name: str, opts: Any, default_seeds: tuple[int, ...], where: str) -> MethodSpec:
    if name not in METHODS:
        raise BlockSwapError(f"{where}: unknown method {name!r}; valid methods: {choices(METHODS)}")
    if not isinstance(opts, dict):
        raise BlockSwapError(f"{where}: [methods.{name}] must be a table, got {opts!r}")
    _no_unknown(opts, {"seeds", *_METHOD_KEYS[name]}, f"{where} [methods.{name}]")
    options = {**_METHOD_KEYS[name], **{k: v for k, v in opts.items() if k != "seeds"}}
    here = f"{where} [methods.{name}]"
    if name == "blockswap" and options["samples"] is not None:
        options["samples"] = [_positive(n, "samples", here) for n in _list(options["samples"], "samples", here)]
    if name == "blockswap" and options["candidates"] is not None:
        options["candidates"] = [str(c) for c in _list(options["candidates"], "candidates", here)]
        for c in options["candidates"]:
            parse_candidates(c)  # fails early on a bad set or block name
    if name == "random":
        options["networks"] = _positive(options["networks"], "networks", here)
        options["signals"] = [parse_signal(s).name for s in _list(options["signals"], "signals", here)]
    if name == "single":
        options["nearest"] = _positive(options["nearest"], "nearest", here)
    if name == "reduced":
        options["models"] = [network_spec(str(m)).name for m in _list(options["models"], "models", here)]
    if name == "sensitivity":
        options["block"] = parse_block(str(options["block"])).name
    seeds = _seeds(opts["seeds"], "seeds", here) if "seeds" in opts else default_seeds
    return MethodSpec(name, seeds, options)


def _train_config(raw: Any, role: str, where: str) -> TrainConfig:
    if not isinstance(raw, dict):
        raise BlockSwapError(f"{where}: [{role}] must be a table of training settings, got {raw!r}")
    raw = dict(raw)
    try:
        return recipe(str(raw.pop("recipe", "cifar")), **raw)
    except BlockSwapError as exc:
        raise BlockSwapError(f"{where} [{role}]: {exc}") from None
    except TypeError as exc:
        raise BlockSwapError(f"{where} [{role}]: {exc}") from None


def _no_unknown(raw: dict[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(raw) - known)
    if unknown:
        raise BlockSwapError(f"{where}: unknown key {unknown[0]!r}; valid keys: {choices(sorted(known))}")


def _list(value: Any, key: str, where: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise BlockSwapError(f"{where}: {key!r} must be a non-empty list, got {value!r}")
    return value


def _positive(value: Any, key: str, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise BlockSwapError(f"{where}: {key!r} must be a positive integer, got {value!r}")
    return value


def _seeds(value: Any, key: str, where: str) -> tuple[int, ...]:
    seeds = _list(value, key, where)
    if any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise BlockSwapError(f"{where}: {key!r} must be distinct non-negative integers, got {value!r}")
    return tuple(seeds)
