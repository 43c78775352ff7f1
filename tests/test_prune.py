"""Pruning baselines (paper Appendix C): masks keep exactly the budget's non-zero parameters, the
right weights (brute force over |w| and over |g*w| from plain autograd), pruned weights stay zero
through training and resume, and the counts the cost command shows."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from blockswap import build_model
from blockswap.cli import main
from blockswap.errors import BlockSwapError
from blockswap.train import ModelDesc, load_model, recipe, train_model
from blockswap.train.checkpoint import load_checkpoint
from blockswap.train.prune import apply_masks, l1_masks, prunable_weights, snip_masks, sparse_macs


def count_nonzero(model: nn.Module) -> int:
    return sum(int((p != 0).sum()) for p in model.parameters())


def net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("wrn-10-1", None, 10)


@pytest.mark.parametrize("budget", [20_000, 40_000, 77_000])
def test_l1_keeps_exactly_the_budget_and_the_largest_weights(budget):
    model = net()
    masks = l1_masks(model, budget)
    total = sum(p.numel() for p in model.parameters())
    assert total - sum(int((~m).sum()) for m in masks.values()) == budget  # parameters left unpruned
    apply_masks(model, masks)
    assert count_nonzero(model) <= budget  # (zero-initialised BN biases and the like are zero already)
    weights = prunable_weights(model)
    original = prunable_weights(net())
    kept = torch.cat([original[n].detach().abs().double().flatten()[masks[n].flatten()] for n in weights])
    dropped = torch.cat([original[n].detach().abs().double().flatten()[~masks[n].flatten()] for n in weights])
    assert kept.min() >= dropped.max()  # no pruned weight is larger than a kept one


def test_snip_keeps_the_largest_connection_sensitivities():
    model = net(1)
    x, y = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(0)), torch.arange(16) % 10
    reference = copy.deepcopy(model).train()
    F.cross_entropy(reference(x), y).backward()  # plain autograd: dL/dw
    sens = {n: (m.weight.grad * m.weight).abs().double() for n, m in
            ((n, m) for n, m in reference.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear)))}
    masks = snip_masks(model, x, y, 30_000)
    kept = torch.cat([sens[n.removesuffix(".weight")].flatten()[m.flatten()] for n, m in masks.items()])
    dropped = torch.cat([sens[n.removesuffix(".weight")].flatten()[~m.flatten()] for n, m in masks.items()])
    assert kept.min() >= dropped.max()
    apply_masks(model, masks)
    assert count_nonzero(model) <= 30_000
    assert sum(p.numel() for p in model.parameters()) - sum(int((~m).sum()) for m in masks.values()) == 30_000


def test_a_budget_out_of_reach_names_the_range():
    model = net()
    fixed = sum(p.numel() for p in model.parameters()) - sum(w.numel() for w in prunable_weights(model).values())
    with pytest.raises(BlockSwapError, match=f"more than {fixed:,}"):
        l1_masks(model, fixed)
    with pytest.raises(BlockSwapError, match="unknown pruning method 'l0'.*l1, snip"):
        ModelDesc("blockswap", "wrn-10-1", prune="l0", prune_params=100)


def test_sparse_macs_count_non_zero_weights_per_output_position():
    conv = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.Flatten(), nn.Linear(4 * 8 * 8, 5))
    with torch.no_grad():
        conv[0].weight[:2] = 0  # two of four filters pruned
        conv[2].weight[:, :10] = 0
    out_positions = ((16 + 2 - 3) // 2 + 1) ** 2  # the conv arithmetic, by hand
    assert sparse_macs(conv, 16) == 2 * 3 * 9 * out_positions + 5 * (256 - 10)


def test_pruned_weights_stay_zero_through_training_and_resume(tmp_path):
    cfg = recipe("digits", epochs=2, batch_size=64)
    teacher = tmp_path / "teacher"
    train_model(recipe("digits", epochs=1), "digits", teacher, ModelDesc("blockswap", "wrn-10-1", None, None, 16),
                progress=False)
    desc = ModelDesc("blockswap", "wrn-10-1", None, None, 16, prune="l1", prune_params=30_000,
                     prune_source=str(teacher))
    out = tmp_path / "l1"

    def stop(row):
        if row["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_model(cfg, "digits", out, desc, teacher=teacher, progress=False, on_epoch_end=stop)
    masks = load_checkpoint(out / "checkpoint.pt")["masks"]
    source, _ = load_model(teacher)
    start = {n: w.detach() for n, w in prunable_weights(source).items()}
    for name, mask in masks.items():  # l1 of the teacher's weights: the largest kept
        assert start[name].abs()[mask].min() >= start[name].abs()[~mask].max() if (~mask).any() else True
    record = train_model(cfg, "digits", out, desc, teacher=teacher, resume=True, progress=False)
    trained, _ = load_model(out)
    weights = prunable_weights(trained)
    for name, mask in masks.items():
        assert bool((weights[name][~mask] == 0).all())  # pruned at epoch 1, still exactly zero at 2
    assert record["nonzero_params"] == count_nonzero(trained) <= 30_000
    assert record["params"] == sum(p.numel() for p in trained.parameters())

    assert main(["cost", "--checkpoint", str(out), "--json"]) == 0


def test_cost_checkpoint_shows_dense_and_non_zero(tmp_path, capsys):
    out = tmp_path / "snip"
    train_model(recipe("digits", epochs=1, batch_size=64), "digits", out,
                ModelDesc("blockswap", "wrn-10-1", None, None, 16, prune="snip", prune_params=25_000), progress=False)
    capsys.readouterr()
    assert main(["cost", "--checkpoint", str(out), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    trained, _ = load_model(out)
    assert shown["params"] == sum(p.numel() for p in trained.parameters())
    assert shown["nonzero_params"] == count_nonzero(trained) <= 25_000
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        trained.eval()(torch.zeros(1, 3, 16, 16))
    assert shown["macs"] == counter.get_total_flops() // 2
    assert shown["nonzero_macs"] < shown["macs"]
