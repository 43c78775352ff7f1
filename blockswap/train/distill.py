"""Distillation losses: attention transfer (the paper's, Sec. 3.2) and Hinton KD (optional).

Attention transfer (Zagoruyko & Komodakis 2017) matches where student and teacher "look": at
each attention point (the output of each stage: 3 for WRN, 4 for ResNet) an activation A of
shape N x C x H x W becomes the map f(A) = mean over channels of A^2, flattened to N x HW and
L2-normalised per example. The loss added to the cross-entropy is

    (beta / 2) * sum over points of mean((f(A_student) - f(A_teacher))^2)

with the mean over all N*HW entries; beta = 1000 on CIFAR (paper Sec. 5), 750 on ImageNet (Sec. 6).

Difference from the authors' code (ICLR version b1fadc9, ``train.py`` ``train_student``): it
adds ``beta * 3 / len(points) * at_loss`` per point, i.e. beta (not beta/2) per point for the
3-point WRN, twice the formula's weight (no released script trains a ResNet student). We follow
the paper's formula; pass ``beta=2000`` to reproduce their CIFAR weighting (docs/faithfulness.md).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ..errors import BlockSwapError


def attention_map(a: torch.Tensor) -> torch.Tensor:
    """f(A): channel-mean of A^2, flattened to (N, H*W), L2-normalised per example (float32).

    Computed in float32 even under mixed precision: squares of fp16 activations overflow.
    """
    return F.normalize(a.float().pow(2).mean(dim=1).flatten(1), dim=1)


def at_loss(student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor],
            beta: float) -> torch.Tensor:
    """(beta/2) * sum_points mean((f(A_s) - f(A_t))^2) over matching attention points."""
    if len(student) != len(teacher):
        raise BlockSwapError(f"student has {len(student)} attention points but the teacher has "
                             f"{len(teacher)}; attention transfer pairs them one to one (3 for WRN, 4 for ResNet)")
    total = student[0].new_zeros((), dtype=torch.float32)
    for i, (s, t) in enumerate(zip(student, teacher)):
        if s.shape[0] != t.shape[0] or s.shape[2:] != t.shape[2:]:
            raise BlockSwapError(
                f"attention point {i + 1}: student map {tuple(s.shape[2:])} vs teacher map "
                f"{tuple(t.shape[2:])} (batch {s.shape[0]} vs {t.shape[0]}); both networks need the "
                "same input size and stage strides")
        total = total + (attention_map(s) - attention_map(t)).pow(2).mean()
    return (beta / 2) * total


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
            temperature: float, weight: float) -> torch.Tensor:
    """Hinton et al. (2015) knowledge distillation mixed with the cross-entropy.

        (1 - weight) * CE(y_s, labels) + weight * T^2 * KL(softmax(y_t/T) || softmax(y_s/T))

    Reduction: the KL divergence is summed over classes and averaged over examples
    ('batchmean', the true KL per example); T^2 keeps its gradients' scale independent of T.
    The authors' code (and Zagoruyko's) instead uses ``F.kl_div`` with its default 'mean'
    reduction (average over N*classes) times ``2 * weight * T^2``: at the same weight their KD
    term is 2/classes times ours (0.2x on CIFAR-10); their cross-entropy term is the same.
    """
    ce = F.cross_entropy(student_logits, labels)
    if weight == 0:
        return ce
    log_p = F.log_softmax(student_logits.float() / temperature, dim=1)
    q = F.softmax(teacher_logits.float() / temperature, dim=1)
    kl = F.kl_div(log_p, q, reduction="batchmean")
    return (1 - weight) * ce + weight * temperature ** 2 * kl
