"""The README's "your own photos" SfM walk-through, run as written on the demo scene."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import sekd_plugin
from sekd_plugin.extractors.confs import confs

# The README's model; "sekd-evolved-sfm" is the same weights and settings without multi-scale.
CONF = "sekd-best" if "sekd-best" in confs else "sekd-evolved-sfm"
WALKTHROUGH = [
    "datasets demo --output demo",
    f"extract_features --conf {CONF} --images demo/scene --output out/feats.h5",
    "pairs --images demo/scene --output out/pairs.txt",
    "match_features --pairs out/pairs.txt --features out/feats.h5 --output out/matches.h5",
    "reconstruction --sfm-dir out/sfm --images demo/scene --pairs out/pairs.txt --features out/feats.h5 "
    "--matches out/matches.h5",
    "visualize --images demo/scene --pairs out/pairs.txt --features out/feats.h5 --matches out/matches.h5 "
    "--output out/pictures",
]


@pytest.mark.integration
def test_walkthrough_registers_every_view_at_the_true_poses(tmp_path):
    import pycolmap

    from sekd_plugin.datasets.demo import SCENE_CAMERAS, SCENE_VIEWS
    from sekd_plugin.datasets.strecha import load_gt_cameras
    from sekd_plugin.metrics.sfm import evaluate_poses

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(sekd_plugin.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    for step in WALKTHROUGH:  # from an empty folder, each step a fresh `python -m` process
        done = subprocess.run([sys.executable, "-m", f"sekd_plugin.{step.split()[0]}", *step.split()[1:]],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{step}: {done.stderr[-2000:]}"

    rec = pycolmap.Reconstruction(tmp_path / "out" / "sfm")
    names = sorted(image.name for image in rec.images.values())
    assert names == [f"{k:04d}.png" for k in range(SCENE_VIEWS)] and rec.num_points3D() > 500
    gt = load_gt_cameras(tmp_path / "demo" / "scene" / SCENE_CAMERAS, names)
    poses = {}
    for image in rec.images.values():
        pose = image.cam_from_world() if callable(image.cam_from_world) else image.cam_from_world
        poses[image.name] = (pose.rotation.matrix(), pose.translation)
    result = evaluate_poses(poses, gt)
    assert not result["failed"], result["failure"]
    assert result["median_rotation_error_deg"] < 0.5 and result["median_center_error_m"] < 0.05
    assert len(list((tmp_path / "out" / "pictures").glob("*.png"))) == SCENE_VIEWS * (SCENE_VIEWS - 1) // 2
