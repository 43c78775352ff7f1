"""Network specs: the shape of each network whose blocks can be swapped, in a registry.

A `NetworkSpec` is a value: stem, the stages (widths, depths, strides) and head, independent of
the block types. Costs walk it (`space.costs`) and `nn.network` builds from it, so the analytic
cost and the built network cannot disagree about the layout. Networks are registered by name
(as timm's ``register_model``): adding one is one decorated function returning its spec.

* ``wrn-D-k`` (paper Sec. 5): WideResNet for 32x32 inputs, stem conv3x3 3->16, three stages of
  n = (D-4)/6 blocks of widths 16k, 32k, 64k with strides 1, 2, 2, then BN-ReLU, pool, linear.
* ``resnet18``, ``resnet34`` (paper Sec. 6): ImageNet stem conv7x7/2 -> BN -> ReLU ->
  maxpool3x3/2, stages of widths 64..512 with strides 1, 2, 2, 2, then pool, linear; the blocks
  are pre-activation with no BN-ReLU after the last stage (as the authors' ResNet students).
* ``resnet18-0.5`` (paper Table 3): ResNet-18 whose last three stages have half the channels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Callable

from ..errors import BlockSwapError
from ..registry import Registry
from .complexity import Act, Complexity, Conv, Linear, MaxPool, Norm, Plan, Pool


@dataclass(frozen=True)
class BlockSlot:
    """A position for a swappable block: channels in and out, stride, input spatial size."""

    index: int
    stage: int
    c_in: int
    c_out: int
    stride: int
    h: int  # input height at the spec's (or the given) input size
    w: int


@dataclass(frozen=True)
class NetworkSpec:
    """The shape of a network, independent of its block types."""

    name: str
    stem: str  # "cifar": conv3x3; "imagenet": conv7x7/2 -> BN -> ReLU -> maxpool3x3/2
    stem_channels: int
    widths: tuple[int, ...]  # output channels of each stage
    depths: tuple[int, ...]  # blocks per stage
    strides: tuple[int, ...]  # stride of each stage's first block
    num_classes: int
    input_size: int  # default square input (32 for CIFAR, 224 for ImageNet)
    final_bn: bool  # WRN ends with BN-ReLU before pooling; the authors' ResNet students do not
    # The unswapped network's block types, when not all S: a torchvision ResNet-50's are B(4)
    # (`nn.discover`); also what Sec. 3.1's "standard block" means for sensitivity studies.
    standard: tuple[str, ...] | None = None
    # False for a detection backbone (paper Sec. 7): the detector reads the stage outputs, so the
    # global pool and classifier are not part of the network and not counted in its budget.
    classifier: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.num_classes, int) or isinstance(self.num_classes, bool) or self.num_classes < 1:
            raise BlockSwapError(f"num_classes must be a positive integer, got {self.num_classes!r}")

    @property
    def num_blocks(self) -> int:
        return sum(self.depths)

    @property
    def stage_names(self) -> tuple[str, ...]:
        """Names of the stages, whose outputs are the attention points (paper Sec. 3.2)."""
        return tuple(f"stage{i + 1}" for i in range(len(self.depths)))

    def stem_layers(self) -> Plan:
        c = self.stem_channels
        if self.stem == "cifar":
            return (("conv", Conv(3, c, 3)),)
        return (("conv", Conv(3, c, 7, 2)), ("bn", Norm(c)), ("relu", Act()), ("pool", MaxPool(3, 2, 1)))

    def head_layers(self) -> Plan:
        width = self.widths[-1]
        pre = (("bn", Norm(width)), ("relu", Act())) if self.final_bn else ()
        if not self.classifier:
            return pre
        return (*pre, ("pool", Pool()), ("fc", Linear(width, self.num_classes)))

    def stem_complexity(self, input_size: int | None = None) -> Complexity:
        size = self.input_size if input_size is None else input_size
        return Complexity(size, size).walk(self.stem_layers())

    def head_complexity(self) -> Complexity:
        """Final BN (WRN only) + global average pool + linear classifier (none for a backbone)."""
        return Complexity(1, 1).walk(self.head_layers())

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

    def backbone(self) -> "NetworkSpec":
        """This network without its pool and classifier: what a detector uses (paper Sec. 7)."""
        return replace(self, classifier=False)

    def with_classes(self, num_classes: int | None) -> "NetworkSpec":
        return self if num_classes is None else replace(self, num_classes=num_classes)


# --------------------------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------------------------


# Names (case-insensitive) and patterns such as ``wrn-D-k``, each building its spec from the match.
NETWORKS: Registry[NetworkSpec] = Registry("model")


def register_network(pattern: str, form: str | None = None, examples: tuple[str, ...] = ()
                     ) -> Callable[[Callable[[re.Match[str]], NetworkSpec]], Callable]:
    """Decorator: `make(match)` builds the spec of every name that fully matches `pattern`.

    `pattern` is a plain name ("resnet34") or a regular expression ("wrn-(\\d+)-(\\d+)");
    `form` describes the accepted names in error messages (default: the pattern); `examples`
    are names it accepts, offered as the nearest match of a misspelt name.
    """

    def wrap(make: Callable[[re.Match[str]], NetworkSpec]) -> Callable:
        written = form or pattern
        # A plain name ("resnet34", or a form the pattern itself accepts) is its own example.
        plain = (written,) if re.fullmatch(pattern, written.lower()) else ()
        NETWORKS.add_pattern(pattern, make, form, tuple(examples) or plain)
        return make

    return wrap


def networks() -> list[str]:
    """How each registered network is named, e.g. 'wrn-D-k (D = 6n+4, ...)', 'resnet34'."""
    return NETWORKS.forms()


def network_spec(name: "str | NetworkSpec", num_classes: int | None = None) -> NetworkSpec:
    """The spec of network `name` (default classes: 10 for WRNs, 1000 for ResNets)."""
    if isinstance(name, NetworkSpec):
        return name.with_classes(num_classes)
    return NETWORKS[str(name).strip()].with_classes(num_classes)


@register_network(r"wrn-(\d+)-(\d+)", "wrn-D-k (D = 6n+4, e.g. wrn-40-2, wrn-16-1)",
                  examples=("wrn-16-1", "wrn-16-2", "wrn-40-1", "wrn-40-2", "wrn-16-8", "wrn-28-10"))
def _wrn(match: re.Match[str]) -> NetworkSpec:
    depth, k = int(match[1]), int(match[2])
    if depth < 10 or (depth - 4) % 6 != 0 or k < 1:
        raise BlockSwapError(f"bad WideResNet {match[0]!r}: depth D must be 6n+4 with n >= 1 "
                             "(10, 16, 22, 28, 40, ...) and width k >= 1")
    n = (depth - 4) // 6
    return NetworkSpec(match[0], "cifar", 16, (16 * k, 32 * k, 64 * k), (n, n, n), (1, 2, 2),
                       num_classes=10, input_size=32, final_bn=True)


def _resnet(name: str, depths: tuple[int, ...], widths=(64, 128, 256, 512)) -> NetworkSpec:
    return NetworkSpec(name, "imagenet", 64, tuple(widths), depths, (1, 2, 2, 2),
                       num_classes=1000, input_size=224, final_bn=False)


@register_network("resnet18")
def _resnet18(match: re.Match[str]) -> NetworkSpec:
    return _resnet("resnet18", (2, 2, 2, 2))


@register_network("resnet34")
def _resnet34(match: re.Match[str]) -> NetworkSpec:
    return _resnet("resnet34", (3, 4, 6, 3))


@register_network(r"resnet18-0\.5", "resnet18-0.5")
def _resnet18_half(match: re.Match[str]) -> NetworkSpec:
    # Paper Table 3's ResNet-18-0.5: the last three stages at half width.
    return _resnet("resnet18-0.5", (2, 2, 2, 2), (64, 64, 128, 256))
