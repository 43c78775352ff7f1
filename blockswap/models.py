"""Networks whose residual blocks can be swapped: WideResNets (CIFAR) and ResNets (ImageNet).

One builder, `build_model(name, genotype)`, and one network class; the architecture's shape
(stem, block slots, stages, head) is a `NetworkSpec` value that `cost.py` reads too, so the
analytic cost and the built network cannot disagree about the layout.

Contract the rest of the tool relies on:

* ``model.blocks`` lists the swappable blocks in genotype order;
* each block passes its residual-branch output through an identity submodule ``probe``;
* ``model(x, return_attention=True)`` returns ``(logits, [stage outputs])``, the attention
  points of attention transfer (paper Sec. 3.2: the output of each stage).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from .blocks import Block, BlockType, Complexity, conv
from .errors import BlockSwapError, choices

if TYPE_CHECKING:
    from .genotype import Genotype


@dataclass(frozen=True)
class BlockSlot:
    """A position for a swappable block: channels in and out, stride, input spatial size."""

    index: int
    stage: int
    c_in: int
    c_out: int
    stride: int
    h: int  # input height for the spec's input size
    w: int


@dataclass(frozen=True)
class NetworkSpec:
    """The shape of a network family member, independent of its block types."""

    name: str
    family: str  # "wrn" or "resnet"
    stem_channels: int
    widths: tuple[int, ...]  # output channels of each stage
    depths: tuple[int, ...]  # blocks per stage
    strides: tuple[int, ...]  # stride of each stage's first block
    num_classes: int
    input_size: int  # default square input (32 for CIFAR, 224 for ImageNet)
    final_bn: bool  # WRN ends with BN-ReLU before pooling; the authors' ResNet students do not

    @property
    def num_blocks(self) -> int:
        return sum(self.depths)

    def stem_complexity(self, input_size: int | None = None) -> Complexity:
        size = self.input_size if input_size is None else input_size
        cx = Complexity(size, size)
        if self.family == "wrn":
            return cx.conv(3, self.stem_channels, 3)
        # ImageNet stem: conv7x7/2 -> BN -> ReLU -> maxpool3x3/2
        return cx.conv(3, self.stem_channels, 7, 2).bn(self.stem_channels).pool(3, 2, 1)

    def slots(self, input_size: int | None = None) -> list[BlockSlot]:
        """The block positions, in genotype order, with their input spatial size."""
        cx = self.stem_complexity(input_size)
        h, w = cx.h, cx.w
        slots, c_in = [], self.stem_channels
        for stage, (width, depth, stride) in enumerate(zip(self.widths, self.depths, self.strides)):
            for i in range(depth):
                s = stride if i == 0 else 1
                slots.append(BlockSlot(len(slots), stage, c_in, width, s, h, w))
                h, w = (h - 1) // s + 1, (w - 1) // s + 1  # 3x3 pad-1 and 1x1 pad-0 agree
                c_in = width
        return slots

    def stage_ends(self) -> list[int]:
        """Index of the last block of each stage: its output is an attention point."""
        ends, total = [], 0
        for depth in self.depths:
            total += depth
            ends.append(total - 1)
        return ends

    def head_complexity(self) -> Complexity:
        """Final BN (WRN only) + global average pool + linear classifier; spatial size irrelevant."""
        cx = Complexity(1, 1)
        if self.final_bn:
            cx = cx.bn(self.widths[-1])
        return cx.linear(self.widths[-1], self.num_classes)


_WRN = re.compile(r"^wrn-(\d+)-(\d+)$")
_RESNET_DEPTHS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}
MODEL_FORMS = ("wrn-D-k (D = 6n+4, e.g. wrn-40-2, wrn-16-1)", "resnet18", "resnet34")


def network_spec(name: str, num_classes: int | None = None) -> NetworkSpec:
    """Parse a network name: ``wrn-D-k`` (32x32 inputs) or ``resnet18``/``resnet34`` (224x224)."""
    key = str(name).strip().lower()
    match = _WRN.match(key)
    if match:
        depth, k = int(match[1]), int(match[2])
        if depth < 10 or (depth - 4) % 6 != 0 or k < 1:
            raise BlockSwapError(
                f"bad WideResNet {name!r}: depth D must be 6n+4 with n >= 1 (10, 16, 22, 28, 40, ...) "
                "and width k >= 1"
            )
        n = (depth - 4) // 6
        return NetworkSpec(key, "wrn", 16, (16 * k, 32 * k, 64 * k), (n, n, n), (1, 2, 2),
                           _classes(num_classes, 10), 32, True)
    if key in _RESNET_DEPTHS:
        return NetworkSpec(key, "resnet", 64, (64, 128, 256, 512), _RESNET_DEPTHS[key], (1, 2, 2, 2),
                           _classes(num_classes, 1000), 224, False)
    raise BlockSwapError(f"unknown model {name!r}; valid models: {choices(MODEL_FORMS)}")


def _classes(num_classes: int | None, default: int) -> int:
    if num_classes is None:
        return default
    if not isinstance(num_classes, int) or num_classes < 1:
        raise BlockSwapError(f"num_classes must be a positive integer, got {num_classes!r}")
    return num_classes


class BlockSwapNet(nn.Module):
    """A WideResNet or pre-activation ResNet whose blocks are given by a genotype."""

    def __init__(self, spec: NetworkSpec, block_types: list[BlockType]):
        super().__init__()
        self.spec = spec
        if spec.family == "wrn":
            self.stem = conv(3, spec.stem_channels, 3)
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(3, spec.stem_channels, 7, stride=2, padding=3, bias=False),
                nn.BatchNorm2d(spec.stem_channels), nn.ReLU(inplace=True),
                nn.MaxPool2d(3, stride=2, padding=1))
        self.blocks = nn.ModuleList(
            Block(t, s.c_in, s.c_out, s.stride) for t, s in zip(block_types, spec.slots()))
        self._stage_ends = frozenset(spec.stage_ends())
        width = spec.widths[-1]
        self.head = nn.Sequential(nn.BatchNorm2d(width), nn.ReLU(inplace=True)) if spec.final_bn \
            else nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, spec.num_classes)
        init_weights(self)

    @property
    def genotype_names(self) -> list[str]:
        return [b.block_type.name for b in self.blocks]

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        points = []
        x = self.stem(x)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self._stage_ends:
                points.append(x)
        logits = self.fc(torch.flatten(self.pool(self.head(x)), 1))
        return (logits, points) if return_attention else logits


def init_weights(model: nn.Module) -> None:
    """The authors' initialisation, which the Fisher potential at initialisation depends on.

    Conv weights ~ N(0, 2 / (k*k*c_out)) (He et al. 2015, fan-out; unchanged for grouped
    convs), BN weight 1 and bias 0, linear bias 0 (linear weight keeps PyTorch's default).
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)


