"""What the known-pose benchmarks share: scenes with GT cameras and each method's features and
matches of every image pair as hloc files (cached per method, shared with the SfM and pose
benchmarks through ``--work``; COLMAP's own pipeline written into hloc's layout)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import pycolmap

from ...common import ConfigError
from ...datasets.strecha import StrechaCamera, load_gt_cameras
from .. import scenes
from ..sfm.config import resolve_scene
from ..sfm.pipelines import pipeline_of


def gt_camera(cam: StrechaCamera) -> pycolmap.Camera:
    """The fixed ``PINHOLE`` camera of a GT camera (its K as COLMAP's, like the reconstruction)."""
    K = cam.K
    return pycolmap.Camera(model="PINHOLE", width=cam.width, height=cam.height,
                           params=[K[0, 0], K[1, 1], K[0, 2], K[1, 2]])


def plan_scenes(configs: Sequence[str | Path], methods: Sequence[str], work: Path, overrides: Sequence[str]):
    """``(plans, gt)``: every ``(scene, method, cfg)`` validated, and ``scene -> GT cameras``;
    a scene without GT cameras is a :class:`ConfigError`."""
    plans = scenes.plan(configs, methods, work, overrides)
    gt: dict[str, dict[str, StrechaCamera]] = {}
    for scene_name, method, cfg in plans:
        if scene_name not in gt:
            scene = resolve_scene(cfg, method)
            if scene.gt_dir is None:
                raise ConfigError(f"scene {scene_name} has no gt_cameras: this benchmark needs GT cameras")
            gt[scene_name] = load_gt_cameras(scene.gt_dir, scene.names, image_dir=scene.image_dir)  # K fitted to the images
    return plans, gt


def method_files(cfg: dict[str, Any], method: str) -> dict[str, Any]:
    """Features, matches and pairs (every pair) of one method on its scene, as hloc files:
    paths, timings, matcher, keypoints per image (:meth:`~..sfm.pipelines.Pipeline.hloc_files`)."""
    scene = resolve_scene(cfg, method)
    scene.output.mkdir(parents=True, exist_ok=True)
    return pipeline_of(cfg).hloc_files(cfg, scene)


class Timer:
    """``with Timer() as t: ...; t.s`` seconds."""

    def __enter__(self) -> "Timer":
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.s = time.perf_counter() - self.start
