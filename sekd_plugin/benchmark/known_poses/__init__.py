"""Benchmarks with the ground-truth cameras fixed: triangulation (Schoenberger et al., CVPR 2017)
and leave-one-out localization."""
