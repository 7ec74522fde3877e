"""Retrieval-free pairs: covisibility, poses, quadratic sequential, EXIF GPS (python -m sekd_plugin.pairs)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from sekd_plugin import pair_selection as pairing, pairs as P, triangulation as T

from .fountain_small import fountain_small
from .helpers import rotation, write_strecha_camera


def test_quadratic_offsets():
    names = [f"{i:02d}.jpg" for i in range(10)]
    pairs = pairing.quadratic_pairs(names, 3)  # offsets 1, 2, 3 and 2^k = 1, 2, 4
    assert ("00.jpg", "04.jpg") in pairs and ("00.jpg", "05.jpg") not in pairs
    assert len(pairs) == 9 + 8 + 7 + 6
    looped = pairing.quadratic_pairs(names, 3, loop=True)
    assert ("09.jpg", "03.jpg") in looped and len(looped) == 40
    with pytest.raises(pairing.PairingError, match="window"):
        pairing.quadratic_pairs(names, 0)


def test_poses_from_gt_folder(tmp_path):
    # 6 cameras on a line looking along +z; camera 5 looks the other way
    for i in range(6):
        R = rotation([0, 1, 0], 180 if i == 5 else 0)
        write_strecha_camera(tmp_path / f"{i}.jpg.camera", R, np.array([i * 1.0, 0, 0]))
    pairs = pairing.pose_pairs(tmp_path, num=2, max_angle_deg=30)
    assert ("0.jpg", "1.jpg") in pairs and ("0.jpg", "2.jpg") in pairs and ("0.jpg", "3.jpg") not in pairs
    assert not any("5.jpg" in p for p in pairs)  # opposite viewing direction
    assert P.cli(["--output", str(tmp_path / "p.txt"), "--poses", str(tmp_path), "--num", "1"]) == 0


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = fountain_small(tmp_path_factory.mktemp("pairing"))
    T.main(d["out"] / "model", T.model_from_gt_cameras(d["gt"], d["names"]), d["images"], d["pairs"],
           d["features"], d["matches"])
    return d["out"] / "model"


def test_covisibility_and_model_poses(model, tmp_path):
    pairs = pairing.covisibility_pairs(model, num=1)
    assert 2 <= len(pairs) <= 4 and all(a != b for a, b in pairs)
    assert len(pairing.covisibility_pairs(model, num=3)) == 6
    assert len(pairing.pose_pairs(model, num=3, max_angle_deg=180)) == 6
    assert ("0003.jpg", "0006.jpg") not in pairing.pose_pairs(model, num=3)  # views more than 30 deg apart
    assert P.cli(["--output", str(tmp_path / "c.txt"), "--covisibility", str(model), "--num", "2"]) == 0
    assert len(P.read_pairs(tmp_path / "c.txt")) == len(pairing.covisibility_pairs(model, 2))


def _gps_jpeg(path, lat, lon):
    exif = Image.Exif()
    gps = {1: "N", 2: (float(int(lat)), float(int(lat * 60 % 60)), round(lat * 3600 % 60, 4)), 3: "E",
           4: (float(int(lon)), float(int(lon * 60 % 60)), round(lon * 3600 % 60, 4))}
    exif[0x8825] = gps
    Image.new("RGB", (32, 24), (90, 90, 90)).save(path, exif=exif.tobytes())


def test_gps(tmp_path, caplog, capsys):
    for i, dlat in enumerate([0.0, 0.0001, 0.0002, 0.001]):  # ~11 m apart, the last ~110 m away
        _gps_jpeg(tmp_path / f"g{i}.jpg", 47.3769 + dlat, 8.5417)
    Image.new("RGB", (32, 24)).save(tmp_path / "nogps.jpg")
    lat, lon, _ = pairing.read_gps(tmp_path / "g1.jpg")
    assert lat == pytest.approx(47.3770, abs=1e-6) and lon == pytest.approx(8.5417, abs=1e-6)
    with caplog.at_level(logging.WARNING):
        pairs = pairing.gps_pairs(tmp_path, sorted(p.name for p in tmp_path.iterdir()), num=1)
    assert "nogps.jpg" in caplog.text and len([r for r in caplog.records if "without EXIF GPS" in r.message]) == 1
    assert ("g0.jpg", "g1.jpg") in pairs and ("g3.jpg", "g2.jpg") in pairs and not any("nogps" in n for p in pairs for n in p)
    assert P.cli(["--output", str(tmp_path / "p.txt"), "--images", str(tmp_path), "--gps", "--num", "2"]) == 0
    (tmp_path / "only").mkdir()
    Image.new("RGB", (32, 24)).save(tmp_path / "only" / "a.jpg")
    assert P.cli(["--output", str(tmp_path / "q.txt"), "--images", str(tmp_path / "only"), "--gps"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "0 of 1 images" in err[0] and "a.jpg" in err[0]
