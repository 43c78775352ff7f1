"""Teachers from torchvision: post-activation ResNets (the paper's ImageNet teacher, Sec. 6, and
any ResNet-style network of `nn.discover.RESNETS`).

The stage outputs (``layer1`` .. ``layer4``) are the attention points; they are taken with
torchvision's own `create_feature_extractor` by module name, not by re-implementing the forward.
Weights come from a local file only (nothing is downloaded) and load by parameter name; the
number of classes is the file's classifier's.
"""

from __future__ import annotations

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

    key = str(name).strip().lower()
    if key not in TEACHERS:
        raise BlockSwapError(f"unknown torchvision teacher {name!r}; valid teachers: {choices(TEACHERS)}")
    state = None if weights is None else _read_weights(Path(weights))
    if num_classes is None:
        fc = state.get("fc.weight") if isinstance(state, dict) else None
        num_classes = int(fc.shape[0]) if isinstance(fc, torch.Tensor) and fc.dim() == 2 else 1000
    net = getattr(torchvision.models, key)(weights=None, num_classes=num_classes)
    if state is not None:
        try:
            net.load_state_dict(state)  # by parameter name
        except (RuntimeError, TypeError, AttributeError) as exc:
            first = str(exc).strip().splitlines()[1:2] or [str(exc)]
            raise BlockSwapError(f"teacher weights {str(weights)!r} do not fit torchvision {key} with "
                                 f"{num_classes} classes: {first[0].strip()}") from None
    return TorchvisionTeacher(net)


def weights_classes(weights: "str | Path") -> int:
    """The number of classes of a torchvision ResNet state dict: the rows of its ``fc.weight``."""
    state = _read_weights(Path(weights))
    fc = state.get("fc.weight") if isinstance(state, dict) else None
    if not isinstance(fc, torch.Tensor) or fc.dim() != 2:
        raise BlockSwapError(f"teacher weights {str(weights)!r} hold no classifier 'fc.weight'; expected the "
                             "state dict of a torchvision ResNet")
    return int(fc.shape[0])


def _read_weights(path: Path) -> dict:
    if not path.is_file():
        raise BlockSwapError(f"teacher weights file {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        raise BlockSwapError(f"cannot read teacher weights {str(path)!r}: {exc}") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return state
