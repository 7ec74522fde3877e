"""Fault injection for the trainer: SIGKILL at random (seeded) points, damaged label/state files.

After every kill the run is restarted with ``--resume auto``; each time every output file must
open, the run must continue exactly where its last saved point was (nothing finished recomputed
or lost), and the final model must equal an uninterrupted run's. Damaged files must give a
one-line error naming the file and be left untouched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from sekd_plugin.train import labels, state as train_state, steps
from sekd_plugin.train.command import cli
from tests.helpers import lock_is_free

ROOT = Path(__file__).resolve().parents[2]

SETTINGS = [
    "schedule.rounds=2", "schedule.epochs_descriptor=2", "schedule.epochs_detector=2", "data.crop_size=32",
    "data.val_images=2", "data.sub_set=1", "detect.num_refs=2", "detect.ref_border=4", "reliability.num_refs=2",
    "reliability.border=4", "reliability.neighbours=target", "optim.batch_size=3", "val.height=48", "val.width=64",
    "val.pairs_per_group=1", "val.min_keypoints=0", "val.groups=[mild,zoom]", "device=cpu",
]


def _image(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((64, 64), int(rng.integers(40, 200)), np.uint8)
    for _ in range(8):
        x0, y0, x1, y1 = (int(v) for v in rng.integers(0, 64, 4))
        cv2.rectangle(img, (x0, y0), (x1, y1), int(rng.integers(0, 256)), -1)
    return img


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("fault_images")
    for i in range(7):
        cv2.imwrite(str(d / f"i{i}.png"), _image(i))
    return d


@pytest.fixture(scope="module")
def reference(images, tmp_path_factory) -> Path:
    """The uninterrupted run, in a subprocess with the same thread settings as the killed ones."""
    out = tmp_path_factory.mktemp("fault_ref") / "run"
    out.mkdir()
    assert _killed_run(images, out, kills=0, seed=0)[-1]["rc"] == 0
    return out


def _check_outputs_open(run: Path) -> dict | None:
    """Every finished output file opens; returns the saved progress (None before the first save)."""
    state = None
    if (run / "state.pth").exists():
        state = train_state.load_state(run / "state.pth")["progress"]
        torch.load(run / "model.pth", weights_only=True)
    if (run / "metrics.json").exists():
        json.loads((run / "metrics.json").read_text())
    for h5 in (run / "labels").glob("*.h5"):
        labels.read_labels_with_sizes(h5)
    if (run / "best.pth").exists():
        torch.load(run / "best.pth", weights_only=True)
    return state


def _killed_run(images: Path, run: Path, kills: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "sekd_plugin.train", "--images", str(images), "--output", str(run),
           "--no-progress", "--resume", "auto", *SETTINGS]
    seen = []
    for k in range(kills + 1):
        proc = subprocess.Popen(cmd, cwd=run.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if k < kills:
            # kill after a random number of state saves plus a random delay (mid-step)
            saves, target = 0, int(rng.integers(1, 4))
            last = (run / "state.pth").stat().st_mtime_ns if (run / "state.pth").exists() else 0
            deadline = time.time() + 300
            while proc.poll() is None and saves < target and time.time() < deadline:
                time.sleep(0.05)
                m = (run / "state.pth").stat().st_mtime_ns if (run / "state.pth").exists() else 0
                if m != last:
                    saves, last = saves + 1, m
            time.sleep(float(rng.uniform(0.0, 1.5)))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=600)
        progress = _check_outputs_open(run)
        resumed = re.search(r"resuming at round (\d+), step (\w+), epoch (\d+)", err)
        seen.append({"rc": proc.returncode, "progress": progress, "resumed": resumed.groups() if resumed else None, "err": err})
        if proc.returncode == 0:
            break
    return seen


def _run_faults(images, reference, tmp_path, kills, seed):
    run = tmp_path / "killed"
    run.mkdir()
    seen = _killed_run(images, run, kills, seed)
    assert seen[-1]["rc"] == 0, seen[-1]["err"][-3000:]
    for before, after in zip(seen, seen[1:]):
        p = before["progress"]
        if p is not None and after["resumed"] is not None:  # continues exactly at the saved point
            assert after["resumed"] == (str(p["round"]), p["step"], str(p["epoch"])), (before, after["resumed"])
    a = torch.load(reference / "model.pth", weights_only=True)["state_dict"]
    b = torch.load(run / "model.pth", weights_only=True)["state_dict"]
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-5), key
    ma, mb = (json.loads((r / "metrics.json").read_text()) for r in (reference, run))
    assert mb["status"] == "complete"
    # nothing recomputed or lost: each training step has exactly its epochs once
    assert [len(r["steps"]["descriptor"]["epochs"]) for r in mb["rounds"]] == [2, 2]
    assert [len(r["steps"]["detector"]["epochs"]) for r in mb["rounds"]] == [2, 2]
    assert ma["validation"][-1]["mma@3"] == pytest.approx(mb["validation"][-1]["mma@3"], abs=1e-6)
    assert lock_is_free(run)


@pytest.mark.faults
@pytest.mark.integration
def test_sigkill_twice_then_resume_equals_uninterrupted(images, reference, tmp_path):
    _run_faults(images, reference, tmp_path, kills=2, seed=17)


@pytest.mark.faults
@pytest.mark.slow
def test_sigkill_ten_times_then_resume_equals_uninterrupted(images, reference, tmp_path):
    _run_faults(images, reference, tmp_path, kills=10, seed=1718)


@pytest.fixture(scope="module")
def interrupted_run(images, tmp_path_factory) -> Path:
    """A run interrupted at round 0's detector step (its resume needs the step-3 label file)."""
    real = steps.train_epoch

    def stop(kind, *a, **k):
        if kind == "detector":
            raise KeyboardInterrupt
        return real(kind, *a, **k)

    out = tmp_path_factory.mktemp("fault_mid") / "mid"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(steps, "train_epoch", stop)
        assert cli(["--images", str(images), "--output", str(out), "--no-progress", *SETTINGS]) == 130
    assert train_state.load_state(out / "state.pth")["progress"] == {"round": 0, "step": "detector", "epoch": 0}
    return out


@pytest.fixture()
def mid_run(interrupted_run, tmp_path) -> Path:
    """A fresh copy of the interrupted run for each damage."""
    return Path(shutil.copytree(interrupted_run, tmp_path / "mid"))


def _damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncate":
        path.write_bytes(bytes(data[: len(data) // 3]))
        return
    # bit flips where every reader checks: the HDF5 superblock signature, the zip directory
    positions = range(0, 8) if path.suffix == ".h5" else range(len(data) - 60, len(data) - 20)
    for i in positions:
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


@pytest.mark.faults
@pytest.mark.parametrize("target", ["labels/round0_reliability.h5", "state.pth"])
@pytest.mark.parametrize("how", ["truncate", "bitflip"])
def test_damaged_file_is_one_line_and_untouched(mid_run, target, how, capsys):
    path = mid_run / target
    _damage(path, how)
    before = path.read_bytes()
    capsys.readouterr()
    assert cli(["--output", str(mid_run), "--resume", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err, err
    assert path.read_bytes() == before
