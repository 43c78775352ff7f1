"""Exact train-mode batch norm for channels-last (and contiguous) 4-D tensors on the CPU.

Why: in train mode PyTorch's CPU kernel for channels-last (NHWC) float32 inputs reduces the
(N*H*W, C) matrix by giving each thread a C-vector of float32 accumulators and adding its rows
one by one (``batch_norm_cpu_collect_stats_channels_last_impl`` and ``..._backward_channels_
last_impl``): a naive float32 sum of N*H*W/threads terms. The batch *variance* (a sum of
positive terms) is then off, which rescales every channel and, compounded over a network's BN
layers, moves the Fisher potential (paper Sec. 4) of a block. The statistics must be exact; the
backward matters less. The contiguous kernel sums each image plane in float32 and the planes in
float64: accurate.

How: PyTorch's own kernels do the work on a *folded view* (`_folds`): the (rows, C) matrix seen
as (rows/k, k*C), so that every float32 accumulator adds only ~sqrt(rows) terms, and the k
partial results per channel are combined in float64. Forward: the native two-pass statistics
kernel on the view, then the native *inference-mode* kernel normalises with those statistics
(one fused elementwise pass, memory format kept). backward="exact" (default): the native
backward kernel on the view returns sum(dy) and sum(dy*(x-mean)) per fold (one pass, no input
gradient), dx then takes two fused elementwise passes. backward="native": PyTorch's backward
kernel with the exact mean/invstd (its naive sums are less precise in dweight/dbias and dx).
Contiguous inputs use the (accurate) contiguous kernels. Double backward is not supported.
What was measured (errors, speed, the alternatives tried): docs/search.md, "Exact batch norm:
what was measured", and ``benchmarks/exact_bn.py``.
"""

from __future__ import annotations

import contextlib
import functools
import math
from typing import Iterator

import torch
from torch import nn

__all__ = ["batch_norm_exact", "batch_stats", "exact_batch_norm"]

CL = torch.channels_last
# |mean| / std above which float32 sums of raw x lose digits: the forward then refines the mean
# with one pass over x - mean, the backward computes dx from x - mean rather than from x (the
# rounding of k*x costs ~1e-7 * |mean|/std of that term). Never reached in the WRNs measured
# (largest |mean|/std of a BN input: 2.4); the tests' mean-50 inputs take it.
_OFFSET = 4.0


def _c(v: torch.Tensor) -> torch.Tensor:
    """A per-channel vector (C,) as (1, C, 1, 1), to broadcast against an N x C x H x W tensor."""
    return v.view(1, -1, 1, 1)


def _offset(mean: torch.Tensor, var: torch.Tensor) -> bool:
    """True if some channel's |mean| exceeds _OFFSET standard deviations (float64 vectors)."""
    return bool((mean * mean > _OFFSET ** 2 * var).any())


