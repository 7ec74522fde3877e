"""Issue #34, item 1 (continued): outputs in the way (D7), scene configs (D10), pairs (D11, D12),
numeric options and query intrinsics (D13), hand-made features (D14). Each test runs the user's
command and asserts one ``error:`` line + exit 2, or the correct result."""

from __future__ import annotations

import logging
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, TiffImagePlugin

from sekd_plugin import extract_features as EF, localize_sfm as L, match_features as MF, pairs as P
from sekd_plugin import triangulation as T, visualize as V
from sekd_plugin.benchmark import __main__ as bench
from sekd_plugin.io.h5 import write_features, write_matches
from tests.helpers import only_error_line
from tests.reliability.test_issue34_inputs import NAMES, H, W, _exit, scene  # noqa: F401 (the fixture)

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "benchmark_configs/reconstruction/fountain-P11.yaml"


# ------------------------------------------------------------------ D7: --output naming an existing file


@pytest.mark.parametrize("command", ["benchmark hpatches", "benchmark pose", "benchmark speed",
                                     "extract_features --output", "extract_features --export-dir", "train"])
def test_d7_output_names_an_existing_file(scene, tmp_path, command, capsys):
    """Before: a FileExistsError traceback (exit 1). Now: one line naming the file, exit 2, the file kept."""
    from sekd_plugin.train.command import cli as train_cli

    blocker = tmp_path / "results"
    blocker.write_text("not a folder\n")
    images = str(scene["images"])
    calls = {
        "benchmark hpatches": lambda: bench.main(["hpatches", "--output", str(blocker)]),
        "benchmark pose": lambda: bench.main(["pose", "--config", str(CONFIG), "--output", str(blocker)]),
        "benchmark speed": lambda: bench.main(["speed", "--methods", "sift", "--runs", "1", "--output", str(blocker)]),
        "extract_features --output": lambda: EF.cli(["--conf", "sift", "--images", images, "--output",
                                                     str(blocker / "feats.h5")]),
        "extract_features --export-dir": lambda: EF.cli(["--conf", "sift", "--images", images, "--export-dir",
                                                         str(blocker)]),
        "train": lambda: train_cli(["--images", images, "--output", str(blocker)]),
    }
    assert _exit(calls[command]) == 2
    line = only_error_line(capsys)
    assert f"{blocker}: exists and is not a folder" in line, line
    assert blocker.read_text() == "not a folder\n"


# ------------------------------------------------------------------ D10: scene YAML interpolation


@pytest.mark.parametrize("text, override, expected", [
    ("scene: ${oc.env:SEKD_TEST_MISSING_VARIABLE}\n", None, "calls a resolver"),
    ("scene: ${oc.env:PATH}\n", None, "calls a resolver"),
    ("scene: ${nope.key}\n", None, "Interpolation key 'nope.key' not found"),
    ("scene: ${scene}\n", None, "Recursive interpolation"),
    ("verification: " + "{a: " * 10000 + "1" + "}" * 10000 + "\n", None, "nested"),
    ("", "scene=${oc.env:PATH}", "calls a resolver"),
    ("", "scene=${nope}", "Interpolation key 'nope' not found"),
    ("", "verification=" + "{a: " * 10000 + "1" + "}" * 10000, "nested"),
], ids=["env-missing", "env-PATH", "missing-key", "self-reference", "10k-deep", "override-env", "override-missing",
        "override-10k-deep"])
def test_d10_scene_yaml_interpolation(tmp_path, text, override, expected, capsys):
    """Before: tracebacks, and ${oc.env:PATH} copied into the results table."""
    config = tmp_path / "scene.yaml"
    base = [line for line in CONFIG.read_text().splitlines() if not line.startswith("scene:")]
    config.write_text("\n".join(base) + "\n" + text)
    out = tmp_path / "out"
    argv = ["reconstruction", "--config", str(config), "--methods", "sift", "--output", str(out)]
    assert _exit(lambda: bench.main(argv + ([override] if override else []))) == 2
    line = only_error_line(capsys)
    assert expected in line and (str(config) in line or "the overrides" in line), line[:300]
    assert len(line) < 600
    written = "".join(p.read_text(errors="replace") for p in out.rglob("*") if p.is_file()) if out.exists() else ""
    assert "/bin" not in written  # no environment value in any result


# ------------------------------------------------------------------ D11: a 0/0 GPS rational


def _gps_jpeg(path: Path, lat, lon) -> None:
    exif = Image.Exif()
    exif[0x8825] = {1: "N", 2: lat, 3: "E", 4: lon}
    Image.new("RGB", (32, 24), (90, 90, 90)).save(path, exif=exif.tobytes())


