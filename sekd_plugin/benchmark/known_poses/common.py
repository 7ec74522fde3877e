"""What the known-pose benchmarks share: scenes with GT cameras, each method's features and
matches of every image pair (cached per method, shared with the SfM and pose benchmarks through
``--work``), and the markdown table."""

from __future__ import annotations

import logging
import platform
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pycolmap

from ... import __version__
from ...common import ConfigError, write_atomic, write_json
from ...datasets.strecha import StrechaCamera, load_gt_cameras
from ..methods import COLMAP

COLMAP_MATCHER = "COLMAP SIFT matcher (ratio 0.8, distance 0.7, cross-check)"


def gt_camera(cam: StrechaCamera) -> pycolmap.Camera:
    """The fixed ``PINHOLE`` camera of a GT camera (its K as COLMAP's, like the reconstruction)."""
    K = cam.K
    return pycolmap.Camera(model="PINHOLE", width=cam.width, height=cam.height,
                           params=[K[0, 0], K[1, 1], K[0, 2], K[1, 2]])


def plan_scenes(configs: Sequence[str | Path], methods: Sequence[str], work: Path, overrides: Sequence[str]):
    """``(plans, scenes)``: every ``(scene, method, cfg)`` validated, and ``scene -> (Scene, GT cameras)``;
    a scene without GT cameras is a :class:`ConfigError`."""
    from ..sfm import suite
    from ..sfm.runner import resolve_scene

    plans = suite.plan(configs, methods, work, overrides)
    scenes: dict[str, tuple[Any, dict[str, StrechaCamera]]] = {}
    for scene_name, method, cfg in plans:
        if scene_name not in scenes:
            scene = resolve_scene(cfg, method)
            if scene.gt_dir is None:
                raise ConfigError(f"scene {scene_name} has no gt_cameras: this benchmark needs GT cameras")
            scenes[scene_name] = (scene, load_gt_cameras(scene.gt_dir, scene.names))
    return plans, scenes


def method_files(cfg: dict[str, Any], method: str) -> dict[str, Any]:
    """Features, matches and pairs (every pair) of one method on its scene, as hloc files.

    ``colmap-sift``: COLMAP's SIFT and matcher (unverified matches), written into hloc's layout
    once (``colmap-feats.h5``, ``colmap-matches.h5``). Returns paths, timings, matcher, kpts/img.
    """
    from ...io.h5 import get_keypoints, list_names, write_features, write_matches
    from ...pairs import write_pairs
    from ..sfm import colmap
    from ..sfm.runner import _pairs, extract_and_match, resolve_scene

    scene = resolve_scene(cfg, method)
    out = scene.output
    out.mkdir(parents=True, exist_ok=True)
    if cfg["pipeline"] != COLMAP:
        em = extract_and_match(cfg, scene, scene.names, lambda names: _pairs(cfg, out, names))
        names = [n for n in scene.names if n not in em["failed"]]
        kpts = float(np.mean([len(get_keypoints(em["features"], n)) for n in names]))
        return {"scene": scene, "names": names, "features": em["features"], "matches": em["matches"],
                "pairs": em["pairs"], "timings": em["timings"], "matcher": em["matcher"], "keypoints_per_image": kpts}
    features, matches = out / "colmap-feats.h5", out / "colmap-matches.h5"
    pairs = out / "pairs-exhaustive.txt"
    timings_path = out / "colmap-timings.npy"
    cached = features.exists() and matches.exists() and timings_path.exists()
    if cached and sorted(list_names(features)) != sorted(scene.names):  # another image list: redo
        cached = False
    if not cached:
        features.unlink(missing_ok=True)
        matches.unlink(missing_ok=True)
        database = out / "colmap-known-poses.db"
        database.unlink(missing_ok=True)
        built = colmap.build_database(database, scene.image_dir, scene.names, None, camera_mode=cfg["camera_mode"],
                                      extraction=cfg["colmap_extraction"], matching=cfg["colmap_matching"],
                                      skip_verification=True, num_threads=cfg["num_threads"])
        keypoints, raw = colmap.read_features_and_matches(database)
        for name, kp in keypoints.items():
            write_features(features, name, {"keypoints": kp.astype(np.float64)})
        for (name0, name1), m in raw.items():
            m0 = np.full(len(keypoints[name0]), -1, np.int64)
            m0[m[:, 0]] = m[:, 1]
            write_matches(matches, name0, name1, m0, np.ones(len(m0), np.float32))
        np.save(timings_path, np.array([built["extract_s"], built["match_s"]]))
        database.unlink(missing_ok=True)
    write_pairs(pairs, [(a, b) for i, a in enumerate(scene.names) for b in scene.names[i + 1:]])
    extract_s, match_s = np.load(timings_path)
    names = list_names(features)
    kpts = float(np.mean([len(get_keypoints(features, n)) for n in names]))
    return {"scene": scene, "names": names, "features": features, "matches": matches, "pairs": pairs,
            "timings": {"extract_s": float(extract_s), "match_s": float(match_s)}, "matcher": COLMAP_MATCHER,
            "keypoints_per_image": kpts}


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|",
            *("| " + " | ".join(r) + " |" for r in rows)]


def fmt(value: Any, spec: str, scale: float = 1.0) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return format(value * scale, spec)


class Timer:
    """``with Timer() as t: ...; t.s`` seconds."""

    def __enter__(self) -> "Timer":
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.s = time.perf_counter() - self.start


logger = logging.getLogger(__name__)


def new_results(protocol: str, configs: Sequence[str | Path], methods: Sequence[str], overrides: Sequence[str],
                **settings: Any) -> dict[str, Any]:
    """The results envelope of a known-poses benchmark (settings recorded as given)."""
    return {"protocol": protocol, "configs": [str(c) for c in configs], "methods": list(methods), **settings,
            "overrides": list(overrides), "scenes": {}, "skipped": {}, "failed": {},
            "environment": {"sekd_plugin": __version__, "python": platform.python_version(),
                            "pycolmap": pycolmap.__version__}}


def run_plans(name: str, plans, scenes, results: dict[str, Any], output: Path,
              evaluate: Callable[[dict[str, Any], str, Any], dict[str, Any]],
              report: Callable[[dict[str, Any]], str]) -> dict[str, Any]:
    """Every (scene, method) of ``plans``: skipped with its reason, evaluated by
    ``evaluate(cfg, method, scene)``, or recorded as failed (one failing method never loses the
    others); results.json and results.md are rewritten after each."""
    from ..sfm.suite import skip_reason

    for scene_name, method, cfg in plans:
        results["scenes"].setdefault(scene_name, {})
        reason = skip_reason(method, cfg)
        if reason:
            results["skipped"][f"{scene_name}/{method}"] = reason
            continue
        logger.warning("%s benchmark: %s / %s", name, scene_name, method)
        try:
            results["scenes"][scene_name][method] = evaluate(cfg, method, scenes[scene_name][1])
        except KeyboardInterrupt:
            raise
        except Exception as error:  # noqa: BLE001 - one failing method must not lose the others
            logger.error("%s / %s failed: %s", scene_name, method, error)
            results["failed"][f"{scene_name}/{method}"] = f"{type(error).__name__}: {error}"
        write_json(output / "results.json", results)
        write_atomic(output / "results.md", report(results))
    write_json(output / "results.json", results)
    write_atomic(output / "results.md", report(results))
    return results
