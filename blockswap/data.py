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
fixes every random choice. ImageNet streams from disk through a `DataLoader` with worker
processes, each image transformed under its own seed drawn from the same generator.

Every split shards its minibatches for data-parallel training (`shard_batches`): each rank
takes a contiguous slice of the same global minibatch, so 2 processes x 64 images see exactly
the images (and augmentations) of 1 process x 128.
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
from .seeding import torch_seed

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


@dataclass(frozen=True)
class Augment:
    """CIFAR-style augmentation (paper Sec. 5): pad-and-crop, horizontal flip, Cutout.

    ``augment=True`` in `Split.batches` means `CIFAR_AUGMENT`. ImageNet splits ignore these
    fields and use RandomResizedCrop + flip, the standard ImageNet recipe (paper Sec. 6).
    """

    crop_pad: int = 4  # pixels of black padding on each side before the random crop; 0: no crop
    flip: bool = True  # mirror left-right with probability 1/2
    cutout: int = 16  # side of the one square hole, pixels (DeVries & Taylor 2017); 0: no Cutout

    def __post_init__(self) -> None:
        if self.crop_pad < 0 or self.cutout < 0:
            raise BlockSwapError(f"crop padding and Cutout size must be >= 0 pixels, got "
                                 f"{self.crop_pad} and {self.cutout}")


CIFAR_AUGMENT = Augment()


