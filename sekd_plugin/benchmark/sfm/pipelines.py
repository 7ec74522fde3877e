"""The two SfM pipelines of a scene config, one interface: a method names its pipeline
(:data:`~sekd_plugin.benchmark.methods.METHODS`) and every benchmark calls the pipeline's
methods instead of branching on its name.

* ``hloc``: our extraction and matching (cached hloc files under the run's output), then
  :func:`sekd_plugin.reconstruction.reconstruct`;
* ``colmap``: COLMAP's SIFT, matcher and verification (:mod:`.colmap`).

Both :meth:`~Pipeline.reconstruct` into ``<output>/sfm`` and return ``(model or None, stats)``
in the one schema of :data:`sekd_plugin.reconstruction.STATS_KEYS` plus ``extractor``,
``matcher``, ``cached`` and ``paths``; :meth:`~Pipeline.pair_matches` gives the keypoints and
raw matches of a pair list (pose benchmark), :meth:`~Pipeline.hloc_files` hloc feature and
match files of every pair (known-pose benchmarks).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ...common import InputError, write_json
from ..methods import COLMAP
from .confs import Scene, extraction_conf, matcher_conf, matcher_name, read_json

COLMAP_MATCHER = "COLMAP SIFT matcher (ratio 0.8, distance 0.7, cross-check)"


def extract_and_match(cfg: dict[str, Any], scene: Scene, names: Sequence[str],
                      make_pairs: Callable[[list[str]], Path]) -> dict[str, Any]:
    """Features and matches of a config (cached under ``scene.output``); used by the SfM runner
    and the pose benchmark. ``make_pairs(names)`` writes the pairs of the images whose
    extraction succeeded. Returns paths, timings, what was cached and what failed."""
    from ... import match_features
    from ...extract_features import extract, provenance
    from ...extractors.base import missing_weights_reason
    from ...io.h5 import read_conf

    output = scene.output
    conf = extraction_conf(cfg)
    reason = missing_weights_reason(conf["model"])
    if reason:
        raise InputError(reason)
    # the one feature cache: the file records the conf and the weights' sha256 it was made with
    # (h5 provenance); its name says only the extractor and the stored precision
    features = output / f"feats-{cfg['extractor']}{'-fp16' if cfg['as_half'] else ''}.h5"
    found = None if cfg["overwrite"] else read_conf(features)
    overwrite = bool(cfg["overwrite"]) or (found is not None and found != provenance(conf))
    feat_meta_path = features.with_suffix(".json")
    feat_meta = {} if overwrite else read_json(feat_meta_path)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    result = extract(conf, scene.image_dir, image_list=list(names), feature_path=features,
                     overwrite=overwrite, as_half=cfg["as_half"], device=cfg["device"])
    elapsed = time.perf_counter() - start
    if result.extracted:  # plus the time of the images done by an earlier (interrupted) run
        timings["extract_s"] = elapsed + (feat_meta.get("extract_s", 0.0) if result.skipped else 0.0)
        write_json(feat_meta_path, {"extract_s": timings["extract_s"],
                                    "ms_per_image": {**feat_meta.get("ms_per_image", {}), **result.timings}})
    else:
        timings["extract_s"] = feat_meta.get("extract_s", elapsed)
    pairs_path = make_pairs([n for n in names if n not in result.failed])
    mname = matcher_name(cfg)
    mconf = matcher_conf(cfg)
    matches = output / f"{mconf['output']}-{features.stem}-{pairs_path.stem}.h5"
    match_meta_path = matches.with_suffix(".json")
    if overwrite or result.extracted or read_json(match_meta_path).get("conf", mconf) != mconf:
        matches.unlink(missing_ok=True)  # new features, or other matcher options, invalidate old matches
    match_meta = read_json(match_meta_path) if matches.exists() else {}
    start = time.perf_counter()
    counts = match_features.match_from_paths(mconf, pairs_path, matches, features, features, device=cfg["device"])
    elapsed = time.perf_counter() - start
    if counts["matched"]:
        timings["match_s"] = elapsed + (match_meta.get("match_s", 0.0) if counts["skipped"] else 0.0)
        write_json(match_meta_path, {"conf": mconf, "match_s": timings["match_s"], "pairs": counts["pairs"]})
    else:
        timings["match_s"] = match_meta.get("match_s", elapsed)
    return {"features": features, "matches": matches, "pairs": pairs_path, "timings": timings, "failed": result.failed,
            "cached": {"extract": not result.extracted, "match": counts["matched"] == 0},
            "matcher": mname, "result": result}


def pairs_file(cfg: dict[str, Any], output: Path, names: Sequence[str]) -> Path:
    """The pairs file of the config's pair mode over ``names``, in ``output``."""
    from ... import pairs as pairs_mod

    if cfg["pairs"] == "exhaustive":
        return pairs_mod.main(output / "pairs-exhaustive.txt", image_list=list(names))
    name = f"pairs-sequential-w{cfg['window']}{'-loop' if cfg['loop'] else ''}.txt"
    return pairs_mod.main(output / name, image_list=list(names), mode="sequential", window=cfg["window"],
                          loop=cfg["loop"])