def _folds(x: torch.Tensor) -> int | None:
    """k for `_fold` if x is channels-last (and not also contiguous), else None.

    A channels-last tensor is a (rows, C) matrix, rows = N*H*W. Viewed as (rows/k, k*C, 1, 1),
    an "N x C' x 1 x 1" input that PyTorch's kernels reduce like any channels-last one, each of
    the k*C columns gets its own float32 accumulators over only rows/k rows; the k partial
    results per channel are then combined in float64. k ~ sqrt(2 rows) (256 rows of 512 folds
    at 128 x 32 x 32) balances the two: error ~1e-8..1e-7 relative, measured. No copy is made.
    """
    if x.is_contiguous() or not x.is_contiguous(memory_format=CL):
        return None
    rows = x.numel() // x.shape[1]
    k = max(1, min(math.isqrt(2 * rows), rows // 2))  # >= 2 rows per fold
    while rows % k:  # a divisor of rows (WRN/ResNet sizes: a power of 2 at once)
        k -= 1
    return k if 4 * k * k >= rows else None  # no divisor near sqrt(rows): via a contiguous copy


def _fold(t: torch.Tensor, k: int) -> torch.Tensor:
    return t.permute(0, 2, 3, 1).reshape(-1, k * t.shape[1], 1, 1)


def batch_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel float64 mean and biased variance of N x C x H x W `x`, exact in float32.

    Channels-last: PyTorch's own two-pass kernel (mean, then squared deviations: no E[x^2] -
    E[x]^2 cancellation) on the folded view, k partial means/variances combined exactly.
    Otherwise PyTorch's contiguous kernel, which is accurate (per-plane float32 sums added in
    float64); a tensor in another layout is copied to contiguous first.
    """
    k = _folds(x)
    if k is None:
        mean, var = torch.batch_norm_update_stats(x.contiguous(), None, None, 0.0)
        return mean.double(), var.double()
    means, vars_ = torch.batch_norm_update_stats(_fold(x, k), None, None, 0.0)
    means, vars_ = means.double().view(k, -1), vars_.double().view(k, -1)
    mean = means.mean(0)  # equal counts per fold: the mean of means, the law of total variance
    var = vars_.mean(0) + (means - mean).square().mean(0)
    if _offset(mean, var):  # |mean| > 4 std: the float32 rounding of k fold sums of ~|mean|
        m = mean.to(x.dtype)  # shows; one more pass on x - m (exact) refines the mean
        mean = m.double() + (x - _c(m)).sum((2, 3)).double().sum(0) / (x.numel() // x.shape[1])
    return mean, var


class _ExactBatchNorm(torch.autograd.Function):
    """y = (x - mean) / sqrt(var + eps) * weight + bias with exact batch mean and var."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps, backward):
        mean, var = batch_stats(x)  # float64
        m, inv = mean.to(x.dtype), torch.rsqrt(var + eps)
        shift = mean - m.double()  # the rounding of the mean to float32, folded into the bias
        w = weight.double() if weight is not None else 1.0
        b = (bias.double() if bias is not None else 0.0) - shift * inv * w
        # Inference mode of the native kernel = the elementwise normalisation only, one pass.
        y = torch.batch_norm(x, weight, b.to(x.dtype), m, var.to(x.dtype), False, 0.0, eps, False)
        invstd = inv.to(x.dtype)
        ctx.save_for_backward(x, weight, m, invstd, shift)
        ctx.eps, ctx.native = eps, backward == "native"
        mean, var = mean.to(x.dtype), var.to(x.dtype)
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy, _dmean, _dvar):
        x, weight, mean, invstd, shift = ctx.saved_tensors
        need = list(ctx.needs_input_grad[:3])
        k = None if ctx.native else _folds(x)
        layout = CL if x.is_contiguous(memory_format=CL) and not x.is_contiguous() else torch.contiguous_format
        if k is None:  # PyTorch's kernel with our statistics (train=True: the full formula): its
            # sums are accurate in the contiguous layout, naive in channels-last ("native")
            fmt = layout if ctx.native else torch.contiguous_format
            dx, gw, gb = torch.ops.aten.native_batch_norm_backward(
                dy.contiguous(memory_format=fmt), x.contiguous(memory_format=fmt), weight, None, None,
                mean, invstd, True, ctx.eps, need)
            return None if dx is None else dx.contiguous(memory_format=layout), gw, gb, None, None
        # The sums sum(dy) and sum(dy * (x - mean)) per fold: PyTorch's backward kernel with
        # weight 1, invstd 1 and no input gradient returns exactly these (one pass over dy, x).
        dy = dy.contiguous(memory_format=CL)
        _, dot, sum_dy = torch.ops.aten.native_batch_norm_backward(
            _fold(dy, k), _fold(x, k), None, None, None, mean.repeat(k), torch.ones_like(invstd).repeat(k),
            True, 0.0, [False, True, True])
        sum_dy = sum_dy.double().view(k, -1).sum(0)
        dot = dot.double().view(k, -1).sum(0) - shift * sum_dy  # sum(dy * (x - exact mean))
        inv = invstd.double()
        gw = (dot * inv).to(x.dtype) if need[1] else None  # dL/dweight = sum(dy * xhat)
        gb = sum_dy.to(x.dtype) if need[2] else None  # dL/dbias = sum(dy)
        dx = None
        if need[0]:
            # dx = a * (dy - sum_dy/n - (x - mean) * inv^2 * dot/n) with a = weight * inv, in two
            # fused elementwise passes: c + a*dy, then += k*x (k*(x - mean) if |mean| >> std).
            n = x.numel() // x.shape[1]
            m = mean.double()
            offset = _offset(m, 1.0 / (inv * inv))
            a = inv * (weight.double() if weight is not None else 1.0)
            kk = -a * inv * inv * dot / n
            c = -a * sum_dy / n - kk * shift - (0.0 if offset else kk * m)
            dx = torch.addcmul(_c(c.to(x.dtype)), dy, _c(a.to(x.dtype)))
            dx.addcmul_(x - _c(mean) if offset else x, _c(kk.to(x.dtype)))
        return dx, gw, gb, None, None


