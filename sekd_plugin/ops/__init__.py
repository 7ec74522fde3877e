from .descriptors import SAMPLING_MODES, sample_descriptors
from .nms import max_filter, nms_mask, select_keypoints, superglue_nms
from .subpixel import parabola_offsets

__all__ = ["SAMPLING_MODES", "max_filter", "nms_mask", "parabola_offsets", "sample_descriptors",
           "select_keypoints", "superglue_nms"]