def removed_pairs(cfg: dict[str, Any], names: Sequence[str], failed: Any) -> list[list[str]]:
    """The pairs of the config's pair mode over ``names`` that involve a failed image."""
    from ... import pairs as pairs_mod

    if not failed:
        return []
    every = (pairs_mod.exhaustive_pairs(names) if cfg["pairs"] == "exhaustive"
             else pairs_mod.sequential_pairs(names, cfg["window"], cfg["loop"]))
    return [list(p) for p in every if p[0] in failed or p[1] in failed]


class Pipeline:
    """The interface both pipelines implement (see the module docstring)."""

    name: str

    def validate(self, cfg: dict[str, Any]) -> None:
        """Check the pipeline's options (a ReconstructionError or ConfigError names the key)."""
        raise NotImplementedError

    def default_label(self, cfg: dict[str, Any]) -> str:
        """The method's name when none is given (output folder, tables)."""
        raise NotImplementedError

    def skip_reason(self, cfg: dict[str, Any], label: str) -> str | None:
        """Why the method cannot run here (absent weights), or None."""
        return None

    def method_overrides(self, entry: dict[str, Any], user_matcher: bool) -> list[str]:
        """Config overrides that select a :func:`~sekd_plugin.benchmark.methods.method_entry`."""
        return [f"pipeline={self.name}"]

    def reconstruct(self, cfg: dict[str, Any], scene: Scene, fixed_intrinsics: Any = None):
        """``(model or None, stats)`` of the scene into ``scene.output / "sfm"``."""
        raise NotImplementedError

    def pair_matches(self, cfg: dict[str, Any], scene: Scene, pairs: list[tuple[str, str]]):
        """``(keypoints by name, matches by pair, timings, matcher, failed images)``."""
        raise NotImplementedError

    def hloc_files(self, cfg: dict[str, Any], scene: Scene) -> dict[str, Any]:
        """hloc features, matches and pairs of every image pair (paths, timings, matcher, kpts/img)."""
        raise NotImplementedError


