"""Extract local features of a folder of images into an hloc features .h5 file.

    python -m sekd_plugin.extract_features --conf sekd --images DIR --output feats.h5

``main(...)`` mirrors ``hloc.extract_features.main``: images are decoded in a background
DataLoader worker, passed to the extractor one at a time, and each image's features are
rescaled to the original resolution and written as one h5 group (see
``sekd_plugin.io.h5`` for the layout and the interruption guarantee). Images already in
the file are skipped unless ``overwrite``, so an interrupted run resumes where it stopped.
An image that cannot be read (or that the extractor rejects, e.g. too small) is reported by
name and the others are still processed.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import pprint
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm import tqdm

from .common import EXIT_FAILED, EXIT_OK, pick_device, run_cli, sigterm_as_interrupt
from .common.errors import ConfigError, InputError
from .extractors.base import load_extractor
from .extractors.confs import confs, get_conf
from .io.h5 import list_names, write_features
from .io.images import IMAGE_EXTENSIONS, ImageDataset, check_names_inside, check_preprocessing, list_images, parse_image_list

logger = logging.getLogger(__name__)


class NoImagesError(InputError):
    """There is nothing to extract: the folder or image list has no images."""


@dataclasses.dataclass
class ExtractionResult:
    """What :func:`extract` did. ``summary`` rows are (name, (W, H), number of keypoints)."""

    feature_path: Path
    extracted: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)
    failed: dict[str, str] = dataclasses.field(default_factory=dict)
    summary: list[tuple[str, tuple[int, int], int]] = dataclasses.field(default_factory=list)
    timings: dict[str, float] = dataclasses.field(default_factory=dict)  # name -> extractor ms


def postprocess(pred: dict[str, np.ndarray], original_size: np.ndarray, size: np.ndarray,
                detection_noise: float = 1.0) -> tuple[dict[str, np.ndarray], float]:
    """Bring one image's predictions (batch dim removed) to original-image pixels, as hloc.

    ``keypoints`` N x 2 become ``(kp + 0.5) * (original_size / size) - 0.5`` (the centre of
    the top-left pixel stays (0, 0)), ``scales`` are multiplied by the mean scale factor and
    ``image_size`` = ``original_size`` (W, H) is added. Returns the new dict and the
    keypoint uncertainty ``detection_noise * mean(scale factor)``.
    """
    pred = dict(pred)
    original_size = np.asarray(original_size)
    factor = (original_size / np.asarray(size)).astype(np.float32)
    pred["image_size"] = original_size
    if "keypoints" in pred:
        pred["keypoints"] = ((pred["keypoints"] + 0.5) * factor[None] - 0.5).astype(pred["keypoints"].dtype)
    if "scales" in pred:
        pred["scales"] = (pred["scales"] * factor.mean()).astype(pred["scales"].dtype)
    return pred, float(detection_noise * factor.mean())


def _image_names(image_dir: Path, image_list, globs, allow_outside: bool = False) -> list[str]:
    if image_list is not None:
        names = parse_image_list(image_list)
        if not names:
            where = f" {image_list}" if isinstance(image_list, (str, os.PathLike)) else ""
            raise NoImagesError(f"the image list{where} is empty")
        if not allow_outside:
            check_names_inside(image_dir, names)
        return names
    if image_dir.exists() and not image_dir.is_dir():
        raise NoImagesError(f"--images must be a folder of images, got a file: {image_dir}")
    if not image_dir.is_dir():
        raise NoImagesError(f"image folder not found: {image_dir}")
    names = list_images(image_dir, globs)
    if not names:
        raise NoImagesError(f"no images found in {image_dir} (looked recursively for "
                            f"{globs or ' '.join(IMAGE_EXTENSIONS) + ' files'})")
    return names


def extract(
    conf: dict[str, Any],
    image_dir: str | os.PathLike,
    export_dir: str | os.PathLike | None = None,
    as_half: bool = True,
    image_list: str | os.PathLike | Sequence[str] | None = None,
    feature_path: str | os.PathLike | None = None,
    overwrite: bool = False,
    device: str | torch.device | None = None,
    num_workers: int = 1,
    allow_outside: bool = False,
) -> ExtractionResult:
    """:func:`main` returning an :class:`ExtractionResult` (what was done and what failed).

    Names of an ``image_list`` must stay inside ``image_dir`` unless ``allow_outside``."""
    image_dir = Path(image_dir)
    if "model" not in conf or "name" not in conf["model"]:
        raise ConfigError("extraction conf needs model.name (e.g. confs['sekd'])")
    preprocessing = check_preprocessing(conf.get("preprocessing"))
    if feature_path is None:
        if export_dir is None or "output" not in conf:
            raise ConfigError("give feature_path, or export_dir and a conf with an 'output' name")
        feature_path = Path(export_dir, conf["output"] + ".h5")
    feature_path = Path(feature_path)
    result = ExtractionResult(feature_path)

    names = _image_names(image_dir, image_list, preprocessing["globs"], allow_outside)
    feature_path.parent.mkdir(parents=True, exist_ok=True)
    if feature_path.exists() and not overwrite:
        done = set(list_names(feature_path))
        result.skipped = [n for n in names if n in done]
        names = [n for n in names if n not in done]
    if not names:
        logger.info("All %d images are already in %s; nothing to extract.", len(result.skipped), feature_path)
        return result
    logger.info("Extracting %d images (%d already done) into %s with:\n%s",
                len(names), len(result.skipped), feature_path, pprint.pformat(conf))

    device = pick_device(device)
    model = load_extractor(conf["model"], device)
    loader = torch.utils.data.DataLoader(
        ImageDataset(image_dir, names, preprocessing),
        batch_size=None, shuffle=False, num_workers=num_workers, pin_memory=device.type == "cuda",
    )
    with torch.inference_mode(), sigterm_as_interrupt():  # after pycolmap's import (see there)
        for data in tqdm(loader, total=len(names), desc="extract", unit="img"):
            name = data["name"]
            if "error" in data:
                result.failed[name] = data["error"]
                logger.warning("skipping %s: %s", name, data["error"])
                continue
            image = data["image"].to(device, non_blocking=True)[None]
            try:
                start = time.perf_counter()
                pred = model({"image": image})
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                result.timings[name] = 1000 * (time.perf_counter() - start)
            except ConfigError:
                raise
            except ValueError as error:  # the extractor rejects this image (e.g. too small)
                (W, H), (w, h) = (tuple(int(v) for v in data[k]) for k in ("original_size", "size"))
                resized = f", resized to {w} x {h} px" if (w, h) != (W, H) else ""
                error = f"{error} (the file is {W} x {H} px{resized})"
                result.failed[name] = error
                logger.warning("skipping %s: %s", name, error)
                continue
            pred = {k: v[0].cpu().numpy() for k, v in pred.items()}
            pred, uncertainty = postprocess(pred, np.asarray(data["original_size"]),
                                            np.asarray(data["size"]), getattr(model, "detection_noise", 1.0))
            write_features(feature_path, name, pred, as_half=as_half,
                           uncertainty=uncertainty if "keypoints" in pred else None)
            result.extracted.append(name)
            n = len(pred["keypoints"]) if "keypoints" in pred else 0
            result.summary.append((name, tuple(int(x) for x in pred["image_size"]), n))

    if result.failed:
        logger.warning("%d image(s) failed: %s", len(result.failed), ", ".join(result.failed))
    if result.extracted:
        logger.info("Wrote features of %d images to %s", len(result.extracted), feature_path)
    elif not feature_path.exists():
        logger.warning("No image could be extracted; %s was not written", feature_path)
    return result


def main(
    conf: dict[str, Any],
    image_dir: str | os.PathLike,
    export_dir: str | os.PathLike | None = None,
    as_half: bool = True,
    image_list: str | os.PathLike | Sequence[str] | None = None,
    feature_path: str | os.PathLike | None = None,
    overwrite: bool = False,
    device: str | torch.device | None = None,
) -> Path:
    """hloc-compatible entry point: extract features of the images of ``image_dir``.

    ``conf`` is an entry of ``confs`` (or the same shape). Output: ``feature_path``, else
    ``export_dir / (conf["output"] + ".h5")``. ``image_list`` is a text file or a list of
    names relative to ``image_dir``; else images are found recursively. With ``as_half``,
    float32 arrays are stored as float16. ``device`` defaults to CUDA when available.
    Returns the features path. Failed images are logged (and skipped), not raised.
    """
    return extract(conf, image_dir, export_dir, as_half, image_list, feature_path, overwrite, device).feature_path


# --------------------------------------------------------------------------- CLI


def _print_summary(result: ExtractionResult, max_rows: int = 20) -> None:
    if result.summary and len(result.summary) <= max_rows:
        width = max(len(r[0]) for r in result.summary)
        print(f"{'image':<{width}}  {'size (W x H)':>13}  {'keypoints':>9}")
        for name, (w, h), n in result.summary:
            print(f"{name:<{width}}  {f'{w} x {h}':>13}  {n:>9}")
    print(f"{len(result.extracted)} extracted, {len(result.skipped)} already done, "
          f"{len(result.failed)} failed -> {result.feature_path}")
    if result.failed:
        print(f"{len(result.failed)} images failed: " + ", ".join(result.failed))


def cli(argv: Sequence[str] | None = None) -> int:
    """Command line; returns the exit code (0 ok, 1 some images failed, 2 usage error, 130 interrupted)."""
    parser = argparse.ArgumentParser(
        prog="python -m sekd_plugin.extract_features",
        description="Extract local features into an hloc features .h5 file.",
        epilog="Exit status: 0 all images done, 1 some images failed, 2 usage error, 130 interrupted.",
    )
    parser.add_argument("--conf", default="sekd", choices=sorted(confs), help="named configuration (default: sekd)")
    parser.add_argument("--images", type=Path, required=True, help="folder of images (searched recursively)")
    out = parser.add_mutually_exclusive_group(required=True)
    out.add_argument("--output", type=Path, help="output .h5 file")
    out.add_argument("--export-dir", type=Path, help="output folder; the file is named after the conf")
    parser.add_argument("--image-list", type=Path, help="text file of image names relative to --images")
    parser.add_argument("--overwrite", action="store_true", help="re-extract images already in the file")
    parser.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    parser.add_argument("--weights", type=Path, help="checkpoint to use (overrides the conf's model.weights)")
    parser.add_argument("--allow-outside-images", action="store_true",
                        help="accept --image-list names outside --images (absolute or with ..)")
    parser.add_argument("--full-precision", action="store_true", help="store float32 instead of float16")
    parser.add_argument("--quiet", action="store_true", help="only warnings and errors")
    args = parser.parse_args(argv)

    conf = get_conf(args.conf)
    if args.weights is not None:
        conf["model"]["weights"] = str(args.weights)

    def summary(result: ExtractionResult) -> int:
        _print_summary(result)
        return EXIT_FAILED if result.failed else EXIT_OK

    return run_cli(extract, conf=conf, image_dir=args.images, export_dir=args.export_dir,
                   as_half=not args.full_precision, image_list=args.image_list, feature_path=args.output,
                   overwrite=args.overwrite, device=args.device, allow_outside=args.allow_outside_images, on_success=summary, quiet=args.quiet,
                   resume_hint="the images written so far are kept; run the same command again to resume")


if __name__ == "__main__":
    raise SystemExit(cli())
