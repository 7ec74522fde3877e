from .descriptors import SAMPLING_MODES, sample_descriptors, sample_descriptors_batched
from .nms import (
    max_filter,
    nms_mask,
    rank_in_groups,
    select_keypoints,
    select_keypoints_batched,
    superglue_nms,
    topk_in_groups,
)
from .subpixel import parabola_offsets

__all__ = ["SAMPLING_MODES", "max_filter", "nms_mask", "parabola_offsets", "rank_in_groups", "sample_descriptors",
           "sample_descriptors_batched", "select_keypoints", "select_keypoints_batched", "superglue_nms",
           "topk_in_groups"]
