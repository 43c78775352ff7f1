"""Datasets: CIFAR-10/100 (python pickles), ImageNet (class folders), scikit-learn's digits, synthetic.

A dataset is named by a string, as on the command line:

==================  ==============================================================================
``cifar10:PATH``    the ``cifar-10-batches-py`` folder (or its parent) of the python-pickle release
``cifar100:PATH``   the ``cifar-100-python`` folder (or its parent)
``imagenet:PATH``   a folder with ``train/<class>/*.JPEG`` and ``val/<class>/*.JPEG``
``digits``          scikit-learn's bundled 8x8 handwritten digits (1,797 real images, 10 classes),
                    upscaled to the model's input size and repeated over 3 channels
``synthetic``       random class-dependent images, for tests and smoke runs
==================  ==============================================================================

Small datasets live on the training device as uint8 tensors and minibatches are made there
(airbench style): normalisation and CIFAR augmentation (pad-4 random crop, horizontal flip,
Cutout 16x16; paper Sec. 5) are batched tensor ops driven by a `torch.Generator`, so a seed
fixes every random choice. ImageNet streams from disk through torchvision's `ImageFolder`.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from .errors import BlockSwapError, choices

DATASETS = ("cifar10:PATH", "cifar100:PATH", "imagenet:PATH", "digits", "synthetic")

# Channel statistics used for normalisation (CIFAR: the authors' code; ImageNet: torchvision's).
_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4866, 0.4409), (0.2009, 0.1984, 0.2023)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


@dataclass(frozen=True)
class DataSpec:
    """Which dataset: a name and, for on-disk datasets, its folder."""

    name: str
    path: str | None = None

    def __str__(self) -> str:
        return self.name if self.path is None else f"{self.name}:{self.path}"

    @property
    def num_classes(self) -> int:
        return {"cifar100": 100, "imagenet": 1000}.get(self.name, 10)


def parse_data(text: "str | DataSpec") -> DataSpec:
    """'cifar10:/data/cifar' -> DataSpec('cifar10', '/data/cifar'); 'digits' -> DataSpec('digits')."""
    if isinstance(text, DataSpec):
        return text
    name, sep, path = str(text).strip().partition(":")
    name = name.lower()
    if name in ("digits", "synthetic"):
        if sep:
            raise BlockSwapError(f"dataset {name!r} is built in and takes no path; write just '{name}'")
        return DataSpec(name)
    if name in ("cifar10", "cifar100", "imagenet"):
        if not path:
            raise BlockSwapError(f"dataset {name!r} needs a folder: write '{name}:PATH'")
        return DataSpec(name, path)
    raise BlockSwapError(f"unknown dataset {text!r}; valid datasets: {choices(DATASETS)}")


# --------------------------------------------------------------------------------------------
# Splits: what the trainer and the search read
# --------------------------------------------------------------------------------------------


class Split(Protocol):
    """One split of a dataset that yields normalised float minibatches on `device`."""

    num_classes: int
    input_size: int

    def __len__(self) -> int: ...

    def batches(self, batch_size: int, *, shuffle: bool = False, augment: bool = False,
                generator: torch.Generator | None = None, drop_last: bool = False,
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...

    def sample(self, batch_size: int, generator: torch.Generator,
               augment: bool = False) -> tuple[torch.Tensor, torch.Tensor]: ...


class TensorSplit:
    """An in-memory split: uint8 images (N, 3, H, W) and int64 labels, kept on `device`."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, num_classes: int,
                 mean: tuple[float, ...], std: tuple[float, ...], device: str | torch.device = "cpu"):
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise BlockSwapError("TensorSplit needs uint8 images of shape (N, 3, H, W)")
        if images.shape[2] != images.shape[3]:
            raise BlockSwapError(f"images must be square, got {tuple(images.shape[2:])}")
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device, torch.int64)
        self.num_classes = num_classes
        self.input_size = images.shape[2]
        self.mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(std, device=self.device).view(1, 3, 1, 1) * 255

    def __len__(self) -> int:
        return self.labels.shape[0]

    def _prepare(self, idx: torch.Tensor, augment: bool,
                 generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        x = (self.images[idx].float() - self.mean) / self.std
        if augment:
            x = cifar_augment(x, generator)
        return x, self.labels[idx]

    def batches(self, batch_size, *, shuffle=False, augment=False, generator=None, drop_last=False):
        n = len(self)
        order = torch.randperm(n, generator=generator).to(self.device) if shuffle \
            else torch.arange(n, device=self.device)
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            yield self._prepare(order[start:start + batch_size], augment, generator)

    def sample(self, batch_size, generator, augment=False):
        if batch_size > len(self):
            raise BlockSwapError(f"minibatch of {batch_size} asked from a split of {len(self)} images")
        idx = torch.randperm(len(self), generator=generator)[:batch_size].to(self.device)
        return self._prepare(idx, augment, generator)


def _rand(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    # Random numbers come from the CPU generator then move, so results do not depend on device.
    return torch.rand(shape, generator=generator).to(device)


def cifar_augment(x: torch.Tensor, generator: torch.Generator | None = None, pad: int = 4,
                  cutout: int = 16) -> torch.Tensor:
    """Pad-`pad` random crop, horizontal flip and Cutout (one `cutout` x `cutout` hole), batched.

    The paper's CIFAR recipe (Sec. 5; Cutout from DeVries & Taylor 2017). The crop pads with
    zeros (the normalised mean), the Cutout centre may fall anywhere and the hole is clipped
    at the border, as in the reference Cutout code.
    """
    n, c, h, w = x.shape
    dev = x.device
    # Random crop: gather from the zero-padded batch with per-image offsets.
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = (_rand((n,), generator, dev) * (2 * pad + 1)).long()
    dx = (_rand((n,), generator, dev) * (2 * pad + 1)).long()
    rows = (dy[:, None] + torch.arange(h, device=dev)[None, :])  # (n, h)
    cols = (dx[:, None] + torch.arange(w, device=dev)[None, :])  # (n, w)
    flip = _rand((n,), generator, dev) < 0.5
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    idx_r = rows[:, None, :, None].expand(n, c, h, w + 2 * pad)
    out = padded.gather(2, idx_r)
    idx_c = cols[:, None, None, :].expand(n, c, h, w)
    out = out.gather(3, idx_c)
    if cutout > 0:
        cy = (_rand((n,), generator, dev) * h).long()
        cx = (_rand((n,), generator, dev) * w).long()
        ys = torch.arange(h, device=dev)[None, :]
        xs = torch.arange(w, device=dev)[None, :]
        in_y = (ys >= (cy[:, None] - cutout // 2)) & (ys < (cy[:, None] + cutout - cutout // 2))
        in_x = (xs >= (cx[:, None] - cutout // 2)) & (xs < (cx[:, None] + cutout - cutout // 2))
        hole = in_y[:, :, None] & in_x[:, None, :]  # (n, h, w)
        out = out.masked_fill(hole[:, None, :, :], 0.0)
    return out


# --------------------------------------------------------------------------------------------
# Loaders for each dataset
# --------------------------------------------------------------------------------------------


def load_split(data: "str | DataSpec", split: str = "train", input_size: int | None = None,
               device: str | torch.device = "cpu") -> Split:
    """Load `split` ("train" or "val") of `data`, images resized to `input_size` if given."""
    spec = parse_data(data)
    if split not in ("train", "val"):
        raise BlockSwapError(f"unknown split {split!r}; valid splits: train, val")
    if spec.name == "imagenet":
        return ImageFolderSplit(spec.path, split, input_size or 224, device)
    if spec.name in ("cifar10", "cifar100"):
        images, labels = _read_cifar(spec, split)
        mean, std = _STATS[spec.name]
    elif spec.name == "digits":
        images, labels = _digits(split, input_size or 32)
        mean, std = _channel_stats(_digits("train", input_size or 32)[0])
    else:
        images, labels = _synthetic(split, input_size or 32)
        mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    if input_size is not None and images.shape[2] != input_size:
        images = _resize_uint8(images, input_size)
    return TensorSplit(images, labels, spec.num_classes, mean, std, device)


def _channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    x = images.float() / 255
    return tuple(x.mean(dim=(0, 2, 3)).tolist()), tuple(x.std(dim=(0, 2, 3)).tolist())


def _resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    out = F.interpolate(images.float(), size=(size, size), mode="bilinear", align_corners=False,
                        antialias=images.shape[2] > size)
    return out.round().clamp(0, 255).to(torch.uint8)


def _read_cifar(spec: DataSpec, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    root = Path(spec.path).expanduser()
    folder_name = "cifar-10-batches-py" if spec.name == "cifar10" else "cifar-100-python"
    folder = root if (root / ("test_batch" if spec.name == "cifar10" else "test")).exists() \
        else root / folder_name
    if spec.name == "cifar10":
        files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        label_key = b"labels"
    else:
        files = ["train"] if split == "train" else ["test"]
        label_key = b"fine_labels"
    images, labels = [], []
    for name in files:
        path = folder / name
        if not path.is_file():
            raise BlockSwapError(
                f"{spec.name}: missing file {str(path)!r}; expected the python-pickle release "
                f"({folder_name}/ with {', '.join(files)})")
        try:
            with path.open("rb") as f:
                entry = pickle.load(f, encoding="bytes")
            data = np.asarray(entry[b"data"], dtype=np.uint8)
            lab = np.asarray(entry[label_key], dtype=np.int64)
        except Exception as exc:  # unpickling errors come in many types
            raise BlockSwapError(
                f"{spec.name}: cannot read {str(path)!r} as a CIFAR pickle (a dict with b'data' "
                f"uint8 rows of 3072 values and {label_key!r}): {exc}") from None
        if data.ndim != 2 or data.shape[1] != 3072 or len(lab) != len(data):
            raise BlockSwapError(f"{spec.name}: {str(path)!r} has data of shape {data.shape}; "
                                 "expected (N, 3072) with one label per row")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(lab)
    labels_t = torch.from_numpy(np.concatenate(labels))
    if labels_t.min() < 0 or labels_t.max() >= spec.num_classes:
        raise BlockSwapError(f"{spec.name}: labels outside 0..{spec.num_classes - 1} in {str(folder)!r}")
    return torch.from_numpy(np.concatenate(images)), labels_t


# The digits split is fixed (seed 0, stratified 80/20) so results stay comparable across runs.
_DIGITS_SPLIT_SEED = 0
_DIGITS_VAL_FRACTION = 0.2


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


class ImageFolderSplit:
    """ImageNet-style class folders streamed from disk (torchvision `ImageFolder`).

    Training batches use RandomResizedCrop + flip; evaluation uses resize to 8/7 of the input
    size and a centre crop (256 -> 224), the standard ImageNet protocol.
    """

    def __init__(self, root: str | None, split: str, input_size: int, device, workers: int = 2):
        import torchvision
        from torchvision import transforms as T

        folder = Path(root or "").expanduser() / split
        if not folder.is_dir():
            raise BlockSwapError(f"imagenet: missing folder {str(folder)!r}; expected PATH/{split}/<class>/<image>")
        mean, std = _STATS["imagenet"]
        norm = T.Normalize(mean, std)
        self.eval_tf = T.Compose([T.Resize(round(input_size * 8 / 7)), T.CenterCrop(input_size),
                                  T.ToTensor(), norm])
        self.train_tf = T.Compose([T.RandomResizedCrop(input_size), T.RandomHorizontalFlip(),
                                   T.ToTensor(), norm])
        try:
            self.dataset = torchvision.datasets.ImageFolder(str(folder))
        except (FileNotFoundError, RuntimeError) as exc:
            raise BlockSwapError(f"imagenet: cannot read {str(folder)!r}: {exc}") from None
        self.num_classes = len(self.dataset.classes)
        self.input_size = input_size
        self.device = torch.device(device)
        self.workers = workers

    def __len__(self) -> int:
        return len(self.dataset)

    def _load(self, indices: list[int], augment: bool, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        tf = self.train_tf if augment else self.eval_tf
        xs, ys = [], []
        # torchvision's transforms draw from the global generator: seed it inside a fork so
        # the caller's global RNG state is left exactly as it was.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for i in indices:
                path, label = self.dataset.samples[i]
                xs.append(tf(self.dataset.loader(path)))
                ys.append(label)
        return torch.stack(xs).to(self.device), torch.tensor(ys, device=self.device)

    def batches(self, batch_size, *, shuffle=False, augment=False, generator=None, drop_last=False):
        n = len(self)
        order = torch.randperm(n, generator=generator).tolist() if shuffle else list(range(n))
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator)) if generator else start
            yield self._load(order[start:start + batch_size], augment, seed)

    def sample(self, batch_size, generator, augment=False):
        if batch_size > len(self):
            raise BlockSwapError(f"minibatch of {batch_size} asked from a split of {len(self)} images")
        idx = torch.randperm(len(self), generator=generator)[:batch_size].tolist()
        return self._load(idx, augment, int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
