"""Scoring one candidate, in any process (paper Sec. 4, step 2).

Every candidate sees the same minibatch, drawn once from the run seed (`scoring_data`), and is
built from a seed derived from (run seed, network, genotype) (`candidate_seed`), so any score
can be reproduced on its own, in any order, in any process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from ..data.load import load_split
from ..nn.detection import build_detector
from ..nn.network import build_model
from ..proxies.detection import detector_fisher
from ..proxies.fisher import MEMORY_FORMATS, FisherPotential
from ..proxies.registry import NonFiniteSignal
from ..seeding import derive_seed, torch_seed
from .config import RunOptions, SearchConfig

Task = tuple[int, str, str]  # (candidate index, genotype text, stage "full" or "slice")


@dataclass(frozen=True)
class ScoringData:
    """The shared minibatch(es) as numpy arrays (they pickle to any worker), and the number of
    classes of the data (from its class folders for ImageNet layouts)."""

    batches: tuple[tuple[np.ndarray, np.ndarray], ...]
    num_classes: int


def scoring_data(config: SearchConfig) -> ScoringData:
    """Draw the shared minibatch(es) once from the training split with a seeded generator.

    Un-augmented by default (`SearchConfig.augment`): the Fisher potential then depends only on
    the network and the images drawn. Detection: one minibatch of (images, targets) lists.
    """
    if config.task == "detection":
        from ..data.coco import CocoSplit

        split = CocoSplit(config.data.path, "train", "cpu", workers=0)
        split.check_batch_size(config.batch_size, f"training split of {config.data}")
        gen = torch.Generator().manual_seed(derive_seed(config.seed, "minibatch"))
        images, targets = split.sample(config.batch_size, gen)
        batch = ([x.numpy() for x in images], [{k: v.numpy() for k, v in t.items()} for t in targets])
        return ScoringData((batch,), split.num_classes)
    split = load_split(config.data, "train", config.input_size or config.spec.input_size, "cpu")
    split.check_batch_size(config.batch_size, f"training split of {config.data}")  # as `train` does
    gen = torch.Generator().manual_seed(derive_seed(config.seed, "minibatch"))
    out = []
    for _ in range(config.steps):
        x, y = split.sample(config.batch_size, gen, augment=config.augment)
        out.append((x.numpy(), y.numpy()))
    return ScoringData(tuple(out), split.num_classes)


def candidate_seed(config: SearchConfig, genotype_text: str) -> int:
    """The initialisation seed of one candidate: a function of the run seed and the genotype only."""
    return derive_seed(config.seed, "init", config.model, genotype_text)


class Scorer:
    """Scores candidates of one search on its cached minibatch(es).

    Made once per process (in the main process, a worker process or a Ray actor); the
    minibatch tensors are converted to the scoring layout once and reused for every candidate.
    """

    def __init__(self, config: SearchConfig, data: ScoringData, run: RunOptions = RunOptions(),
                 threads: int | None = None):
        if threads is not None:
            torch.set_num_threads(threads)
        self.config = config
        self.device = torch.device(run.device)
        self.num_classes = data.num_classes
        self.memory_format = MEMORY_FORMATS[run.memory_format]
        self.signals = list(config.signals)
        if config.task == "detection":  # lists of variable-size images and targets; contiguous
            self.memory_format = torch.contiguous_format
            self.batches = [([torch.as_tensor(x).to(self.device) for x in xs],
                             [{k: torch.as_tensor(v).to(self.device) for k, v in t.items()} for t in ts])
                            for xs, ts in data.batches]
            m = config.slice_size
            self.slice = [(self.batches[0][0][:m], self.batches[0][1][:m])]
            return
        self.batches = [(torch.as_tensor(x).to(self.device).contiguous(memory_format=self.memory_format),
                         torch.as_tensor(y).to(self.device)) for x, y in data.batches]
        m = config.slice_size
        self.slice = [(self.batches[0][0][:m], self.batches[0][1][:m])]
        self.options = run.proxy_options(config)

    def build(self, genotype_text: str) -> torch.nn.Module:
        """The candidate at initialisation, from its own seed; the global RNG is left untouched.

        Built on the CPU, then moved, so the initial weights do not depend on the device.
        """
        with torch_seed(candidate_seed(self.config, genotype_text)):
            if self.config.task == "detection":
                return build_detector(self.config.spec, genotype_text, self.num_classes,
                                      min_size=self.config.spec_input_size).to(self.device)
            # From the config's spec, not its name: a worker need not have the network registered.
            model = build_model(self.config.spec, genotype_text, self.num_classes)
        return model.to(self.device, memory_format=self.memory_format)

    def score(self, task: Task) -> dict[str, Any]:
        index, genotype_text, stage = task
        start = time.perf_counter()
        signals: Sequence = self.signals[:1] if stage == "slice" else self.signals
        batches = self.slice if stage == "slice" else self.batches
        values: dict[str, float | None] = {}
        per_block: list[float] = []
        if self.config.task == "detection":
            (images, targets), = batches
            seed = derive_seed(candidate_seed(self.config, genotype_text), "samplers")
            result = detector_fisher(self.build(genotype_text), images, targets, seed)
            return {"index": index, "stage": stage, "score": result.total, "signals": {"fisher": result.total},
                    "per_block": list(result.per_block), "seconds": time.perf_counter() - start}
        for signal in signals:
            # Every signal gets its own fresh copy of the same initial network.
            try:
                result = signal(self.build(genotype_text), batches, self.options)
            except NonFiniteSignal:
                # The minibatch is checked and shared, so a NaN belongs to this candidate: record
                # it as unscored (null; `rank` puts it last) and let the search go on.
                values[signal.name] = None
                continue
            if isinstance(result, FisherPotential):
                per_block = list(result.per_block)
                result = result.total
            values[signal.name] = float(result)
        return {"index": index, "stage": stage, "score": values[self.signals[0].name], "signals": values,
                "per_block": per_block, "seconds": time.perf_counter() - start}
