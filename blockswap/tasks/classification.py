"""Classification (paper Sec. 4): the student is the whole network, classifier included, scored
by the ranking signals on one minibatch of classification data."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from ..data.load import load_split
from ..nn.network import build_model
from ..proxies.fisher import MEMORY_FORMATS, FisherPotential
from ..proxies.registry import NonFiniteSignal
from ..seeding import derive_seed
from ..space.networks import NetworkSpec
from .base import TASKS, ScoringData, Task

# The paper's minibatch on CIFAR (Sec. 4: one minibatch of the training batch size, 128).
CLASSIFICATION_BATCH = 128


class Classification(Task):
    name = "classification"
    batch_size = CLASSIFICATION_BATCH
    help = "the whole network (classifier included) on classification data"

    def counted_spec(self, spec: NetworkSpec) -> NetworkSpec:
        return spec  # the student as it will be trained and deployed

    def input_size(self, spec: NetworkSpec, requested: int | None) -> int:
        return requested if requested is not None else spec.input_size

    def draw(self, settings: Any) -> ScoringData:
        """Un-augmented by default (`SearchConfig.augment`): the Fisher potential then depends only
        on the network and the images drawn. One minibatch per step of the "@k" signals."""
        split = load_split(settings.data, "train", settings.spec_input_size, "cpu")
        split.check_batch_size(settings.batch_size, f"training split of {settings.data}")  # as `train` does
        gen = torch.Generator().manual_seed(derive_seed(settings.seed, "minibatch"))
        out = []
        for _ in range(settings.steps):
            x, y = split.sample(settings.batch_size, gen, augment=settings.augment)
            out.append((x.numpy(), y.numpy()))
        return ScoringData(tuple(out), split.num_classes)

    def memory_format(self, requested: str) -> torch.memory_format:
        return MEMORY_FORMATS[requested]

    def prepare(self, data: ScoringData, device: torch.device, memory_format: str) -> list[Any]:
        fmt = self.memory_format(memory_format)
        return [(torch.as_tensor(x).to(device).contiguous(memory_format=fmt), torch.as_tensor(y).to(device))
                for x, y in data.batches]

    def head(self, batches: list[Any], size: int) -> list[Any]:
        x, y = batches[0]
        return [(x[:size], y[:size])]

    def build(self, network: Any, genotype_text: str, num_classes: int, settings: Any) -> torch.nn.Module:
        return build_model(network, genotype_text, num_classes)

    def measure(self, build: Callable[[], torch.nn.Module], batches: list[Any], signals: Sequence[Any],
                options: Any, seed: int) -> tuple[dict[str, float | None], list[float]]:
        values: dict[str, float | None] = {}
        per_block: list[float] = []
        for signal in signals:
            # Every signal gets its own fresh copy of the same initial network.
            try:
                result = signal(build(), batches, options)
            except NonFiniteSignal:
                # The minibatch is checked and shared, so a NaN belongs to this candidate: record
                # it as unscored (null; `rank` puts it last) and let the search go on.
                values[signal.name] = None
                continue
            if isinstance(result, FisherPotential):
                per_block = list(result.per_block)
                result = result.total
            values[signal.name] = float(result)
        return values, per_block


CLASSIFICATION = TASKS.add(Classification.name, Classification())
