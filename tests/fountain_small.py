"""Four fountain-P11 images at 640 px: SIFT features, every pair matched (NN-ratio), the GT
cameras and their fixed-pose model; shared by the triangulation, localization, pairs and
visualization tests (a few seconds)."""

from __future__ import annotations

from pathlib import Path

from sekd_plugin import match_features, pairs as P
from sekd_plugin.datasets.strecha import load_gt_cameras
from sekd_plugin.extract_features import extract
from sekd_plugin.extractors.confs import get_conf

from .conftest import shared_file

NAMES = ["0003.jpg", "0004.jpg", "0005.jpg", "0006.jpg"]


def fountain_small(out: Path) -> dict:
    images = shared_file("scenes/fountain-P11/images")
    gt_dir = shared_file("scenes/fountain-P11/gt_dense_cameras")
    conf = get_conf("sift")
    conf["preprocessing"]["resize_max"] = 640
    features = extract(conf, images, image_list=NAMES, feature_path=out / "feats.h5", as_half=False).feature_path
    pairs = P.main(out / "pairs.txt", image_list=NAMES)
    matches = match_features.main(match_features.get_conf("NN-ratio"), pairs, features, matches=out / "matches.h5")
    return {"images": images, "gt_dir": gt_dir, "gt": load_gt_cameras(gt_dir, NAMES), "names": list(NAMES),
            "features": features, "pairs": pairs, "matches": matches, "out": out}
