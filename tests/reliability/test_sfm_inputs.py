"""Issue #24 (second round), reconstruction and pose benchmark inputs: matches of other
features, GT cameras for another image size or holding NaN, unreadable images, SIGTERM in a
COLMAP stage, two runs in one work folder."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

pycolmap = pytest.importorskip("pycolmap")

from sekd_plugin import reconstruction as R  # noqa: E402
from sekd_plugin.datasets import strecha as S  # noqa: E402
from sekd_plugin.io.h5 import write_features, write_matches  # noqa: E402
from tests.conftest import shared_file  # noqa: E402
from tests.helpers import rotation, texture, write_strecha_camera  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "benchmark_configs/reconstruction/fountain-P11.yaml")


def _error_lines(capsys):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("error:")]


# ------------------------------------------------------------------ 2: matches of other features

def test_matches_beyond_the_keypoints_are_refused_before_colmap(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        cv2.imwrite(str(images / f"{i}.png"), texture(64, 80, i))
    feats, matches = tmp_path / "feats.h5", tmp_path / "matches.h5"
    rng = np.random.default_rng(0)
    for i, n in enumerate((30, 40)):
        write_features(feats, f"{i}.png", {"keypoints": rng.uniform(0, 60, (n, 2)).astype(np.float32),
                                           "scores": np.ones(n, np.float32),
                                           "descriptors": rng.random((8, n)).astype(np.float32),
                                           "image_size": np.array([80, 64])})
    matches0 = np.full(500, -1)
    matches0[:200] = np.arange(200) % 40
    matches0[450] = 39
    write_matches(matches, "0.png", "1.png", matches0, np.ones(500))  # index 450 of image 0 (30 keypoints)
    (tmp_path / "pairs.txt").write_text("0.png 1.png\n")
    # in a child: before the fix COLMAP's verification crashed the interpreter (segfault)
    code = textwrap.dedent(f"""
        import sys
        from sekd_plugin.reconstruction import cli
        sys.exit(cli(["--sfm-dir", {str(tmp_path / 'sfm')!r}, "--images", {str(images)!r}, "--pairs",
                      {str(tmp_path / 'pairs.txt')!r}, "--features", {str(feats)!r}, "--matches", {str(matches)!r}]))
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr
    # the one matches reader (io.checks): matches0 is one entry per keypoint of the first image
    assert str(matches) in errors[0] and "'0.png/1.png'" in errors[0] and "30 keypoints" in errors[0]
    assert not (tmp_path / "sfm" / "database.db").exists()  # nothing reached pycolmap
    # the check itself: one max per column
    with pytest.raises(R.ReconstructionError, match=r"index 40 for b, which has 40 keypoints"):
        R.check_match_indices(np.array([[0, 1], [2, 40]]), ("a", "b"), (3, 40))
    R.check_match_indices(np.array([[0, 1], [2, 39]]), ("a", "b"), (3, 40))
    R.check_match_indices(np.zeros((0, 2), int), ("a", "b"), (0, 0))


# ------------------------------------------------------------------ 4 / 5: GT cameras

