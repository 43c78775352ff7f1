"""Any torchvision ResNet-style network as a teacher: its student space, discovered by structure.

`students_space(module)` walks a ResNet as torchvision builds it (``resnet18/34/50/101/152``,
``wide_resnet50_2``, ``resnext50_32x4d``, or a user's own fine-tuned copy): a stem (``conv1``
7x7/2, ``bn1``, ``relu``, ``maxpool``), stages ``layer1``, ``layer2``, ... of residual blocks, and
a classifier ``fc``. Each block is recognised by its layers, not by its class: two 3x3 convs is
a basic block (our ``S``); 1x1 -> 3x3 (g groups) -> 1x1 is a bottleneck of width w with output c
(our ``B(c/w)``, or ``BG(c/w, g)`` when grouped). The student keeps the teacher's stem, stage
widths, strides, classes and classifier; every block may then be swapped (paper Sec. 3.1), and
the attention points are the stage outputs, taken from the teacher by module name.

Registered as networks ``torchvision:NAME`` (e.g. ``blockswap cost --model torchvision:resnet50``).
"""

from __future__ import annotations

import functools
import re

from torch import nn

from ..errors import BlockSwapError, choices
from ..registry import did_you_mean
from ..space.blocks import BlockType, Groups
from ..space.networks import NetworkSpec, register_network
from ..space.refs import TORCHVISION_PREFIX

# torchvision builders of ResNet-style networks (all share the layout above).
RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "wide_resnet50_2",
           "wide_resnet101_2", "resnext50_32x4d", "resnext101_32x8d")


def _conv(module: nn.Module, name: str, where: str) -> nn.Conv2d:
    conv = getattr(module, name, None)
    if not isinstance(conv, nn.Conv2d):
        raise BlockSwapError(f"{where}: expected a Conv2d named {name!r} (a torchvision ResNet block), "
                             f"found {type(conv).__name__}")
    return conv


def recognise_block(block: nn.Module, where: str) -> tuple[BlockType, int, int, int]:
    """(block type, input channels, output channels, stride) of one residual block."""
    c1, c2 = _conv(block, "conv1", where), _conv(block, "conv2", where)
    if isinstance(getattr(block, "conv3", None), nn.Conv2d):  # bottleneck: 1x1 -> 3x3 -> 1x1
        c3 = block.conv3
        if (c1.kernel_size, c2.kernel_size, c3.kernel_size) != ((1, 1), (3, 3), (1, 1)):
            raise BlockSwapError(f"{where}: a bottleneck block needs 1x1, 3x3, 1x1 convs, found kernels "
                                 f"{c1.kernel_size}, {c2.kernel_size}, {c3.kernel_size}")
        width, out = c2.out_channels, c3.out_channels
        if out % width or c1.out_channels != width or c2.in_channels != width:
            raise BlockSwapError(f"{where}: bottleneck width {width} does not divide its {out} output channels")
        factor = out // width
        kind = BlockType("B", factor) if c2.groups == 1 else BlockType("BG", factor, Groups(c2.groups))
        return kind, c1.in_channels, out, c2.stride[0] * c1.stride[0]
    if (c1.kernel_size, c2.kernel_size) != ((3, 3), (3, 3)) or c1.out_channels != c2.out_channels or c1.groups != 1:
        raise BlockSwapError(f"{where}: a basic block needs two ungrouped 3x3 convs of one width, found kernels "
                             f"{c1.kernel_size}, {c2.kernel_size}")
    return BlockType("S"), c1.in_channels, c2.out_channels, c1.stride[0]


def stage_names(module: nn.Module) -> tuple[str, ...]:
    """``layer1``, ``layer2``, ... as present in `module` (the attention points)."""
    names = []
    while isinstance(getattr(module, f"layer{len(names) + 1}", None), nn.Sequential):
        names.append(f"layer{len(names) + 1}")
    return tuple(names)


