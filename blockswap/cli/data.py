"""``blockswap data make-imagefolder``: the bundled digits written as an ImageNet-layout folder
(``train/<class>/*.png``, ``val/<class>/*.png``), so the ImageNet path (torchvision teachers,
JPEG/PNG decoding in workers, the imagenet recipe) runs on real images with nothing to download."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

from ..errors import BlockSwapError
from ..files import atomic_write_bytes
from ..outdir import check_writable_folder
from .common import positive


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="write the bundled digits as a dataset folder")
    what = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    m = what.add_parser("make-imagefolder", help="digits as ImageNet-layout folders of PNG files",
                        description="Write scikit-learn's digits (the fixed 80/20 split of --data digits) as "
                                    "OUT/train/<class>/<n>.png and OUT/val/<class>/<n>.png, RGB, SIZE x SIZE "
                                    "pixels: data that --data imagenet:OUT reads like ImageNet.")
    m.add_argument("out", help="folder to create (must not hold a train/ or val/ folder)")
    m.add_argument("--size", type=positive, default=64, help="image side in pixels, 8..256 (default 64)")
    m.add_argument("--per-class", type=positive, default=None,
                   help="at most this many images per class and split (default: all)")
    m.set_defaults(func=run_make_imagefolder)

    from .detect import register_make_digits_coco

    register_make_digits_coco(what)


def run_make_imagefolder(args: argparse.Namespace) -> int:
    from PIL import Image

    from ..data.imagefolder import check_made_size
    from ..data.sources import digits_images

    check_made_size(args.size)  # before any folder is made
    out = Path(args.out)
    for split in ("train", "val"):
        if (out / split).exists():
            raise BlockSwapError(f"{str(out / split)!r} exists; give a new folder")
    check_writable_folder(out, "OUT")
    counts = {}
    for split in ("train", "val"):
        images, labels = digits_images(split, args.size)
        seen: dict[int, int] = {}
        for img, label in zip(images, labels.tolist()):
            n = seen.get(label, 0)
            if args.per_class is not None and n >= args.per_class:
                continue
            seen[label] = n + 1
            buf = io.BytesIO()
            Image.fromarray(img.permute(1, 2, 0).numpy()).save(buf, format="PNG")
            path = out / split / f"digit{label}" / f"{n:04d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, buf.getvalue())
        counts[split] = sum(seen.values())
    print(f"wrote {counts['train']} training and {counts['val']} validation images ({args.size}x{args.size}, "
          f"10 classes) to {out}; use --data imagenet:{out}")
    return 0