def _gt_scene(tmp_path, scale: int = 4, names=("0004.jpg", "0005.jpg", "0006.jpg"), size=None):
    """fountain-P11 images downscaled by ``scale`` (or resized to ``size``) with the GT files of
    the originals (1536 x 1024)."""
    src = shared_file("scenes/fountain-P11")
    root = tmp_path / "scenes" / "tiny"
    (root / "images").mkdir(parents=True)
    (root / "gt").mkdir()
    for name in names:
        image = cv2.imread(str(src / "images" / name))
        dsize = size or (image.shape[1] // scale, image.shape[0] // scale)
        cv2.imwrite(str(root / "images" / name), cv2.resize(image, dsize, interpolation=cv2.INTER_AREA))
        shutil.copy(src / "gt_dense_cameras" / f"{name}.camera", root / "gt")
    config = tmp_path / "tiny.yaml"
    config.write_text(f"scene: tiny\ndata_root: {tmp_path / 'scenes'}\nimages: tiny/images\ngt_cameras: tiny/gt\n")
    return root, str(config)


def test_gt_cameras_for_another_image_size_rescaled_or_refused(tmp_path, caplog):
    root, _ = _gt_scene(tmp_path)
    names = ["0004.jpg", "0005.jpg"]
    original = S.load_gt_cameras(root / "gt", names)
    with caplog.at_level("WARNING"):
        cams = S.load_gt_cameras(root / "gt", names, image_dir=root / "images")
    assert (cams["0004.jpg"].width, cams["0004.jpg"].height) == (384, 256)
    assert np.allclose(cams["0004.jpg"].K, np.diag([0.25, 0.25, 1]) @ original["0004.jpg"].K)
    assert np.allclose(cams["0004.jpg"].R, original["0004.jpg"].R)
    said = [r.getMessage() for r in caplog.records if "rescaled" in r.getMessage()]
    assert len(said) == 1 and "1536x1024" in said[0] and "384x256" in said[0]  # once, not per image
    # the reconstruction's fixed intrinsics follow the same rule
    assert np.allclose(R.scaled_K(original["0004.jpg"].K, (1536, 1024), (384, 256)), cams["0004.jpg"].K)
    cv2.imwrite(str(root / "images" / "0005.jpg"), np.zeros((256, 300, 3), np.uint8))  # another aspect ratio
    with pytest.raises(S.GroundTruthError, match=r"0005.jpg.camera.*1536x1024.*300x256"):
        S.load_gt_cameras(root / "gt", names, image_dir=root / "images")
    with pytest.raises(S.GroundTruthError, match="aspect"):
        R.scaled_K(original["0004.jpg"].K, (1536, 1024), (300, 256))


@pytest.mark.integration
def test_pose_benchmark_with_gt_for_the_original_size(tmp_path, capsys, caplog):
    """Before: AUC 0.0 and a median error of 53 deg, exit 0, no word. After: the K of the GT
    files rescaled to the downscaled images (said once), and an AUC like the full-size run's."""
    from sekd_plugin.benchmark.__main__ import main as bench_main

    root, config = _gt_scene(tmp_path)
    out = tmp_path / "pose"
    assert bench_main(["pose", "--config", config, "--methods", "sift", "--output", str(out), "device=cpu"]) == 0
    said = [r.getMessage() for r in caplog.records if "rescaled" in r.getMessage()]
    assert len(said) == 1 and "1536x1024" in said[0]
    summary = json.loads((out / "results.json").read_text())["methods"]["sift"]["scenes"]["tiny"]["summary"]
    assert summary["num_estimated"] == 3 and summary["median_pose_error_deg"] < 3 and summary["auc@20"] > 0.6
    # another aspect ratio: refused, naming the file
    cv2.imwrite(str(root / "images" / "0006.jpg"), np.zeros((256, 300, 3), np.uint8))
    assert bench_main(["pose", "--config", config, "--methods", "sift", "--output", str(tmp_path / "p2")]) == 2
    (line,) = _error_lines(capsys)
    assert "0006.jpg.camera" in line and "300x256" in line


@pytest.mark.parametrize("field,row", [("K", 0), ("R", 5), ("t", 7)])
def test_gt_camera_with_nan_is_refused_naming_file_and_field(tmp_path, field, row):
    path = tmp_path / "0001.jpg.camera"
    write_strecha_camera(path, rotation([0, 1, 0], 10), np.array([1.0, 2.0, 3.0]))
    lines = path.read_text().splitlines()
    values = lines[row].split()
    values[1] = "nan"
    lines[row] = " ".join(values)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(S.GroundTruthError) as error:
        S.read_strecha_camera(path)
    assert str(path) in str(error.value) and str(error.value).split(": ")[1].startswith(field)
    assert "NaN" in str(error.value)


# ------------------------------------------------------------------ 11: SIGTERM in a COLMAP stage

@pytest.mark.parametrize("stage", ["extract_features", "incremental_mapping"])
def test_sigterm_in_a_colmap_stage_exits_143_with_the_hint(tmp_path, stage):
    """pycolmap is imported inside the command (as the benchmarks do), which lets glog install
    its failure handler; a SIGTERM inside the stage then dumped a stack trace and died by the
    signal (-15). Now: the resume hint and 143, as for SIGINT."""
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        cv2.imwrite(str(images / f"{i}.png"), texture(64, 80, i))
    code = textwrap.dedent(f"""
        import os, signal, sys
        from pathlib import Path
        from sekd_plugin.common import run_cli

        def main():
            import pycolmap  # glog's handler replaces the CLI's here
            from sekd_plugin.benchmark.sfm import colmap
            real = getattr(pycolmap, {stage!r})
            def terminated_inside(*args, **kwargs):
                os.kill(os.getpid(), signal.SIGTERM)
                return real(*args, **kwargs)
            setattr(pycolmap, {stage!r}, terminated_inside)
            colmap.reconstruct(Path({str(tmp_path / 'sfm')!r}), Path({str(images)!r}), ["0.png", "1.png"],
                               num_threads=1)
            return 0

        sys.exit(run_cli(main, resume_hint="run the same command again to resume"))
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 143, proc.stderr[-1500:]
    assert "terminated: run the same command again to resume" in proc.stderr
    assert "Traceback" not in proc.stderr and "*** SIGTERM" not in proc.stderr


# ------------------------------------------------------------------ 12: two runs into one --work

def _hold(folder: Path, seconds: float) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from sekd_plugin.common.locks import folder_lock
        with folder_lock({str(folder)!r}):
            print("locked", flush=True)
            time.sleep({seconds})
    """)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert holder.stdout.readline().strip() == "locked"
    return holder


@pytest.mark.integration
@pytest.mark.parametrize("command", ["pose", "reconstruction"])
def test_second_run_into_one_work_folder_waits_or_is_refused_by_name(tmp_path, capsys, monkeypatch, caplog,
                                                                     command):
    """Before: both runs went into work/<scene>/<method> at once (colmap-sift: SQLite disk I/O
    error, database.db-wal left behind) and both exited 0."""
    from sekd_plugin.benchmark.__main__ import main as bench_main

    _, config = _gt_scene(tmp_path)
    work = tmp_path / "work"
    args = [command, "--config", config, "--methods", "sift", "--work", str(work), "device=cpu", "num_threads=1"]
    holder = _hold(work / "tiny" / "sift", 60)
    try:
        monkeypatch.setenv("SEKD_PLUGIN_LOCK_TIMEOUT", "1")
        assert bench_main([*args, "--output", str(tmp_path / "a")]) == 2
        (line,) = _error_lines(capsys)
        assert "tiny/sift" in line and str(work / "tiny" / "sift") in line and f"process {holder.pid}" in line
    finally:
        holder.kill()
        holder.wait()
    # a holder that finishes: the second run waits for it (said once), then goes on
    holder = _hold(work / "tiny" / "sift", 1.5)
    monkeypatch.setenv("SEKD_PLUGIN_LOCK_TIMEOUT", "120")
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert bench_main([*args, "--output", str(tmp_path / "b")]) == 0
    holder.wait()
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("waiting for")]
    assert len(said) == 1 and f"process {holder.pid}" in said[0]
    results = json.loads((tmp_path / "b" / "results.json").read_text())
    assert results["failed"] == {} and "tiny" in results["methods"]["sift"]["scenes"]


