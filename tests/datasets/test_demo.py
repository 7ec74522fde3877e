"""The offline demo set: determinism, caching, HPatches layout, homography consistency."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from sekd_plugin.datasets import demo


def _hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def hpatches(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo") / "hpatches"
    demo.build_demo_hpatches(root, seed=0)
    return root


def _gray(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).astype(np.float32)


def test_layout(hpatches):
    names = sorted(p.name for p in hpatches.iterdir() if p.is_dir())
    assert names == sorted(demo.sequence_names()) and len(names) == 8
    assert sum(n.startswith("v_") for n in names) == sum(n.startswith("i_") for n in names) == 4
    assert not [p for p in hpatches.rglob(".*") if p.name != "demo_hpatches.json"]  # no temp files
    for name in names:
        seq = hpatches / name
        assert sorted(p.name for p in seq.iterdir()) == sorted(
            [f"{k}.png" for k in range(1, 7)] + [f"H_1_{k}" for k in range(2, 7)])
        shapes = {cv2.imread(str(seq / f"{k}.png")).shape for k in range(1, 7)}
        assert len(shapes) == 1 and max(shapes.pop()[:2]) <= 640
        for k in range(2, 7):
            H = np.loadtxt(seq / f"H_1_{k}")
            assert H.shape == (3, 3)
            assert np.allclose(H, np.eye(3)) == name.startswith("i_")


def test_deterministic_and_cached(hpatches, tmp_path):
    other = tmp_path / "again"
    demo.build_demo_hpatches(other, seed=0)
    assert _hashes(other) == _hashes(hpatches)

    # Cache hit: nothing is rewritten.
    mtimes = {p: p.stat().st_mtime_ns for p in other.rglob("*")}
    demo.build_demo_hpatches(other, seed=0)
    assert {p: p.stat().st_mtime_ns for p in other.rglob("*")} == mtimes

    # A damaged file is detected and rebuilt; another seed gives other homographies.
    (other / "v_rocket" / "3.png").write_bytes(b"broken")
    demo.build_demo_hpatches(other, seed=0)
    assert _hashes(other) == _hashes(hpatches)
    demo.build_demo_hpatches(other, seed=1)
    assert not np.allclose(np.loadtxt(other / "v_rocket" / "H_1_2"),
                           np.loadtxt(hpatches / "v_rocket" / "H_1_2"))


@pytest.mark.parametrize("name", [f"v_{p}" for p in demo.VIEWPOINT_PHOTOS])
def test_viewpoint_homographies_map_image1_onto_image_k(hpatches, name):
    seq = hpatches / name
    image1 = _gray(seq / "1.png")
    h, w = image1.shape
    for k in range(2, 7):
        H = np.loadtxt(seq / f"H_1_{k}")
        image_k = _gray(seq / f"{k}.png")
        warped = cv2.warpPerspective(image1, H, (w, h))
        valid = cv2.warpPerspective(np.ones_like(image1), H, (w, h)) > 0.999
        valid = cv2.erode(valid.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        assert valid.mean() > 0.25, "too little overlap"
        err = np.abs(warped - image_k)[valid].mean()
        assert err < 2.0, f"{name} H_1_{k}: mean abs diff {err:.2f}"
        # The check has teeth: a wrong homography gives a much larger difference.
        wrong = cv2.warpPerspective(image1, H @ np.array([[1, 0, 6], [0, 1, -6], [0, 0, 1.0]]), (w, h))
        assert np.abs(wrong - image_k)[valid].mean() > 4 * max(err, 1.0)


@pytest.mark.parametrize("name", [f"i_{p}" for p in demo.ILLUMINATION_PHOTOS])
def test_illumination_changes_keep_geometry(hpatches, name):
    image1 = _gray(hpatches / name / "1.png")
    edges1 = cv2.Sobel(image1, cv2.CV_32F, 1, 0, ksize=3)
    for k in range(2, 7):
        image_k = _gray(hpatches / name / f"{k}.png")
        assert not np.array_equal(image_k, image1)
        edges_k = cv2.Sobel(image_k, cv2.CV_32F, 1, 0, ksize=3)
        assert np.corrcoef(edges1.ravel(), edges_k.ravel())[0, 1] > 0.5


def test_demo_images(tmp_path):
    paths = demo.build_demo_images(tmp_path)
    assert 6 <= len(paths) <= 8 and all(p.suffix == ".png" for p in paths)
    for p in paths:
        image = cv2.imread(str(p))
        assert image is not None and max(image.shape[:2]) <= 640 and image.std() > 10
    first = _hashes(tmp_path)
    mtimes = [p.stat().st_mtime_ns for p in paths]
    assert demo.build_demo_images(tmp_path) == paths
    assert [p.stat().st_mtime_ns for p in paths] == mtimes and _hashes(tmp_path) == first