def test_d11_gps_zero_over_zero(tmp_path, caplog):
    """Before: 0 pairs for all images, exit 0, no warning. Now: that image skipped with a warning."""
    images = tmp_path / "images"
    images.mkdir()
    for i in range(4):
        _gps_jpeg(images / f"g{i}.jpg", (47.0, 22.0, 10.0 + i), (8.0, 32.0, 30.0))
    zero = TiffImagePlugin.IFDRational(0, 0)
    _gps_jpeg(images / "zero.jpg", (zero, zero, zero), (8.0, 32.0, 30.0))
    with caplog.at_level(logging.WARNING):
        assert P.cli(["--output", str(tmp_path / "p.txt"), "--images", str(images), "--gps", "--num", "2"]) == 0
    pairs = P.read_pairs(tmp_path / "p.txt")
    assert pairs and not any("zero.jpg" in p for p in pairs)
    assert {n for p in pairs for n in p} == {f"g{i}.jpg" for i in range(4)}
    assert [r for r in caplog.records if "zero.jpg" in r.message and r.levelno == logging.WARNING]


# ------------------------------------------------------------------ D12: --window capped


@pytest.mark.parametrize("quadratic", [False, True])
def test_d12_window_capped(tmp_path, quadratic):
    """Before: --window 100000000 --loop on 5 images took 15 GB in 35 s. Now: the 10 pairs at once."""
    images = tmp_path / "images"
    images.mkdir()
    for i in range(5):
        Image.new("RGB", (8, 8)).save(images / f"{i}.png")
    tracemalloc.start()
    start = time.perf_counter()
    argv = ["--output", str(tmp_path / "p.txt"), "--images", str(images), "--window", "100000000", "--loop"]
    assert P.cli(argv + (["--quadratic"] if quadratic else [])) == 0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert time.perf_counter() - start < 5 and peak < 20 * 2**20
    assert len(P.read_pairs(tmp_path / "p.txt")) == 10  # every pair of 5 images once


# ------------------------------------------------------------------ D13: numeric options, query intrinsics


@pytest.mark.parametrize("argv, option", [
    (["pairs", "--max-angle", "-5"], "--max-angle"),
    (["pairs", "--max-angle", "nan"], "--max-angle"),
    (["visualize", "--threshold", "-1"], "--threshold"),
    (["visualize", "--threshold", "nan"], "--threshold"),
    (["visualize", "--max-pairs", "-1"], "--max-pairs"),
    (["triangulation", "--min-match-score", "nan"], "--min-match-score"),
    (["triangulation", "--max-error", "inf"], "--max-error"),
    (["localize_sfm", "--ransac-thresh", "nan"], "--ransac-thresh"),
])
def test_d13_numeric_options(scene, tmp_path, argv, option, capsys):
    """Before: accepted silently. Now: argparse's one line naming the option and the value, exit 2."""
    s = {k: str(v) for k, v in scene.items()}
    base = {
        "pairs": (P.cli, ["--output", str(tmp_path / "p.txt"), "--poses", s["gt"]]),
        "visualize": (V.cli, ["--images", s["images"], "--output", str(tmp_path / "png"), "--pairs", s["pairs"],
                              "--features", s["features"], "--matches", s["matches"]]),
        "triangulation": (T.cli, ["--sfm-dir", str(tmp_path / "t"), "--reference-model", s["model"], "--images",
                                  s["images"], "--pairs", s["pairs"], "--features", s["features"], "--matches",
                                  s["matches"]]),
        "localize_sfm": (L.cli, ["--reference-sfm", s["model"], "--queries", s["pairs"], "--features", s["features"],
                                 "--matches", s["matches"], "--results", str(tmp_path / "r.txt")]),
    }
    call, args = base[argv[0]]
    assert _exit(lambda: call(args + argv[1:])) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert "Traceback" not in err and len(lines) == 1 and option in lines[0] and argv[-1] in lines[0], err
    assert not (tmp_path / "t").exists() and not (tmp_path / "png").exists()


