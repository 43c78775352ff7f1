"""Unstructured pruning baselines (paper Sec. 5 and Appendix C): L1 (magnitude) pruning and SNIP
(Lee et al., 2019) of the teacher network to a budget of NON-ZERO parameters.

The prunable tensors are the weights of convolutions and linear layers; batch-norm affine
parameters and biases are always kept and count against the budget. Masks are global (one
threshold over all prunable weights) and keep exactly ``budget - unprunable`` weights, ties broken
by position: the pruned network keeps exactly the budget's parameters, of which a few may still
be zero (batch-norm biases start at zero), so its non-zero count is at most the budget.
Training re-applies the masks after every optimiser step (`apply_masks`), so pruned weights stay
exactly zero; a weight that happens to train to zero makes the count lower, never higher.

* ``l1``: scores |w| of the TRAINED teacher's weights; the student starts from those weights,
  masked (magnitude pruning, then training under the masks).
* ``snip``: scores |dL/dw * w| of a freshly initialised teacher network on one training
  minibatch (connection sensitivity, Lee et al. 2019); the student trains from that
  initialisation, masked.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import BlockSwapError, choices

PRUNE_METHODS = ("l1", "snip")
Masks = dict[str, torch.Tensor]  # parameter name -> bool tensor of its shape (True: kept)


def check_prune_method(method: str) -> str:
    if method not in PRUNE_METHODS:
        raise BlockSwapError(f"unknown pruning method {method!r}; valid methods: {choices(PRUNE_METHODS)}")
    return method


def prunable_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """The ``weight`` of every convolution and linear layer, by parameter name."""
    return {f"{name}.weight" if name else "weight": m.weight for name, m in model.named_modules()
            if isinstance(m, (nn.Conv2d, nn.Linear))}


def _masks_keeping(model: nn.Module, scores: dict[str, torch.Tensor], params: int) -> Masks:
    """Masks keeping the highest-scored prunable weights so that the model has `params` non-zero
    parameters in all (unprunable parameters count as kept)."""
    total = sum(p.numel() for p in model.parameters())
    prunable = sum(s.numel() for s in scores.values())
    fixed = total - prunable
    if not fixed < params <= total:
        raise BlockSwapError(f"pruning budget {params:,} parameters is outside what pruning this network can "
                             f"reach: more than {fixed:,} (batch norms and biases, never pruned) and at most "
                             f"{total:,} (the dense network)")
    keep = params - fixed
    flat = torch.cat([s.detach().flatten().double() for s in scores.values()])
    # Stable sort, highest first: equal scores are kept in order of position (deterministic).
    order = torch.sort(-flat, stable=True).indices
    kept = torch.zeros(flat.numel(), dtype=torch.bool)
    kept[order[:keep]] = True
    masks, start = {}, 0
    for name, s in scores.items():
        masks[name] = kept[start:start + s.numel()].view_as(s).to(s.device)
        start += s.numel()
    return masks


def l1_masks(model: nn.Module, params: int) -> Masks:
    """Global magnitude pruning: keep the largest |w| (the trained teacher's, paper Appendix C)."""
    return _masks_keeping(model, {n: w.detach().abs() for n, w in prunable_weights(model).items()}, params)


def snip_masks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, params: int) -> Masks:
    """SNIP: keep the largest connection sensitivities |dL/dw * w| on the minibatch (x, y), with
    the cross-entropy loss of the network in training mode (Lee et al., 2019)."""
    weights = prunable_weights(model)
    was_training = model.training
    model.train()
    loss = F.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, list(weights.values()))
    model.train(was_training)
    return _masks_keeping(model, {n: (g * w).detach().abs() for (n, w), g in zip(weights.items(), grads)}, params)


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Masks) -> None:
    """Zero the pruned weights in place (after every optimiser step)."""
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        params[name].mul_(mask)


def nonzero_params(model: nn.Module) -> int:
    return int(sum(int((p != 0).sum()) for p in model.parameters()))


@torch.no_grad()
def sparse_macs(model: nn.Module, input_size: int) -> int:
    """MACs per image counting non-zero weights only: each non-zero conv weight does one
    multiply-accumulate per output position, each non-zero linear weight one."""
    total = [0]

    def hook(module, _inputs, output):
        nnz = int((module.weight != 0).sum())
        total[0] += nnz * (output.shape[-2] * output.shape[-1] if isinstance(module, nn.Conv2d) else 1)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        model(torch.zeros(1, 3, input_size, input_size, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total[0]

