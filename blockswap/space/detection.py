"""The detector's fixed sizes as pure values (paper Sec. 7 trains "the default Mask R-CNN
settings in Torchvision"), defined once for the module (`nn.detection`), the search task
(`tasks.detection`) and the training recipe (`train.detector.DetectorConfig`)."""

from __future__ import annotations

# The paper's detection minibatch: 16 images (over 8 GPUs), torchvision's reference recipe.
DETECTION_BATCH = 16
# torchvision's Mask R-CNN resizes the shorter image side to 800 pixels and the longer to at
# most 1333; costs of a detection search are counted at the shorter side.
DETECTION_MIN_SIZE = 800
DETECTION_MAX_SIZE = 1333


def max_size_for(min_size: int) -> int:
    """torchvision's ratio of longest to shortest side (1333 / 800) at another scale, pixels."""
    return round(min_size * DETECTION_MAX_SIZE / DETECTION_MIN_SIZE)
