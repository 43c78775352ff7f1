"""References to networks and teachers, parsed once at the edge (CLI, API) into values.

A network reference is a BlockSwap network name (``wrn-40-2``, ``resnet34``) or
``torchvision:NAME``: the student space of a torchvision ResNet (`nn.discover`), or, as a
teacher, torchvision's network itself (paper Sec. 6 uses torchvision's ResNet-34). The prefix is
recognised here and nowhere else (`torchvision_arch`).

A `TeacherRef` says where a teacher comes from: a checkpoint (file or run folder of ``train``),
a torchvision network with a local weights file, or a user's own ``nn.Module`` given in the
process (which has no file; `source` then describes it). Torch-free: the lowest layer may hold it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import BlockSwapError, choices

TORCHVISION = "torchvision"
TORCHVISION_PREFIX = TORCHVISION + ":"
TEACHER_KINDS = ("checkpoint", "torchvision", "module")


def torchvision_arch(ref: Any) -> str | None:
    """NAME of a ``torchvision:NAME`` reference (stripped, lower case); None for anything else
    (a network name, a checkpoint path, a `NetworkSpec`, None)."""
    if not isinstance(ref, str):
        return None
    kind, sep, name = ref.strip().partition(":")
    if not sep or kind.strip().lower() != TORCHVISION:
        return None
    name = name.strip().lower()
    if not name:
        raise BlockSwapError(f"{ref!r} names no network; write torchvision:NAME (e.g. torchvision:resnet34)")
    return name


def is_torchvision(ref: Any) -> bool:
    """Whether `ref` is written ``torchvision:NAME``."""
    return torchvision_arch(ref) is not None


@dataclass(frozen=True)
class TeacherRef:
    """Where a teacher comes from (see the module docstring).

    `source`: the checkpoint file or run folder; the torchvision network's NAME; or for a module,
    a description of it (its class name). `weights`: a local state dict, for torchvision only
    (nothing is downloaded; a checkpoint holds its weights, a module is given with its weights).
    """

    kind: str
    source: str
    weights: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in TEACHER_KINDS:
            raise BlockSwapError(f"unknown teacher kind {self.kind!r}; valid kinds: {choices(TEACHER_KINDS)}")
        if not isinstance(self.source, str) or not self.source.strip():
            raise BlockSwapError(f"a {self.kind} teacher needs a source, got {self.source!r}")
        if self.kind == "torchvision":
            object.__setattr__(self, "source", self.source.strip().lower())
        if self.weights is not None:
            if self.kind != "torchvision":
                raise BlockSwapError(f"a weights file goes with a torchvision:NAME teacher, not with a {self.kind} "
                                     f"teacher ({self.source!r} already holds its weights)")
            object.__setattr__(self, "weights", str(self.weights))

    @property
    def text(self) -> str:
        """How the teacher is written on the command line (``torchvision:resnet34``, a path)."""
        if self.kind == "torchvision":
            return TORCHVISION_PREFIX + self.source
        return f"module:{self.source}" if self.kind == "module" else self.source

    def __str__(self) -> str:
        return self.text

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "source": self.source, "weights": self.weights}

    @classmethod
    def from_dict(cls, data: Any) -> "TeacherRef":
        if not isinstance(data, dict) or not {"kind", "source"} <= set(data):
            raise BlockSwapError(f"a teacher reference needs \"kind\" and \"source\", got {data!r}")
        return cls(data["kind"], data["source"], data.get("weights"))


def parse_teacher(text: "str | TeacherRef | Any", weights: Any = None) -> TeacherRef:
    """A teacher reference from its text: ``torchvision:NAME`` (with `weights`, a local state
    dict) or a checkpoint file / run folder (a path, ``os.PathLike`` accepted). A `TeacherRef`
    is returned as is (`weights` must then be None or its own)."""
    if isinstance(text, TeacherRef):
        if weights is not None and str(weights) != text.weights:
            raise BlockSwapError(f"teacher {text} already names its weights ({text.weights!r}), not {str(weights)!r}")
        return text
    if hasattr(text, "__fspath__"):
        text = str(text)
    if not isinstance(text, str):
        raise BlockSwapError(f"a teacher is a checkpoint path or torchvision:NAME, got {type(text).__name__}")
    arch = torchvision_arch(text)
    if arch is not None:
        return TeacherRef("torchvision", arch, None if weights is None else str(weights))
    if weights is not None:
        raise BlockSwapError(f"a weights file goes with torchvision:NAME; the checkpoint {text!r} "
                             "already holds its weights")
    return TeacherRef("checkpoint", text.strip())
