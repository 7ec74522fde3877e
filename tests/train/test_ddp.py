"""The same CLI under ``torchrun``: 2 CPU processes (Gloo), tiny settings."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
import torch

from sekd_plugin.extractors.sekd import SEKD
from sekd_plugin.train import labels as labels_mod
from sekd_plugin.train.command import cli

from .conftest import TINY

ROOT = Path(__file__).resolve().parents[2]


def _torchrun(args, tmp_path, script=None):
    torchrun = shutil.which("torchrun")
    cmd = [torchrun] if torchrun else [sys.executable, "-m", "torch.distributed.run"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    target = [str(script)] if script else ["-m", "sekd_plugin.train"]
    return subprocess.run([*cmd, "--standalone", "--nproc_per_node", "2", *target, *args],
                          capture_output=True, text=True, timeout=400, env=env, cwd=tmp_path)


@pytest.mark.integration
def test_torchrun_two_processes(image_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "ddp"
    proc = _torchrun(["--images", str(image_dir), "--output", str(out), "--no-progress", *TINY], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "complete" and metrics["world_size"] == 2
    # labels of both ranks' shares were gathered into one file
    with h5py.File(out / "labels" / "round1_reliability.h5") as f:
        assert f.attrs["num_images"] == metrics["data"]["train_images"] == 6
    # one process wrote the report
    assert (proc.stdout + proc.stderr).count("[sekd-train] done") == 1
    assert torch.load(out / "state.pth", weights_only=True)["world_size"] == 2
    SEKD({"weights": str(out / "model.pth")})({"image": torch.rand(1, 1, 64, 64)})
    # resumed with another world size: reported and recorded
    assert cli(["--output", str(out), "--resume", "--no-progress"]) == 0
    changes = json.loads((out / "metrics.json").read_text())["world_size_changes"]
    assert changes[-1]["from"] == 2 and changes[-1]["to"] == 1


@pytest.mark.integration
def test_training_uses_the_gathered_labels_in_memory(image_dir, tmp_path, monkeypatch):
    """An uninterrupted run never re-reads its label files (no shared filesystem needed)."""

    def forbidden(*a, **k):
        raise AssertionError("label file re-read during an uninterrupted run")

    monkeypatch.setattr(labels_mod, "read_labels_with_sizes", forbidden)
    out = tmp_path / "mem"
    assert cli(["--images", str(image_dir), "--output", str(out), "--no-progress", *TINY, "schedule.rounds=1"]) == 0


NAN_ON_RANK1 = """
import os, sys, torch
from sekd_plugin.train import steps
real = steps.descriptor_losses
def nan_losses(*a, **k):
    out = real(*a, **k)
    if os.environ.get("RANK") == "1":
        out["loss"] = out["loss"] * float("nan")
    return out
steps.descriptor_losses = nan_losses
from sekd_plugin.train.command import cli
sys.exit(cli())
"""


@pytest.mark.integration
def test_non_finite_loss_on_one_rank_stops_all_with_one_message(image_dir, tmp_path):
    script = tmp_path / "nan_train.py"
    script.write_text(NAN_ON_RANK1)
    out = tmp_path / "nan"
    proc = _torchrun(["--images", str(image_dir), "--output", str(out), "--no-progress", *TINY,
                      "schedule.first_round=random"], tmp_path, script)
    assert proc.returncode != 0
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "diverged" in errors[0], proc.stderr[-3000:]
    state = torch.load(out / "state.pth", weights_only=True)
    assert state["progress"]["step"] == "descriptor" and state["progress"]["epoch"] == 0  # the last good point
