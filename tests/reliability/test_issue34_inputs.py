"""Issue #34, item 1: every consumer reads features, matches, GT cameras, COLMAP models and scene
configs through one checked reader. One regression test per defect (D2-D5, D7, D10-D14), each
running the user's command (a module's ``cli``) on small synthetic inputs: one ``error:`` line
naming the file and the entry, exit status 2, or the correct result."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pycolmap
import pytest

from sekd_plugin import localize_sfm as L, match_features as MF, pairs as P, triangulation as T, visualize as V
from sekd_plugin import reconstruction as R
from sekd_plugin.datasets.strecha import load_gt_cameras
from sekd_plugin.io.h5 import record_conf, write_features, write_matches
from tests.helpers import STRECHA_K, only_error_line, rotation, texture, write_strecha_camera

NAMES = ["a.png", "b.png", "c.png"]
W, H, N = 384, 256, 60  # images a quarter of the GT cameras' 1536 x 1024


def _exit(call) -> int:
    try:
        return call()
    except SystemExit as stop:  # argparse refuses a value at parse time
        return stop.code


def _features(path: Path, seed: int, tag: str) -> Path:
    rng = np.random.default_rng(seed)
    for name in NAMES:
        desc = rng.normal(size=(16, N)).astype(np.float32)
        write_features(path, name, {"keypoints": rng.uniform(0, [W - 1, H - 1], (N, 2)).astype(np.float32),
                                    "scores": np.ones(N, np.float32),
                                    "descriptors": desc / np.linalg.norm(desc, axis=0),
                                    "image_size": np.array([W, H])})
    record_conf(path, {"extractor": tag})  # its provenance: what a matches file fingerprints
    return path


def _camera_files(folder: Path, K: np.ndarray, size: tuple[int, int]) -> Path:
    folder.mkdir()
    for i, name in enumerate(NAMES):
        R_ = rotation([0, 1, 0], -4.0 * i)
        write_strecha_camera(folder / f"{name}.camera", R_, np.array([0.4 * i, 0.0, 0.0]), K=K, size=size)
    return folder


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """Three 384 x 256 images, GT cameras for them (and for their 1536 x 1024 originals), features
    A (and B: same names and counts, another provenance), A's matches, a model triangulated from them."""
    root = tmp_path_factory.mktemp("issue34")
    images = root / "images"
    images.mkdir()
    for i, name in enumerate(NAMES):
        cv2.imwrite(str(images / name), texture(H, W, i))
    small_K = np.diag([0.25, 0.25, 1.0]) @ STRECHA_K
    d = {"root": root, "images": images, "gt": _camera_files(root / "gt", small_K, (W, H)),
         "gt_original": _camera_files(root / "gt_original", STRECHA_K, (1536, 1024)),
         "features": _features(root / "feats.h5", 0, "A"), "other": _features(root / "other.h5", 1, "B")}
    d["pairs"] = P.main(root / "pairs.txt", image_list=NAMES)
    d["matches"] = MF.main(MF.get_conf("NN-mutual"), d["pairs"], d["features"], matches=root / "matches.h5")
    cams = load_gt_cameras(d["gt"], NAMES)
    d["model"] = root / "model"
    T.main(d["model"], T.model_from_gt_cameras(cams, NAMES), images, d["pairs"], d["features"], d["matches"],
           verification="none")
    return d


def _consumers(d: dict, tmp: Path, features: Path, matches: Path) -> dict[str, list]:
    """The argv of each consumer of features + matches (triangulation: every verification)."""
    common = ["--pairs", str(d["pairs"]), "--features", str(features), "--matches", str(matches)]
    tri = ["--reference-model", str(d["model"]), "--images", str(d["images"]), *common]
    return {
        **{f"triangulation-{v}": (T.cli, ["--sfm-dir", str(tmp / f"t-{v}"), *tri, "--verification", v])
           for v in ("colmap", "poses", "none")},
        "localize_sfm": (L.cli, ["--reference-sfm", str(d["model"]), "--queries", str(_queries(d, tmp)),
                                 "--features", str(features), "--matches", str(matches), "--results",
                                 str(tmp / "poses.txt"), "--images", str(d["images"]), "--gt-cameras", str(d["gt"])]),
        "visualize": (V.cli, ["--images", str(d["images"]), "--output", str(tmp / "png"), *common]),
        "reconstruction": (R.cli, ["--sfm-dir", str(tmp / "sfm"), "--images", str(d["images"]), *common]),
    }


def _queries(d: dict, tmp: Path) -> Path:
    path = tmp / "queries.txt"
    path.write_text("a.png\n")
    return path


CONSUMERS = ["triangulation-colmap", "triangulation-poses", "triangulation-none", "localize_sfm", "visualize",
             "reconstruction"]


# ------------------------------------------------------------------ D2: match indices out of range


@pytest.mark.parametrize("consumer", CONSUMERS)
@pytest.mark.parametrize("bad", [N + 40, -5])
def test_d2_match_indices_out_of_range(scene, tmp_path, consumer, bad, capsys):
    """Before: SIGSEGV (colmap), IndexError (poses), 0 points exit 0 (none), negative indices
    wrapping silently (localize_sfm), wrong lines exit 0 (visualize)."""
    matches = tmp_path / "matches.h5"
    for i, name0 in enumerate(NAMES):
        for name1 in NAMES[i + 1:]:
            m0 = np.full(N, -1)
            m0[:20] = np.arange(20)
            m0[5] = bad
            write_matches(matches, name0, name1, m0, np.ones(N))
    call, argv = _consumers(scene, tmp_path, scene["features"], matches)[consumer]
    assert _exit(lambda: call(argv)) == 2
    line = only_error_line(capsys)
    assert str(matches) in line and f"index {bad}" in line, line


