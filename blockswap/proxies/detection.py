"""The Fisher potential of a detector's backbone (paper Sec. 7: "apply BlockSwap using COCO
images"; the paper does not say how the potential is taken for a detector, so we decide):

* **Loss**: the detector's own training loss, the sum of Mask R-CNN's five terms (RPN
  objectness and box regression, RoI classification and box regression, mask). It is what the
  backbone will be trained on, as cross-entropy is for a classifier (Sec. 3.3).
* **Minibatch**: one minibatch of COCO training images with their targets, un-flipped, shared
  by every candidate; the detector resizes them as in training (shorter side `min_size`).
* **Probes**: the backbone's blocks, exactly as for a classifier (each block's last conv, before
  the residual add). The FPN and heads are the same for every candidate (they depend on the
  stage widths only), so their Fisher information would not rank backbones.
* **Initialisation and sampling**: the whole detector (backbone, FPN, heads) is built from the
  candidate's seed; the RPN and RoI samplers draw from torch's global generator, which is
  seeded from the same seed for the call, so a score is reproducible on its own.
* BN in train mode on the whole minibatch (exact on the CPU, `nn.exact_bn`), no weight
  gradients; n in ``1/(2n)`` is the number of images.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

from ..nn.detection import detector_blocks
from ..nn.exact_bn import exact_batch_norm
from ..seeding import torch_seed
from .fisher import FisherPotential, block_fisher
from .probes import block_probe_outputs
from .registry import check_signal


def detector_fisher(detector: nn.Module, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]],
                    seed: int) -> FisherPotential:
    """The Fisher potential of `detector`'s backbone blocks on one minibatch (see module doc)."""
    detector.train()
    blocks = detector_blocks(detector)
    exact = exact_batch_norm(detector) if images[0].device.type == "cpu" else contextlib.nullcontext()
    with exact, torch_seed(seed):
        with block_probe_outputs(blocks) as acts:
            losses = detector(images, targets)
        grads = torch.autograd.grad(sum(losses.values()), acts, allow_unused=True)
    n = len(images)
    per_block = np.array([block_fisher(a, g if g is not None else torch.zeros_like(a), n) for a, g in zip(acts, grads)])
    total = check_signal(float(per_block.sum()), "fisher")
    return FisherPotential(total, tuple(float(v) for v in per_block))
