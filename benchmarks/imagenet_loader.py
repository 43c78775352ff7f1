"""Is the ImageNet loader the bottleneck? Images per second of the loader alone against the
training step, measured side by side in one run (issue: ImageNet students, paper Sec. 6).

Writes an ImageNet-layout folder of JPEGs at ImageNet's typical size (about 500 x 375, quality
90, smooth random content so that they compress like photographs), then measures

* loader    `ImageFolderSplit.batches` with the training transforms (decode, RandomResizedCrop
            224, flip, normalise) in W worker processes, for each W given;
* step      one training step of the paper's 3M ImageNet student (`reference:bs_imagenet_1`) with
            attention transfer from a torchvision ResNet-34 teacher (forward of both, backward
            and SGD of the student) on a fixed minibatch already in memory;

and prints both rates and their ratio. The loader keeps up when its rate exceeds the step's
(with its workers taking cores from the step on a small machine: see docs/deployment.md).

    python benchmarks/imagenet_loader.py --images 256 --batch-size 32 --workers 0,1,2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from machine import describe

from blockswap.data import load_split
from blockswap.nn.network import build_model
from blockswap.report import format_table
from blockswap.space.genotype import load_genotype
from blockswap.train.distill import at_loss


def write_jpegs(root: Path, n: int, classes: int = 8, seed: int = 0) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, count in (("train", n), ("val", classes)):
        for i in range(count):
            w, h = int(rng.integers(400, 600)), int(rng.integers(300, 450))
            coarse = rng.uniform(0, 255, size=(h // 16 + 1, w // 16 + 1, 3)).astype(np.uint8)
            img = Image.fromarray(coarse).resize((w, h), Image.BICUBIC)
            noisy = np.clip(np.asarray(img, dtype=np.int16) + rng.integers(-12, 13, size=(h, w, 3)), 0, 255)
            folder = root / split / f"n{i % classes:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(noisy.astype(np.uint8)).save(folder / f"img{i:05d}.JPEG", quality=90)


def loader_rate(root: Path, batch: int, workers: int, epochs: int = 2) -> float:
    split = load_split(f"imagenet:{root}", "train", 224, "cpu", workers)
    gen = torch.Generator().manual_seed(0)
    best = 0.0
    for _ in range(epochs):  # the first epoch pays for worker start-up and a cold page cache
        tick, seen = time.perf_counter(), 0
        for x, _y in split.batches(batch, shuffle=True, augment=True, generator=gen):
            seen += x.shape[0]
        best = max(best, seen / (time.perf_counter() - tick))
    return best


def step_rate(batch: int, steps: int) -> float:
    import torchvision

    torch.manual_seed(0)
    student = build_model("resnet34", load_genotype("reference:bs_imagenet_1")).train()
    teacher = torchvision.models.resnet34().eval().requires_grad_(False)
    stages = [teacher.layer1, teacher.layer2, teacher.layer3, teacher.layer4]
    opt = torch.optim.SGD(student.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x, y = torch.randn(batch, 3, 224, 224), torch.randint(0, 1000, (batch,))

    def one() -> None:
        t_points = []
        hooks = [m.register_forward_hook(lambda _m, _i, o: t_points.append(o)) for m in stages]
        with torch.no_grad():
            teacher(x)
        for h in hooks:
            h.remove()
        logits, points = student.forward_intermediates(x)
        loss = F.cross_entropy(logits, y) + at_loss(list(points.values()), t_points, 750.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    one()  # warm-up: oneDNN picks its kernels
    tick = time.perf_counter()
    for _ in range(steps):
        one()
    return batch * steps / (time.perf_counter() - tick)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=256, help="training JPEGs to write")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", default="0,1,2", help="loader worker processes to compare")
    ap.add_argument("--steps", type=int, default=3, help="training steps to time")
    args = ap.parse_args()
    print(describe())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tick = time.perf_counter()
        write_jpegs(root, args.images)
        size = sum(p.stat().st_size for p in root.rglob("*.JPEG")) / (args.images + 8)
        print(f"{args.images} JPEGs, {size / 1e3:.0f} KB on average, written in {time.perf_counter() - tick:.1f} s")
        step = step_rate(args.batch_size, args.steps)
        rows = [["training step (bs_imagenet_1 + ResNet-34 teacher, AT)", f"{step:.1f}", "1.00"]]
        for w in (int(v) for v in args.workers.split(",")):
            rate = loader_rate(root, args.batch_size, w)
            rows.append([f"loader, {w} worker processes", f"{rate:.1f}", f"{rate / step:.2f}"])
    print(format_table(rows, ["what", "images/s", "x step"], align="lrr"))


if __name__ == "__main__":
    main()
