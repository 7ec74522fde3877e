"""sekd_plugin.localize_sfm: a fountain-P11 image localized in the GT-pose triangulation of three others."""

from __future__ import annotations

import json

import numpy as np
import pycolmap
import pytest

from sekd_plugin import localize_sfm as L, triangulation as T
from sekd_plugin.benchmark.known_poses.common import gt_camera
from sekd_plugin.metrics.localization import pose_errors

from .fountain_small import fountain_small


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = fountain_small(tmp_path_factory.mktemp("loc"))
    model = d["out"] / "model"
    T.main(model, T.model_from_gt_cameras(d["gt"], d["names"][:3]), d["images"], d["pairs"], d["features"], d["matches"])
    d["model"] = model
    return d


def test_localize_with_gt_intrinsics(data, tmp_path):
    q = "0006.jpg"
    out = L.main(data["model"], [q], None, data["features"], data["matches"], tmp_path / "poses.txt",
                 query_cameras={q: gt_camera(data["gt"][q])})
    log = out["queries"][q]
    assert log["localized"] and log["num_inliers"] > 50 and log["camera"]["fixed"]
    name, *values = (tmp_path / "poses.txt").read_text().split()
    assert name == q and len(values) == 7  # hloc: name qw qx qy qz tx ty tz
    qw, qx, qy, qz, *t = map(float, values)
    R = pycolmap.Rotation3d(np.array([qx, qy, qz, qw])).matrix()
    err_m, err_deg = pose_errors(R, t, data["gt"][q].R_cw, data["gt"][q].t_cw)
    assert err_m < 0.05 and err_deg < 0.5
    assert json.loads((tmp_path / "poses.txt_logs.json").read_text())["num_localized"] == 1


def test_query_list_exif_and_failures(data, tmp_path):
    c = data["gt"]["0006.jpg"]
    qlist = tmp_path / "queries.txt"
    qlist.write_text(f"0006.jpg PINHOLE 1536 1024 {c.K[0, 0]} {c.K[1, 1]} {c.K[0, 2]} {c.K[1, 2]}\n0005.jpg\nnope.jpg\n")
    retrieval = tmp_path / "retrieval.txt"
    retrieval.write_text("0006.jpg 0003.jpg\n0006.jpg 0004.jpg\n0005.jpg 0004.jpg\n")
    out = L.main(data["model"], qlist, retrieval, data["features"], data["matches"], tmp_path / "poses.txt",
                 image_dir=data["images"])
    q = out["queries"]
    assert q["0006.jpg"]["localized"] and q["0006.jpg"]["db"] == ["0003.jpg", "0004.jpg"]
    assert q["0005.jpg"]["localized"] and not q["0005.jpg"]["camera"]["fixed"]  # EXIF/size prior, focal refined
    assert not q["nope.jpg"]["localized"] and "no intrinsics" in q["nope.jpg"]["reason"]
    assert out["num_queries"] == 3 and out["num_localized"] == 2
    out = L.main(data["model"], ["ghost.jpg"], None, data["features"], data["matches"], tmp_path / "g.txt",
                 query_cameras={"ghost.jpg": gt_camera(c)})
    assert out["queries"]["ghost.jpg"]["reason"].startswith("no features") and out["num_localized"] == 0
    bad = tmp_path / "bad.txt"
    bad.write_text("a.jpg PINHOLE wide 1024 1 1 1 1\n")
    with pytest.raises(L.LocalizationError, match="bad.txt:1"):
        L.parse_queries(bad)


def test_cli_errors(data, tmp_path, capsys):
    code = L.cli(["--reference-sfm", str(tmp_path / "none"), "--queries", str(tmp_path / "q.txt"), "--features",
                  str(data["features"]), "--matches", str(data["matches"]), "--results", str(tmp_path / "r.txt")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "reference model not found" in err[0]
