"""Teachers from torchvision: post-activation ResNets (the paper's ImageNet teacher, Sec. 6).

The stage outputs (``layer1`` .. ``layer4``) are the attention points; they are taken with
torchvision's own `create_feature_extractor` by module name, not by re-implementing the forward.
Weights come from a local file only (nothing is downloaded) and load by parameter name.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import BlockSwapError, choices

TEACHERS = ("resnet18", "resnet34")
_STAGES = ("layer1", "layer2", "layer3", "layer4")


class TorchvisionTeacher(nn.Module):
    """torchvision's ResNet with the `BlockSwapNet` interface: ``forward`` gives logits,
    ``forward_intermediates`` gives ``(logits, {layer1..layer4: output})``."""

    stage_names = _STAGES

    def __init__(self, net: nn.Module):
        super().__init__()
        from torchvision.models.feature_extraction import create_feature_extractor

        self.net = create_feature_extractor(net, {**{s: s for s in _STAGES}, "fc": "logits"})

    def forward_intermediates(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out = dict(self.net(x))
        return out.pop("logits"), out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_intermediates(x)[0]


def build_teacher(name: str, weights: "str | Path | None" = None, num_classes: int = 1000) -> TorchvisionTeacher:
    """torchvision's `name` (resnet18/resnet34), with weights from a local ``.pth`` file if given.

    Pass the file torchvision would have fetched (e.g. ``resnet34-b627a593.pth``) or a state
    dict saved from such a model.
    """
    import torchvision

    key = str(name).strip().lower()
    if key not in TEACHERS:
        raise BlockSwapError(f"unknown torchvision teacher {name!r}; valid teachers: {choices(TEACHERS)}")
    net = getattr(torchvision.models, key)(weights=None, num_classes=num_classes)
    if weights is not None:
        try:
            net.load_state_dict(_read_weights(Path(weights)))
        except (RuntimeError, TypeError, AttributeError) as exc:
            first = str(exc).strip().splitlines()[1:2] or [str(exc)]
            raise BlockSwapError(f"teacher weights {str(weights)!r} do not fit torchvision {key} with "
                                 f"{num_classes} classes: {first[0].strip()}") from None
    return TorchvisionTeacher(net)


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
