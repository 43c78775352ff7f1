"""``blockswap export``: a trained (or untrained) student as an ONNX file, checked against PyTorch."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import BlockSwapError, choices
from ..files import dumps
from .common import TORCHVISION_WEIGHTS_HELP, deprecated_alias, network_from_args, positive

FORMATS = ("onnx",)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a network as an ONNX file (BN folded, dynamic batch)",
                       description="Export a trained network (--checkpoint) or an untrained genotype (--model, "
                                   "--genotype) to ONNX: input 'images' (N,3,H,W), output 'logits', batch "
                                   "norms that follow a convolution folded into it. --verify runs PyTorch and "
                                   "onnxruntime on the same inputs and prints the difference and both latencies.")
    p.add_argument("--checkpoint", default=None, help="run folder or checkpoint from 'blockswap train', or torchvision:NAME")
    p.add_argument("--teacher-weights", default=None, help="with --checkpoint torchvision:NAME: " + TORCHVISION_WEIGHTS_HELP)
    deprecated_alias(p, "--weights", "--teacher-weights", "teacher_weights")
    p.add_argument("--model", default=None, help="or an untrained network (seeded weights): wrn-40-2, ...")
    p.add_argument("--genotype", default=None, help="genotype of the untrained network (file, reference:NAME or text)")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--format", default="onnx", help=f"export format: {', '.join(FORMATS)} (default onnx)")
    p.add_argument("--opset", type=positive, default=None,
                   help="ONNX opset, 18 up to the newest the installed onnx knows (default: the exporter's)")
    p.add_argument("--no-fold-bn", dest="fold_bn", action="store_false", help="keep every batch norm as a node")
    p.add_argument("--input-size", type=positive, default=None, help="input side in pixels (default: the network's)")
    p.add_argument("--verify", action="store_true", help="compare onnxruntime with PyTorch, batch 1 and 8, and time both")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..export.onnx import check_opset, export_onnx, verify_onnx

    if args.format not in FORMATS:
        raise BlockSwapError(f"unknown export format {args.format!r}; valid formats: {choices(FORMATS)}")
    check_opset(args.opset)  # before building the network: a typo costs nothing
    out = Path(args.out)
    if out.is_dir():
        raise BlockSwapError(f"--out {args.out!r} is a folder; give a file name such as {str(out / 'model.onnx')!r}")
    if out.suffix.lower() != ".onnx":
        raise BlockSwapError(f"--out {args.out!r} should end in .onnx")
    net, desc = network_from_args(args.checkpoint, args.teacher_weights, args.model, args.genotype, args.input_size)
    size = args.input_size or desc.input_size
    info = export_onnx(net, out, input_size=size, opset=args.opset, fold_bn=args.fold_bn)
    check = verify_onnx(net, out, input_size=size) if args.verify else None
    if args.json:
        print(dumps({"model": desc.text, "genotype": desc.genotype, "input_size": size, **info.to_dict(),
                     **({"verify": check} if check else {})}))
        return 0
    print(f"wrote {out} ({desc.text}, {size}x{size} inputs, opset {info.opset}): {sum(info.nodes.values())} nodes, "
          f"{info.folded} batch norms folded into convolutions, {info.left} left (pre-activation)")
    if check:
        from ..export.timing import format_ms, noisy_note

        for r in check["batches"]:
            print(f"  batch {r['batch_size']}: max |onnxruntime - torch| = {r['max_abs_diff']:.2e}; "
                  f"torch {format_ms(r['torch_ms'] / 1e3, r['torch_spread'])}, onnxruntime "
                  f"{format_ms(r['onnxruntime_ms'] / 1e3, r['onnxruntime_spread'])} ({check['threads']} threads)")
        noisy = sum(r["noisy"] for r in check["batches"])
        if noisy:
            print(noisy_note(noisy, len(check["batches"])))
    return 0
