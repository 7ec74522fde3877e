"""Keypoint-set parity against an official code's outputs (order may differ)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def load_reference(path: Path) -> dict:
    """Every array of an official code's ``.npz`` fixture."""
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def rgb_image(reference: dict) -> torch.Tensor:
    """The fixture's ``image_rgb`` (H x W x 3 uint8) as a 1 x 3 x H x W tensor in [0, 1]."""
    return torch.from_numpy(reference["image_rgb"]).permute(2, 0, 1)[None].float() / 255.0


def nearest(ours: np.ndarray, ref: np.ndarray, ours_s: np.ndarray, ref_s: np.ndarray) -> np.ndarray:
    """Index of the output keypoint matching each reference keypoint: nearest in position, ties
    (the same pixel found at several scales) broken by the closer score."""
    a = torch.from_numpy(np.c_[ref, ref_s * 10.0]).double()
    b = torch.from_numpy(np.c_[ours, ours_s * 10.0]).double()
    return torch.cat([torch.cdist(chunk, b).argmin(dim=1) for chunk in a.split(2048)]).numpy()


def parity(ours: dict, ref_kpts: np.ndarray, ref_scores: np.ndarray, ref_desc: np.ndarray | None = None) -> dict:
    """Share of reference keypoints with an output keypoint within 0.05 px, relative count
    difference, max score difference and min descriptor cosine on the matched pairs.

    ``ours``: ``keypoints`` N x 2, ``scores`` N, ``descriptors`` D x N (numpy or torch, batch of one allowed).
    """
    k, s, d = (np.asarray(ours[key])[0] if np.asarray(ours[key]).ndim == n else np.asarray(ours[key])
               for key, n in (("keypoints", 3), ("scores", 2), ("descriptors", 3)))
    ref_kpts = ref_kpts[:, :2].astype(np.float64)
    j = nearest(k.astype(np.float64), ref_kpts, s.astype(np.float64), ref_scores.astype(np.float64))
    dist = np.linalg.norm(k[j] - ref_kpts, axis=1)
    out = {"within_0.05px": float((dist <= 0.05).mean()),
           "count_diff": abs(len(k) - len(ref_kpts)) / len(ref_kpts),
           "max_score_diff": float(np.abs(s[j] - ref_scores).max())}
    if ref_desc is not None:
        rd = ref_desc.astype(np.float32)
        rd /= np.linalg.norm(rd, axis=1, keepdims=True)  # stored as float16
        out["min_cosine"] = float((d.T[j] * rd).sum(1).min())
    return out


def assert_parity(stats: dict, what: str, score_atol: float = 1e-4) -> None:
    """The issue's tolerances: >= 99 % within 0.05 px, counts within 1 %, scores 1e-4, cosine 0.9999."""
    assert stats["within_0.05px"] >= 0.99, (what, stats)
    assert stats["count_diff"] <= 0.01, (what, stats)
    assert stats["max_score_diff"] <= score_atol, (what, stats)
    if "min_cosine" in stats:
        assert stats["min_cosine"] >= 0.9999, (what, stats)
