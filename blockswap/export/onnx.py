"""ONNX export of a student (or any network of this package), with batch norms folded, and a
check that onnxruntime computes what PyTorch computes.

The network is exported in eval mode: batch norm uses its running statistics and is an affine
map. Where it directly follows a convolution (inside block bodies: conv -> BN -> ReLU -> conv)
it is folded into that convolution's weight and bias, exactly::

    w' = w * gamma / sqrt(var + eps),   b' = (b - mean) * gamma / sqrt(var + eps) + beta

The pre-activation batch norms (BN -> ReLU after a residual add) have no convolution of their
own to fold into and stay as ONNX ``BatchNormalization`` nodes (inference mode).

We fold in PyTorch before exporting, so the folding is ours and tested, not a detail of an
exporter's optimiser. The exporter is torch's ``torch.export``-based one (``dynamo=True``,
through onnxscript): the TorchScript exporter is deprecated and announced for removal.
"""

from __future__ import annotations

import copy
import tempfile
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..errors import BlockSwapError
from ..files import atomic_write_bytes
from .timing import eager_call, is_noisy, median_seconds, session_call

INPUT_NAME, OUTPUT_NAME = "images", "logits"


def _need_onnx():
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise BlockSwapError("ONNX export needs onnx, onnxscript and onnxruntime: "
                             "pip install 'blockswap[export]'") from None
    return onnx, onnxruntime


# torch's exporter implements opset 18 and later; it "converts" a lower request with a fallback
# that fails for most networks and then silently writes opset 18 (or ignores an unknown one).
MIN_OPSET = 18


def opset_range() -> tuple[int, int]:
    """The ONNX opsets an export may ask for: MIN_OPSET to the newest the installed onnx knows."""
    onnx, _ = _need_onnx()
    return MIN_OPSET, int(onnx.defs.onnx_opset_version())


def check_opset(opset: int | None) -> int | None:
    """`opset` if an export can write it (None: the exporter's default), else a one-line error."""
    if opset is None:
        return None
    low, high = opset_range()
    if isinstance(opset, bool) or not isinstance(opset, int) or not low <= opset <= high:
        raise BlockSwapError(f"ONNX opset {opset!r} is not supported; valid opsets: {low}..{high}")
    return opset


@dataclass(frozen=True)
class ExportInfo:
    path: Path
    opset: int
    folded: int  # batch norms folded into the convolution before them
    left: int  # BatchNormalization nodes in the file (pre-activation ones; the exporter's optimiser
    # may fold one more, e.g. the first block's when only it reads the stem's convolution)
    nodes: dict[str, int] = field(default_factory=dict)  # ONNX node types and their counts

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "opset": self.opset, "bn_folded": self.folded, "bn_left": self.left,
                "nodes": self.nodes, "input": INPUT_NAME, "output": OUTPUT_NAME}


def fold_batch_norms(model: nn.Module) -> tuple[nn.Module, int]:
    """An eval-mode copy of `model` in which every BatchNorm2d that directly follows a Conv2d
    in a `nn.Sequential` is folded into it (and replaced by an identity); and their number."""
    model = copy.deepcopy(model).eval()
    folded = 0
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for first, second in zip(names, names[1:]):
            conv, bn = seq._modules[first], seq._modules[second]
            if isinstance(conv, nn.Conv2d) and type(bn) is nn.BatchNorm2d and bn.track_running_stats:
                seq._modules[first] = fuse_conv_bn_eval(conv, bn)
                seq._modules[second] = nn.Identity()
                folded += 1
    return model, folded


def export_onnx(model: nn.Module, path: "str | Path", *, input_size: int | None = None, opset: int | None = None,
                fold_bn: bool = True) -> ExportInfo:
    """Write `model` (in eval mode; the caller's module is not changed) to the ONNX file `path`.

    Input ``images`` (N, 3, H, W) with a dynamic batch N, output ``logits`` (N, classes).
    `input_size` defaults to the network's (``model.spec.input_size``), else 224.
    """
    size = _input_size(model, input_size)
    return export_module(model, (2, 3, size, size), path, opset=opset, fold_bn=fold_bn)


