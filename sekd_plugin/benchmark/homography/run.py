"""HPatches-style homography benchmark: extract -> match -> metrics, per method.

    python -m sekd_plugin.benchmark hpatches [--dataset PATH ...] [--methods sekd,sift,...]

Features are cached per method and protocol in hloc .h5 files under
``<output>/features/<protocol>/<method>.h5`` (an interrupted run resumes; ``overwrite``
redoes them). Per-pair metrics are recomputed every run (they take seconds).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ...datasets.hpatches import Sequence, load_dataset
from ...common import pick_device, write_json
from ...extractors.base import get_extractor, missing_weights_reason
from ...extractors.confs import RECOMMENDED, get_conf
from ...io.h5 import list_names, read_features
from ...matchers import get_matcher_conf, load_matcher
from ...metrics import homography as M
from .. import core
from ..methods import parse_method
from .protocols import PROTOCOLS, PreparedSequence, describe, prepare

logger = logging.getLogger(__name__)

# each method at its recommended setting (docs/results.md: the DEV tables that chose them), the paper's
# SEKD setting for parity; methods whose weights are missing are listed as skipped with their fetch line
DEFAULT_METHODS = ("sekd-best", "sekd-evolved", "sekd-selftrained", *(c for m, c in RECOMMENDED.items() if m != "sekd"),
                   "sekd")
DEFAULT_MATCHER = "NN-mutual"  # the SEKD paper's protocol: mutual nearest neighbours


def method_conf(method: str, protocol: str, weights: str | Path | None = None, max_keypoints: int | None = None,
                overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The extraction conf of ``method`` (``LABEL=CONF`` or a conf name) under ``protocol``:
    same images for everyone (no further resizing), the protocol's keypoint cap (or
    ``max_keypoints``, one budget for every method) and fixed options, then ``overrides``
    (``{"model": {...}}`` from the command line), and optionally another checkpoint."""
    from ...extractors.base import override_conf

    label, name = parse_method(method)
    conf = get_conf(name)
    p = PROTOCOLS[protocol]
    conf["preprocessing"] = {**conf.get("preprocessing", {}), "resize_max": None, "resize_force": False}
    model = conf["model"]
    defaults = get_extractor(model["name"]).default_conf
    if "max_keypoints" in defaults:
        model["max_keypoints"] = p["max_keypoints"] if max_keypoints is None else int(max_keypoints)
    model.update(p["model_overrides"].get(model["name"], {}))
    conf = override_conf(conf, overrides or {}, f"method {label}", sections=("model",))
    if weights is not None:
        conf["model"]["weights"] = str(weights)
    return conf


def split_overrides(items: list[str] | None, labels: list[str]) -> dict[str, dict[str, Any]]:
    """``KEY=VALUE`` overrides by method: ``model.K=V`` for every method, ``LABEL.model.K=V`` for one
    (the trainer's dotlist syntax); ``{label: {"model": {...}}}``."""
    from ...common.conf_layers import parse_dotlist, split_by_label

    return split_by_label(parse_dotlist(items or [], "the overrides"), labels)


def extract_method(method, conf, image_root, names, feature_path, overwrite, device) -> dict[str, float]:
    """Extract (or reuse) features; returns per-image extraction times in ms.

    The features file records the conf it was made with (the package's one cache key, the h5
    provenance with the weights' sha256): features of another conf or checkpoint are redone
    instead of silently mixed. The per-image times of earlier runs live in a ``.timing.json``
    beside the file (data, not a cache key).
    """
    from ...extract_features import extract, provenance
    from ...io.h5 import conf_differences, read_conf

    found = read_conf(feature_path) if feature_path.exists() and not overwrite else None
    if found is not None and found != provenance(conf):
        why = "; ".join(conf_differences(found, provenance(conf))[:3])
        logger.warning("%s: cached features in %s were made with another conf (%s); re-extracting", method, feature_path, why)
        overwrite = True
    timing_path = feature_path.with_suffix(".timing.json")
    timings = json.loads(timing_path.read_text()) if timing_path.exists() and not overwrite else {}
    feature_path.parent.mkdir(parents=True, exist_ok=True)
    if overwrite and feature_path.exists():
        feature_path.unlink()
    result = extract(conf, image_root, image_list=names, feature_path=feature_path,
                     overwrite=False, device=device, as_half=False)
    new = getattr(result, "timings", {}) or {}
    if new:
        timings.update(new)
        write_json(timing_path, timings)
    if result.failed:
        logger.warning("%s: %d images failed: %s", method, len(result.failed), ", ".join(result.failed))
    return timings


