"""Readers of each in-memory dataset: CIFAR pickles (untrusted files: every field checked),
scikit-learn's digits, and synthetic data. Each returns uint8 images (N, 3, H, W) and labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import BlockSwapError
from .pickles import load_data_pickle


def cifar_reader(name: str, classes: int):
    """The reader of CIFAR-10 (`name` "cifar10") or CIFAR-100 ("cifar100") with `classes` labels:
    (path, split, size) -> (images, labels); the release is 32x32, resized by the caller."""

    def read(path: str | None, split: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        return _read_cifar(name, path, split, classes)

    read.__name__ = f"read_{name}"
    return read


def _read_cifar(name: str, path: str | None, split: str, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    root = Path(path or "").expanduser()
    folder_name = "cifar-10-batches-py" if name == "cifar10" else "cifar-100-python"
    folder = root if (root / ("test_batch" if name == "cifar10" else "test")).exists() \
        else root / folder_name
    if name == "cifar10":
        files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        label_key = b"labels"
    else:
        files = ["train"] if split == "train" else ["test"]
        label_key = b"fine_labels"
    images, labels = [], []
    for file in files:
        file_path = folder / file
        if not file_path.is_file():
            raise BlockSwapError(
                f"{name}: missing file {str(file_path)!r}; expected the python-pickle release "
                f"({folder_name}/ with {', '.join(files)})")
        expected = (f"a dict with b'data' (rows of 3072 uint8 values) and {label_key!r} "
                    "(one integer label per row)")
        try:
            entry = load_data_pickle(file_path, name)  # runs no code from the file
            # The release pickles bytes keys; re-pickled copies sometimes have str keys.
            data = np.asarray(_key(entry, b"data"))
            lab = np.asarray(_key(entry, label_key))
        except BlockSwapError:
            raise
        except Exception as exc:  # unpickling errors come in many types
            raise BlockSwapError(f"{name}: cannot read {str(file_path)!r} as a CIFAR pickle; "
                                 f"expected {expected}: {type(exc).__name__}: {exc}") from None
        if data.ndim != 2 or data.shape[1] != 3072 or lab.ndim != 1 or len(lab) != len(data):
            raise BlockSwapError(f"{name}: {str(file_path)!r} has data of shape {data.shape} and "
                                 f"{lab.shape} labels; expected {expected}")
        if data.dtype != np.uint8 and (not np.issubdtype(data.dtype, np.integer)
                                       or data.min() < 0 or data.max() > 255):
            raise BlockSwapError(f"{name}: {str(file_path)!r} has pixel values that are not "
                                 f"integers 0..255 (dtype {data.dtype}); expected {expected}")
        if not np.issubdtype(lab.dtype, np.integer):
            raise BlockSwapError(f"{name}: {str(file_path)!r} has labels of dtype {lab.dtype}; "
                                 f"expected {expected}")
        data, lab = data.astype(np.uint8), lab.astype(np.int64)
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(lab)
    labels_t = torch.from_numpy(np.concatenate(labels))
    if labels_t.numel() == 0:
        raise BlockSwapError(f"{name}: no images in {', '.join(files)} under {str(folder)!r}")
    if labels_t.min() < 0 or labels_t.max() >= classes:
        raise BlockSwapError(f"{name}: labels outside 0..{classes - 1} in {str(folder)!r}")
    return torch.from_numpy(np.concatenate(images)), labels_t


def _key(entry: dict, key: bytes):
    return entry[key] if key in entry else entry[key.decode()]


# The digits split is fixed (seed 0, stratified 80/20) so results stay comparable across runs.
_DIGITS_SPLIT_SEED = 0
_DIGITS_VAL_FRACTION = 0.2


def digits_images(split: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, 3, size, size) and labels of the fixed digits split ("train" or "val")."""
    return _digits(split, size)


def read_digits(path: str | None, split: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    return _digits(split, size)


def _digits(split: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(bunch.images.astype(np.float32) / 16.0)  # (1797, 8, 8) in [0, 1]
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    rng = np.random.default_rng(_DIGITS_SPLIT_SEED)
    val = np.zeros(len(labels), dtype=bool)
    for c in range(10):
        idx = np.flatnonzero(bunch.target == c)
        rng.shuffle(idx)
        val[idx[: round(len(idx) * _DIGITS_VAL_FRACTION)]] = True
    keep = torch.from_numpy(val if split == "val" else ~val)
    x = images[keep][:, None]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = (x.clamp(0, 1) * 255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    return x, labels[keep]


_SYNTHETIC_SIZES = {"train": 512, "val": 128}


def read_synthetic(path: str | None, split: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    return _synthetic(split, size)


def _synthetic(split: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Learnable random data: each class has its own colour and stripe pattern, plus noise."""
    g = torch.Generator().manual_seed(1234 if split == "train" else 4321)
    n = _SYNTHETIC_SIZES[split]
    labels = torch.arange(n) % 10
    base = torch.Generator().manual_seed(99)
    colours = torch.rand(10, 3, 1, 1, generator=base)
    freq = torch.arange(1, 11).float().view(10, 1, 1, 1)
    ys = torch.linspace(0, 3.14159, size).view(1, 1, size, 1)
    pattern = 0.5 + 0.5 * torch.sin(freq * ys)  # (10, 1, size, 1)
    clean = 0.6 * colours[labels] + 0.4 * pattern[labels]
    x = clean + 0.15 * torch.randn(n, 3, size, size, generator=g)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8), labels
