"""Ranking signals for untrained candidates: the Fisher potential and the signals it is compared with.

The Fisher potential (paper Sec. 3.3 and 4; SPEC, Search step 2). A candidate at initialisation,
BN in train mode, takes ONE minibatch of training data; the mean cross-entropy loss L (the
authors' ``nn.CrossEntropyLoss()``) is backpropagated to a probe on the output ``a`` (N x C x H x W)
of each block's last conv, before the residual add, with gradient ``g = dL/da``. Per channel c::

    Delta_c = 1/(2N) * sum_n ( sum_ij a[n,c,i,j] * g[n,c,i,j] )^2

(Theis et al. 2018: the empirical Fisher information of a binary mask on channel c). A block's
Fisher is sum_c Delta_c; the potential is the sum over blocks, and higher is better.

Speed: only the gradients at the probes are needed, so `fisher_potential` asks autograd for
exactly those (``torch.autograd.grad(loss, probe_outputs)``): the engine then skips every
weight-gradient kernel and stops at the first probe instead of running down to the stem.

All signals share one registry with one signature, ``fn(model, batches, steps, options)``, and a
higher-is-better flag (`PROXIES`, `get_proxy`, `parse_signal`):

=============  ============================================================================
fisher[@k]     Fisher potential; ``@k`` (k > 1): summed over k SGD steps (paper Table 1)
train_acc@k    training accuracy over k SGD steps (Table 1)
l2@k           sum of the L2 norms of the weight tensors after k SGD steps (Table 1)
grad_norm@k    summed absolute weight gradients over k SGD steps (Table 1; Golub et al. 2019)
snip           SNIP saliency sum |w * dL/dw| (Lee et al. 2019), one minibatch
synflow        SynFlow sum |w * dR/dw| (Tanaka et al. 2020), data-free
naswot         log|K| of the ReLU-pattern kernel (Mellor et al. 2021, v2 "NASWOT")
jacob_cov      input-Jacobian correlation score (Mellor et al. 2021, v1)
=============  ============================================================================
"""

from __future__ import annotations

import contextlib
import copy
import math
import re
from dataclasses import dataclass
from typing import Callable, Iterator, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint as _checkpoint

from .errors import BlockSwapError, choices

Batch = tuple[torch.Tensor, torch.Tensor]


class FisherPotential(NamedTuple):
    """The Fisher potential of a network and each block's share (sum over its channels)."""

    total: float
    per_block: tuple[float, ...]


@dataclass(frozen=True)
class ProxyOptions:
    """How signals are computed (not which): memory trade-offs and the SGD of the ``@k`` signals."""

    checkpoint: bool = False  # exact: recompute each block in the backward pass, less memory
    micro_batch: int | None = None  # APPROXIMATE: BN statistics per chunk of this many examples
    lr: float = 0.1  # SGD of the "@k" signals, as the authors' one_shot_fisher (0.1, 0.9, 5e-4)
    momentum: float = 0.9
    weight_decay: float = 5e-4

    def __post_init__(self) -> None:
        if self.micro_batch is not None and (not isinstance(self.micro_batch, int) or self.micro_batch < 2):
            raise BlockSwapError(f"micro_batch must be an integer >= 2 (BN needs two examples), got {self.micro_batch!r}")
        if self.micro_batch is not None and self.checkpoint:
            raise BlockSwapError("choose one of checkpoint (exact) and micro_batch (approximate), not both")


