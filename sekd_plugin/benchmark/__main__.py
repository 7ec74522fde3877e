"""``python -m sekd_plugin.benchmark {hpatches,speed,train-speed,scene,reconstruction,pose,triangulation,localization}``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..common import ConfigError, run_cli
from ..common.cli import comma_list, finite_positive_float, positive_int


def _pairs(values, flag: str) -> dict[str, str] | None:
    """``["a=b", ...]`` -> ``{"a": "b"}``; a malformed item is an error naming the flag."""
    if not values:
        return None
    bad = [v for v in values if "=" not in v or not v.split("=", 1)[0] or not v.split("=", 1)[1]]
    if bad:
        raise ConfigError(f"{flag} expects NAME=VALUE, got {bad}")
    return dict(v.split("=", 1) for v in values)


def _hpatches(args) -> int:
    from .homography.run import run

    matcher = {"name": "nearest_neighbor", "do_mutual_check": not args.no_mutual,
               "ratio_threshold": args.ratio, "distance_threshold": args.distance}
    types = _pairs(args.type, "--type")
    weights = _pairs(args.weights, "--weights")
    labels = [m.split("=", 1)[0] for m in (args.methods.split(",") if args.methods else [])]
    unknown = sorted(set(weights or {}) - set(labels))
    if unknown:
        raise ConfigError(f"--weights names {unknown}, which --methods does not list ({labels or 'defaults'})")
    from .core import exit_code

    if args.budgets and args.max_keypoints:
        raise ConfigError("give --max-keypoints N (one budget) or --budgets N,N,... (a sweep), not both")
    common = dict(datasets=args.dataset, methods=args.methods.split(",") if args.methods else None,
                  protocol=args.protocol, matcher=matcher, overwrite=args.overwrite, device=args.device,
                  plot_matches=args.plot_matches, types=types, weights=weights, estimator=args.estimator,
                  overrides=args.overrides)
    if args.budgets:
        from .homography.budgets import run_budgets

        results = run_budgets(args.budgets, args.output, **common)
    else:
        results = run(output=args.output, max_keypoints=args.max_keypoints, **common)
    print((Path(args.output) / "results.md").read_text(), end="")
    return exit_code(results)


def budget_list(text: str) -> list[int]:
    """``"500,1000,2000"`` -> [500, 1000, 2000]: positive, distinct, in the order given."""
    items = comma_list(text).split(",")
    values = [positive_int(v) for v in items]
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"budgets repeat a value: {text!r}")
    return values


def _speed(args) -> int:
    from .core import exit_code
    from .speed import run

    if args.runs < 1:
        raise ConfigError(f"--runs must be at least 1, got {args.runs}")
    results = run(args.methods.split(",") if args.methods else None, args.runs, args.device, args.threads,
                  args.backends.split(",") if args.backends else None, args.breakdown, args.matching, args.output,
                  args.overrides, args.authors_code)
    return exit_code(results)


def _train_speed(args) -> int:
    from .core import exit_code
    from .train_speed import run

    return exit_code(run(args.config, args.device, args.iters, args.reps, args.threads, args.overrides, args.skip,
                         args.output))


def _methods(args) -> list[str] | None:
    value = args.methods or args.extractors
    return [m for m in value.split(",") if m] if value else None


def _reconstruction(args) -> int:
    from .core import exit_code
    from .sfm.benchmark import main as sfm_main

    return exit_code(sfm_main(configs=args.config, methods=_methods(args), output=args.output,
                              overrides=args.overrides, work=args.work))


def _pose(args) -> int:
    from .core import exit_code
    from .pose.benchmark import main as pose_main

    return exit_code(pose_main(configs=args.config, methods=_methods(args), output=args.output,
                               overrides=args.overrides, pairs=args.pairs, threshold_px=args.threshold,
                               work=args.work, estimator=args.estimator))


def _triangulation(args) -> int:
    from .core import exit_code
    from .known_poses.triangulation import main as tri_main

    return exit_code(tri_main(configs=args.config, methods=_methods(args), output=args.output,
                              overrides=args.overrides, work=args.work, verification=args.verification,
                              max_error=args.max_error))


def _localization(args) -> int:
    from .core import exit_code
    from .known_poses.localization import main as loc_main

    return exit_code(loc_main(configs=args.config, methods=_methods(args), output=args.output,
                              overrides=args.overrides, work=args.work, ransac_thresh=args.ransac_thresh,
                              query_intrinsics=args.query_intrinsics))


METHOD_OPTIONS_HELP = ("method options: model.KEY=VALUE for every method, LABEL.model.KEY=VALUE for one "
                       "(e.g. sekd.model.multi_scale=true); unknown keys are refused")
SCENE_OVERRIDES_HELP = ("scene config overrides (e.g. intrinsics=gt resize_max=1024) and method options: "
                        "[LABEL.]model.KEY=VALUE (extractor), [LABEL.]matcher.KEY=VALUE (matcher)")
SCENE_HELP = "reconstruct one scene config: extract, pair, match, SfM, GT evaluation (CONFIG [KEY=VALUE ...])"


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["scene"]:  # its own parser: CONFIG, key=value overrides and a help listing every key
        from .sfm.scene import cli as scene_cli

        return scene_cli(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m sekd_plugin.benchmark")
    sub = parser.add_subparsers(dest="command", required=True)
    hp = sub.add_parser("hpatches", help="HPatches-style homography benchmark (default: embedded demo data)")
    hp.add_argument("--dataset", action="append", help="HPatches- or Oxford-layout folder (repeatable)")
    hp.add_argument("--output", default="outputs/hpatches", help="output folder (default: outputs/hpatches)")
    hp.add_argument("--methods", type=comma_list, help="comma-separated extractor confs or LABEL=CONF "
                    "(default: every method at its recommended conf, e.g. sekd-best, sift-best, superpoint-demo, "
                    "the shipped sekd-evolved and sekd-selftrained, and sekd, the paper's setting)")
    hp.add_argument("--weights", action="append", metavar="LABEL=PATH",
                    help="checkpoint for one method, e.g. --methods sekd,ours=sekd --weights ours=runs/x/model.pth")
    hp.add_argument("--protocol", default="sekd", choices=["sekd", "d2net", "gluefactory"])
    hp.add_argument("--ratio", type=finite_positive_float, help="Lowe ratio threshold (default: none)")
    hp.add_argument("--distance", type=finite_positive_float, help="descriptor distance threshold (default: none)")
    hp.add_argument("--no-mutual", action="store_true", help="disable the mutual check")
    hp.add_argument("--type", action="append", help="sequence type override NAME=i|v (Oxford names)")
    hp.add_argument("--overwrite", action="store_true", help="re-extract cached features")
    hp.add_argument("--device", choices=["cpu", "cuda"])
    hp.add_argument("--plot-matches", action="store_true", help="draw match images per pair")
    hp.add_argument("--estimator", default="opencv",
                    help="robust homography estimator: opencv (RANSAC, default) | magsac | pycolmap | poselib")
    hp.add_argument("--max-keypoints", type=positive_int, metavar="N",
                    help="the same keypoint budget for every method (default: the protocol's, 500 for sekd)")
    hp.add_argument("--budgets", type=budget_list, metavar="N,N,...",
                    help="a sweep: one run per budget, one table each, MMA@3 against the budget (budgets.png)")
    hp.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=METHOD_OPTIONS_HELP)
    hp.set_defaults(func=_hpatches)
    sp = sub.add_parser("speed", help="ms per 640x480 image for each extractor")
    sp.add_argument("--methods", type=comma_list, help="comma-separated confs (default: sekd,sift,...)")
    sp.add_argument("--runs", type=positive_int, default=5)
    sp.add_argument("--threads", type=positive_int, help="torch threads (default: torch's)")
    sp.add_argument("--device", choices=["cpu", "cuda"])
    sp.add_argument("--backends", type=comma_list, help="SEKD network backends, comma-separated (default: "
                    "torch,onnxruntime,openvino; the last two only when installed, CPU only)")
    sp.add_argument("--authors-code", metavar="DIR", help="a checkout of the authors' SEKD release "
                    "(aliyun/Self-Evolving-Keypoint-Demo): timed as a reference in every SEKD method's runs")
    sp.add_argument("--breakdown", action="store_true", help="also split SEKD's end-to-end time into its stages")
    sp.add_argument("--matching", action="store_true",
                    help="also time mutual nearest-neighbour matching (ms per 4096x4096 pair, before vs blocked; pairs/s)")
    sp.add_argument("--output", default="outputs/speed", help="folder of results.json / results.md (default: outputs/speed)")
    sp.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=METHOD_OPTIONS_HELP)
    sp.set_defaults(func=_speed)
    ts = sub.add_parser("train-speed", help="trainer throughput: training views/s (fp32, bf16), step-1/3 label ms per image")
    ts.add_argument("--config", help="training config (default: benchmark_configs/train/gpu-short.yaml)")
    ts.add_argument("--device", choices=["cpu", "cuda"])
    ts.add_argument("--iters", type=positive_int, default=5, help="timed training batches per measurement")
    ts.add_argument("--reps", type=positive_int, default=2, help="timed label images per step")
    ts.add_argument("--threads", type=positive_int, help="torch threads (default: torch's)")
    ts.add_argument("--skip", action="append", choices=["train", "labels"], help="skip a part (repeatable)")
    ts.add_argument("--output", default="outputs/train-speed", help="folder of results.json / results.md")
    ts.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="training config overrides")
    ts.set_defaults(func=_train_speed)
    sub.add_parser("scene", help=SCENE_HELP, add_help=False)  # listed here, parsed by sfm.scene.cli
    rc = sub.add_parser("reconstruction", help="SfM benchmark on scene configs (optionally with GT cameras)")
    rc.add_argument("--config", action="append", required=True,
                    help="scene config YAML (repeatable), e.g. benchmark_configs/reconstruction/fountain-P11.yaml")
    rc.add_argument("--methods", type=comma_list,
                    help="comma-separated methods (colmap-sift, sift (COLMAP's extraction settings), sift-hloc, sekd-best, "
                    "sekd-sfm, superpoint, d2net or any extractor conf; default: "
                    "colmap-sift,sift,sekd-best,sekd-sfm,sekd-selftrained-sfm,superpoint,d2net)")
    rc.add_argument("--extractors", type=comma_list, help="the same as --methods (older name)")
    rc.add_argument("--output", default="outputs/reconstruction_benchmark", help="output folder")
    rc.add_argument("--work", help="folder of the per-run caches (features, matches, models); default: --output")
    rc.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=SCENE_OVERRIDES_HELP)
    rc.set_defaults(func=_reconstruction)
    po = sub.add_parser("pose", help="relative-pose AUC@5/10/20 on scene configs with GT cameras")
    po.add_argument("--config", action="append", required=True,
                    help="scene config YAML with gt_cameras (repeatable)")
    po.add_argument("--methods", type=comma_list, help="comma-separated methods (as for reconstruction)")
    po.add_argument("--extractors", type=comma_list, help=argparse.SUPPRESS)
    po.add_argument("--pairs", help="pair list (name0 name1 per line; default: every pair of each scene)")
    po.add_argument("--threshold", type=finite_positive_float, default=1.0, help="RANSAC inlier threshold in pixels (default 1.0)")
    po.add_argument("--output", default="outputs/pose", help="output folder")
    po.add_argument("--work", help="folder of the per-method caches (features, matches); default: --output")
    po.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=SCENE_OVERRIDES_HELP)
    po.add_argument("--estimator", default="pycolmap",
                    help="robust relative-pose estimator: pycolmap (LO-RANSAC, default) | opencv | magsac | poselib")
    po.set_defaults(func=_pose)
    tr = sub.add_parser("triangulation", help="triangulation with the GT cameras fixed (Schoenberger et al. 2017)")
    tr.add_argument("--config", action="append", required=True, help="scene config YAML with gt_cameras (repeatable)")
    tr.add_argument("--methods", help="comma-separated methods (as for reconstruction; default colmap-sift,sift,sekd-best,sekd-sfm)")
    tr.add_argument("--extractors", help=argparse.SUPPRESS)
    tr.add_argument("--verification", default="poses", help="poses (GT epipolar check) | colmap | none")
    tr.add_argument("--max-error", type=finite_positive_float, default=4.0, help="poses: Sampson distance threshold in px (default 4)")
    tr.add_argument("--output", default="outputs/triangulation", help="output folder")
    tr.add_argument("--work", help="folder of the per-method caches (features, matches); default: --output")
    tr.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=SCENE_OVERRIDES_HELP)
    tr.set_defaults(func=_triangulation)
    lo = sub.add_parser("localization", help="leave-one-out localization in the GT-pose triangulation of the others")
    lo.add_argument("--config", action="append", required=True, help="scene config YAML with gt_cameras (repeatable)")
    lo.add_argument("--methods", help="comma-separated methods (as for reconstruction)")
    lo.add_argument("--extractors", help=argparse.SUPPRESS)
    lo.add_argument("--ransac-thresh", type=finite_positive_float, default=12.0, help="absolute-pose RANSAC threshold in px (default 12)")
    lo.add_argument("--query-intrinsics", default="gt", help="gt (fixed GT K) | exif (EXIF / image size, focal refined)")
    lo.add_argument("--output", default="outputs/localization", help="output folder")
    lo.add_argument("--work", help="folder of the per-method caches (features, matches); default: --output")
    lo.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=SCENE_OVERRIDES_HELP)
    lo.set_defaults(func=_localization)
    args = parser.parse_args(argv)
    # speed and train-speed keep nothing between runs: their hint says only how to measure again
    stateless = args.func in (_speed, _train_speed)
    hint = ("nothing was saved; run the same command again to measure" if stateless
            else "cached features are kept; run the same command again to resume")
    return run_cli(args.func, args=args, on_success=lambda code: code, quiet=True, resume_hint=hint)


if __name__ == "__main__":
    raise SystemExit(main())
