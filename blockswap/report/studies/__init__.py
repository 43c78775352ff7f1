"""Report studies, one registered `Study` per file (`STUDIES`), placed by their `order` (the
paper's: Table 2, Figure 2, Table 1, Sec. 4.3, Sec. 4.4, Appendix B, Appendix D)."""

from . import comparison, densities, good_bad, pictures, protocol, samples, sensitivity, signals  # noqa: F401  (registers them)
from .base import STUDIES, Context, Study, in_order, label

__all__ = ["STUDIES", "Context", "Study", "in_order", "label"]
