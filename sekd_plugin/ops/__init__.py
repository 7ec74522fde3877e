from .descriptors import SAMPLING_MODES, sample_descriptors
from .nms import nms_mask, select_keypoints
from .subpixel import parabola_offsets

__all__ = ["SAMPLING_MODES", "nms_mask", "parabola_offsets", "sample_descriptors", "select_keypoints"]