# ------------------------------------------------------------------ 7: an unreadable image

@pytest.mark.integration
@pytest.mark.parametrize("command", ["pose", "reconstruction"])
def test_unreadable_image_is_recorded_per_method(tmp_path, command):
    """Before: its pairs counted as misses, colmap-sift said nothing, results.json had
    ``failed: {}`` and results.md never named the image."""
    from sekd_plugin.benchmark.__main__ import main as bench_main

    root, config = _gt_scene(tmp_path)
    (root / "images" / "0003.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    shutil.copy(shared_file("scenes/fountain-P11/gt_dense_cameras/0003.jpg.camera"), root / "gt")
    out = tmp_path / "out"
    rc = bench_main([command, "--config", config, "--methods", "colmap-sift,sift", "--output", str(out),
                     "device=cpu", "num_threads=1", "intrinsics=gt" if command == "reconstruction" else "seed=0"])
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    md = (out / "results.md").read_text()
    for method in ("colmap-sift", "sift"):
        r = results["methods"][method]["scenes"]["tiny"]
        assert list(r["failed_images"]) == ["0003.jpg"], method
        assert "0003.jpg" in r["failed_images"]["0003.jpg"]  # the reason names the file
        assert sorted(map(tuple, r["removed_pairs"])) == [("0003.jpg", n) for n in ("0004.jpg", "0005.jpg", "0006.jpg")]
        assert f"- tiny/{method}: 1 image(s) failed (0003.jpg: " in md and "3 pair(s)" in md
    if command == "pose":
        assert results["methods"]["sift"]["scenes"]["tiny"]["summary"]["num_pairs"] == 6  # misses, still counted
