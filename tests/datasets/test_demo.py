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


# --------------------------------------------------------------------------- the 3D scene

@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> tuple[Path, list]:
    """The built scene folder and, rendered separately, each view's (image, depth)."""
    root = tmp_path_factory.mktemp("demo") / "scene"
    demo.build_demo_scene(root)
    return root, demo.render_demo_scene()


def _rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_scene_layout_deterministic_and_cached(scene):
    from sekd_plugin.datasets.strecha import load_gt_cameras

    root, rendered = scene
    names = [f"{k:04d}.png" for k in range(demo.SCENE_VIEWS)]
    assert sorted(p.name for p in root.glob("*.png")) == names
    assert not [p for p in root.rglob(".*") if p.name != "demo_scene.json"]  # no temp files
    # A second, independent render gives the very pixels that were written.
    for name, (image, depth) in zip(names, rendered):
        assert np.array_equal(_rgb(root / name), image) and image.shape == (480, 640, 3)
        assert image.std() > 30 and np.isfinite(depth).mean() > 0.8  # textured, mostly not sky
    cams = load_gt_cameras(root / demo.SCENE_CAMERAS, names, image_dir=root)
    assert all(np.allclose(c.K, [[768, 0, 320], [0, 768, 240], [0, 0, 1]]) for c in cams.values())

    first = _hashes(root)
    mtimes = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    assert demo.build_demo_scene(root) == [root / n for n in names]
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == mtimes  # cache hit: nothing rewritten
    (root / "0003.png").write_bytes(b"broken")
    (root / demo.SCENE_CAMERAS / "0005.png.camera").unlink()
    demo.build_demo_scene(root)
    assert _hashes(root) == first


def test_scene_views_overlap_with_parallax(scene):
    """Neighbouring views see the same surfaces: view k's pixels, lifted to 3D with its depth
    and GT camera, land in view k+1 where its depth agrees and its colour matches; the camera
    axes are 20 degrees apart. A 10 cm error in a camera centre (~14 px) breaks the colour match."""
    from sekd_plugin.datasets.strecha import read_strecha_camera

    root, rendered = scene
    cams = [read_strecha_camera(root / demo.SCENE_CAMERAS / f"{k:04d}.png.camera") for k in range(demo.SCENE_VIEWS)]
    ys, xs = np.mgrid[2:480:4, 2:640:4]

    def transfer(k, C1):
        c0, c1 = cams[k], cams[k + 1]
        z = rendered[k][1][ys, xs].astype(np.float64)
        ok = np.isfinite(z)
        pix = np.stack([xs[ok] + 0.5, ys[ok] + 0.5, np.ones(ok.sum())], axis=1)  # COLMAP pixel convention
        X = (pix @ np.linalg.inv(c0.K).T) * z[ok, None] @ c0.R.T + c0.C
        x1 = (X - C1) @ c1.R @ c1.K.T
        z1, uv = x1[:, 2], x1[:, :2] / x1[:, 2:] - 0.5
        inside = (uv[:, 0] >= 0) & (uv[:, 0] <= 639) & (uv[:, 1] >= 0) & (uv[:, 1] <= 479) & (z1 > 0)
        u, v = uv[inside].T
        seen = np.abs(rendered[k + 1][1][np.round(v).astype(int), np.round(u).astype(int)] - z1[inside]) \
            < 0.02 * z1[inside]
        g0 = _gray(root / f"{k:04d}.png")[ys, xs][ok][inside][seen]
        g1 = cv2.remap(_gray(root / f"{k + 1:04d}.png"), u[seen].astype(np.float32)[None],
                       v[seen].astype(np.float32)[None], cv2.INTER_LINEAR)[0]
        return seen.sum() / ok.size, np.median(np.abs(g0 - g1))

    for k in range(demo.SCENE_VIEWS - 1):
        angle = np.degrees(np.arccos(np.clip(cams[k].R[:, 2] @ cams[k + 1].R[:, 2], -1, 1)))
        assert 15 <= angle <= 40
        covisible, diff = transfer(k, cams[k + 1].C)
        assert covisible > 0.4, f"views {k}, {k + 1}: only {covisible:.0%} covisible"
        assert diff < 6, f"views {k}, {k + 1}: median grey difference {diff:.1f}"
        _, wrong = transfer(k, cams[k + 1].C + np.array([0.1, 0.0, 0.0]))
        assert wrong > 4 * max(diff, 1), f"views {k}, {k + 1}: a wrong camera matches too ({wrong:.1f})"
