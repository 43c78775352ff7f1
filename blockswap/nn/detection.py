"""A Mask R-CNN whose backbone is a BlockSwap network (paper Sec. 7).

The backbone is the student network without its pool and classifier (`NetworkSpec.backbone`):
stem, then the named stages, whose outputs a feature pyramid network reads, as torchvision's
``resnet_fpn_backbone`` reads a ResNet's ``layer1..layer4`` (256 channels, an extra max-pooled
level). The rest is ``torchvision.models.detection.MaskRCNN`` with torchvision's defaults, as
the paper ("the default Mask R-CNN settings in Torchvision"); trained from scratch, so batch
norm stays trainable (torchvision freezes it only for pretrained backbones).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from ..space.detection import DETECTION_MIN_SIZE, max_size_for
from ..space.genotype import Genotype, as_genotype
from ..space.networks import NetworkSpec, network_spec
from .layers import NormLayer
from .network import BlockSwapNet

FPN_CHANNELS = 256  # torchvision's resnet_fpn_backbone


class BlockSwapFPN(nn.Module):
    """A headless BlockSwap network and an FPN over every stage output.

    ``out_channels`` is what torchvision's detectors read; ``blocks`` are the body's swappable
    blocks (with their Fisher probes), so a detector can be scored like a classifier.
    """

    def __init__(self, body: BlockSwapNet, out_channels: int = FPN_CHANNELS):
        super().__init__()
        self.body = body
        channels = [info["num_chs"] for info in body.feature_info]
        self.fpn = FeaturePyramidNetwork(channels, out_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = out_channels

    @property
    def blocks(self):
        return self.body.blocks

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        points = self.body.forward_intermediates(x, intermediates_only=True)
        # Keys "0".."3" as torchvision's backbones: MaskRCNN's RoI poolers read those names.
        return self.fpn(OrderedDict((str(i), out) for i, out in enumerate(points.values())))


def build_detector(network: "str | NetworkSpec", genotype: "Genotype | str | list | None", num_classes: int, *,
                   min_size: int = DETECTION_MIN_SIZE, max_size: int | None = None,
                   norm_layer: NormLayer | None = None) -> MaskRCNN:
    """A Mask R-CNN with a BlockSwap backbone of `network` (e.g. "resnet34") and `genotype`.

    `num_classes` counts the background (COCO: 80 categories + 1). Images are resized so the
    shorter side is `min_size` and the longer at most `max_size` (torchvision: 800 / 1333;
    default: that ratio at `min_size`). Weights are drawn from torch's global generator.
    """
    spec = network_spec(network).backbone()
    geno = as_genotype(genotype, spec)
    body = BlockSwapNet(spec, list(geno.blocks), norm_layer)
    return MaskRCNN(BlockSwapFPN(body), num_classes=num_classes, min_size=min_size,
                    max_size=max_size or max_size_for(min_size))


def detector_blocks(detector: nn.Module) -> list[nn.Module]:
    """The swappable blocks of a detector built by `build_detector` (DDP-wrapped or not)."""
    inner = getattr(detector, "module", detector)
    return inner.backbone.blocks
