"""ONNX export: onnxruntime computes what PyTorch computes, for every block type, with batch
norms folded where they follow a convolution; the CLI checks its paths before any work."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from blockswap import build_model, export_onnx, verify_onnx  # noqa: E402
from blockswap.export import fold_batch_norms, ort_session  # noqa: E402
from blockswap.space.blocks import default_candidates, parse_block  # noqa: E402
from blockswap.train import ModelDesc, recipe, train_model  # noqa: E402
from helpers import one_line_error, run_cli  # noqa: E402

TYPES = [parse_block("S"), *default_candidates()]  # the paper's 23 candidates and the standard block
NETWORK = "wrn-16-2"  # 6 blocks; every type is valid at every position


def _randomised(model: nn.Module, seed: int) -> nn.Module:
    """Running statistics and affine terms far from their initial values, so folding is tested."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.5)
                m.running_var.copy_(torch.rand(c, generator=gen) * 2 + 0.2)
                m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(c, generator=gen) * 0.2)
    return model.eval()


def _bn_after_conv(model: nn.Module) -> int:
    """Independent count: BatchNorm2d modules that directly follow a Conv2d in a Sequential."""
    count = 0
    for seq in (m for m in model.modules() if isinstance(m, nn.Sequential)):
        kids = list(seq.children())
        count += sum(isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d) for a, b in zip(kids, kids[1:]))
    return count


@pytest.mark.parametrize("chunk", range(4))
def test_every_block_type_exports_and_onnxruntime_matches_pytorch(tmp_path, chunk):
    types = TYPES[chunk * 6:(chunk + 1) * 6]  # 24 types, 6 blocks per network
    model = _randomised(build_model(NETWORK, ",".join(t.name for t in types)), seed=chunk)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    info = export_onnx(model, tmp_path / "m.onnx", input_size=16)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the caller's model untouched
    graph = onnx.load(str(tmp_path / "m.onnx")).graph
    onnx.checker.check_model(onnx.load(str(tmp_path / "m.onnx")))
    producer = {out: n.op_type for n in graph.node for out in n.output}
    assert not [n for n in graph.node if n.op_type == "BatchNormalization" and producer.get(n.input[0]) == "Conv"]
    total_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert info.folded == _bn_after_conv(model) > 0
    # What is left is the pre-activation BNs; the exporter's optimiser may fold one more (the
    # first block's, when only it reads the stem's convolution).
    assert info.left == sum(n.op_type == "BatchNormalization" for n in graph.node) <= total_bn - info.folded
    session = ort_session(tmp_path / "m.onnx")
    gen = torch.Generator().manual_seed(100 + chunk)
    for batch in (1, 5):  # the batch dimension is dynamic
        x = torch.randn(batch, 3, 16, 16, generator=gen)
        with torch.no_grad():
            ref = model(x)
        got = torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
        assert got.shape == ref.shape
        assert (got - ref).abs().max().item() <= 1e-4, [t.name for t in types]


def test_folding_is_exact_in_float64():
    model = _randomised(build_model(NETWORK, "B(2),BG(2,M/4),G(4),S,B(4),BG(4,M/8)"), seed=7).double()
    folded, n = fold_batch_norms(model)
    assert n == _bn_after_conv(model) > 0
    x = torch.randn(3, 3, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), rtol=1e-12, atol=1e-12)


@pytest.mark.slow
def test_cli_export_verify_of_a_trained_run(tmp_path):
    run = tmp_path / "run"
    train_model(recipe("cifar", epochs=1, batch_size=64, cutout=8, eval_batch_size=128), "synthetic", run,
                ModelDesc("blockswap", "wrn-10-1", input_size=16), progress=False)
    proc = run_cli("export", "--checkpoint", str(run), "--out", str(tmp_path / "s.onnx"), "--verify", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["verify"]["max_abs_diff"] <= 1e-4 and out["input_size"] == 16
    onnx.checker.check_model(onnx.load(str(tmp_path / "s.onnx")))
    check = verify_onnx(build_model("wrn-10-1"), export_onnx(build_model("wrn-10-1"), tmp_path / "u.onnx").path)
    assert [r["batch_size"] for r in check["batches"]] == [1, 8]


@pytest.mark.slow
def test_cli_export_refuses_bad_paths_and_formats_before_any_work(tmp_path):
    base = ["export", "--model", "wrn-10-1"]
    one_line_error(run_cli(*base, "--out", str(tmp_path)), "is a folder")
    one_line_error(run_cli(*base, "--out", str(tmp_path / "m.pt")), "should end in .onnx")
    one_line_error(run_cli(*base, "--out", str(tmp_path / "m.onnx"), "--format", "tflite"), "'tflite'", "onnx")
    one_line_error(run_cli("export", "--checkpoint", str(tmp_path / "none"), "--out", str(tmp_path / "m.onnx")),
                   "does not exist")
    assert list(tmp_path.iterdir()) == []
