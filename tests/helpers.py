"""Small helpers shared by the tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import h5py
import numpy as np
import torch


def texture(h: int, w: int, seed: int) -> np.ndarray:
    """A seeded smooth random ``h x w`` uint8 texture (enough structure for every detector)."""
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 2)
    return cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)


def run_with_conf(ext, image: torch.Tensor, **conf) -> dict[str, torch.Tensor]:
    """Run a shared (module-scoped) extractor with some conf values changed for this call."""
    saved = dict(ext.conf)
    ext.conf.update(conf)
    try:
        return ext({"image": image})
    finally:
        ext.conf.clear()
        ext.conf.update(saved)


def check_features_h5(path: Path, names: list[str], dim: int, image_size: list[int], dtype=None) -> dict:
    """Assert hloc's features layout for every image; returns the groups' keypoint attrs by name."""
    attrs = {}
    with h5py.File(path, "r") as fd:
        assert sorted(fd) == sorted(names)
        for name in fd:
            g = fd[name]
            n = g["keypoints"].shape[0]
            assert n > 0 and g["keypoints"].shape == (n, 2) and g["scores"].shape == (n,)
            assert g["descriptors"].shape == (dim, n)
            if dtype is not None:
                assert g["descriptors"].dtype == np.dtype(dtype)
            assert g["image_size"][()].tolist() == image_size
            attrs[name] = dict(g["keypoints"].attrs)
    return attrs


# Strecha cameras: fountain-P11's K, a rotation about an axis, a .camera file writer
STRECHA_K = np.array([[1379.74, 0, 760.345], [0, 1382.08, 503.405], [0, 0, 1]])


def rotation(axis, deg) -> np.ndarray:
    """Rodrigues: the rotation by ``deg`` degrees about ``axis``."""
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    a = np.radians(deg)
    X = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * X + (1 - np.cos(a)) * X @ X


def write_strecha_camera(path, R, C, K=STRECHA_K, size=(1536, 1024)) -> None:
    """A Strecha ``.camera`` file: K, distortion, R, C, image size."""
    rows = [*(" ".join(f"{v:.12g}" for v in row) + " " for row in K), "0 0 0 ",
            *(" ".join(f"{v:.12g}" for v in row) + " " for row in R), " ".join(f"{v:.12g}" for v in C) + " ",
            f"{size[0]} {size[1]} ", ""]
    path.write_text("\n".join(rows))


def only_error_line(capsys) -> str:
    """The one ``error: ...`` line a command printed to stderr (no traceback)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def lock_is_free(run) -> bool:
    """Whether a run folder's lock is free (the kernel-held lock; its file may stay)."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(run / ".lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return False
    lock.release()
    return True


def fake_scene_result() -> dict:
    """What ``benchmark.sfm.benchmark.run_scene`` returns, for tests that stand in for the SfM run."""
    return {"registered_images": 3, "total_images": 3, "num_points3D": 10, "mean_track_length": 2.5,
            "mean_reprojection_error_px": 0.5, "num_verified_pairs": 3, "num_pairs": 3, "matcher": "NN-ratio",
            "timings": {"extract_s": 1.0, "match_s": 1.0, "import_s": None, "verification_s": 1.0,
                        "mapping_s": 1.0, "pairs_per_s": 3.0}}