@pytest.mark.parametrize("line, expected", [
    ("a.png PINHOLE 384 256 nan 345 192 128", "NaN or Inf"),
    ("a.png PINHOLE 384 256 345 192", "takes 4 parameters, got 2"),
    ("a.png PINHOLE 384 256 -345 345 192 128", "focal length must be positive"),
    ("a.png NO_SUCH_MODEL 384 256 345 192 128", "unknown camera model 'NO_SUCH_MODEL'"),
])
def test_d13_query_intrinsics(scene, tmp_path, line, expected, capsys):
    """Before: NaN focal / too few parameters accepted, an unknown model a RuntimeError traceback."""
    queries = tmp_path / "queries.txt"
    queries.write_text(line + "\n")
    code = L.cli(["--reference-sfm", str(scene["model"]), "--queries", str(queries), "--features",
                  str(scene["features"]), "--matches", str(scene["matches"]), "--results", str(tmp_path / "r.txt")])
    assert code == 2
    error = only_error_line(capsys)
    assert f"{queries}:1" in error and expected in error, error
    assert not (tmp_path / "r.txt").exists()


def test_d13_unknown_camera_model(scene, tmp_path, capsys):
    """Before: a RuntimeError traceback from pycolmap. Now: one line naming the model, exit 2."""
    from sekd_plugin import reconstruction as R

    assert R.cli(["--sfm-dir", str(tmp_path / "sfm"), "--images", str(scene["images"]), "--pairs", str(scene["pairs"]),
                  "--features", str(scene["features"]), "--matches", str(scene["matches"]),
                  "--camera-model", "NO_SUCH_MODEL"]) == 2
    assert "unknown camera model 'NO_SUCH_MODEL'" in only_error_line(capsys)
    assert not (tmp_path / "sfm").exists()
    config = tmp_path / "scene.yaml"
    config.write_text(CONFIG.read_text())
    argv = ["reconstruction", "--config", str(config), "--methods", "sift", "--output", str(tmp_path / "out"),
            "camera_model=NO_SUCH_MODEL"]
    assert _exit(lambda: bench.main(argv)) == 2
    assert "camera_model" in only_error_line(capsys)


# ------------------------------------------------------------------ D14: hand-made features


def _hand_made(path: Path, bad: dict) -> Path:
    rng = np.random.default_rng(0)
    for name in NAMES:
        arrays = {"keypoints": rng.uniform(0, [W - 1, H - 1], (30, 2)).astype(np.float32),
                  "scores": np.ones(30, np.float32), "descriptors": rng.normal(size=(16, 30)).astype(np.float32),
                  "image_size": np.array([W, H])}
        write_features(path, name, {**arrays, **bad} if name == "c.png" else arrays)
    return path


BAD_FEATURES = {
    "scalar keypoints": ({"keypoints": np.float32(3.0)}, "keypoints have shape ()"),
    "string keypoints": ({"keypoints": np.bytes_("hello")}, "expected numbers"),
    "3-column keypoints": ({"keypoints": np.ones((30, 3), np.float32)}, "expected N x 2"),
    "empty keypoints": ({"keypoints": np.zeros(0, np.float32)}, "expected N x 2"),
    "NaN keypoints": ({"keypoints": np.full((30, 2), np.nan, np.float32)}, "NaN or Inf"),
    "keypoints outside the image": ({"keypoints": np.full((30, 2), 5000, np.float32)}, "outside the 384x256 image"),
    "Inf descriptors": ({"descriptors": np.full((16, 30), np.inf, np.float32)}, "descriptors of 30 keypoint(s)"),
}


@pytest.mark.parametrize("kind", list(BAD_FEATURES))
def test_d14_hand_made_features(scene, tmp_path, kind, capsys):
    """Before: tracebacks; NaN keypoints passed into COLMAP; Inf descriptors gave 0 matches silently.
    Now: match_features and triangulation each say one line naming the file and the image."""
    bad, expected = BAD_FEATURES[kind]
    feats = _hand_made(tmp_path / "feats.h5", bad)
    code = MF.cli(["--pairs", str(scene["pairs"]), "--features", str(feats), "--output", str(tmp_path / "m.h5")])
    assert code == 2
    line = only_error_line(capsys)
    assert f"{feats}: image 'c.png'" in line and expected in line, line
    if kind == "Inf descriptors":
        return
    matches = tmp_path / "hand-matches.h5"  # hand-made too (no provenance): the keypoints are what fails
    for name0, name1 in P.read_pairs(scene["pairs"]):
        write_matches(matches, name0, name1, np.arange(30), np.ones(30))
    code = T.cli(["--sfm-dir", str(tmp_path / "t"), "--reference-model", str(scene["model"]), "--images",
                  str(scene["images"]), "--pairs", str(scene["pairs"]), "--features", str(feats), "--matches",
                  str(matches), "--verification", "none"])
    assert code == 2
    line = only_error_line(capsys)
    assert f"{feats}: image 'c.png'" in line and expected in line, line
