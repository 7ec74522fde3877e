"""Pure metric functions on arrays, below the benchmarks and the trainer (both use them):
:mod:`.homography` (MMA, homography accuracy and AUC, repeatability, matching score),
:mod:`.pose` (relative-pose errors and AUC), :mod:`.localization` (absolute-pose errors,
recall at thresholds) and :mod:`.sfm` (similarity alignment to GT cameras, pose errors of a
reconstruction, the failure verdict)."""