class Split(Protocol):
    """One split of a dataset that yields normalised float minibatches on `device`.

    Sharding for data-parallel training: with ``world_size > 1`` every process draws the SAME
    global minibatch (same `generator` seed on every rank) and keeps its contiguous
    ``1/world_size`` slice, so the union over ranks is exactly the single-process minibatch,
    augmentation included (random choices are drawn for the whole global batch).
    """

    num_classes: int
    input_size: int

    def __len__(self) -> int: ...

    def batches(self, batch_size: int, *, shuffle: bool = False, augment: "bool | Augment" = False,
                generator: torch.Generator | None = None, drop_last: bool = False,
                rank: int = 0, world_size: int = 1, pad_last: bool = False,
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...

    def sample(self, batch_size: int, generator: torch.Generator,
               augment: "bool | Augment" = False) -> tuple[torch.Tensor, torch.Tensor]: ...


def _as_augment(augment: "bool | Augment") -> Augment | None:
    if isinstance(augment, Augment):
        return augment
    return CIFAR_AUGMENT if augment else None


def shard_batches(order: torch.Tensor, batch_size: int, rank: int = 0, world_size: int = 1,
                  drop_last: bool = False, pad_last: bool = False,
                  ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Cut an epoch's index `order` into global minibatches; yield (batch, positions) for `rank`.

    `batch_size` is the global minibatch (all ranks together; for training, with `pad_last`,
    a multiple of `world_size`); rank r takes ``batch[positions]``, a contiguous share. A last partial
    minibatch is kept unless `drop_last`; with `pad_last` its shares are made equal (DDP
    training needs every rank to step together) by wrapping around to the batch's first images
    (as `DistributedSampler` wraps to the epoch's first), so positions may exceed len(batch)
    modulo it. Without `pad_last` (evaluation: nothing counted twice) a rank may get fewer or
    no images. Random draws per image belong to ``batch``, so they never depend on the ranks.
    """
    if batch_size < 1:
        raise BlockSwapError(f"batch size must be a positive number of images, got {batch_size}")
    if not 0 <= rank < world_size:
        raise BlockSwapError(f"rank {rank} is outside 0..{world_size - 1}")
    if pad_last and batch_size % world_size:
        raise BlockSwapError(f"global batch size {batch_size} does not split evenly over "
                             f"{world_size} processes; use a multiple of {world_size}")
    n = order.shape[0]
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        batch = order[start:start + batch_size]
        m = batch.shape[0]
        padded = -(-m // world_size) * world_size if pad_last else m
        chunk = -(-padded // world_size)  # ceil
        lo, hi = min(rank * chunk, padded), min((rank + 1) * chunk, padded)
        yield batch, torch.arange(lo, hi) % m


def epoch_order(n: int, shuffle: bool, generator: torch.Generator | None) -> torch.Tensor:
    """The visiting order of an epoch: a permutation from `generator` (on CPU) or 0..n-1."""
    return torch.randperm(n, generator=generator) if shuffle else torch.arange(n)


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
        # A black pixel after normalisation: what torchvision's RandomCrop(padding=4) pads with
        # (it pads the raw image with 0, before Normalize), as in the authors' pipeline.
        self.black = -self.mean / self.std

    def __len__(self) -> int:
        return self.labels.shape[0]

    def _prepare(self, idx: torch.Tensor, aug: Augment | None,
                 offsets: "AugmentOffsets | None") -> tuple[torch.Tensor, torch.Tensor]:
        idx = idx.to(self.device)
        x = (self.images[idx].float() - self.mean) / self.std
        if aug is not None:
            x = apply_augment(x, offsets, aug, fill=self.black)
        return x, self.labels[idx]

    def batches(self, batch_size, *, shuffle=False, augment=False, generator=None, drop_last=False,
                rank=0, world_size=1, pad_last=False):
        aug = _as_augment(augment)
        order = epoch_order(len(self), shuffle, generator)
        for batch, pos in shard_batches(order, batch_size, rank, world_size, drop_last, pad_last):
            # Offsets are drawn for the whole global batch on every rank (generator in step).
            offsets = draw_augment(batch.shape[0], self.input_size, self.input_size, aug, generator) \
                if aug is not None else None
            if pos.numel():
                yield self._prepare(batch[pos], aug, None if offsets is None else offsets[pos])

    def sample(self, batch_size, generator, augment=False):
        if batch_size > len(self):
            raise BlockSwapError(f"minibatch of {batch_size} asked from a split of {len(self)} images")
        aug = _as_augment(augment)
        idx = torch.randperm(len(self), generator=generator)[:batch_size]
        offsets = draw_augment(batch_size, self.input_size, self.input_size, aug, generator) \
            if aug is not None else None
        return self._prepare(idx, aug, offsets)


@dataclass(frozen=True)
class AugmentOffsets:
    """Per-image random choices of CIFAR augmentation, each a CPU int64/bool tensor of length n.

    `dy`, `dx`: top-left corner of the crop in the padded image (0 .. 2*pad); `flip`: mirror;
    `cy`, `cx`: Cutout centre (anywhere in the image; the hole is clipped at the border).
    """

    dy: torch.Tensor
    dx: torch.Tensor
    flip: torch.Tensor
    cy: torch.Tensor
    cx: torch.Tensor

    def __getitem__(self, i: "slice | torch.Tensor") -> "AugmentOffsets":
        return AugmentOffsets(self.dy[i], self.dx[i], self.flip[i], self.cy[i], self.cx[i])


def draw_augment(n: int, h: int, w: int, aug: Augment = CIFAR_AUGMENT,
                 generator: torch.Generator | None = None) -> AugmentOffsets:
    """Draw the random choices for `n` images from `generator` (on CPU: device-independent)."""
    def uniform_int(high: int) -> torch.Tensor:  # integers 0 .. high-1
        return (torch.rand((n,), generator=generator) * high).long()

    dy, dx = uniform_int(2 * aug.crop_pad + 1), uniform_int(2 * aug.crop_pad + 1)
    flip = torch.rand((n,), generator=generator) < 0.5
    cy, cx = uniform_int(h), uniform_int(w)
    return AugmentOffsets(dy, dx, flip & aug.flip, cy, cx)


def apply_augment(x: torch.Tensor, offsets: AugmentOffsets, aug: Augment = CIFAR_AUGMENT,
                  fill: "float | torch.Tensor" = 0.0) -> torch.Tensor:
    """Crop (from `x` padded with `fill`), flip, then Cutout, as batched gathers and a mask.

    Matches the authors' per-image pipeline RandomCrop(32, padding=4) -> RandomHorizontalFlip
    -> Normalize -> Cutout(1, 16): `fill` is the normalised value of a black pixel (padding
    happens before Normalize there), and the Cutout hole is 0, the normalised mean (Cutout
    runs after Normalize). The hole covers rows cy-8 .. cy+7 (clipped), as the reference code.
    """
    n, c, h, w = x.shape
    dev = x.device
    pad, out = aug.crop_pad, x
    dy, dx, flip = offsets.dy.to(dev), offsets.dx.to(dev), offsets.flip.to(dev)
    if pad > 0 or aug.flip:
        # Pad x - fill with zeros and add fill back: a per-channel constant pad in one op.
        padded = F.pad(x - fill, (pad, pad, pad, pad)) + fill if pad > 0 else x
        rows = dy[:, None] + torch.arange(h, device=dev)[None, :]  # (n, h) rows of the crop
        cols = dx[:, None] + torch.arange(w, device=dev)[None, :]  # (n, w)
        cols = torch.where(flip[:, None], cols.flip(1), cols)  # mirror = read columns backwards
        out = padded.gather(2, rows[:, None, :, None].expand(n, c, h, w + 2 * pad))
        out = out.gather(3, cols[:, None, None, :].expand(n, c, h, w))
    if aug.cutout > 0:
        cy, cx, half = offsets.cy.to(dev), offsets.cx.to(dev), aug.cutout // 2
        ys = torch.arange(h, device=dev)[None, :]
        xs = torch.arange(w, device=dev)[None, :]
        in_y = (ys >= cy[:, None] - half) & (ys < cy[:, None] - half + aug.cutout)
        in_x = (xs >= cx[:, None] - half) & (xs < cx[:, None] - half + aug.cutout)
        out = out.masked_fill((in_y[:, :, None] & in_x[:, None, :])[:, None], 0.0)
    return out


def cifar_augment(x: torch.Tensor, generator: torch.Generator | None = None, pad: int = 4,
                  cutout: int = 16, flip: bool = True, fill: "float | torch.Tensor" = 0.0) -> torch.Tensor:
    """Pad-`pad` random crop, horizontal flip and Cutout (one `cutout` x `cutout` hole), batched.

    The paper's CIFAR recipe (Sec. 5; Cutout from DeVries & Taylor 2017). One call of
    `draw_augment` then `apply_augment`; see those for the exact conventions.
    """
    aug = Augment(pad, flip, cutout)
    return apply_augment(x, draw_augment(x.shape[0], x.shape[2], x.shape[3], aug, generator), aug, fill)


# --------------------------------------------------------------------------------------------
# Loaders for each dataset
# --------------------------------------------------------------------------------------------


def load_split(data: "str | DataSpec", split: str = "train", input_size: int | None = None,
               device: str | torch.device = "cpu", workers: int = 4) -> Split:
    """Load `split` ("train" or "val") of `data`, images resized to `input_size` if given.

    `workers`: loader processes for ImageNet (the in-memory datasets need none).
    """
    spec = parse_data(data)
    if split not in ("train", "val"):
        raise BlockSwapError(f"unknown split {split!r}; valid splits: train, val")
    if spec.name == "imagenet":
        return ImageFolderSplit(spec.path, split, input_size or 224, device, workers)
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
        expected = (f"a dict with b'data' (rows of 3072 uint8 values) and {label_key!r} "
                    "(one integer label per row)")
        try:
            with path.open("rb") as f:
                entry = pickle.load(f, encoding="bytes")
            # The release pickles bytes keys; re-pickled copies sometimes have str keys.
            data = np.asarray(_key(entry, b"data"))
            lab = np.asarray(_key(entry, label_key))
        except Exception as exc:  # unpickling errors come in many types
            raise BlockSwapError(f"{spec.name}: cannot read {str(path)!r} as a CIFAR pickle; "
                                 f"expected {expected}: {type(exc).__name__}: {exc}") from None
        if data.ndim != 2 or data.shape[1] != 3072 or lab.ndim != 1 or len(lab) != len(data):
            raise BlockSwapError(f"{spec.name}: {str(path)!r} has data of shape {data.shape} and "
                                 f"{lab.shape} labels; expected {expected}")
        if data.dtype != np.uint8 and (not np.issubdtype(data.dtype, np.integer)
                                       or data.min() < 0 or data.max() > 255):
            raise BlockSwapError(f"{spec.name}: {str(path)!r} has pixel values that are not "
                                 f"integers 0..255 (dtype {data.dtype}); expected {expected}")
        if not np.issubdtype(lab.dtype, np.integer):
            raise BlockSwapError(f"{spec.name}: {str(path)!r} has labels of dtype {lab.dtype}; "
                                 f"expected {expected}")
        data, lab = data.astype(np.uint8), lab.astype(np.int64)
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(lab)
    labels_t = torch.from_numpy(np.concatenate(labels))
    if labels_t.numel() == 0:
        raise BlockSwapError(f"{spec.name}: no images in {', '.join(files)} under {str(folder)!r}")
    if labels_t.min() < 0 or labels_t.max() >= spec.num_classes:
        raise BlockSwapError(f"{spec.name}: labels outside 0..{spec.num_classes - 1} in {str(folder)!r}")
    return torch.from_numpy(np.concatenate(images)), labels_t


def _key(entry: dict, key: bytes):
    return entry[key] if key in entry else entry[key.decode()]


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
    """ImageNet-style class folders streamed from disk by a `DataLoader` with worker processes.

    Training batches use RandomResizedCrop + flip; evaluation uses resize to 8/7 of the input
    size and a centre crop (256 -> 224), the standard ImageNet protocol (paper Sec. 6).

    Randomness: every image of an epoch gets its own seed (drawn from the caller's generator
    for the whole global minibatch), and its transform runs under that seed. The pixels of a
    minibatch therefore do not depend on the number of worker processes or DDP ranks.
    """

    def __init__(self, root: str | None, split: str, input_size: int, device, workers: int = 4):
        import torchvision
        from torchvision import transforms as T

        base = Path(root or "").expanduser()
        folder = base / split
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
        # ImageFolder numbers the classes of each split separately: a class folder missing from
        # val would silently shift every later label. Insist on the same class list.
        other = base / ("train" if split == "val" else "val")
        if other.is_dir():
            theirs = sorted(d.name for d in other.iterdir() if d.is_dir())
            if theirs != self.dataset.classes:
                diff = sorted(set(theirs) ^ set(self.dataset.classes))
                raise BlockSwapError(
                    f"imagenet: {str(base / 'train')!r} and {str(base / 'val')!r} must hold the same "
                    f"class folders; they differ in {choices(diff, 5)}")
        self.num_classes = len(self.dataset.classes)
        self.input_size = input_size
        self.device = torch.device(device)
        self.workers = workers

    def __len__(self) -> int:
        return len(self.dataset)

    def _loader(self, indices: torch.Tensor, seeds: torch.Tensor, chunks: list[list[int]], augment: bool):
        """A DataLoader yielding one minibatch per chunk of positions in `indices` / `seeds`."""
        data = _SeededImages(self.dataset.samples, indices, seeds, self.train_tf if augment else self.eval_tf)
        return torch.utils.data.DataLoader(
            data, batch_sampler=chunks, num_workers=self.workers,
            pin_memory=self.device.type == "cuda", persistent_workers=False)

    def _iterate(self, loader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        try:
            for x, y in loader:
                yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        except BlockSwapError as exc:
            raise BlockSwapError(_worker_message(exc)) from None

    def batches(self, batch_size, *, shuffle=False, augment=False, generator=None, drop_last=False,
                rank=0, world_size=1, pad_last=False):
        order = epoch_order(len(self), shuffle, generator)
        indices, seeds, chunks, count = [], [], [], 0
        for batch, pos in shard_batches(order, batch_size, rank, world_size, drop_last, pad_last):
            batch_seeds = torch.randint(0, 2**62, (batch.shape[0],), generator=generator)
            if pos.numel():
                chunks.append(list(range(count, count + pos.numel())))
                indices.append(batch[pos])
                seeds.append(batch_seeds[pos])
                count += pos.numel()
        if chunks:
            yield from self._iterate(self._loader(torch.cat(indices), torch.cat(seeds), chunks, bool(augment)))

    def sample(self, batch_size, generator, augment=False):
        if batch_size > len(self):
            raise BlockSwapError(f"minibatch of {batch_size} asked from a split of {len(self)} images")
        idx = torch.randperm(len(self), generator=generator)[:batch_size]
        seeds = torch.randint(0, 2**62, (batch_size,), generator=generator)
        return next(self._iterate(self._loader(idx, seeds, [list(range(batch_size))], bool(augment))))


class _SeededImages(torch.utils.data.Dataset):
    """Images ``samples[indices[i]]``, each transformed under its own ``seeds[i]``.

    Indices and seeds are tensors, not Python lists: forked workers then share their pages
    instead of copying them as reference counts change (the DataLoader memory "leak").
    """

    def __init__(self, samples: list[tuple[str, int]], indices: torch.Tensor, seeds: torch.Tensor, transform):
        self.samples, self.indices, self.seeds, self.transform = samples, indices, seeds, transform

    def __len__(self) -> int:
        return self.indices.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        seed = int(self.seeds[i])
        path, label = self.samples[int(self.indices[i])]
        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise BlockSwapError(f"imagenet: cannot read {path!r}: expected an image file "
                                 f"(JPEG, PNG, ...): {exc}") from None
        # torchvision's transforms draw from the global generator: seed it inside a fork so
        # the global state of this process (the trainer's, when workers=0) is left untouched.
        with torch_seed(seed):
            return self.transform(img), label


def _worker_message(exc: BaseException) -> str:
    """The one-line message of a BlockSwapError, also when a DataLoader worker re-raised it."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    prefix = f"{BlockSwapError.__module__}.{BlockSwapError.__name__}: "
    for line in reversed(lines):
        if line.startswith(prefix):
            return line[len(prefix):]
    return lines[-1] if lines else "imagenet: a data loader worker failed"
