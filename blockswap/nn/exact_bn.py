"""Exact train-mode batch norm for channels-last (and contiguous) 4-D tensors on the CPU.

Why: in train mode PyTorch's CPU kernel for channels-last (NHWC) float32 inputs reduces the
(N*H*W, C) matrix by giving each thread a C-vector of float32 accumulators and adding its rows
one by one (``batch_norm_cpu_collect_stats_channels_last_impl`` and ``..._backward_channels_
last_impl``): a naive float32 sum of N*H*W/threads terms, up to 131,072 here. The batch
*variance* (a sum of positive terms) comes out ~1e-5 relative off, which rescales every
channel; over the ~60 BN layers of a WRN-40-2 the Fisher potential of a block moved by up to
4e-2 relative against float64. Measured: an exact mean with the native variance is as wrong as
the native kernel; exact statistics with the native backward are as right as exact everything.
The contiguous kernel sums each image plane in float32 and the planes in float64: accurate.

How: every per-channel sum is taken as PyTorch's contiguous kernel takes it, float32 sums over
each image plane (torch's vectorised cascade sum, ~1e-7 relative) then the N plane sums in
float64; this is as fast as a float32 reduction in NHWC. Forward: the mean, then the mean of
(x - mean)^2 (one fused ``mse_loss`` pass: no E[x^2]-E[x]^2 cancellation), then the native
*inference-mode* kernel normalises with them (one fused elementwise pass, memory format kept).
backward="exact" (default): sum(dy) and sum(dy*(x-mean)) the same way, dx in two fused
elementwise passes. backward="native": the exact mean/invstd go to PyTorch's own backward
kernel, whose naive sums cost ~1e-5 relative in dweight/dbias and ~5e-7 in dx but nothing
measurable in the Fisher potential. Speed and accuracy of each, and of the alternatives tried
(Welford var_mean, BN on a contiguous or float64 copy): ``benchmarks/exact_bn.py``.
Double backward is not supported.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["batch_norm_exact", "batch_stats", "exact_batch_norm"]

# |mean| / std above which the backward computes dx from x - mean rather than from x (float32
# rounding of k*x then costs ~1e-7 * |mean|/std of that term): one temporary more.
_OFFSET = 4.0


def _c(v: torch.Tensor) -> torch.Tensor:
    """A per-channel vector (C,) as (1, C, 1, 1), to broadcast against an N x C x H x W tensor."""
    return v.view(1, -1, 1, 1)


def _offset(mean: torch.Tensor, var: torch.Tensor) -> bool:
    """True if some channel's |mean| exceeds _OFFSET standard deviations (float64 vectors)."""
    return bool((mean * mean > _OFFSET ** 2 * var).any())


def _sum(t: torch.Tensor) -> torch.Tensor:
    """Per-channel float64 sum of an N x C x H x W tensor: float32 cascade sums over each image
    plane (H*W terms, ~1e-7 relative), then the N plane sums in float64, as PyTorch's contiguous
    kernel does; as fast as one float32 reduction over (N, H, W) in either memory format (a
    float64 accumulator throughout, ``sum(dtype=torch.float64)``, is 5-10x slower in NHWC)."""
    return t.sum((2, 3)).double().sum(0)


def batch_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel float64 mean and biased variance of N x C x H x W `x`.

    Two passes over x: the mean (error ~0.1 ulp, measured), then the mean of (x - m)^2 around
    m = the mean rounded to x's dtype (mse_loss fuses the subtraction and the square: one
    temporary), with no E[x^2] - E[x]^2 cancellation for inputs with a large mean.
    """
    n = x.numel() // x.shape[1]  # elements per channel
    mean = _sum(x) / n
    m = mean.to(x.dtype)
    sq = _sum(F.mse_loss(x, _c(m).expand_as(x), reduction="none")) / n
    return mean, (sq - (mean - m.double()) ** 2).clamp_(min=0.0)


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
        if ctx.native:  # PyTorch's kernel with our statistics (train=True: the full formula)
            dx, gw, gb = torch.ops.aten.native_batch_norm_backward(
                dy, x, weight, None, None, mean, invstd, True, ctx.eps, need)
            return dx, gw, gb, None, None
        n = x.numel() // x.shape[1]
        fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        dy = dy.contiguous(memory_format=fmt)  # elementwise kernels are fastest on equal layouts
        m, inv = mean.double(), invstd.double()
        sum_dy = _sum(dy)
        d = x - _c(mean)  # centred: sum(dy*x) - mean*sum(dy) cancels when mean(dy) != 0
        offset = _offset(m, 1.0 / (inv * inv))
        if offset:  # keep d for dx: a*dy + k*x + (c - k*mean) would cancel too
            dot, base, out = _sum(dy * d), d, None
        else:  # dy*d in place, then d's memory holds dx: one 4-D temporary in all
            dot, base, out = _sum(d.mul_(dy)), x, d
        dot = dot - shift * sum_dy  # sum(dy * (x - exact mean)); shift: float32 rounding of the mean
        gw = (dot * inv).to(x.dtype) if need[1] else None  # dL/dweight = sum(dy * xhat)
        gb = sum_dy.to(x.dtype) if need[2] else None  # dL/dbias = sum(dy)
        dx = None
        if need[0]:
            # dx = a * (dy - sum_dy/n - (x - mean) * inv^2 * dot/n) with a = weight * inv, in two
            # fused elementwise passes: c + a*dy, then += k*base (base = x - mean, or x).
            a = inv * (weight.double() if weight is not None else 1.0)
            k = -a * inv * inv * dot / n
            c = -a * sum_dy / n - k * shift - (0.0 if offset else k * m)
            dx = torch.addcmul(_c(c.to(x.dtype)), dy, _c(a.to(x.dtype)), out=out)
            dx.addcmul_(base, _c(k.to(x.dtype)))
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
