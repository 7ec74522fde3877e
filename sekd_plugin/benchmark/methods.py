"""The one method registry of every benchmark: a label, an extraction conf, its matcher, its
weights and its pipeline.

A method is written ``NAME`` or ``LABEL=NAME`` (the label names it in tables, e.g.
``ours=sekd`` with ``--weights ours=run/best.pth``). ``NAME`` is an entry of :data:`METHODS`
or any extraction conf of :mod:`sekd_plugin.extractors.confs`, with the default matcher of its
model (:data:`DEFAULT_MATCHERS`). ``colmap-sift`` is COLMAP's own pipeline
(:mod:`.sfm.colmap`): COLMAP's SIFT, COLMAP's matcher and verification.
"""

from __future__ import annotations

from typing import Any

from ..common.errors import ConfigError

# hloc's matcher conf names (sekd_plugin.match_features accepts them).
DEFAULT_MATCHERS = {
    "sift": "NN-ratio",  # Lowe's ratio 0.8 + mutual check, as hloc and COLMAP match SIFT
    "superpoint": "NN-superpoint",  # mutual + L2 distance 0.7, hloc's setting for SuperPoint
    "sekd": "NN-mutual",  # the SEKD release matches by mutual nearest neighbour
    "d2net": "NN-mutual",  # D2-Net's evaluation: mutual nearest neighbours
    "alike": "NN-mutual",  # ALIKE's evaluation: mutual nearest neighbours
    "r2d2": "NN-mutual",  # R2D2's evaluation: mutual nearest neighbours
}
FALLBACK_MATCHER = "NN-mutual"

COLMAP = "colmap"
METHODS: dict[str, dict[str, Any]] = {
    "colmap-sift": {"pipeline": COLMAP, "matcher": "COLMAP (ratio 0.8, distance 0.7, cross-check)"},
    # SfM takes SIFT with COLMAP's extraction settings (docs/sfm.md: 2.2-2.6x the 3D points at a lower
    # reprojection error on both DEV scenes); the homography benchmark's `sift` conf is unchanged
    "sift": {"extractor": "sift-colmap", "matcher": "NN-ratio"},
    "sift-hloc": {"extractor": "sift", "matcher": "NN-ratio"},
    "sekd-best": {"extractor": "sekd-best", "matcher": "NN-mutual"},
    "sift-colmap": {"extractor": "sift-colmap", "matcher": "NN-ratio"},
    "sekd": {"extractor": "sekd", "matcher": "NN-mutual"},
    "sekd-sfm": {"extractor": "sekd-sfm", "matcher": "NN-mutual"},
    "sekd-evolved": {"extractor": "sekd-evolved", "matcher": "NN-mutual"},
    "sekd-evolved-sfm": {"extractor": "sekd-evolved-sfm", "matcher": "NN-mutual"},
    "sekd-selftrained": {"extractor": "sekd-selftrained", "matcher": "NN-mutual"},
    "sekd-selftrained-sfm": {"extractor": "sekd-selftrained-sfm", "matcher": "NN-mutual"},
    "superpoint": {"extractor": "superpoint", "matcher": "NN-superpoint"},
    "d2net": {"extractor": "d2net-ss", "matcher": "NN-mutual"},
    **{name: {"extractor": name, "matcher": "NN-mutual"}
       for name in ("alike-t", "alike-s", "alike-n", "alike-l", "r2d2", "r2d2-ss")},
}
# each method at its recommended SfM setting (docs/results.md, docs/sfm.md), COLMAP's own pipeline as the
# reference row, the earlier SEKD SfM setting for comparison; missing weights are listed as skipped
DEFAULT_METHODS = ("colmap-sift", "sift", "sekd-best", "sekd-sfm", "sekd-selftrained-sfm", "superpoint", "d2net")


def parse_method(spec: str) -> tuple[str, str]:
    """``"sekd"`` -> ("sekd", "sekd"); ``"ours=sekd"`` -> ("ours", "sekd"): a table label and a method name."""
    label, _, name = spec.partition("=")
    return (label, name or label)


def default_matcher(extractor: str) -> str:
    """The matcher conf of an extraction conf's model (hloc's name)."""
    from ..extractors.confs import get_conf

    return DEFAULT_MATCHERS.get(get_conf(extractor)["model"]["name"], FALLBACK_MATCHER)


def method_entry(spec: str, weights: str | None = None) -> dict[str, Any]:
    """``{"label", "pipeline": "hloc"|"colmap", "extractor": conf name, "matcher": conf name,
    "weights": checkpoint or None}`` of ``NAME`` or ``LABEL=NAME``."""
    from ..extractors.confs import confs

    label, method = parse_method(spec)
    if method in METHODS:
        entry = {"pipeline": "hloc", **METHODS[method]}
    elif method in confs:
        entry = {"pipeline": "hloc", "extractor": method, "matcher": default_matcher(method)}
    else:
        raise ConfigError(f"unknown method '{method}'; methods: {sorted(METHODS)} or any extraction conf "
                          f"({sorted(confs)})")
    return {"label": label, **entry, "weights": None if weights is None else str(weights)}
