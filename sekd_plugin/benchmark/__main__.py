"""``python -m sekd_plugin.benchmark {hpatches,speed,reconstruction}``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..common import ConfigError, run_cli


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
    run(args.dataset, args.output, args.methods.split(",") if args.methods else None, args.protocol,
        matcher, args.overwrite, args.device, args.plot_matches, types, weights)
    print((Path(args.output) / "results.md").read_text())
    return 0


def _speed(args) -> int:
    from .speed import run

    if args.runs < 1:
        raise ConfigError(f"--runs must be at least 1, got {args.runs}")
    run(args.methods.split(",") if args.methods else None, args.runs, args.device, args.threads)
    return 0


def _train_speed(args) -> int:
    from .train_speed import run

    run(args.config, args.device, args.iters, args.reps, args.threads, args.overrides, args.skip)
    return 0


def _reconstruction(args) -> int:
    from .reconstruction import DEFAULT_EXTRACTORS, run

    extractors = [m for m in args.extractors.split(",") if m] if args.extractors else list(DEFAULT_EXTRACTORS)
    results = run(args.config, extractors, args.output, args.overrides)
    print((Path(args.output) / "results.md").read_text())
    return 0 if any(results["scenes"].values()) or not results["failed"] else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sekd_plugin.benchmark")
    sub = parser.add_subparsers(dest="command", required=True)
    hp = sub.add_parser("hpatches", help="HPatches-style homography benchmark (default: embedded demo data)")
    hp.add_argument("--dataset", action="append", help="HPatches- or Oxford-layout folder (repeatable)")
    hp.add_argument("--output", default="outputs/hpatches", help="output folder (default: outputs/hpatches)")
    hp.add_argument("--methods", help="comma-separated extractor confs or LABEL=CONF "
                    "(default: sekd,sekd-selftrained,sift,superpoint,d2net)")
    hp.add_argument("--weights", action="append", metavar="LABEL=PATH",
                    help="checkpoint for one method, e.g. --methods sekd,ours=sekd --weights ours=runs/x/model.pth")
    hp.add_argument("--protocol", default="sekd", choices=["sekd", "d2net"])
    hp.add_argument("--ratio", type=float, help="Lowe ratio threshold (default: none)")
    hp.add_argument("--distance", type=float, help="descriptor distance threshold (default: none)")
    hp.add_argument("--no-mutual", action="store_true", help="disable the mutual check")
    hp.add_argument("--type", action="append", help="sequence type override NAME=i|v (Oxford names)")
    hp.add_argument("--overwrite", action="store_true", help="re-extract cached features")
    hp.add_argument("--device", choices=["cpu", "cuda"])
    hp.add_argument("--plot-matches", action="store_true", help="draw match images per pair")
    hp.set_defaults(func=_hpatches)
    sp = sub.add_parser("speed", help="ms per 640x480 image for each extractor")
    sp.add_argument("--methods", help="comma-separated confs (default: sekd,sift,...)")
    sp.add_argument("--runs", type=int, default=5)
    sp.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    sp.add_argument("--device", choices=["cpu", "cuda"])
    sp.set_defaults(func=_speed)
    ts = sub.add_parser("train-speed", help="trainer throughput: training views/s (fp32, bf16), step-1/3 label ms per image")
    ts.add_argument("--config", help="training config (default: benchmark_configs/train/gpu-short.yaml)")
    ts.add_argument("--device", choices=["cpu", "cuda"])
    ts.add_argument("--iters", type=int, default=5, help="timed training batches per measurement")
    ts.add_argument("--reps", type=int, default=2, help="timed label images per step")
    ts.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    ts.add_argument("--skip", action="append", choices=["train", "labels"], help="skip a part (repeatable)")
    ts.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="training config overrides")
    ts.set_defaults(func=_train_speed)
    rc = sub.add_parser("reconstruction", help="SfM benchmark on scene configs (optionally with GT cameras)")
    rc.add_argument("--config", action="append", required=True,
                    help="scene config YAML (repeatable), e.g. benchmark_configs/reconstruction/fountain-P11.yaml")
    rc.add_argument("--extractors", help="comma-separated extractor confs (default: sekd,sekd-selftrained,sift)")
    rc.add_argument("--output", default="outputs/reconstruction_benchmark", help="output folder")
    rc.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                    help="config overrides applied to every config (e.g. intrinsics=gt resize_max=1024)")
    rc.set_defaults(func=_reconstruction)
    args = parser.parse_args(argv)
    return run_cli(args.func, args=args, on_success=lambda code: code, quiet=True,
                   resume_hint="cached features are kept; run the same command again to resume")


if __name__ == "__main__":
    raise SystemExit(main())