class HlocPipeline(Pipeline):
    """Our extraction and matching (hloc files), then :func:`sekd_plugin.reconstruction.reconstruct`."""

    name = "hloc"

    def validate(self, cfg: dict[str, Any]) -> None:
        from ...reconstruction import verification_options
        from .confs import check_checkpoint

        verification_options(cfg["verification"])
        check_checkpoint(cfg)

    def default_label(self, cfg: dict[str, Any]) -> str:
        return cfg["extractor"]

    def skip_reason(self, cfg: dict[str, Any], label: str) -> str | None:
        from ...extractors.base import missing_weights_reason

        return missing_weights_reason(extraction_conf(cfg)["model"], label=label)

    def method_overrides(self, entry: dict[str, Any], user_matcher: bool) -> list[str]:
        extra = [f"pipeline={self.name}", f"extractor={entry['extractor']}"]
        return extra if user_matcher else [*extra, f"matcher={entry['matcher']}"]

    def reconstruct(self, cfg: dict[str, Any], scene: Scene, fixed_intrinsics: Any = None):
        import sys

        from ... import reconstruction

        output = scene.output
        em = extract_and_match(cfg, scene, scene.names, lambda names: pairs_file(cfg, output, names))
        if em["failed"]:  # reconstruct the others; the failed ones count as not registered
            print(f"warning: {len(em['failed'])} image(s) left out, feature extraction failed: "
                  + "; ".join(f"{n}: {e}" for n, e in em["failed"].items()), file=sys.stderr)
        names = [n for n in scene.names if n not in em["failed"]]
        rec, stats = reconstruction.reconstruct(
            output / "sfm", scene.image_dir, em["pairs"], em["features"], em["matches"], camera_mode=cfg["camera_mode"],
            camera_model=cfg["camera_model"], fixed_intrinsics=fixed_intrinsics,
            skip_geometric_verification=cfg["skip_geometric_verification"], min_match_score=cfg["min_match_score"],
            image_list=names, mapper_options=cfg["mapper"], verbose=cfg["verbose"], num_threads=cfg["num_threads"],
            seed=cfg["seed"], overwrite=True, verification=cfg["verification"])
        stats["timings"].update(em["timings"])
        stats["failed_images"] = dict(em["failed"])
        stats.update(extractor=cfg["extractor"], matcher=em["matcher"], cached=em["cached"],
                     paths={"output": str(output), "features": str(em["features"]), "pairs": str(em["pairs"]),
                            "matches": str(em["matches"]), "sfm": str(output / "sfm")})
        return rec, stats

    def pair_matches(self, cfg: dict[str, Any], scene: Scene, pairs: list[tuple[str, str]]):
        from ...io.matched_features import MatchedFeatures
        from ...io.pairs_file import write_pairs

        every = len(pairs) == len(scene.names) * (len(scene.names) - 1) // 2  # shares the SfM run's matches
        stem = "pairs-exhaustive" if every else f"pairs-pose-{len(pairs)}"
        em = extract_and_match(cfg, scene, scene.names,
                               lambda names: write_pairs(scene.output / f"{stem}.txt",
                                                         [p for p in pairs if p[0] in names and p[1] in names]))
        inputs = MatchedFeatures(em["features"], em["matches"])  # checked against each other
        keypoints = {n: inputs.keypoints(n) for n in scene.names if n not in em["failed"]}
        matches = {p: inputs.matches_of(*p)[0] for p in pairs if p[0] in keypoints and p[1] in keypoints}
        return keypoints, matches, em["timings"], em["matcher"], em["failed"]

    def hloc_files(self, cfg: dict[str, Any], scene: Scene) -> dict[str, Any]:
        from ...io.h5 import get_keypoints

        em = extract_and_match(cfg, scene, scene.names, lambda names: pairs_file(cfg, scene.output, names))
        names = [n for n in scene.names if n not in em["failed"]]
        kpts = float(np.mean([len(get_keypoints(em["features"], n)) for n in names]))
        return {"scene": scene, "names": names, "features": em["features"], "matches": em["matches"],
                "pairs": em["pairs"], "timings": em["timings"], "matcher": em["matcher"], "keypoints_per_image": kpts}


