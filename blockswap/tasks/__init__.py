"""Tasks (paper Sec. 4 classification, Sec. 7 detection) as values: each says which network its
budget counts, what data it reads, how a candidate is built and scored, and the row a score
makes. The search and the CLI dispatch through `TASKS`; no code compares task names.

Layer: above `proxies`, below `search` and `train` (whose per-task training step is keyed by the
same names). Importing this package loads no detection code (`tasks.detection` imports it lazily).
"""

from .base import TASKS, Job, ScoreRow, ScoringData, Task, candidate_seed, get_task
from .classification import CLASSIFICATION, CLASSIFICATION_BATCH, Classification
from .detection import DETECTION, DETECTION_BATCH, DETECTION_MIN_SIZE, Detection

__all__ = ["CLASSIFICATION", "CLASSIFICATION_BATCH", "DETECTION", "DETECTION_BATCH", "DETECTION_MIN_SIZE",
           "TASKS", "Classification", "Detection", "Job", "ScoreRow", "ScoringData", "Task", "candidate_seed",
           "get_task"]