def evaluate_pair(f0, f1, H, matcher, estimator: str = "opencv", protocol: str = "sekd") -> dict[str, Any]:
    """All metrics of one image pair (1, k); ``matcher`` is a :class:`~sekd_plugin.matchers.BaseMatcher`.
    The protocol may set the RANSAC threshold and the corners of the corner error (glue-factory's)."""
    kp0, kp1 = f0["keypoints"].astype(np.float64), f1["keypoints"].astype(np.float64)
    size0, size1 = tuple(int(v) for v in f0["image_size"]), tuple(int(v) for v in f1["image_size"])
    d0, d1 = torch.from_numpy(f0["descriptors"]), torch.from_numpy(f1["descriptors"])
    if d0.dtype != torch.uint8:
        d0, d1 = d0.float(), d1.float()
    m0 = matcher({"descriptors0": d0[None], "descriptors1": d1[None]})["matches0"][0]
    valid = m0 >= 0
    matches = torch.stack([torch.nonzero(valid)[:, 0], m0[valid]], 1).numpy()
    err = M.reprojection_errors(kp0, kp1, matches, H)
    p = PROTOCOLS.get(protocol, {})
    H_est = M.estimate_homography(kp0, kp1, matches, estimator=estimator,
                                  threshold=p.get("ransac_threshold", M.RANSAC_THRESHOLD))
    return {
        "mma": M.matching_accuracy(err).tolist(),
        "corner_error": M.corner_error(H_est, H, size0, outer=p.get("corners") == "outer"),
        "repeatability": M.repeatability(kp0, kp1, H, size0, size1, 3.0),
        "matching_score": M.matching_score(kp0, kp1, err, H, size0, size1, 3.0),
        "num_keypoints": [len(kp0), len(kp1)],
        "num_matches": int(len(matches)),
        "_matches": matches, "_errors": err,
    }


