"""Teachers from torchvision: post-activation ResNets (the paper's ImageNet teacher, Sec. 6, and
any ResNet-style network of `nn.discover.RESNETS`).

The stage outputs (``layer1`` .. ``layer4``) are the attention points; they are taken with
torchvision's own `create_feature_extractor` by module name, not by re-implementing the forward.
Weights come from a local file only (nothing is downloaded) and load by parameter name; the
number of classes is the file's classifier's.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ..errors import BlockSwapError, choices
from .discover import RESNETS, stage_names

TEACHERS = RESNETS


class TorchvisionTeacher(nn.Module):
    """torchvision's ResNet with the `BlockSwapNet` interface: ``forward`` gives logits,
    ``forward_intermediates`` gives ``(logits, {layer1..layer4: output})``."""

    def __init__(self, net: nn.Module):
        super().__init__()
        from torchvision.models.feature_extraction import create_feature_extractor

        self.stage_names = stage_names(net)
        self.net = create_feature_extractor(net, {**{s: s for s in self.stage_names}, "fc": "logits"})

    def forward_intermediates(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out = dict(self.net(x))
        return out.pop("logits"), out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_intermediates(x)[0]


def build_teacher(name: str, weights: "str | Path | None" = None, num_classes: int | None = None) -> TorchvisionTeacher:
    """torchvision's `name` (e.g. resnet34, resnet50), with weights from a local ``.pth`` file.

    Pass the file torchvision would have fetched (e.g. ``resnet34-b627a593.pth``) or a state
    dict saved from such a model (fine-tuned: the classes are its ``fc``'s, unless `num_classes`).
    """
    import torchvision

    key = _teacher_name(name)
    state = None
    if weights is not None:
        state, classes = check_weights(key, weights)
        if num_classes is not None and num_classes != classes:
            raise BlockSwapError(f"teacher weights {str(weights)!r} do not fit torchvision {key} with "
                                 f"{num_classes} classes: they have {classes}")
        num_classes = classes
    net = getattr(torchvision.models, key)(weights=None, num_classes=num_classes or 1000)
    if state is not None:
        net.load_state_dict(state)  # by parameter name; every key and shape checked above
    return TorchvisionTeacher(net)


def _teacher_name(name: str) -> str:
    key = str(name).strip().lower().removeprefix("torchvision:")
    if key not in TEACHERS:
        raise BlockSwapError(f"unknown torchvision teacher {name!r}; valid teachers: {choices(TEACHERS)}")
    return key


def check_weights(name: str, weights: "str | Path") -> tuple[dict[str, torch.Tensor], int]:
    """The state dict in the file `weights` and its number of classes, checked against torchvision's
    `name` (``resnet34`` or ``torchvision:resnet34``): the same keys, each of the same shape.

    The one check of a teacher weights file, for every command that reads one (cost, search,
    train): a ResNet-34 file given for a ResNet-18, or a file missing half its keys, is refused
    with one line naming the file and the first difference.
    """
    import torchvision

    key = _teacher_name(name)
    where = str(weights)
    state = _read_weights(Path(weights))
    fc = state.get("fc.weight")
    if not isinstance(fc, torch.Tensor) or fc.dim() != 2:
        raise BlockSwapError(f"teacher weights {where!r} hold no classifier 'fc.weight'; expected the "
                             f"state dict of a torchvision {key}")
    classes = int(fc.shape[0])
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        want = {k: tuple(v.shape) for k, v in
                getattr(torchvision.models, key)(weights=None, num_classes=classes).state_dict().items()}
    have = {k: tuple(v.shape) if isinstance(v, torch.Tensor) else None for k, v in state.items()}
    missing = [k for k in want if k not in have]
    extra = [k for k in have if k not in want]
    wrong = [k for k in want if k in have and have[k] != want[k]]
    if missing or extra or wrong:
        if missing:
            first = f"{len(missing)} of its {len(want)} tensors are missing (e.g. {missing[0]!r})"
        elif extra:
            first = f"{len(extra)} tensors are not {key}'s (e.g. {extra[0]!r})"
        else:
            k = wrong[0]
            first = f"{k!r} is {have[k] if have[k] is not None else 'not a tensor'}, not {want[k]}"
        raise BlockSwapError(f"teacher weights {where!r} do not fit torchvision {key} with {classes} classes: "
                             f"{first}; expected the state dict of a torchvision {key}")
    return state, classes


def weights_classes(weights: "str | Path", name: str) -> int:
    """The number of classes of the torchvision `name` state dict in `weights`, checked (`check_weights`)."""
    return check_weights(name, weights)[1]


def _read_weights(path: Path) -> dict:
    """The state dict in `path` (a ``{"state_dict": ...}`` wrapper unwrapped); one line if unreadable."""
    if path.is_dir():
        raise BlockSwapError(f"teacher weights {str(path)!r} is a folder; give the .pth state dict file")
    if not path.is_file():
        raise BlockSwapError(f"teacher weights file {str(path)!r} does not exist")
    expected = "expected a state dict saved by torch.save(model.state_dict(), PATH)"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's message advises weights_only=False, i.e. running the file's code: never relayed.
        raise BlockSwapError(f"cannot read teacher weights {str(path)!r}: it holds objects other than tensors "
                             f"(a pickled model?); {expected}") from None
    except Exception:  # torch raises many types for a corrupt or foreign file
        raise BlockSwapError(f"cannot read teacher weights {str(path)!r}: not a PyTorch file (or truncated); "
                             f"{expected}") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise BlockSwapError(f"teacher weights {str(path)!r} hold a {type(state).__name__}, not a state dict; {expected}")
    return state


class ModuleTeacher(nn.Module):
    """A user's `nn.Module` with the `BlockSwapNet` interface: ``forward_intermediates(x)`` gives
    ``(logits, {node: output})`` at the attention points `nodes` (torchvision FX node names)."""

    def __init__(self, module: nn.Module, nodes: tuple[str, ...], output: str):
        super().__init__()
        from torchvision.models.feature_extraction import create_feature_extractor

        self.stage_names = nodes
        self.net = create_feature_extractor(module, {**{n: n for n in nodes}, output: "logits"})

    def forward_intermediates(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out = dict(self.net(x))
        return out.pop("logits"), out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_intermediates(x)[0]


def module_teacher(module: nn.Module, nodes: "Sequence[str] | None" = None) -> ModuleTeacher:
    """Any `nn.Module` returning logits as a teacher whose attention points (paper Sec. 3.2) are
    the outputs of `nodes`, given as `torchvision.models.feature_extraction` node names
    (``get_graph_node_names(module)``); default: the stages ``layer1..`` of a torchvision ResNet."""
    from torchvision.models.feature_extraction import get_graph_node_names

    if not isinstance(module, nn.Module):
        raise BlockSwapError(f"a module teacher must be a torch nn.Module, got {type(module).__name__}")
    if nodes is None:
        nodes = stage_names(module)
        if not nodes:
            raise BlockSwapError(f"{type(module).__name__} is not a torchvision ResNet: give nodes=[...], the "
                                 "attention points as torchvision.models.feature_extraction node names")
    nodes = (nodes,) if isinstance(nodes, str) else tuple(nodes)
    if not nodes:
        raise BlockSwapError("give at least one attention point in nodes")
    try:
        train, evaluation = get_graph_node_names(module)
    except Exception as exc:  # torch.fx cannot trace data-dependent control flow
        raise BlockSwapError(f"cannot trace {type(module).__name__} with torch.fx to find its nodes: "
                             f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    leaves = [n for n in evaluation if n in set(train)]  # a teacher runs in both modes' graphs
    # A module's name ("layer1") stands for its last node, as in create_feature_extractor.
    valid = list(dict.fromkeys(p for n in leaves for p in
                               [".".join(n.split(".")[:i]) for i in range(1, n.count(".") + 1)] + [n]))
    unknown = [n for n in nodes if n not in valid]
    if unknown:
        raise BlockSwapError(f"unknown node {unknown[0]!r} of {type(module).__name__}; valid nodes: {choices(valid)}")
    return ModuleTeacher(module, nodes, leaves[-1])  # the last node computes the output (the logits)