# ------------------------------------------------------------------ D3: matches of other features


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_d3_matches_of_other_features(scene, tmp_path, consumer, capsys):
    """Features B (same names, same counts: every index in range) with the matches of features A.
    Before: '2/2 queries localized' 70-150 m off, 0 points, nonsense pictures, all exit 0."""
    call, argv = _consumers(scene, tmp_path, scene["other"], scene["matches"])[consumer]
    assert _exit(lambda: call(argv)) == 2
    line = only_error_line(capsys)
    assert f"{scene['matches']} was made from other features than {scene['other']}" in line, line


# ------------------------------------------------------------------ D4: GT cameras of the original size


def test_d4_gt_cameras_of_original_size(scene, tmp_path, caplog, capsys):
    """Cameras written for 1536 x 1024 with the images at 384 x 256: K is rescaled (one warning) in
    triangulation and localize_sfm, as in the pose and reconstruction benchmarks (before: K used
    as written, silently wrong); another aspect ratio is refused naming the camera file."""
    expected = [0.25 * STRECHA_K[0, 0], 0.25 * STRECHA_K[1, 1], 0.25 * STRECHA_K[0, 2], 0.25 * STRECHA_K[1, 2]]
    common = ["--images", str(scene["images"]), "--pairs", str(scene["pairs"]), "--features",
              str(scene["features"]), "--matches", str(scene["matches"])]
    with caplog.at_level(logging.WARNING):
        assert T.cli(["--sfm-dir", str(tmp_path / "t"), "--gt-cameras", str(scene["gt_original"]), *common,
                      "--verification", "none"]) == 0
    assert len([r for r in caplog.records if "rescaled" in r.message]) == 1
    model = pycolmap.Reconstruction(tmp_path / "t")
    for camera in model.cameras.values():
        assert (camera.width, camera.height) == (W, H)
        np.testing.assert_allclose(camera.params, expected, rtol=1e-9)
    L.cli(["--reference-sfm", str(scene["model"]), "--queries", str(_queries(scene, tmp_path)), "--features",
           str(scene["features"]), "--matches", str(scene["matches"]), "--results", str(tmp_path / "p.txt"),
           "--images", str(scene["images"]), "--gt-cameras", str(scene["gt_original"])])
    log = json.loads((tmp_path / "p.txt_logs.json").read_text())["queries"]["a.png"]
    assert log["camera"]["width"] == W and np.allclose(log["camera"]["params"], expected)
    # another aspect ratio: refused naming the camera file
    other = _camera_files(tmp_path / "gt_square", STRECHA_K, (1024, 1024))
    capsys.readouterr()
    assert T.cli(["--sfm-dir", str(tmp_path / "u"), "--gt-cameras", str(other), *common]) == 2
    line = only_error_line(capsys)
    assert str(other / "a.png.camera") in line and "aspect" in line, line


# ------------------------------------------------------------------ D5: damaged or foreign COLMAP models


def _damage(model: Path, out: Path, how: str) -> Path:
    import shutil

    shutil.copytree(model, out)
    if how == "truncated images.bin":
        data = (model / "images.bin").read_bytes()
        (out / "images.bin").write_bytes(data[: len(data) // 2])
    elif how == "random points3D.bin":
        (out / "points3D.bin").write_bytes(np.random.default_rng(0).bytes((model / "points3D.bin").stat().st_size))
    elif how == "empty cameras.bin":
        (out / "cameras.bin").write_bytes(b"")
    return out


@pytest.mark.parametrize("how", ["truncated images.bin", "random points3D.bin", "empty cameras.bin"])
def test_d5_damaged_colmap_model(scene, tmp_path, how, capsys):
    """Before: IndexError / bad_alloc (minutes of allocation) / ValueError tracebacks."""
    model = _damage(scene["model"], tmp_path / "model", how)
    file = model / how.split()[-1]
    common = ["--pairs", str(scene["pairs"]), "--features", str(scene["features"]), "--matches", str(scene["matches"])]
    commands = [
        (T.cli, ["--sfm-dir", str(tmp_path / "t"), "--reference-model", str(model), "--images", str(scene["images"]),
                 *common]),
        (L.cli, ["--reference-sfm", str(model), "--queries", str(_queries(scene, tmp_path)), "--features",
                 str(scene["features"]), "--matches", str(scene["matches"]), "--results", str(tmp_path / "p.txt")]),
        (P.cli, ["--output", str(tmp_path / "cov.txt"), "--covisibility", str(model)]),
        (P.cli, ["--output", str(tmp_path / "pos.txt"), "--poses", str(model)]),
        (V.cli, ["--images", str(scene["images"]), "--output", str(tmp_path / "png"), "--model", str(model)]),
    ]
    for call, argv in commands:
        assert call(argv) == 2, argv
        line = only_error_line(capsys)
        assert str(file) in line, line