def build_model(name: str, genotype: "Genotype | str | list | None" = None,
                num_classes: int | None = None) -> BlockSwapNet:
    """Build network `name` with the block types of `genotype` (None: all standard blocks).

    `genotype` may be a `Genotype`, its text form "S,G(4),...", or a list of block types.
    Default classes: 10 for ``wrn-*``, 1000 for ``resnet*``.

    >>> model = build_model("wrn-40-2")
    >>> sum(p.numel() for p in model.parameters())
    2243546
    """
    from .genotype import Genotype, as_genotype

    spec = network_spec(name, num_classes)
    geno = Genotype.standard(spec.name) if genotype is None else as_genotype(genotype, spec.name)
    geno.check(spec)
    return BlockSwapNet(spec, list(geno.blocks))


# --------------------------------------------------------------------------------------------
# Teachers from torchvision (post-activation ResNets with ImageNet weights)
# --------------------------------------------------------------------------------------------

TEACHERS = ("resnet18", "resnet34")


class TorchvisionTeacher(nn.Module):
    """torchvision's post-activation ResNet, returning its four stage outputs as attention points.

    The paper's ImageNet teacher is torchvision's ResNet-34 (21.8M parameters, 26.73% top-1
    error with its ImageNet weights); its attention points are the outputs of layer1..layer4.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        points = []
        for layer in (n.layer1, n.layer2, n.layer3, n.layer4):
            x = layer(x)
            points.append(x)
        logits = n.fc(torch.flatten(n.avgpool(x), 1))
        return (logits, points) if return_attention else logits


def build_teacher(name: str, weights: str | Path | None = None,
                  num_classes: int = 1000) -> TorchvisionTeacher:
    """torchvision's `name` (resnet18/resnet34), with weights from a local ``.pth`` file if given.

    No download is attempted: pass the file torchvision would have fetched (e.g.
    ``resnet34-b627a593.pth``) or a state dict saved from such a model.
    """
    import torchvision

    key = str(name).strip().lower()
    if key not in TEACHERS:
        raise BlockSwapError(f"unknown torchvision teacher {name!r}; valid teachers: {choices(TEACHERS)}")
    net = getattr(torchvision.models, key)(weights=None, num_classes=num_classes)
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise BlockSwapError(f"teacher weights file {str(path)!r} does not exist")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for a corrupt or foreign file
            raise BlockSwapError(f"cannot read teacher weights {str(path)!r}: {exc}") from None
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        try:
            net.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as exc:
            first = str(exc).strip().splitlines()[1:2] or [str(exc)]
            raise BlockSwapError(f"teacher weights {str(path)!r} do not fit torchvision {key} with "
                                 f"{num_classes} classes: {first[0].strip()}") from None
    return TorchvisionTeacher(net)