def aggregate(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean metrics over pairs: MMA@t (mean per-pair precision), H@t (fraction of pairs with
    corner error <= t), rep@3, matching score, #kp per image, #matches per pair."""
    if not pairs:
        return {"num_pairs": 0}
    mma = np.mean([p["mma"] for p in pairs], axis=0)
    cerr = np.array([p["corner_error"] for p in pairs])
    return {
        "num_pairs": len(pairs),
        "mma": dict(zip(M.THRESHOLDS, mma.tolist())),
        "homography_accuracy": {t: float((cerr <= t).mean()) for t in M.THRESHOLDS},
        "homography_auc": M.homography_auc(cerr),
        "repeatability@3": float(np.mean([p["repeatability"] for p in pairs])),
        "matching_score@3": float(np.mean([p["matching_score"] for p in pairs])),
        "num_keypoints": float(np.mean([p["num_keypoints"] for p in pairs])),
        "num_matches": float(np.mean([p["num_matches"] for p in pairs])),
    }


def run(
    datasets: list[str | Path] | None,
    output: str | Path,
    methods: list[str] | None = None,
    protocol: str = "sekd",
    matcher: dict[str, Any] | str | None = None,
    overwrite: bool = False,
    device: str | None = None,
    plot_matches: bool = False,
    types: dict[str, str] | None = None,
    weights: dict[str, str | Path] | None = None,
    estimator: str = "opencv",
    max_keypoints: int | None = None,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Run the benchmark; writes results.json (:mod:`..core`'s envelope: per-method summaries
    in ``methods``, per-pair metrics in ``rows``), results.md and plots into ``output``. A
    method that fails is recorded in ``failed`` and the others go on.

    ``methods`` are conf names or ``LABEL=CONF`` (e.g. ``ours=sekd``); ``weights`` maps a
    label to a checkpoint (e.g. one our trainer wrote). ``matcher`` is a matcher conf name of
    :mod:`sekd_plugin.matchers.confs` or a matcher model conf (default ``NN-mutual``).
    ``max_keypoints`` gives every method the same keypoint budget (the protocol keeps its other
    settings); ``overrides`` are ``model.KEY=VALUE`` / ``LABEL.model.KEY=VALUE`` option changes of
    the extractors and ``matcher.KEY=VALUE`` of the matcher (e.g. ``matcher.ratio_threshold=0.9``).
    """
    from ...common.conf_layers import parse_dotlist, split_by_label
    from ...geometry.estimators import check_estimator, describe as describe_estimator
    from ...matchers.base import override_conf as override_matcher
    from . import plots, report

    check_estimator(estimator)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol '{protocol}'; choose from {sorted(PROTOCOLS)}")
    methods = list(methods or DEFAULT_METHODS)
    if matcher is None or isinstance(matcher, str):
        matcher = get_matcher_conf(matcher or DEFAULT_MATCHER)["model"]
    parsed = parse_dotlist(overrides or [], "the overrides")  # matcher.KEY=VALUE: the one matcher's options
    if "matcher" in parsed:
        matcher = override_matcher({"model": matcher}, {"model": parsed.pop("matcher")}, "the overrides")["model"]
    matcher_model = load_matcher(matcher)
    matcher_conf = {"name": matcher["name"], **matcher_model.conf}

    demo = not datasets
    if demo:
        from ...datasets.demo import build_demo_hpatches

        demo_root = output / "demo_hpatches"
        build_demo_hpatches(demo_root)
        datasets = [demo_root]
        logger.info("Running on the embedded demo (HPatches-layout sequences from scikit-image's photos, %s): it "
                    "checks that everything runs; for HPatches: python -m sekd_plugin.datasets fetch hpatches",
                    demo_root)
    sequences: list[Sequence] = [s for d in datasets for s in load_dataset(d, types)]
    image_root = output / "images" / protocol
    prepared: list[PreparedSequence] = prepare(sequences, protocol, image_root)
    names = [n for s in prepared for n in s.names]
    empty_common_region = []  # pairs whose homography leaves no common region: metrics 0 by construction
    for seq in prepared:
        for k in range(2, 7):
            if M.common_region_fraction(seq.homographies[k - 2], seq.sizes[0], seq.sizes[k - 1]) == 0.0:
                empty_common_region.append(f"{seq.key}/1-{k}")
                logger.warning("%s/1-%d: the homography H_1_%d maps image 1 entirely outside image %d (no common "
                               "region); every metric of this pair is 0", seq.key, k, k, k)

    settings = {
        "benchmark": "hpatches", "protocol_settings": describe(protocol), "matcher": matcher_conf,
        "ransac": {"method": describe_estimator(estimator), "estimator": estimator,
                   "threshold_px": PROTOCOLS[protocol].get("ransac_threshold", M.RANSAC_THRESHOLD),
                   "seed": M.RANSAC_SEED, "max_iters": 10000, "confidence": 0.9999},
        "datasets": [str(d) for d in datasets], "demo": demo, "methods": list(methods),
        "max_keypoints": max_keypoints, "overrides": list(overrides or []),
        "weights": {k: str(v) for k, v in (weights or {}).items()},
        "sequences": {s.key: s.kind for s in prepared},
        "empty_common_region": {"count": len(empty_common_region), "pairs": empty_common_region},
    }
    results = core.new_results(protocol, settings, device=str(pick_device(device)))
    match_records = {}
    weights = weights or {}
    specs = {parse_method(spec)[0]: spec for spec in methods}
    per_method = split_by_label(parsed, list(specs))
    confs = {label: method_conf(spec, protocol, weights.get(label), max_keypoints, per_method[label])
             for label, spec in specs.items()}

    def evaluate(method: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        conf = confs[method]
        feature_path = output / "features" / protocol / f"{method}.h5"
        t0 = time.perf_counter()
        timings = extract_method(method, conf, image_root, names, feature_path, overwrite, device)
        logger.info("%s: features ready in %.1f s", method, time.perf_counter() - t0)
        per_pair, records = {}, {}
        done = set(list_names(feature_path)) if feature_path.exists() else set()
        missing = [n for n in names if n not in done]
        if missing:  # images the extractor failed on: their pairs are left out, and said so
            logger.warning(f"{method}: no features for {len(missing)} image(s) ({', '.join(missing[:5])}"
                  f"{', ...' if len(missing) > 5 else ''}); their pairs are left out")
        for seq in tqdm(prepared, desc=f"match {method}", unit="seq"):
            if seq.names[0] not in done:
                continue
            f1 = read_features(feature_path, seq.names[0])
            for k in range(1, 6):
                if seq.names[k] not in done:
                    continue
                fk = read_features(feature_path, seq.names[k])
                r = evaluate_pair(f1, fk, seq.homographies[k - 1], matcher_model, estimator, protocol)
                records[(seq.key, k + 1)] = (f1["keypoints"], fk["keypoints"], r.pop("_matches"), r.pop("_errors"))
                per_pair[f"{seq.key}/1-{k + 1}"] = {"kind": seq.kind, **r}
                if f"{seq.key}/1-{k + 1}" in empty_common_region:
                    per_pair[f"{seq.key}/1-{k + 1}"]["empty_common_region"] = True
        pairs = list(per_pair.values())
        ms = [timings[n] for n in names if n in timings]
        match_records[method] = records
        summary = {
            "conf": conf,
            "weights": str(weights[method]) if method in weights else None,
            "ms_per_image": float(np.median(ms)) if ms else None,
            "failed_images": missing,
            "i": aggregate([p for p in pairs if p["kind"] == "i"]),
            "v": aggregate([p for p in pairs if p["kind"] == "v"]),
            "all": aggregate(pairs),
            "per_sequence": {s.key: aggregate([per_pair[f"{s.key}/1-{k}"] for k in range(2, 7)
                                               if f"{s.key}/1-{k}" in per_pair]) for s in prepared},
        }
        return summary, [{"pair": key, **row} for key, row in per_pair.items()]

    core.run_methods(results, list(specs), evaluate,
                     skip_reason=lambda method: missing_weights_reason(confs[method]["model"], label=method),
                     save=lambda r: core.save(output, r, report.markdown_report(r, output)))
    plots.plot_curves(results, output / "curves.png")
    plots.plot_pareto(results, output / "pareto.png")
    if plot_matches:
        plots.plot_matches(results, prepared, match_records, image_root, output / "matches")
    return results
