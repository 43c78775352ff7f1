"""CIFAR augmentation as batched tensor ops (airbench style): pad-4 random crop, horizontal
flip and one 16x16 Cutout hole (paper Sec. 5), every random choice drawn from a `torch.Generator`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import BlockSwapError

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


def _as_augment(augment: "bool | Augment") -> Augment | None:
    if isinstance(augment, Augment):
        return augment
    return CIFAR_AUGMENT if augment else None
