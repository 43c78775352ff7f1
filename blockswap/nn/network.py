"""The network whose blocks are swapped: a stem, named stages of `Block`s, and a head.

Interface (as torchvision's and timm's models, so detection and export can use it):

* ``forward(x)`` returns logits, always (one return type: ONNX- and TorchScript-friendly);
* ``forward_features(x)`` returns the last stage's output; ``forward_intermediates(x)``
  returns ``(logits, {stage name: output})``: the stage outputs are the attention points of
  attention transfer (paper Sec. 3.2) and what an FPN reads (``intermediates_only=True``: the
  dict alone, without running the head, as timm);
* ``feature_info`` describes those outputs as timm does: per stage a dict of ``num_chs``,
  ``reduction`` (its stride relative to the input) and ``module`` (its name in the network);
* ``model.blocks`` lists the swappable blocks in genotype order, each with its ``probe``;
* ``model.complexity(input_size)`` is the analytic cost (equal to `space.network_cost`);
* ``norm_layer`` (default ``nn.BatchNorm2d``) lets a detector freeze batch norm
  (``torchvision.ops.FrozenBatchNorm2d``; its affine terms are then buffers, not parameters).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import BlockSwapError
from ..space.blocks import BlockType
from ..space.complexity import Complexity
from ..space.costs import network_cost
from ..space.genotype import Genotype, as_genotype
from ..space.networks import NetworkSpec, network_spec
from .block import Block
from .layers import Layers, NormLayer


class BlockSwapNet(nn.Module):
    """A WideResNet or pre-activation ResNet whose blocks are given by a list of block types."""

    # 2: named stages (stages.stageK.J) and a head holding the classifier (head.fc). Version-1
    # state dicts (blocks.I, fc, stem.0 / stem.weight, head.0) are renamed on load.
    _version = 2

    def __init__(self, spec: NetworkSpec, block_types, norm_layer: NormLayer | None = None):
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        self.spec = spec
        self.stem = Layers(spec.stem_layers(), norm_layer)
        slots = iter(zip(block_types, spec.slots()))
        stages = OrderedDict()
        for name, depth in zip(spec.stage_names, spec.depths):
            stages[name] = nn.Sequential(*(Block(t, s.c_in, s.c_out, s.stride, norm_layer)
                                           for t, s in (next(slots) for _ in range(depth))))
        self.stages = nn.Sequential(stages)
        self.head = Layers(spec.head_layers(), norm_layer)
        init_weights(self)

    @property
    def blocks(self) -> list[Block]:
        """The swappable blocks in genotype order."""
        return [block for stage in self.stages for block in stage]

    @property
    def stage_names(self) -> tuple[str, ...]:
        return self.spec.stage_names

    @property
    def genotype(self) -> Genotype:
        return Genotype(self.spec, tuple(b.block_type for b in self.blocks))

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        """Per stage, in order, as timm's ``feature_info``: output channels, nominal stride of its
        output relative to the input (stem strides times stage strides; an input size divisible
        by it gives maps exactly that much smaller) and the module whose output it is."""
        reduction = math.prod(getattr(layer, "stride", 1) for _, layer in self.spec.stem_layers())
        info = []
        for name, width, stride in zip(self.spec.stage_names, self.spec.widths, self.spec.strides):
            reduction *= stride
            info.append({"num_chs": width, "reduction": reduction, "module": f"stages.{name}"})
        return info

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward_intermediates(self, x: torch.Tensor, intermediates_only: bool = False
                              ) -> "tuple[torch.Tensor, dict[str, torch.Tensor]] | dict[str, torch.Tensor]":
        points: dict[str, torch.Tensor] = {}
        x = self.stem(x)
        for name, stage in self.stages.named_children():
            x = stage(x)
            points[name] = x
        if intermediates_only:
            return points  # what a detector reads: the head (a WRN's final BN-ReLU) is not run
        return self.head(x), points

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))

    def complexity(self, input_size: int | None = None) -> Complexity:
        """Analytic parameters and MACs per image, walking the modules' own plans."""
        cx = self.stem.complexity(Complexity(*(2 * (input_size or self.spec.input_size,))))
        for block in self.blocks:
            cx = block.complexity(cx)
        head = self.head.complexity(Complexity(1, 1))
        return Complexity(1, 1, cx.params + head.params, cx.macs + head.macs)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        _rename_version_1(self.spec, state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args)


