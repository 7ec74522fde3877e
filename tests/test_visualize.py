"""sekd_plugin.visualize: PNGs read back (size, the colours present), checked writes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from sekd_plugin import triangulation as T, visualize as V
from sekd_plugin.common import InputError

from .fountain_small import fountain_small


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = fountain_small(tmp_path_factory.mktemp("vis"))
    T.main(d["out"] / "model", T.model_from_gt_cameras(d["gt"], d["names"]), d["images"], d["pairs"],
           d["features"], d["matches"])
    return d


def _count(image, bgr):
    return int(np.all(image == np.array(bgr, np.uint8), axis=-1).sum())


def test_pairs_green_and_red(data, tmp_path):
    out = V.draw_pairs(data["images"], data["pairs"], data["features"], data["matches"], tmp_path, max_pairs=2,
                       resize_max=512)
    assert len(out) == 2 and all(r["inliers"] < r["matches"] for r in out)
    image = cv2.imread(out[0]["png"])
    assert image.shape == (341, 1024, 3)  # two 1536x1024 images at 512 px side by side
    assert _count(image, V.GREEN) > 100 and _count(image, V.RED) > 5
    # a model gives the inliers: matches of a common 3D point
    out = V.draw_pairs(data["images"], data["pairs"], data["features"], data["matches"], tmp_path / "m",
                       model=data["out"] / "model", max_pairs=1, resize_max=512)
    assert 0 < out[0]["inliers"] < out[0]["matches"]


@pytest.mark.parametrize("color_by", V.COLOR_BY)
def test_model_views(data, tmp_path, color_by):
    out = V.draw_model(data["images"], data["out"] / "model", tmp_path, color_by, resize_max=400)
    assert len(out) == 4 and all(0 < r["triangulated"] < r["keypoints"] for r in out)
    image = cv2.imread(out[0]["png"])
    assert image.shape == (267, 400, 3)
    if color_by == "visibility":
        assert _count(image, V.BLUE) > 20 and _count(image, V.RED) > 20
    else:
        assert _count(image, V.GREY) > 20


def test_failed_write_is_one_line(data, tmp_path, capsys):
    with pytest.raises(InputError, match="cannot write image"):
        V.write_png(tmp_path / "missing" / "x.png", np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "file").write_text("")
    code = V.cli(["--images", str(data["images"]), "--model", str(data["out"] / "model"), "--output",
                  str(tmp_path / "file")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error:")
    assert V.cli(["--images", str(data["images"]), "--output", str(tmp_path / "o")]) == 2
