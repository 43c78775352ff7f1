"""MNIST and Fashion-MNIST in their standard idx release files, read as untrusted input.

``mnist:PATH`` and ``fashion-mnist:PATH`` name a folder holding the four files of the release,
gzipped (``.gz``, as distributed) or not::

    train-images-idx3-ubyte   train-labels-idx1-ubyte   (60,000 training images)
    t10k-images-idx3-ubyte    t10k-labels-idx1-ubyte    (10,000 official test images)

The idx format (LeCun et al.): a big-endian 32-bit magic number (0x00000803 for a 3-d array of
unsigned bytes, the images; 0x00000801 for a 1-d one, the labels), one big-endian 32-bit size per
dimension, then the values row-major. Every field is checked before use: the magic number, the
dimensions, the data length against the header (a truncated or padded file is refused), equal
image and label counts, and labels in 0..9. Each problem is one `BlockSwapError` naming the file.

Split "train" is the 60,000 training images; "val" is the 10,000 official test images, the
codebase's convention (as for CIFAR, whose "val" is the official test batch, used only for
reporting). The 28x28 grey images are repeated over 3 channels and zero-padded to 32x32 (the
standard way of feeding them to CIFAR networks), or resized to another input size.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import BlockSwapError
from .pixels import resize_uint8

IMAGES_MAGIC = 0x00000803  # idx: unsigned bytes, 3 dimensions
LABELS_MAGIC = 0x00000801  # idx: unsigned bytes, 1 dimension
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "val": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
IDX_CLASSES = 10
_CHUNK = 1 << 20  # bytes read at a time from a gzip stream


def _find(folder: Path, name: str, what: str) -> Path:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    every = ", ".join(n for pair in IDX_FILES.values() for n in pair)
    raise BlockSwapError(f"{what}: missing file {str(folder / name)!r} (or {name}.gz); expected the idx "
                         f"release in {str(folder)!r}: {every}, each gzipped (.gz) or not")


def _read_file(path: Path, what: str) -> tuple[int, tuple[int, ...], bytearray]:
    """(magic number, dimensions, data bytes) of idx file `path`, decompressed if it ends in .gz.

    The data is read only up to what the header declares plus one byte, so a gzip stream that
    inflates without end cannot exhaust memory: its extra bytes are a size mismatch.
    """
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")) as f:
            head = f.read(4)
            if len(head) < 4:
                raise BlockSwapError(f"{what}: {str(path)!r} is too short for an idx file ({len(head)} bytes)")
            magic = struct.unpack(">I", head)[0]
            if magic not in (IMAGES_MAGIC, LABELS_MAGIC):
                raise BlockSwapError(
                    f"{what}: {str(path)!r} has magic number 0x{magic:08x}; expected 0x{IMAGES_MAGIC:08x} "
                    f"(images) or 0x{LABELS_MAGIC:08x} (labels) of the idx format")
            ndim = magic & 0xFF
            dims_bytes = f.read(4 * ndim)
            if len(dims_bytes) < 4 * ndim:
                raise BlockSwapError(f"{what}: {str(path)!r} ends inside its idx header")
            dims = struct.unpack(f">{ndim}I", dims_bytes)
            limit = int(np.prod(dims, dtype=np.int64))
            body = bytearray()
            while len(body) <= limit:
                chunk = f.read(min(_CHUNK, limit + 1 - len(body)))
                if not chunk:
                    break
                body += chunk
            return magic, dims, body
    except (OSError, EOFError, zlib.error) as exc:
        raise BlockSwapError(f"{what}: cannot read {str(path)!r}: {type(exc).__name__}: {exc}") from None


def _read_idx(path: Path, magic: int, what: str) -> np.ndarray:
    """The array of idx file `path`, which must have magic number `magic`."""
    found, dims, body = _read_file(path, what)
    kind = "images" if magic == IMAGES_MAGIC else "labels"
    if found != magic:
        raise BlockSwapError(f"{what}: {str(path)!r} has magic number 0x{found:08x}; expected 0x{magic:08x} "
                             f"({kind} of the idx format)")
    if any(d == 0 for d in dims[1:]):
        raise BlockSwapError(f"{what}: {str(path)!r} declares {kind} of dimensions {dims}; each must be > 0")
    expected = int(np.prod(dims, dtype=np.int64))
    if len(body) != expected:
        state = "truncated" if len(body) < expected else "longer than its header says"
        raise BlockSwapError(f"{what}: {str(path)!r} is {state}: the header declares {' x '.join(map(str, dims))} "
                             f"= {expected} bytes of {kind}, the file holds {len(body)}")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def read_idx(what: str, path: "str | Path | None", split: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, H, W) and int64 labels (N,) of `split` from the idx files in folder `path`.

    `what` names the dataset in messages ("fashion-mnist").
    """
    folder = Path(path or "").expanduser()
    image_file, label_file = (_find(folder, name, what) for name in IDX_FILES[split])
    images = _read_idx(image_file, IMAGES_MAGIC, what)
    labels = _read_idx(label_file, LABELS_MAGIC, what)
    if images.shape[1] != images.shape[2]:
        raise BlockSwapError(f"{what}: {str(image_file)!r} holds {images.shape[1]}x{images.shape[2]} images; "
                             "expected square ones (28x28 in the release)")
    if len(images) != len(labels):
        raise BlockSwapError(f"{what}: {str(image_file)!r} holds {len(images)} images but {str(label_file)!r} "
                             f"{len(labels)} labels; expected one label per image")
    if len(labels) == 0:
        raise BlockSwapError(f"{what}: {str(label_file)!r} holds no labels")
    if labels.max() >= IDX_CLASSES:
        bad = int(np.flatnonzero(labels >= IDX_CLASSES)[0])
        raise BlockSwapError(f"{what}: {str(label_file)!r} has label {int(labels[bad])} at position {bad}; "
                             f"expected 0..{IDX_CLASSES - 1}")
    return images, labels.astype(np.int64)


def grey_to_input(images: np.ndarray, size: int) -> torch.Tensor:
    """uint8 (N, H, W) grey images -> uint8 (N, 3, size, size): zero-padded if `size` exceeds
    the side by an even number of pixels of at most 4 per side (28 -> 32, the standard), else
    resized (bilinear, antialiased when shrinking); the grey channel repeated over 3."""
    x = torch.from_numpy(np.ascontiguousarray(images))[:, None]
    side = x.shape[2]
    pad = size - side
    if pad == 0:
        pass
    elif 0 < pad <= 8 and pad % 2 == 0:
        x = F.pad(x, (pad // 2,) * 4)
    else:
        x = resize_uint8(x, size)
    return x.expand(-1, 3, -1, -1).contiguous()


def idx_reader(what: str):
    """The reader of dataset `what` in the idx layout: (path, split, size) -> (images, labels)."""

    def read(path: str | None, split: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = read_idx(what, path, split)
        return grey_to_input(images, size), torch.from_numpy(labels)

    read.__name__ = f"read_{what.replace('-', '_')}"
    return read