# --------------------------------------------------------------------------------------------
# The Fisher potential
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _probe_outputs(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Collect each block's probe output (forward hooks; removed on exit, before any backward)."""
    outputs: list[torch.Tensor] = []
    handles = [block.probe.register_forward_hook(lambda _m, _i, out: outputs.append(out))
               for block in model.blocks]
    try:
        yield outputs
    finally:
        for h in handles:
            h.remove()


class _Checkpointed(nn.Module):
    """A block whose activations are recomputed in the backward pass (non-reentrant checkpoint).

    The forward runs in full with grad mode on, so BN still sees the whole batch and the probe
    outputs are ordinary graph nodes: the Fisher value is exactly that of the plain pass.
    """

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _checkpoint(self.block, x, use_reentrant=False)


@contextlib.contextmanager
def _checkpointed_blocks(model: nn.Module, enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    original = list(model.blocks)
    for i, block in enumerate(original):
        model.blocks[i] = _Checkpointed(block)
    try:
        yield
    finally:
        for i, block in enumerate(original):
            model.blocks[i] = block


@torch.no_grad()
def _block_fisher(a: torch.Tensor, g: torch.Tensor, n: int) -> float:
    """sum_c 1/(2n) sum_examples (sum_ij a*g)^2 for one probe; n is the whole batch size."""
    # (examples, C): float32 sums over H*W terms (1e-8 relative here), then squares and the sum
    # over examples and channels in float64; an upcast inside the spatial sum cost 2.4x as much.
    s = (a * g).sum(dim=(2, 3)).double()
    return float(s.pow(2).sum() / (2 * n))


def fisher_potential(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *,
                     checkpoint: bool = False, micro_batch: int | None = None) -> FisherPotential:
    """The Fisher potential of `model` on one minibatch, with the value of every block.

    `model` is a `BlockSwapNet` (any module whose ``blocks`` each have a ``probe``); it is put in
    train mode (BN uses the batch statistics, as when training starts) and its weights are not
    changed (BN running statistics are updated, as in any train-mode forward). No weight
    gradients are computed and ``.grad`` is left untouched.

    Memory: ``checkpoint=True`` recomputes each block during the backward pass; the value is
    identical (BN statistics are still over the whole batch). ``micro_batch=m`` pushes chunks of
    m examples one at a time and is APPROXIMATE: BN normalises each chunk by its own statistics,
    so the value differs from the whole-batch one (it is exact only when BN does not couple
    examples, e.g. in eval mode). Each chunk's loss is weighted by m/N so that the gradients
    are those of the mean loss over the batch.

    >>> import torch, blockswap
    >>> net = blockswap.build_model("wrn-10-1")
    >>> fp = blockswap.fisher_potential(net, torch.randn(8, 3, 32, 32), torch.arange(8) % 10)
    >>> len(fp.per_block), abs(fp.total - sum(fp.per_block)) < 1e-12
    (3, True)
    """
    ProxyOptions(checkpoint=checkpoint, micro_batch=micro_batch)  # validates the combination
    _check_batch(inputs, targets)
    model.train()
    n = inputs.shape[0]
    step = n if micro_batch is None else micro_batch
    per_block = np.zeros(len(model.blocks))
    for start in range(0, n, step):
        x, y = inputs[start:start + step], targets[start:start + step]
        # Hooks are gone before the backward pass, so a checkpoint's recomputation adds nothing.
        with _probe_outputs(model) as acts, _checkpointed_blocks(model, checkpoint):
            logits = model(x)
        # Sum over the chunk / N: the gradient of the batch-mean loss (authors' criterion).
        loss = F.cross_entropy(logits, y, reduction="sum") / n
        grads = torch.autograd.grad(loss, acts)
        per_block += [_block_fisher(a, g, n) for a, g in zip(acts, grads)]
        del acts, grads, logits, loss
    return FisherPotential(float(per_block.sum()), tuple(float(v) for v in per_block))


def _check_batch(inputs: torch.Tensor, targets: torch.Tensor) -> None:
    if inputs.ndim != 4 or targets.ndim != 1 or inputs.shape[0] != targets.shape[0]:
        raise BlockSwapError(f"a minibatch needs inputs (N, 3, H, W) and N targets, got "
                             f"{tuple(inputs.shape)} and {tuple(targets.shape)}")
    if inputs.shape[0] < 2:
        raise BlockSwapError("a minibatch needs at least 2 examples (train-mode BN)")


# --------------------------------------------------------------------------------------------
# The registry of ranking signals
# --------------------------------------------------------------------------------------------

ProxyFn = Callable[[nn.Module, Sequence[Batch], int, ProxyOptions], "float | FisherPotential"]


@dataclass(frozen=True)
class Proxy:
    """A ranking signal: ``fn(model, batches, steps, options)`` on a freshly initialised model."""

    name: str
    fn: ProxyFn
    higher_is_better: bool
    trains: bool  # True: takes `steps` SGD steps on batches[:steps] ("name@k"); else steps == 1
    doc: str


PROXIES: dict[str, Proxy] = {}


def register_proxy(name: str, *, higher_is_better: bool, trains: bool = False
                   ) -> Callable[[ProxyFn], ProxyFn]:
    """Function decorator: register a ranking signal under `name` (a new name only)."""

    def wrap(fn: ProxyFn) -> ProxyFn:
        if name in PROXIES:
            raise BlockSwapError(f"ranking signal {name!r} is already registered")
        PROXIES[name] = Proxy(name, fn, higher_is_better, trains, (fn.__doc__ or "").strip().splitlines()[0])
        return fn

    return wrap


def get_proxy(name: str) -> Proxy:
    try:
        return PROXIES[name]
    except KeyError:
        raise BlockSwapError(f"unknown ranking signal {name!r}; valid signals: {choices(PROXIES)} "
                             "(training signals take '@k' minibatches, e.g. fisher@10)") from None


@dataclass(frozen=True)
class Signal:
    """A registered proxy and the number of minibatches it sees (k of "fisher@k")."""

    proxy: str
    steps: int = 1

    @property
    def name(self) -> str:
        return self.proxy if self.steps == 1 else f"{self.proxy}@{self.steps}"

    @property
    def higher_is_better(self) -> bool:
        return get_proxy(self.proxy).higher_is_better

    def __call__(self, model: nn.Module, batches: Sequence[Batch],
                 options: ProxyOptions = ProxyOptions()) -> "float | FisherPotential":
        """The signal of `model` on `batches`. A training signal (``name@k``) takes its k SGD
        steps on `model` itself, as the search wants for a throw-away candidate: pass a copy
        to keep the original weights."""
        if len(batches) < self.steps:
            raise BlockSwapError(f"signal {self.name} needs {self.steps} minibatches, got {len(batches)}")
        return get_proxy(self.proxy).fn(model, batches, self.steps, options)


_SIGNAL = re.compile(r"^(?P<proxy>[a-z_0-9]+?)(?:@(?P<steps>[0-9]+))?$")


def parse_signal(text: "str | Signal") -> Signal:
    """'fisher' -> Signal('fisher', 1); 'fisher@10' -> Signal('fisher', 10); 'snip'."""
    if isinstance(text, Signal):
        return text
    match = _SIGNAL.match(str(text).strip().lower())
    if not match:
        raise BlockSwapError(f"bad ranking signal {text!r}: write a name, or name@k for k training "
                             f"minibatches; valid names: {choices(PROXIES)}")
    proxy = get_proxy(match["proxy"])
    steps = int(match["steps"] or 1)
    if steps < 1:
        raise BlockSwapError(f"ranking signal {text!r}: k in name@k must be >= 1")
    if steps > 1 and not proxy.trains:
        raise BlockSwapError(f"ranking signal {proxy.name} uses one minibatch at initialisation; "
                             f"write {proxy.name}, not {text}")
    return Signal(proxy.name, steps)


# --------------------------------------------------------------------------------------------
# Signals measured over k SGD steps (paper Sec. 4.2, Table 1)
# --------------------------------------------------------------------------------------------


@dataclass
class _StepRecord:
    fisher: float = 0.0  # summed over steps
    correct: int = 0
    seen: int = 0
    grad_abs: float = 0.0  # summed over steps


def _train_steps(model: nn.Module, batches: Sequence[Batch], steps: int, options: ProxyOptions,
                 want_fisher: bool) -> _StepRecord:
    """Take `steps` SGD steps on batches[:steps], recording what the training signals read.

    As the authors' ``one_shot_fisher`` with n_steps: each step's Fisher is measured on its own
    minibatch at the weights before that step's update, and the Fisher is summed over the steps
    (their probe accumulates ``running_fisher`` on every backward pass).
    """
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=options.lr, momentum=options.momentum,
                          weight_decay=options.weight_decay)
    rec = _StepRecord()
    for x, y in batches[:steps]:
        with _probe_outputs(model) as acts:
            logits = model(x)
        loss = F.cross_entropy(logits, y)
        grads = torch.autograd.grad(loss, [*acts, *params] if want_fisher else params)
        if want_fisher:
            rec.fisher += sum(_block_fisher(a, g, x.shape[0]) for a, g in zip(acts, grads[:len(acts)]))
            grads = grads[len(acts):]
        with torch.no_grad():
            rec.correct += int((logits.argmax(1) == y).sum())
            rec.seen += y.shape[0]
            rec.grad_abs += float(sum(g.abs().sum(dtype=torch.float64) for g in grads))
        for p, g in zip(params, grads):
            p.grad = g
        opt.step()
        del acts, grads, logits, loss
    return rec


@register_proxy("fisher", higher_is_better=True, trains=True)
def _fisher(model, batches, steps, options):
    """Fisher potential at initialisation (paper Sec. 4); fisher@k sums it over k SGD steps."""
    if steps == 1:
        x, y = batches[0]
        return fisher_potential(model, x, y, checkpoint=options.checkpoint, micro_batch=options.micro_batch)
    return _train_steps(model, batches, steps, options, want_fisher=True).fisher


@register_proxy("train_acc", higher_is_better=True, trains=True)
def _train_acc(model, batches, steps, options):
    """Training accuracy: fraction of correct predictions over the k training minibatches."""
    rec = _train_steps(model, batches, steps, options, want_fisher=False)
    return rec.correct / rec.seen


@register_proxy("l2", higher_is_better=True, trains=True)
def _l2(model, batches, steps, options):
    """Sum over weight tensors of their L2 norm after k SGD steps (paper Table 1, 'L2')."""
    _train_steps(model, batches, steps, options, want_fisher=False)
    with torch.no_grad():
        return float(sum(p.norm(dtype=torch.float64) for p in model.parameters()))


@register_proxy("grad_norm", higher_is_better=True, trains=True)
def _grad_norm(model, batches, steps, options):
    """Sum of |dL/dw| over all weights, summed over k SGD steps (Golub et al. 2019)."""
    return _train_steps(model, batches, steps, options, want_fisher=False).grad_abs


# --------------------------------------------------------------------------------------------
# Later training-free proxies users compare against (one minibatch at initialisation)
# --------------------------------------------------------------------------------------------


def _weights(model: nn.Module) -> list[torch.Tensor]:
    """Conv and linear weights: the prunable parameters SNIP and SynFlow score."""
    return [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


@register_proxy("snip", higher_is_better=True)
def _snip(model, batches, steps, options):
    """SNIP: sum over conv/linear weights of |w * dL/dw| on the minibatch (Lee et al. 2019)."""
    x, y = batches[0]
    model.train()
    weights = _weights(model)
    grads = torch.autograd.grad(F.cross_entropy(model(x), y), weights)
    with torch.no_grad():
        return float(sum((w * g).abs().sum(dtype=torch.float64) for w, g in zip(weights, grads)))


@register_proxy("synflow", higher_is_better=True)
def _synflow(model, batches, steps, options):
    """SynFlow: sum |w * dR/dw|, R = sum of outputs of the |w| network on an all-ones input.

    As the zero-cost-proxy reference code (Abdelfattah et al. 2021): float64, every weight made
    non-negative, BN neutral (eval mode with its initial statistics, i.e. no BN), one input of 1s.
    Runs on a copy; `model` is left as it was.
    """
    x, _ = batches[0]
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    weights = _weights(net)
    out = net(torch.ones((1, *x.shape[1:]), dtype=torch.float64, device=x.device))
    grads = torch.autograd.grad(out.sum(), weights)
    with torch.no_grad():
        return float(sum((w * g).abs().sum() for w, g in zip(weights, grads)))


@register_proxy("naswot", higher_is_better=True)
def _naswot(model, batches, steps, options):
    """NASWOT: log|K|, K[i,j] = number of ReLUs on which examples i and j agree (Mellor et al.)."""
    x, _ = batches[0]
    model.train()
    n = x.shape[0]
    kernel = torch.zeros(n, n, dtype=torch.float64, device=x.device)

    def hook(_m, _i, out):
        c = (out.detach().reshape(n, -1) > 0).to(torch.float64)
        kernel.add_(c @ c.T + (1 - c) @ (1 - c).T)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    sign, logdet = torch.linalg.slogdet(kernel)
    return float(logdet) if sign > 0 else -math.inf


@register_proxy("jacob_cov", higher_is_better=True)
def _jacob_cov(model, batches, steps, options):
    """Jacobian covariance: -sum(log(v + k) + 1/(v + k)), v the eigenvalues of the correlation
    matrix of the per-example input Jacobians (Mellor et al. 2021, v1; k = 1e-5)."""
    x, _ = batches[0]
    model.train()
    x = x.detach().clone().requires_grad_(True)
    (jac,) = torch.autograd.grad(model(x).sum(), x)
    corr = np.corrcoef(jac.reshape(x.shape[0], -1).double().cpu().numpy())
    if not np.all(np.isfinite(corr)):
        return -math.inf
    v = np.linalg.eigvalsh(corr)
    k = 1e-5
    return float(-np.sum(np.log(v + k) + 1.0 / (v + k)))
