"""The same CLI under ``torchrun``: 2 CPU processes (Gloo), tiny settings (~15 s)."""

import json
import os
import shutil
import subprocess
import sys

import h5py
import torch

from sekd_plugin.extractors.sekd import SEKD

from .conftest import TINY


def test_torchrun_two_processes(image_dir, tmp_path):
    torchrun = shutil.which("torchrun")
    cmd = [torchrun] if torchrun else [sys.executable, "-m", "torch.distributed.run"]
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [*cmd, "--standalone", "--nproc_per_node", "2", "-m", "sekd_plugin.train",
         "--images", str(image_dir), "--output", str(out), "--no-progress", *TINY],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "complete" and metrics["world_size"] == 2
    # labels of both ranks' shares were gathered into one file
    with h5py.File(out / "labels" / "round1_reliability.h5") as f:
        assert f.attrs["num_images"] == metrics["data"]["train_images"] == 6
    # one process wrote the report
    assert (proc.stdout + proc.stderr).count("[sekd-train] done") == 1
    SEKD({"weights": str(out / "model.pth")})({"image": torch.rand(1, 1, 64, 64)})