class ColmapPipeline(Pipeline):
    """COLMAP's SIFT, matcher and verification (:mod:`.colmap`), then the same mapping."""

    name = COLMAP

    def validate(self, cfg: dict[str, Any]) -> None:
        from . import colmap

        colmap.extraction_options(cfg["colmap_extraction"], None)
        colmap.matching_options(cfg["colmap_matching"], None)
        colmap.two_view_options(cfg["verification"])

    def default_label(self, cfg: dict[str, Any]) -> str:
        return "colmap-sift"

    def reconstruct(self, cfg: dict[str, Any], scene: Scene, fixed_intrinsics: Any = None):
        from ...io.pairs_file import read_pairs
        from . import colmap

        output = scene.output
        pair_list = None if cfg["pairs"] == "exhaustive" else read_pairs(pairs_file(cfg, output, scene.names))
        rec, stats = colmap.reconstruct(
            output / "sfm", scene.image_dir, scene.names, pair_list, camera_mode=cfg["camera_mode"],
            camera_model=cfg["camera_model"], fixed_intrinsics=fixed_intrinsics, mapper_options=cfg["mapper"],
            extraction=cfg["colmap_extraction"], matching=cfg["colmap_matching"], verification=cfg["verification"],
            num_threads=cfg["num_threads"], seed=cfg["seed"], verbose=cfg["verbose"], overwrite=True)
        stats.update(extractor=self.default_label(cfg), matcher=COLMAP_MATCHER, cached={},
                     paths={"output": str(output), "sfm": str(output / "sfm")})
        return rec, stats

    def pair_matches(self, cfg: dict[str, Any], scene: Scene, pairs: list[tuple[str, str]]):
        from . import colmap

        database = scene.output / "pose-database.db"
        database.unlink(missing_ok=True)
        built = colmap.build_database(database, scene.image_dir, scene.names, pairs, camera_mode=cfg["camera_mode"],
                                      extraction=cfg["colmap_extraction"], matching=cfg["colmap_matching"],
                                      skip_verification=True, num_threads=cfg["num_threads"])
        keypoints, matches = colmap.read_features_and_matches(database)
        timings = {"extract_s": built["extract_s"], "match_s": built["match_s"]}
        return keypoints, matches, timings, COLMAP_MATCHER, built["failed"]

    def hloc_files(self, cfg: dict[str, Any], scene: Scene) -> dict[str, Any]:
        """COLMAP's SIFT and matcher (unverified matches), written into hloc's layout once
        (``colmap-feats.h5``, ``colmap-matches.h5``)."""
        from ...io.h5 import PartWriter, features_entry, get_keypoints, list_names, matches_entry, publish
        from ...io.pairs_file import write_pairs
        from . import colmap

        out = scene.output
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
            writers = PartWriter(features, "features"), PartWriter(matches, "matches")
            try:
                for name, kp in keypoints.items():
                    writers[0].put(**features_entry(name, {"keypoints": kp.astype(np.float64)}))
                for (name0, name1), m in raw.items():
                    m0 = np.full(len(keypoints[name0]), -1, np.int64)
                    m0[m[:, 0]] = m[:, 1]
                    writers[1].put(**matches_entry(name0, name1, m0, np.ones(len(m0), np.float32)))
            finally:
                for writer in writers:
                    writer.close()
            publish(features, "features")
            publish(matches, "matches")
            np.save(timings_path, np.array([built["extract_s"], built["match_s"]]))
            database.unlink(missing_ok=True)
        write_pairs(pairs, [(a, b) for i, a in enumerate(scene.names) for b in scene.names[i + 1:]])
        extract_s, match_s = np.load(timings_path)
        names = list_names(features)
        kpts = float(np.mean([len(get_keypoints(features, n)) for n in names]))
        return {"scene": scene, "names": names, "features": features, "matches": matches, "pairs": pairs,
                "timings": {"extract_s": float(extract_s), "match_s": float(match_s)}, "matcher": COLMAP_MATCHER,
                "keypoints_per_image": kpts}


PIPELINES: dict[str, Pipeline] = {p.name: p for p in (HlocPipeline(), ColmapPipeline())}


def pipeline_of(cfg: dict[str, Any]) -> Pipeline:
    """The pipeline a (validated) config names."""
    return PIPELINES[cfg["pipeline"]]
