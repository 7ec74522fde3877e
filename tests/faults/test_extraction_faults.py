"""Fault suite for extraction, matching and the HPatches benchmark: SIGKILL at random points
(seeded) and damaged files. After every kill the outputs open, what was finished is neither
lost nor recomputed, and the end result equals an uninterrupted run; a damaged file gives one
line naming it and is left untouched.

Default run: 2 kills per command. ``-m slow``: 10 kills each."""

from __future__ import annotations

import hashlib
import json
import random

import cv2
import numpy as np
import pytest

from sekd_plugin.io.h5 import list_names, read_features

from .conftest import cli_command, finished_files, kill_during_work, run_cli
from tests.helpers import texture  # noqa: E402

pytestmark = [pytest.mark.faults, pytest.mark.integration]


_texture = texture


@pytest.fixture
def photos(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    for i in range(24):
        cv2.imwrite(str(root / f"{i:02d}.png"), _texture(240, 320, i))
    return root


def _features(path):
    return {n: {k: np.asarray(v) for k, v in read_features(path, n).items()} for n in list_names(path)}


def _finished(path):
    """Every finished image: in the output or in a finished part (each opens)."""
    return {n: v for p in finished_files(path) for n, v in _features(p).items()}


def _same(a, b):
    return a.keys() == b.keys() and all(
        a[n].keys() == b[n].keys() and all(np.array_equal(a[n][k], b[n][k]) for k in a[n]) for n in a)


def _kill_extraction(photos, tmp_path, kills, seed):
    rng = random.Random(seed)
    out = tmp_path / "killed.h5"
    cmd = cli_command("sekd_plugin.extract_features", "--conf", "sekd-selftrained", "--images", photos,
                      "--output", out, "--quiet", "--device", "cpu")
    done: dict = {}
    killed = 0
    while killed < kills:
        if not kill_during_work(cmd, tmp_path, out.with_name(out.name + ".parts"), rng):
            break  # finished before the kill: nothing left to interrupt
        killed += 1
        now = _finished(out)  # opens after every kill
        assert all(_same({n: done[n]}, {n: now[n]}) for n in done), "a finished image changed or was lost"
        done = now
    final = run_cli(cmd, tmp_path)
    assert final.returncode == 0, final.stderr
    return killed, _features(out), out


@pytest.mark.parametrize("kills", [2, pytest.param(10, marks=pytest.mark.slow)])
def test_extraction_sigkill_resumes_to_the_uninterrupted_result(photos, tmp_path, kills):
    killed, resumed, _ = _kill_extraction(photos, tmp_path, kills, seed=kills)
    assert killed >= 1
    ref = run_cli(cli_command("sekd_plugin.extract_features", "--conf", "sekd-selftrained", "--images", photos,
                              "--output", tmp_path / "ref.h5", "--quiet", "--device", "cpu"), tmp_path)
    assert ref.returncode == 0, ref.stderr
    assert _same(resumed, _features(tmp_path / "ref.h5"))


def _toy_hpatches(root):
    for name, warp in (("v_toy", True), ("i_toy", False)):
        d = root / name
        d.mkdir(parents=True)
        img = _texture(180, 240, 7)
        cv2.imwrite(str(d / "1.png"), img)
        for k in range(2, 7):
            H = np.array([[1, 0.02 * k, 3.0 * k], [0, 1, 2.0 * k], [0, 0, 1]]) if warp else np.eye(3)
            out = cv2.warpPerspective(img, H, (240, 180)) if warp else (img * (1 - 0.05 * k)).astype(np.uint8)
            cv2.imwrite(str(d / f"{k}.png"), out)
            np.savetxt(d / f"H_1_{k}", H)
    return root


def _metrics(results_json):
    data = json.loads(results_json.read_text())
    rows = {m: sorted((r["pair"], json.dumps(r, sort_keys=True)) for r in data["rows"] if r["method"] == m) for m in data["methods"]}
    return {m: {**{k: r[k] for k in ("i", "v", "all")}, "pairs": rows[m]} for m, r in data["methods"].items()}


@pytest.mark.parametrize("kills", [2, pytest.param(10, marks=pytest.mark.slow)])
def test_hpatches_benchmark_sigkill_resumes_to_the_uninterrupted_result(tmp_path, kills):
    data = _toy_hpatches(tmp_path / "hp")
    rng = random.Random(100 + kills)

    def cmd(out):
        return cli_command("sekd_plugin.benchmark", "hpatches", "--dataset", data, "--methods",
                           "sekd-selftrained,sift", "--output", out, "--device", "cpu")

    out = tmp_path / "killed"
    for _ in range(kills):
        if not kill_during_work(cmd(out), tmp_path, out, rng, max_delay=3.0):
            break
        for h5 in (out / "features").rglob("*.h5") if (out / "features").exists() else []:
            list_names(h5)  # every features file opens after the kill
    assert run_cli(cmd(out), tmp_path).returncode == 0
    ref = tmp_path / "ref"
    assert run_cli(cmd(ref), tmp_path).returncode == 0
    assert _metrics(out / "results.json") == _metrics(ref / "results.json")


# ------------------------------------------------------------------ damaged files

def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _damage(path, how, rng):
    data = bytearray(path.read_bytes())
    if how == "truncate":
        data = data[: len(data) // 2]
    else:  # flip bytes across the file's metadata-heavy start
        for offset in rng.sample(range(0, min(len(data), 4096)), 64):
            data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["truncate", "bitflip"])
def test_damaged_features_and_matches_files(tmp_path, how, capsys):
    from sekd_plugin import extract_features, match_features, pairs

    photos = tmp_path / "few"
    photos.mkdir()
    for i in range(4):
        cv2.imwrite(str(photos / f"{i}.png"), _texture(120, 160, i))
    rng = random.Random(0)
    feats, matches, pairs_txt = tmp_path / "f.h5", tmp_path / "m.h5", tmp_path / "pairs.txt"
    extract = ["--conf", "sift", "--images", str(photos), "--output", str(feats), "--quiet"]
    assert extract_features.cli(extract) == 0
    assert pairs.cli(["--output", str(pairs_txt), "--features", str(feats)]) == 0
    match = ["--pairs", str(pairs_txt), "--features", str(feats), "--output", str(matches)]
    assert match_features.cli(match) == 0
    fresh_match = ["--pairs", str(pairs_txt), "--features", str(feats), "--output", str(tmp_path / "m2.h5")]

    for damaged, cli, argv in ((matches, match_features.cli, match), (feats, match_features.cli, fresh_match),
                               (feats, extract_features.cli, extract + ["--overwrite"])):
        original = damaged.read_bytes()
        _damage(damaged, how, rng)
        before = _sha(damaged)
        capsys.readouterr()
        assert cli(argv) == 2
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and str(damaged) in lines[0] and "Traceback" not in err, err
        assert _sha(damaged) == before  # left untouched
        damaged.write_bytes(original)
