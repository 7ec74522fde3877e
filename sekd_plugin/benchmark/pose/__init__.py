"""Relative-pose benchmark (AUC@5/10/20 deg) on scenes with ground-truth cameras."""
