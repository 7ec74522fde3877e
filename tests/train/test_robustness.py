"""Regression tests of the trainer's failure modes (issue 18): tiny images, one run per folder,
a stale config, damaged state / config / weights files, SIGTERM, ``--resume auto``."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from sekd_plugin.train import state as train_state, trainer
from sekd_plugin.train.command import cli
from tests.helpers import lock_is_free

from .conftest import TINY, synthetic_image

ROOT = Path(__file__).resolve().parents[2]
ONE_ROUND = [*TINY, "schedule.rounds=1"]


def _args(images, out, *extra):
    return ["--images", str(images), "--output", str(out), "--no-progress", *ONE_ROUND, *extra]


@pytest.fixture(scope="module")
def with_tiny_images(tmp_path_factory):
    """Six usable images plus a 1 x 1 and a 5 x 5000 one (they crashed step 3 before)."""
    d = tmp_path_factory.mktemp("tiny_images")
    for i in range(8):
        cv2.imwrite(str(d / f"img{i}.png"), synthetic_image(i))
    cv2.imwrite(str(d / "dot.png"), np.zeros((1, 1), np.uint8))
    cv2.imwrite(str(d / "thin.png"), np.full((5, 5000), 128, np.uint8))
    return d


@pytest.fixture(scope="module")
def one_round(with_tiny_images, tmp_path_factory):
    out = tmp_path_factory.mktemp("robust") / "run"
    assert cli(_args(with_tiny_images, out)) == 0
    return out


@pytest.mark.integration
def test_tiny_images_are_skipped_at_indexing(one_round, with_tiny_images, capsys):
    m = json.loads((one_round / "metrics.json").read_text())
    assert m["status"] == "complete" and m["data"]["skipped_too_small"] == 2 and m["data"]["train_images"] == 6
    assert any("thin.png" in f for f in m["data"]["skipped_files"])
    # resuming a finished run works (the skipped images are not part of its image set)
    assert cli(["--output", str(one_round), "--resume", "--no-progress"]) == 0


def test_second_process_on_the_same_folder_is_refused(one_round, capsys):
    lock = one_round / ".lock"
    busy = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom filelock import FileLock\n"
                             "lock = FileLock(sys.argv[1])\nlock.acquire()\nprint('locked', flush=True)\n"
                             "time.sleep(30)", str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert busy.stdout.readline().strip() == "locked"
        assert cli(["--output", str(one_round), "--resume", "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert f"in use by process {busy.pid}" in err and len(err.strip().splitlines()) == 1
    finally:
        busy.kill()
        busy.wait()
    # the owner was killed: the kernel released its lock (the file stays)
    assert lock.exists()
    assert cli(["--output", str(one_round), "--resume", "--no-progress"]) == 0


def test_config_is_written_at_start(with_tiny_images, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("schedule:\n  rounds: 9\n")  # a run killed before its first checkpoint
    calls = []
    real = trainer.Trainer.run

    def stop(self):
        calls.append(1)
        raise KeyboardInterrupt

    trainer.Trainer.run = stop
    try:
        assert cli(_args(with_tiny_images, out, "optim.lr=0.002")) == 130
    finally:
        trainer.Trainer.run = real
    saved = (out / "config.yaml").read_text()
    assert "rounds: 1" in saved and "lr: 0.002" in saved and calls


@pytest.mark.parametrize("damage", ["random", "truncated", "structure"])
def test_damaged_state_is_one_line_naming_the_file(one_round, tmp_path, damage, capsys):
    run = tmp_path / "copy"
    run.mkdir()
    for f in ("config.yaml", "state.pth"):
        (run / f).write_bytes((one_round / f).read_bytes())
    state = run / "state.pth"
    if damage == "random":
        state.write_bytes(np.random.default_rng(0).bytes(4096))
    elif damage == "truncated":
        state.write_bytes(state.read_bytes()[:1000])
    else:
        torch.save({"format": train_state.STATE_FORMAT, "progress": [1, 2]}, state)
    before = state.read_bytes()
    assert cli(["--output", str(run), "--resume", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(state) in err and "weights_only" not in err, err
    assert state.read_bytes() == before  # left untouched


def test_corrupt_run_config_and_text_init_weights(one_round, with_tiny_images, tmp_path, capsys):
    run = tmp_path / "copy"
    run.mkdir()
    (run / "state.pth").write_bytes((one_round / "state.pth").read_bytes())
    (run / "config.yaml").write_text("schedule: [1, 2\n  ::: not yaml")
    assert cli(["--output", str(run), "--resume", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "config.yaml" in err
    text = tmp_path / "weights.pth"
    text.write_text("this is a text file, not weights\n" * 20)
    assert cli(_args(with_tiny_images, tmp_path / "new", "--init-weights", str(text))) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "weights.pth" in err and "weights_only" not in err, err


@pytest.mark.integration
def test_resume_auto_starts_then_continues(with_tiny_images, tmp_path):
    out = tmp_path / "auto"
    assert cli(_args(with_tiny_images, out, "--resume", "auto")) == 0
    first = json.loads((out / "metrics.json").read_text())
    assert first["status"] == "complete"
    assert cli(["--output", str(out), "--resume", "auto", "--no-progress"]) == 0


@pytest.mark.integration
def test_sigterm_saves_reports_and_exits_143(with_tiny_images, tmp_path):
    out = tmp_path / "term"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    args = _args(with_tiny_images, out, "schedule.epochs_descriptor=50", "schedule.first_round=random")
    proc = subprocess.Popen([sys.executable, "-m", "sekd_plugin.train", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        m = out / "metrics.json"
        if m.exists() and '"descriptor"' in m.read_text():
            break
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "terminated" in err and "--resume" in err
    status = json.loads((out / "metrics.json").read_text())["status"]
    assert status.startswith("terminated at round 0") and "resumable" in status
    assert "status: terminated" in (out / "report.md").read_text()
    assert lock_is_free(out)