def _rename_version_1(spec: NetworkSpec, state: dict[str, Any], prefix: str) -> None:
    """Rename, in place, the keys of a state dict saved by BlockSwap 0.1 (flat ``blocks``)."""
    if not any(k.startswith(prefix + "blocks.") for k in state):
        return
    where = [(name, j) for name, depth in zip(spec.stage_names, spec.depths) for j in range(depth)]
    renames = {"stem.weight": "stem.conv.weight", "stem.0.": "stem.conv.", "stem.1.": "stem.bn.",
               "head.0.": "head.bn.", "fc.": "head.fc."}
    for key in [k for k in state if k.startswith(prefix)]:
        rest = key[len(prefix):]
        new = rest
        if rest.startswith("blocks."):
            index, _, tail = rest[len("blocks."):].partition(".")
            name, j = where[int(index)]
            new = f"stages.{name}.{j}.{tail}"
        else:
            for old, now in renames.items():
                if rest.startswith(old):
                    new = now + rest[len(old):]
                    break
        if new != rest:
            state[prefix + new] = state.pop(key)


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


def build_model(name: "str | NetworkSpec", genotype: "Genotype | str | list | None" = None,
                num_classes: int | None = None, norm_layer: NormLayer | None = None) -> BlockSwapNet:
    """Build network `name` with the block types of `genotype` (None: all standard blocks).

    `genotype` may be a `Genotype`, a genotype file, its text form "S,G(4),...", or a list of
    block types. Default classes: 10 for ``wrn-*``, 1000 for ``resnet*``. The weights are
    drawn from torch's global generator (wrap the call in `seeding.torch_seed` to pin them).

    >>> model = build_model("wrn-40-2")
    >>> sum(p.numel() for p in model.parameters())
    2243546
    """
    _check_build_args(name, genotype, num_classes)
    spec = network_spec(name, num_classes)
    geno = as_genotype(genotype, spec)
    params = network_cost(spec, geno).params  # from formulas, before any memory is taken
    if params > MAX_PARAMS:
        raise BlockSwapError(f"{spec.name} with {spec.num_classes} classes would have {params:,} parameters "
                             f"({4 * params / 2**30:.0f} GiB of float32); at most {MAX_PARAMS:,} are built")
    return BlockSwapNet(spec, list(geno.blocks), norm_layer)


# Networks are built in memory: 2**31 float32 parameters are 8 GiB (a ResNet-152 has 60M).
MAX_PARAMS = 2**31
MAX_CLASSES = 1_000_000  # ImageNet-21k has 21,841 classes


def _check_build_args(name: object, genotype: object, num_classes: object) -> None:
    """One line naming the argument of `build_model` that has the wrong type or value."""
    if not isinstance(name, (str, NetworkSpec)):
        raise BlockSwapError(f"build_model: name must be a network name such as 'wrn-40-2' (a str), "
                             f"got {type(name).__name__} {name!r}")
    if genotype is not None:
        if isinstance(genotype, (bytes, bytearray)) or not isinstance(genotype, (Genotype, str, Path, list, tuple)):
            raise BlockSwapError(f"build_model: genotype must be a Genotype, a file, text such as 'S,G(4),...' or "
                                 f"a list of block types, got {type(genotype).__name__} {genotype!r}"[:300])
        if isinstance(genotype, (list, tuple)):
            for item in genotype:
                if not isinstance(item, (str, BlockType)):
                    raise BlockSwapError(f"build_model: genotype entries must be block type names such as 'S', "
                                         f"got {type(item).__name__} {item!r}")
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                    or not 1 <= num_classes <= MAX_CLASSES):
        raise BlockSwapError(f"build_model: num_classes must be an integer in 1..{MAX_CLASSES:,}, got {num_classes!r}")
