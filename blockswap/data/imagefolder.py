"""ImageNet-layout class folders streamed from disk by a `DataLoader` (paper Sec. 6)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import torch

from ..errors import BlockSwapError, choices
from ..seeding import torch_seed
from .sharding import BatchSizeCheck, epoch_order, shard_batches

# torchvision's ImageNet channel statistics (mean, std per RGB channel, in units of [0, 1]).
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

# `data make-imagefolder` renders a whole split of digits at once (float32, then uint8 RGB):
# about 10 kB per image at 64 px, 0.5 GB for the split at 256 px, the ImageNet protocol's
# resize side (224 px crops). Larger sides would exhaust memory (100000 px: terabytes).
MAX_MADE_SIZE = 256


def check_made_size(size: int) -> int:
    """The side of the images `data make-imagefolder` writes, in pixels, bounded (MAX_MADE_SIZE)."""
    if isinstance(size, bool) or not isinstance(size, int) or not 8 <= size <= MAX_MADE_SIZE:
        raise BlockSwapError(f"--size {size!r}: image side must be 8..{MAX_MADE_SIZE} pixels")
    return size


class ImageFolderSplit(BatchSizeCheck):
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
        mean, std = IMAGENET_STATS
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
        self.check_batch_size(batch_size)
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
