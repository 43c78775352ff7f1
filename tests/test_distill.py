"""Attention transfer and KD losses against hand-written loops over examples, points, pixels;
a user's own nn.Module as the teacher."""

import math

import numpy as np
import pytest
import torch

from blockswap import BlockSwapError
from blockswap.train import parse_model, recipe
from blockswap.train.distill import at_loss, attention_map, kd_loss

TINY = dict(epochs=1, batch_size=64, cutout=8, eval_batch_size=128)  # 512 synthetic images: 8 steps


def _map_by_hand(a: np.ndarray) -> np.ndarray:
    """f(A) for one example A (C, H, W): channel-mean of A^2, flattened, divided by its L2 norm."""
    c, h, w = a.shape
    q = np.zeros(h * w)
    for i in range(h):
        for j in range(w):
            q[i * w + j] = sum(a[k, i, j] ** 2 for k in range(c)) / c
    return q / math.sqrt(sum(v * v for v in q))


def _points(seed, shapes):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=g) for s in shapes]


def test_attention_map_is_normalised_channel_mean_of_squares():
    (a,) = _points(0, [(3, 5, 4, 3)])
    got = attention_map(a).numpy()
    for n in range(3):
        np.testing.assert_allclose(got[n], _map_by_hand(a[n].double().numpy()), rtol=1e-5)


def test_at_loss_matches_the_paper_formula_point_by_point():
    # WRN-like: 3 points of different widths and sizes; student and teacher widths differ.
    beta = 1000.0
    s = _points(1, [(4, 8, 8, 8), (4, 16, 4, 4), (4, 32, 2, 2)])
    t = _points(2, [(4, 16, 8, 8), (4, 32, 4, 4), (4, 64, 2, 2)])
    expected = 0.0
    for sp, tp in zip(s, t):
        n, _, h, w = sp.shape
        sq = 0.0
        for i in range(n):
            d = _map_by_hand(sp[i].double().numpy()) - _map_by_hand(tp[i].double().numpy())
            sq += float((d ** 2).sum())
        expected += sq / (n * h * w)  # mean over examples and positions
    expected *= beta / 2
    assert at_loss(s, t, beta).item() == pytest.approx(expected, rel=1e-5)


def test_at_loss_is_zero_for_identical_maps_and_ignores_activation_scale():
    s = _points(3, [(2, 4, 4, 4), (2, 8, 2, 2)])
    assert at_loss(s, [3.0 * p for p in s], 1000.0).item() == pytest.approx(0.0, abs=1e-9)


def test_at_loss_gradient_reaches_the_student_only():
    s = [p.requires_grad_() for p in _points(4, [(2, 4, 4, 4)])]
    t = _points(5, [(2, 8, 4, 4)])
    at_loss(s, t, 1000.0).backward()
    assert s[0].grad is not None and s[0].grad.abs().sum() > 0
    assert t[0].grad is None


def test_at_loss_rejects_unpairable_points():
    s = _points(6, [(2, 4, 4, 4), (2, 8, 2, 2), (2, 8, 1, 1)])
    with pytest.raises(BlockSwapError, match="3 attention points but the teacher has 2"):
        at_loss(s, s[:2], 1.0)
    with pytest.raises(BlockSwapError, match="attention point 1"):
        at_loss(s[:1], _points(7, [(2, 4, 8, 8)]), 1.0)


def test_kd_loss_is_hinton_with_batchmean_kl():
    g = torch.Generator().manual_seed(8)
    ys, yt = torch.randn(6, 10, generator=g), torch.randn(6, 10, generator=g)
    labels = torch.randint(0, 10, (6,), generator=g)
    T, w = 4.0, 0.9
    ys_np, yt_np = ys.double().numpy(), yt.double().numpy()

    def softmax(z):
        e = np.exp(z - z.max())
        return e / e.sum()

    ce = kl = 0.0
    for n in range(6):
        ce -= math.log(softmax(ys_np[n])[labels[n]])
        p, q = softmax(ys_np[n] / T), softmax(yt_np[n] / T)
        kl += float((q * np.log(q / p)).sum())  # KL(teacher || student), summed over classes
    expected = (1 - w) * ce / 6 + w * T * T * kl / 6
    assert kd_loss(ys, yt, labels, T, w).item() == pytest.approx(expected, rel=1e-5)
    assert kd_loss(ys, yt, labels, T, 0.0).item() == pytest.approx(ce / 6, rel=1e-5)


class _UserTeacher(torch.nn.Module):
    """A user's own network (not a BlockSwap or torchvision one): maps 16x16, 8x8, 4x4 as WRN-10-1's."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.block_a = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.block_b = torch.nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.block_c = torch.nn.Conv2d(16, 16, 3, stride=2, padding=1)
        self.fc = torch.nn.Linear(16, 10)

    def forward(self, x):
        x = self.block_c(self.block_b(self.block_a(self.stem(x)).relu()).relu()).relu()
        return self.fc(x.mean((2, 3)))


def test_a_user_module_teacher_distils_a_student_by_its_named_nodes(tmp_path):
    import blockswap as bs
    from blockswap.train.models import _module_teacher, module_fingerprint

    torch.manual_seed(0)
    teacher = _UserTeacher()
    nodes = ["block_a", "block_b", "block_c"]
    # The wrapper's points are the modules' outputs, as forward hooks see them; the logits forward's.
    x = torch.randn(3, 3, 16, 16)
    hooked = {}
    handles = [getattr(teacher, n).register_forward_hook(lambda m, i, o, n=n: hooked.setdefault(n, o))
               for n in nodes]
    expected = teacher.eval()(x)
    for h in handles:
        h.remove()
    logits, points = _module_teacher(teacher, nodes).forward_intermediates(x)
    assert torch.equal(logits, expected) and list(points) == nodes
    assert all(torch.equal(points[n], hooked[n]) for n in nodes)

    student = parse_model("wrn-10-1", "G(4),G(4),G(4)", input_size=16)
    record = bs.train_model(recipe("cifar", **TINY), "synthetic", tmp_path, student, teacher=teacher,
                            teacher_nodes=nodes, progress=False)
    at = record["history"][0]["train_at_loss"]
    assert math.isfinite(at) and at > 0
    assert record["teacher"] == {"source": "module", "module": "_UserTeacher",
                                 "fingerprint": module_fingerprint(teacher), "nodes": nodes}
    assert record["role"] == "student"
    other = _UserTeacher()
    assert module_fingerprint(other) != module_fingerprint(teacher)
    other.load_state_dict(teacher.state_dict())
    assert module_fingerprint(other) == module_fingerprint(teacher)
    with pytest.raises(BlockSwapError, match="unknown node .layer9. of _UserTeacher; valid nodes: x, stem"):
        bs.train_model(recipe("cifar", **TINY), "synthetic", tmp_path / "bad", student, teacher=teacher,
                       teacher_nodes=["layer9"], progress=False)
