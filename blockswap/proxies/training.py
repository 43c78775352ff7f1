"""Signals measured over k SGD steps from initialisation (paper Sec. 4.2, Table 1): the Fisher
potential summed over k steps, training accuracy, "sum of L2 norms of the weights"
(`weight_l2@k`) and "summed absolute gradient norms" (`grad_l1@k`).

"Weights" are the conv and linear weights, as in the field's proxies: BN's unit gammas would add
an architecture-only term (39-45% of the sum over all parameters on wrn-16-2, issue 18).
BlockSwap 0.1 called these ``l2@k`` and ``grad_norm@k`` (summed over every parameter); those
names still parse (`registry.parse_signal`), to the definitions here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .execution import exact_run, memory_format, weights
from .fisher import block_fisher, check_probes, fisher_potential
from .probes import probe_outputs
from .registry import Batch, ProxyOptions, register_proxy


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
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=options.lr, momentum=options.momentum,
                          weight_decay=options.weight_decay)
    rec = _StepRecord()
    fmt = memory_format(options.memory_format)
    with exact_run(model, batches[0][0], options.memory_format):
        for x, y in batches[:steps]:
            _step(model, x.contiguous(memory_format=fmt), y, params, opt, rec, want_fisher)
    return rec


def _step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, params: list, opt: torch.optim.Optimizer,
          rec: _StepRecord, want_fisher: bool) -> None:
    """One SGD step on (x, y), adding what it measured to `rec`."""
    with probe_outputs(model) as acts:
        logits = model(x)
    if want_fisher:
        check_probes(acts, "fisher")
    loss = F.cross_entropy(logits, y)
    grads = torch.autograd.grad(loss, [*acts, *params] if want_fisher else params)
    if want_fisher:
        rec.fisher += sum(block_fisher(a, g, x.shape[0]) for a, g in zip(acts, grads[:len(acts)]))
        grads = grads[len(acts):]
    with torch.no_grad():
        rec.correct += int((logits.argmax(1) == y).sum())
        rec.seen += y.shape[0]
        weight_ids = {id(w) for w in weights(model)}
        rec.grad_abs += float(sum(g.abs().sum(dtype=torch.float64) for p, g in zip(params, grads)
                                  if id(p) in weight_ids))
    for p, g in zip(params, grads):
        p.grad = g
    opt.step()
    del acts, grads, logits, loss


@register_proxy("fisher", higher_is_better=True, trains=True)
def _fisher(model, batches, steps, options):
    """Fisher potential at initialisation (paper Sec. 4); fisher@k sums it over k SGD steps."""
    if steps == 1:
        x, y = batches[0]
        return fisher_potential(model, x, y, checkpoint=options.checkpoint, micro_batch=options.micro_batch,
                                memory_format=options.memory_format, precision=options.precision)
    return _train_steps(model, batches, steps, options, want_fisher=True).fisher


@register_proxy("train_acc", higher_is_better=True, trains=True)
def _train_acc(model, batches, steps, options):
    """Training accuracy: fraction of correct predictions over the k training minibatches."""
    rec = _train_steps(model, batches, steps, options, want_fisher=False)
    return rec.correct / rec.seen


@register_proxy("weight_l2", higher_is_better=True, trains=True)
def _weight_l2(model, batches, steps, options):
    """Sum over conv/linear weights of ||W||_F after k SGD steps (paper Table 1, 'L2')."""
    _train_steps(model, batches, steps, options, want_fisher=False)
    with torch.no_grad():
        return float(sum(w.norm(dtype=torch.float64) for w in weights(model)))


@register_proxy("grad_l1", higher_is_better=True, trains=True)
def _grad_l1(model, batches, steps, options):
    """Sum of |dL/dW| over conv/linear weights, summed over k SGD steps (Table 1, 'grad norm')."""
    return _train_steps(model, batches, steps, options, want_fisher=False).grad_abs
