"""Matching speed of the speed command (``--matching``): mutual nearest neighbour on synthetic
unit descriptors, the paths before and after the blocked matcher timed interleaved.

* :func:`matching`: pairs/s over all pairs of 6 images x ~7,000 keypoints (SIFT-like).
* :func:`matching_pair`: ms per pair of 4,096 x 4,096 128-D descriptors (an SfM budget), the
  full-matrix path against the blocked one, and whether their matches are identical.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..matchers.nearest_neighbor import (
    match_nearest_neighbor,
    match_one_to_many,
    pad_descriptors,
    pairwise_distance,
)


def _unit_descriptors(counts: list[int], dim: int, device: torch.device, seed: int = 0) -> list[torch.Tensor]:
    """``dim x n`` random unit descriptors for every ``n`` in ``counts`` (seeded)."""
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.functional.normalize(torch.randn(dim, n, generator=g), dim=0).to(device) for n in counts]


def matching(runs: int, device: torch.device, timer: Callable, images: int = 6, keypoints: int = 7000,
             dim: int = 128) -> list[dict]:
    """Pairs/s of mutual NN over all pairs of ``images`` synthetic images, per pair vs grouped, the
    full-matrix paths (before) and the blocked ones (``timer``: the speed command's interleaved timer)."""
    counts = [keypoints - (keypoints // 200) * i for i in range(images)]  # unequal, as real images
    descs = _unit_descriptors(counts, dim, device)
    pairs = [(i, j) for i in range(images) for j in range(i + 1, images)]
    partners = {i: [j for a, j in pairs if a == i] for i in range(images)}
    padded = {i: pad_descriptors([descs[j] for j in js]) for i, js in partners.items() if js}

    def distance_matrix_per_pair():  # hloc's formulation: full distance matrix
        for i, j in pairs:
            dist = pairwise_distance(descs[i][None], descs[j][None])
            top = dist.topk(1, dim=-1, largest=False)
            nn01 = top.indices[..., 0]
            mutual = dist.argmin(dim=1).gather(1, nn01) == torch.arange(dist.shape[1], device=device)
            torch.where(mutual, nn01, -1).cpu(), (1 - top.values[..., 0].square() / 4).cpu()

    def per_pair(full: bool):
        for i, j in pairs:
            match_nearest_neighbor(descs[i], descs[j], full_matrix=full)[0].cpu()

    def grouped(full: bool):
        for i, (d1, n1) in padded.items():
            match_one_to_many(descs[i], d1, n1, full_matrix=full)[0].cpu()

    modes = {"distance matrix, one pair at a time (before)": distance_matrix_per_pair,
             "similarity matrix, one pair at a time (before)": lambda: per_pair(True),
             "similarity matrix, one image vs all its partners (before)": lambda: grouped(True),
             "blocked, one pair at a time": lambda: per_pair(False),
             "blocked, one image vs all its partners": lambda: grouped(False)}
    with torch.inference_mode():
        ms = timer(modes, runs, device, warmup=1)
    return [{"mode": k, "device": str(device), "pairs": len(pairs), "keypoints": keypoints,
             "pairs_per_s": len(pairs) / (v / 1000)} for k, v in ms.items()]


def matching_pair(runs: int, device: torch.device, timer: Callable, keypoints: int = 4096,
                  dim: int = 128) -> list[dict]:
    """ms per mutual-NN pair of ``keypoints x keypoints`` descriptors, without and with Lowe's ratio
    test (0.8, ``NN-ratio``): the full-matrix path and the blocked one interleaved, each row with
    ``identical`` (matches and scores equal bit for bit to the full-matrix path's)."""
    d0, d1 = _unit_descriptors([keypoints, keypoints], dim, device, seed=1)
    d1 = torch.nn.functional.normalize(d1 + 0.5 * d0, dim=0)  # some true neighbours: the ratio test keeps some
    cases = {f"{path}{suffix}": (full, ratio) for suffix, ratio in (("", None), (", ratio 0.8", 0.8))
             for path, full in (("full similarity matrix (before)", True), ("blocked", False))}

    def run(full: bool, ratio: float | None):
        return match_nearest_neighbor(d0, d1, ratio_threshold=ratio, full_matrix=full)

    with torch.inference_mode():
        out = {k: run(*c) for k, c in cases.items()}
        ms = timer({k: (lambda c=c: run(*c)[0].cpu()) for k, c in cases.items()}, runs, device, warmup=1)
    rows = []
    for key, (full, ratio) in cases.items():
        ref_key = next(k for k, c in cases.items() if c == (True, ratio))
        ref = out[ref_key]
        rows.append({"mode": key, "device": str(device), "keypoints": keypoints, "dim": dim, "ratio_threshold": ratio,
                     "ms_per_pair": ms[key], "speedup": ms[ref_key] / ms[key],
                     "mutual_matches": int((out[key][0] >= 0).sum()),
                     "identical": bool(torch.equal(out[key][0], ref[0]) and torch.equal(out[key][1], ref[1]))})
    return rows