def _input_size(model: nn.Module, input_size: int | None) -> int:
    """`input_size`, else the network's (``model.spec.input_size``), else 224."""
    return input_size or getattr(getattr(model, "spec", None), "input_size", None) or 224


def export_module(module: nn.Module, shape: Sequence[int], path: "str | Path", *, opset: int | None = None,
                  fold_bn: bool = True, dynamic_batch: bool = True) -> ExportInfo:
    """Write any module taking one tensor of `shape` (a network, one block) to ONNX `path`."""
    onnx, _ = _need_onnx()
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise BlockSwapError(f"ONNX file {str(path)!r} should end in .onnx")
    check_opset(opset)
    net, folded = fold_batch_norms(module) if fold_bn else (copy.deepcopy(module).eval(), 0)
    x = torch.zeros(*shape)
    kwargs: dict[str, Any] = {} if opset is None else {"opset_version": opset}
    if dynamic_batch:
        kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch", min=1)},)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's progress chatter and deprecation notes
        try:
            program = torch.onnx.export(net, (x,), dynamo=True, input_names=[INPUT_NAME],
                                        output_names=[OUTPUT_NAME], verbose=False, **kwargs)
            proto = program.model_proto
            onnx.checker.check_model(proto)
        except Exception as exc:  # noqa: BLE001 - the exporter raises many types; the file is not written
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BlockSwapError(f"ONNX export of {type(module).__name__} failed: {first}") from None
    opset_used = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset is not None and opset_used != opset:  # never a file of another opset than asked for
        raise BlockSwapError(f"the exporter could not write ONNX opset {opset} (it produced {opset_used}); "
                             f"nothing written to {str(path)!r}")
    atomic_write_bytes(path, proto.SerializeToString())
    nodes = dict(Counter(n.op_type for n in proto.graph.node).most_common())
    return ExportInfo(path, opset_used, folded, nodes.get("BatchNormalization", 0), nodes)


def ort_session(path: "str | Path", threads: int | None = None, optimize: bool = True):
    """An onnxruntime CPU session on `path`; `threads` intra-op threads (default: torch's count)."""
    _, ort = _need_onnx()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def module_session(module: nn.Module, shape: Sequence[int], *, dynamic_batch: bool = True):
    """An onnxruntime session of `module` exported (batch norms folded) for inputs of `shape`,
    through a temporary file: what timing a module in onnxruntime needs."""
    with tempfile.TemporaryDirectory(prefix="blockswap-onnx-") as tmp:
        path = export_module(module, tuple(shape), Path(tmp) / "m.onnx", dynamic_batch=dynamic_batch).path
        return ort_session(path)  # the session holds the model in memory: the file may go


def verify_onnx(model: nn.Module, path: "str | Path", *, batch_sizes: Sequence[int] = (1, 8),
                input_size: int | None = None, seed: int = 0, warmup: int = 3, repeats: int = 10) -> dict[str, Any]:
    """Run PyTorch (eval) and onnxruntime on the same seeded inputs: the largest absolute and
    relative differences of the logits per batch size, and each runtime's median latency with its
    spread (``*_spread``; ``noisy``: either above `timing.NOISY_SPREAD`)."""
    size = _input_size(model, input_size)
    model = model.eval()
    session = ort_session(path)
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for b in batch_sizes:
        x = torch.randn(b, 3, size, size, generator=gen)
        with torch.inference_mode():
            ref = model(x)
        got = torch.from_numpy(session.run(None, {INPUT_NAME: x.numpy()})[0])
        diff = (got - ref).abs()
        torch_s, torch_spread = median_seconds(eager_call(model, x), warmup, repeats)
        ort_s, ort_spread = median_seconds(session_call(session, x), warmup, repeats)
        rows.append({"batch_size": b, "max_abs_diff": float(diff.max()),
                     "max_rel_diff": float((diff / ref.abs().clamp_min(1e-6)).max()),
                     "torch_ms": 1e3 * torch_s, "torch_spread": torch_spread,
                     "onnxruntime_ms": 1e3 * ort_s, "onnxruntime_spread": ort_spread,
                     "noisy": is_noisy(torch_spread) or is_noisy(ort_spread)})
    return {"path": str(path), "threads": torch.get_num_threads(), "batches": rows,
            "max_abs_diff": max(r["max_abs_diff"] for r in rows)}
