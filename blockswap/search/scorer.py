"""Scoring one candidate, in any process (paper Sec. 4, step 2).

Every candidate sees the same minibatch, drawn once from the run seed (`scoring_data`), and is
built from a seed derived from (run seed, network, genotype) (`candidate_seed`), so any score
can be reproduced on its own, in any order, in any process. What is drawn, built and measured
is the config's task's (`blockswap.tasks`).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from ..errors import BlockSwapError
from ..seeding import torch_seed
from ..tasks import Job, ScoreRow, ScoringData, candidate_seed
from .config import RunOptions, SearchConfig

__all__ = ["Job", "Scorer", "ScoringData", "candidate_seed", "scoring_data"]


def scoring_data(config: SearchConfig) -> ScoringData:
    """Draw the shared minibatch(es) once from the training split with a seeded generator."""
    return config.task.draw(config)


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
        self.task = config.task
        self.device = torch.device(run.device)
        self.num_classes = data.num_classes
        self.memory_format = self.task.memory_format(run.memory_format)
        self.signals = list(config.signals)
        self.batches = self.task.prepare(data, self.device, run.memory_format)
        self.slice = self.task.head(self.batches, config.slice_size)
        self.options = run.proxy_options(config)
        # Round one of a two-round search: its stage, and its options (bf16 when screening so).
        self.first_stage = config.first_stage
        self.first_options = replace(self.options, precision=config.first_precision)

    def build(self, genotype_text: str) -> torch.nn.Module:
        """The candidate at initialisation, from its own seed; the global RNG is left untouched.

        Built on the CPU, then moved, so the initial weights do not depend on the device.
        """
        with torch_seed(candidate_seed(self.config, genotype_text)):
            # From the config's spec, not its name: a worker need not have the network registered.
            model = self.task.build(self.config.spec, genotype_text, self.num_classes, self.config)
        return model.to(self.device, memory_format=self.memory_format)

    def score(self, job: Job) -> ScoreRow:
        _index, genotype_text, stage = job
        first = stage != "full"
        if first and stage != self.first_stage:
            raise BlockSwapError(f"stage {stage!r} is not one of this search's: full, {self.first_stage}")
        signals = self.signals[:1] if first else self.signals
        batches = self.slice if first else self.batches
        return self.task.score(job, lambda: self.build(genotype_text), batches, signals,
                               self.first_options if first else self.options,
                               candidate_seed(self.config, genotype_text))