def batch_norm_exact(x: torch.Tensor, running_mean: torch.Tensor | None, running_var: torch.Tensor | None,
                     weight: torch.Tensor | None = None, bias: torch.Tensor | None = None,
                     momentum: float = 0.1, eps: float = 1e-5, backward: str = "exact") -> torch.Tensor:
    """``F.batch_norm(x, running_mean, running_var, weight, bias, training=True, ...)``, exact.

    Updates `running_mean` / `running_var` in place (if given) as nn.BatchNorm2d does in train
    mode: running = (1 - momentum) * running + momentum * batch, with the unbiased (n/(n-1))
    batch variance for the running variance. `x` is N x C x H x W float32 or float64, any
    memory format. `backward`: "exact" or "native" (see the module docstring).
    """
    if x.dim() != 4 or x.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"batch_norm_exact takes a 4-D float32/float64 tensor, got {x.dim()}-D {x.dtype}")
    if backward not in ("exact", "native"):
        raise ValueError(f"backward must be 'exact' or 'native', got {backward!r}")
    n = x.numel() // x.shape[1]
    if n < 2:
        raise ValueError(f"expected more than 1 value per channel when training, got input size {tuple(x.shape)}")
    y, mean, var = _ExactBatchNorm.apply(x, weight, bias, eps, backward)
    with torch.no_grad():
        if running_mean is not None:
            running_mean.mul_(1 - momentum).add_(mean.to(running_mean.dtype), alpha=momentum)
        if running_var is not None:
            running_var.mul_(1 - momentum).add_(var.to(running_var.dtype), alpha=momentum * n / (n - 1))
    return y


def _exact_forward(bn: nn.BatchNorm2d, x: torch.Tensor, backward: str = "exact") -> torch.Tensor:
    """nn.BatchNorm2d.forward (torch/nn/modules/batchnorm.py, _BatchNorm) with exact statistics."""
    bn._check_input_dim(x)
    batch = bn.training or (bn.running_mean is None and bn.running_var is None)
    if not batch or x.dtype not in (torch.float32, torch.float64):
        return type(bn).forward(bn, x)  # running statistics: elementwise only, nothing to sum
    momentum = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:  # cumulative moving average
            momentum = 1.0 / float(bn.num_batches_tracked)
    keep = not bn.training or bn.track_running_stats  # which running stats F.batch_norm gets
    return batch_norm_exact(x, bn.running_mean if keep else None, bn.running_var if keep else None,
                            bn.weight, bn.bias, momentum, bn.eps, backward)


@contextlib.contextmanager
def exact_batch_norm(model: nn.Module, backward: str = "exact") -> Iterator[nn.Module]:
    """Within the block, every nn.BatchNorm2d of `model` uses exact batch statistics.

    Each BN module gets an instance attribute ``forward`` (shadowing the class method), removed
    on exit, also on exceptions; parameters, buffers and state_dict keys are untouched. BN with
    running statistics (eval mode) is unchanged: it has no reduction to get wrong.
    """
    if backward not in ("exact", "native"):
        raise ValueError(f"backward must be 'exact' or 'native', got {backward!r}")
    patched: list[tuple[nn.Module, object]] = []
    try:
        for module in model.modules():
            # (a subclass with its own forward is left alone: we would replace its logic)
            if isinstance(module, nn.BatchNorm2d) and type(module).forward is nn.BatchNorm2d.forward:
                patched.append((module, module.__dict__.get("forward")))  # an override to restore
                module.forward = functools.partial(_exact_forward, module, backward=backward)
        yield model
    finally:
        for module, previous in reversed(patched):
            if previous is None:
                del module.forward
            else:
                module.forward = previous