def students_space(module: nn.Module, name: str = "custom") -> NetworkSpec:
    """The student network spec of a torchvision ResNet-style `module` (see the module docstring).

    Its ``standard`` genotype is the teacher's own blocks (B(4) everywhere for a ResNet-50).
    """
    where = f"{name} ({type(module).__name__})"
    conv1, pool = getattr(module, "conv1", None), getattr(module, "maxpool", None)
    if not isinstance(conv1, nn.Conv2d) or conv1.kernel_size != (7, 7) or conv1.stride != (2, 2) \
            or not isinstance(pool, nn.MaxPool2d):
        raise BlockSwapError(f"{where}: expected torchvision's ResNet stem (conv1 7x7 stride 2, bn1, relu, "
                             "maxpool 3x3 stride 2)")
    fc = getattr(module, "fc", None)
    if not isinstance(fc, nn.Linear):
        raise BlockSwapError(f"{where}: expected a Linear classifier named 'fc' after global average pooling")
    stages = stage_names(module)
    if not stages:
        raise BlockSwapError(f"{where}: no stages found; expected nn.Sequential children layer1, layer2, ... "
                             "of residual blocks (torchvision's BasicBlock or Bottleneck layout)")
    widths, depths, strides, standard = [], [], [], []
    c_in = conv1.out_channels
    for s in stages:
        blocks = list(getattr(module, s))
        if not blocks:
            raise BlockSwapError(f"{where}: stage {s} has no blocks")
        for i, block in enumerate(blocks):
            kind, b_in, b_out, stride = recognise_block(block, f"{where} {s}[{i}]")
            if b_in != c_in or (i > 0 and stride != 1):
                raise BlockSwapError(f"{where} {s}[{i}]: takes {b_in} channels with stride {stride}; expected "
                                     f"{c_in} channels{' and stride 1 after the first block of a stage' if i else ''}")
            if i == 0:
                strides.append(stride)
            standard.append(kind.name)
            c_in = b_out
        widths.append(c_in)
        depths.append(len(blocks))
    if fc.in_features != c_in:
        raise BlockSwapError(f"{where}: the classifier takes {fc.in_features} features, the last stage gives {c_in}")
    return NetworkSpec(name, "imagenet", conv1.out_channels, tuple(widths), tuple(depths), tuple(strides),
                       num_classes=fc.out_features, input_size=224, final_bn=False, standard=tuple(standard))


@functools.cache
def _torchvision_space(arch: str) -> NetworkSpec:
    import torchvision

    if arch not in RESNETS:
        raise BlockSwapError(f"unknown torchvision network {arch!r}; valid: {choices(RESNETS)}"
                             f"{did_you_mean(TORCHVISION_PREFIX + arch, [TORCHVISION_PREFIX + a for a in RESNETS])}")
    return students_space(getattr(torchvision.models, arch)(weights=None), TORCHVISION_PREFIX + arch)


@register_network(r"torchvision:(?P<arch>[a-z0-9_]+)", "torchvision:NAME (NAME: " + ", ".join(RESNETS) + ")",
                  examples=tuple(f"torchvision:{arch}" for arch in RESNETS))
def _torchvision(match: re.Match[str]) -> NetworkSpec:
    return _torchvision_space(match["arch"])


def register_students_space(module: nn.Module, name: str) -> NetworkSpec:
    """Discover the student space of a user's own ResNet-style `module` and register it as network
    `name`, usable wherever a network name is (``build_model(name, genotype)``, ``cost``, searches).

    The name is registered in this process only. What leaves the process carries the returned
    spec itself (a `Genotype`'s `spec`, a `SearchConfig`'s `spec`, pickled to worker processes and
    Ray actors), so a search with the process or Ray executor scores the space; a run folder
    names the network, so resuming it needs the space registered again first."""
    spec = students_space(module, name)
    register_network(re.escape(name.strip().lower()), name)(lambda _match: spec)
    return spec
