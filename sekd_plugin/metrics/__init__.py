"""Pure metric functions on arrays, below the benchmarks and the trainer (both use them):
:mod:`.homography` (MMA, homography accuracy and AUC, repeatability, matching score) and
:mod:`.pose` (rotation / translation errors, pose AUC)."""
