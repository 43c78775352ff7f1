"""Detection (paper Sec. 7): the student is the backbone of a Mask R-CNN, found on COCO-layout
data and scored by the Fisher potential of the detector's summed losses
(`proxies.detection`, which gives the choices the paper leaves open).

torchvision's detection models load slowly (and `import torchvision` loads them all), so this
module imports them, through `nn.detection`, `proxies.detection` and `data.coco`, inside its
methods only: a classification search and ``import blockswap`` never load them.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from ..errors import BlockSwapError
from ..seeding import derive_seed
from ..space.detection import DETECTION_BATCH, DETECTION_MIN_SIZE
from ..space.networks import NetworkSpec
from .base import TASKS, ScoringData, Task



class Detection(Task):
    name = "detection"
    batch_size = DETECTION_BATCH
    help = ("Mask R-CNN backbones on coco:PATH, scored with the detector's loss; the budget counts the "
            f"backbone without classifier; --input-size is the detector's shorter image side (default "
            f"{DETECTION_MIN_SIZE})")

    def counted_spec(self, spec: NetworkSpec) -> NetworkSpec:
        return spec.backbone()  # the detector keeps the stem and stages, drops pool and classifier

    def input_size(self, spec: NetworkSpec, requested: int | None) -> int:
        return requested if requested is not None else DETECTION_MIN_SIZE

    def claims(self, data: Any) -> bool:
        return data.task == self.name  # the dataset table says which task its data serves

    def check(self, settings: Any) -> None:
        if not self.claims(settings.data):
            raise BlockSwapError(f"a detection search reads COCO-layout data (coco:PATH), not {settings.data}")
        names = tuple(s.name for s in settings.signals)
        if names != ("fisher",):
            raise BlockSwapError(f"a detection search ranks by fisher alone, not {', '.join(names)}")
        if settings.micro_batch is not None or settings.latency_table is not None or settings.latency is not None:
            raise BlockSwapError("a detection search takes no micro_batch and no latency table")
        if getattr(settings, "first_precision", "float32") != "float32":  # detector_fisher is float32 only
            raise BlockSwapError("a detection search screens in float32 only: drop --screen-precision bf16")

    def draw(self, settings: Any) -> ScoringData:
        """One minibatch of (images, targets) lists, un-flipped, drawn from the run seed."""
        from ..data.coco import CocoSplit

        split = CocoSplit(settings.data.path, "train", "cpu", workers=0)
        split.check_batch_size(settings.batch_size, f"training split of {settings.data}")
        gen = torch.Generator().manual_seed(derive_seed(settings.seed, "minibatch"))
        images, targets = split.sample(settings.batch_size, gen)
        batch = ([x.numpy() for x in images], [{k: v.numpy() for k, v in t.items()} for t in targets])
        return ScoringData((batch,), split.num_classes)

    def memory_format(self, requested: str) -> torch.memory_format:
        return torch.contiguous_format  # lists of variable-size images: no channels-last path

    def prepare(self, data: ScoringData, device: torch.device, memory_format: str) -> list[Any]:
        return [([torch.as_tensor(x).to(device) for x in xs],
                 [{k: torch.as_tensor(v).to(device) for k, v in t.items()} for t in ts])
                for xs, ts in data.batches]

    def head(self, batches: list[Any], size: int) -> list[Any]:
        images, targets = batches[0]
        return [(images[:size], targets[:size])]

    def build(self, network: Any, genotype_text: str, num_classes: int, settings: Any) -> torch.nn.Module:
        from ..nn.detection import build_detector

        return build_detector(network, genotype_text, num_classes, min_size=settings.spec_input_size)

    def measure(self, build: Callable[[], torch.nn.Module], batches: list[Any], signals: Sequence[Any],
                options: Any, seed: int) -> tuple[dict[str, float | None], list[float]]:
        from ..proxies.detection import detector_fisher

        (images, targets), = batches
        # The RPN and RoI samplers draw from torch's global generator: seeded from the candidate's.
        result = detector_fisher(build(), images, targets, derive_seed(seed, "samplers"))
        return {"fisher": result.total}, list(result.per_block)


DETECTION = TASKS.add(Detection.name, Detection())
