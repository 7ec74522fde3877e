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
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm import tqdm

from .common import EXIT_FAILED, EXIT_OK, run_cli, sigterm_as_interrupt
from .common.cli import non_negative_int, positive_int
from .common.errors import ConfigError, DiskFullError, InputError
from .common.files import ensure_free_space
from .common.conf_layers import parse_dotlist
from .extractors.base import get_extractor, load_extractor, override_conf, weights_fingerprint
from .extractors.confs import confs, get_conf
from .io.h5 import (H5FileError, PartWriter, check_name, conf_differences, entry_name, features_entry, list_names,
                    read_conf)
from .io.images import (IMAGE_EXTENSIONS, ImageDataset, NoImagesError, check_names_inside, check_preprocessing,
                        list_images, normalise_names, parse_image_list, resized_size)
from .infra.sharded import ShardedFile

logger = logging.getLogger(__name__)


class FeatureConfMismatch(InputError):
    """The features file holds features of another conf (or other weights)."""


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
        return normalise_names(image_dir, names)  # one spelling, looked up as it is stored
    if image_dir.exists() and not image_dir.is_dir():
        raise NoImagesError(f"--images must be a folder of images, got a file: {image_dir}")
    if not image_dir.is_dir():
        raise NoImagesError(f"image folder not found: {image_dir}")
    names = list_images(image_dir, globs)
    if not names:
        raise NoImagesError(f"no images found in {image_dir} (looked recursively for "
                            f"{globs or ' '.join(IMAGE_EXTENSIONS) + ' files'})")
    return names


def provenance(conf: dict[str, Any]) -> dict[str, Any]:
    """What makes features comparable: the effective model conf (defaults filled in, without
    execution-only keys and the weights path), the preprocessing and the weights' sha256."""
    model = dict(conf["model"])
    cls = get_extractor(model["name"])
    model = {**cls.default_conf, **model}
    for key in (*getattr(cls, "runtime_conf_keys", ()), "weights"):
        model.pop(key, None)
    preprocessing = {k: v for k, v in check_preprocessing(conf.get("preprocessing")).items() if k != "globs"}
    out: dict[str, Any] = {"model": model, "preprocessing": preprocessing}
    sha256 = weights_fingerprint(conf["model"])
    if sha256 is not None:
        out["weights_sha256"] = sha256
    return out


def _features_of(found: dict[str, Any], weights: str | None = None) -> str:
    """``sekd (checkpoint sekd_selftrained, weights sha256 1a2b3c4d5e6f)``: the model and, for
    models with weights, which ones (two SEKD files differ only there); ``weights``: the file
    this run was given instead of the conf's checkpoint."""
    model = found.get("model", {})
    details = [f"weights {weights}" if weights else f"checkpoint {model['checkpoint']}"] if model.get("checkpoint") else []
    if found.get("weights_sha256"):
        details.append(f"weights sha256 {str(found['weights_sha256'])[:12]}")
    return f"{model.get('name')}" + (f" ({', '.join(details)})" if details else "")


def _check_provenance(path: Path, wanted: dict[str, Any], overwrite: bool, weights: str | None = None) -> bool:
    """Raise :class:`FeatureConfMismatch` when ``path`` holds features of another conf.

    Returns True when ``path`` must be rebuilt (``overwrite`` with a different conf)."""
    if not path.exists():
        return False
    found = read_conf(path)
    if found is None or found == wanted:
        return False
    if not list_names(path):  # e.g. left by a run that failed before its first image: nothing to defend
        logger.info("%s holds no features; replacing it", path)
        return True
    if overwrite:
        logger.warning("%s holds features of another conf; --overwrite: rebuilding it (%s)",
                       path, "; ".join(conf_differences(found, wanted)))
        return True
    raise FeatureConfMismatch(
        f"{path} holds features of another conf ({'; '.join(conf_differences(found, wanted))}; "
        f"the file has {_features_of(found)} features, this run asks for {_features_of(wanted, weights)}). "
        "Use another output file, or --overwrite to replace its features")


def _probe_sizes(image_dir: Path, names: Sequence[str], preprocessing: dict[str, Any]) -> list[tuple[int, int] | None]:
    """Model-input size ``(W, H)`` of every image from its header (no decoding); None if unknown."""
    import PIL.Image

    out = []
    for name in names:
        try:
            with PIL.Image.open(image_dir / name) as image:
                size = image.size
            out.append(resized_size(size, preprocessing["resize_max"], preprocessing["resize_force"]))
        except Exception:  # unreadable here: the loader reports it by name
            out.append(None)
    return out


def make_batches(sizes: Sequence[tuple[int, int] | None], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of at most ``batch_size`` images of one size, in list order.

    An image of unknown size is a batch of its own. Batches are ordered by their first image.
    """
    groups: dict[Any, list[int]] = defaultdict(list)
    for i, size in enumerate(sizes):
        groups[size if size is not None else ("unknown", i)].append(i)
    batches = [g[k:k + batch_size] for g in groups.values() for k in range(0, len(g), batch_size)]
    return sorted(batches, key=lambda b: b[0])


def collate_same_size(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Loader collate: ``{"errors": [(name, message)], "batches": [{"names", "image" B x C x H x W,
    "original_size" B x 2, "size" B x 2}]}`` with one batch per actual size."""
    errors = [(it["name"], it["error"]) for it in items if "error" in it]
    by_shape: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for it in items:
        if "error" not in it:
            by_shape[tuple(it["image"].shape)].append(it)
    batches = [{"names": [it["name"] for it in group],
                "image": torch.stack([it["image"] for it in group]),
                "original_size": np.stack([it["original_size"] for it in group]),
                "size": np.stack([it["size"] for it in group])} for group in by_shape.values()]
    return {"errors": errors, "batches": batches}


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
    batch_size: int = 1,
) -> ExtractionResult:
    """:func:`main` returning an :class:`ExtractionResult` (what was done and what failed).

    Names of an ``image_list`` must stay inside ``image_dir`` unless ``allow_outside``.
    ``batch_size > 1`` groups images of equal (resized) size into one forward pass where the
    extractor supports it (``extract_batch``; SEKD does), with identical features. Under
    ``torchrun`` the images are split across the ranks (balanced by pixel count); each rank
    writes parts ``<output>.parts/*.h5`` and rank 0 publishes them into the output atomically
    (alone, the process does; see :mod:`sekd_plugin.infra.sharded`). Every rank returns the totals.
    """
    image_dir = Path(image_dir)
    if "model" not in conf or "name" not in conf["model"]:
        raise ConfigError("extraction conf needs model.name (e.g. confs['sekd'])")
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
    if num_workers < 0:  # before any file is created
        raise ConfigError(f"num_workers must be 0 or more, got {num_workers}")
    preprocessing = check_preprocessing(conf.get("preprocessing"))
    if feature_path is None:
        if export_dir is None or "output" not in conf:
            raise ConfigError("give feature_path, or export_dir and a conf with an 'output' name")
        feature_path = Path(export_dir, conf["output"] + ".h5")
    feature_path = Path(feature_path)
    result = ExtractionResult(feature_path)
    shard = ShardedFile(feature_path, "features", unit="images")
    ctx = shard.ctx

    names = _image_names(image_dir, image_list, preprocessing["globs"], allow_outside)
    undecodable = set()
    for name in names:  # HDF5 names are UTF-8: report such a file by name and go on
        try:
            check_name(name)
        except H5FileError as error:
            undecodable.add(name)
            result.failed[name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")] = str(error)
    if undecodable:
        logger.warning("skipping %d image(s) whose file name is not valid UTF-8: %s",
                       len(result.failed), ", ".join(result.failed))
        names = [n for n in names if n not in undecodable]
    wanted = provenance(conf)

    # rank 0 checks (and with overwrite clears) what is there; every rank then reads the same file
    weights = conf["model"].get("weights")
    shard.prepare(lambda path: _check_provenance(path, wanted, overwrite, weights), wanted, overwrite)
    done = set(list_names(feature_path)) if feature_path.exists() and not overwrite else set()
    result.skipped = [n for n in names if entry_name(n) in done]
    todo = [n for n in names if entry_name(n) not in done]

    sizes = _probe_sizes(image_dir, todo, preprocessing) if (batch_size > 1 or ctx.active) else [None] * len(todo)
    share = shard.share([(s[0] * s[1]) if s else 1 for s in sizes])
    todo, sizes = [todo[i] for i in share], [sizes[i] for i in share]
    record = wanted  # an hloc file's entries are not ours to vouch for: None
    if feature_path.exists() and read_conf(feature_path) is None and done:
        logger.warning("%s holds features without a recorded conf (e.g. written by hloc); adding to it "
                       "without checking that they are comparable", feature_path)
        record = None

    if todo:
        logger.info("Extracting %d images (%d already done) into %s%s with:\n%s", len(todo), len(result.skipped),
                    feature_path, f" (rank {ctx.rank} of {ctx.world})" if ctx.active else "", pprint.pformat(conf))
        try:
            _extract_into(shard, conf, image_dir, todo, sizes, preprocessing, wanted, as_half,
                          ctx.device(device), num_workers, batch_size, result)
        except BaseException:
            shard.publish_interrupted(record)
            raise
    elif not ctx.active:
        logger.info("All %d images are already in %s; nothing to extract.", len(result.skipped), feature_path)

    everyone = shard.finish(record, (result.extracted, result.failed, result.summary, result.timings))
    if ctx.active:
        result.extracted = sorted({n for e, _, _, _ in everyone for n in e})
        result.failed = {k: v for _, f, _, _ in everyone for k, v in f.items()}
        result.summary = sorted({row for _, _, s, _ in everyone for row in s})
        result.timings = {k: v for _, _, _, t in everyone for k, v in t.items()}
    if result.failed:
        logger.warning("%d image(s) failed: %s", len(result.failed), ", ".join(result.failed))
    if result.extracted:
        logger.info("Wrote features of %d images to %s", len(result.extracted), feature_path)
    elif not feature_path.exists():
        logger.warning("No image could be extracted; %s was not written", feature_path)
    return result


def _extract_into(shard: ShardedFile, conf: dict[str, Any], image_dir: Path, names: list[str],
                  sizes: list[tuple[int, int] | None], preprocessing: dict[str, Any], wanted: dict[str, Any],
                  as_half: bool, device: torch.device, num_workers: int, batch_size: int,
                  result: ExtractionResult) -> None:
    """Extract ``names`` into finished parts of the output (each recording ``wanted``)."""
    try:  # no work started on a full disk
        ensure_free_space(shard.path)
    except DiskFullError as error:
        raise DiskFullError(error.path, written=0, unit="images") from None
    model = load_extractor(conf["model"], device)
    batched = batch_size > 1 and hasattr(model, "extract_batch")
    batches = make_batches(sizes, batch_size if batched else 1)
    loader = torch.utils.data.DataLoader(
        ImageDataset(image_dir, names, preprocessing), batch_sampler=batches, collate_fn=collate_same_size,
        num_workers=num_workers, pin_memory=device.type == "cuda" and torch.cuda.is_available(),
        persistent_workers=False,
    )
    noise = getattr(model, "detection_noise", 1.0)
    writer = shard.writer(wanted, depth=2 * batch_size)
    try:
        with torch.inference_mode(), sigterm_as_interrupt(), \
                tqdm(total=len(names), desc="extract", unit="img") as bar:  # after pycolmap's import (see there)
            for item in loader:
                for name, error in item["errors"]:
                    result.failed[name] = error
                    logger.warning("skipping %s: %s", name, error)
                for batch in item["batches"]:
                    _run_batch(model, batch, batched, device, noise, as_half, writer, result)
                bar.update(sum(len(b["names"]) for b in item["batches"]) + len(item["errors"]))
    finally:
        writer.close()


def _run_batch(model, batch: dict[str, Any], batched: bool, device: torch.device, noise: float, as_half: bool,
               writer: PartWriter, result: ExtractionResult) -> None:
    names = batch["names"]
    images = batch["image"].to(device, non_blocking=True)
    try:
        start = time.perf_counter()
        if batched:
            preds = model.extract_batch(images, output_device="cpu")  # one transfer per batch
        else:
            preds = [{k: v[0] for k, v in model({"image": images[i:i + 1]}).items()} for i in range(len(names))]
        preds = [{k: v.cpu().numpy() for k, v in p.items()} for p in preds]  # synchronises the device
        elapsed = 1000 * (time.perf_counter() - start) / len(names)
    except ConfigError:
        raise
    except ValueError as error:  # the extractor rejects these images (e.g. too small): all of one size
        for name, (W, H), (w, h) in zip(names, batch["original_size"].tolist(), batch["size"].tolist()):
            resized = f", resized to {w} x {h} px" if (w, h) != (W, H) else ""
            result.failed[name] = f"{error} (the file is {W} x {H} px{resized})"
            logger.warning("skipping %s: %s", name, result.failed[name])
        return
    for name, pred, original_size, size in zip(names, preds, batch["original_size"], batch["size"]):
        pred, uncertainty = postprocess(pred, original_size, size, noise)
        writer.put(**features_entry(name, pred, as_half, uncertainty if "keypoints" in pred else None))
        result.timings[name] = elapsed
        result.extracted.append(name)
        n = len(pred["keypoints"]) if "keypoints" in pred else 0
        result.summary.append((name, tuple(int(x) for x in pred["image_size"]), n))


def main(
    conf: dict[str, Any],
    image_dir: str | os.PathLike,
    export_dir: str | os.PathLike | None = None,
    as_half: bool = True,
    image_list: str | os.PathLike | Sequence[str] | None = None,
    feature_path: str | os.PathLike | None = None,
    overwrite: bool = False,
    device: str | torch.device | None = None,
    batch_size: int = 1,
) -> Path:
    """hloc-compatible entry point: extract features of the images of ``image_dir``.

    ``conf`` is an entry of ``confs`` (or the same shape). Output: ``feature_path``, else
    ``export_dir / (conf["output"] + ".h5")``. ``image_list`` is a text file or a list of
    names relative to ``image_dir``; else images are found recursively. With ``as_half``,
    float32 arrays are stored as float16. ``device`` defaults to CUDA when available.
    Returns the features path. Failed images are logged (and skipped), not raised.
    """
    return extract(conf, image_dir, export_dir, as_half, image_list, feature_path, overwrite, device,
                   batch_size=batch_size).feature_path


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
    parser.add_argument("--batch-size", type=positive_int, default=1,
                        help="images of equal (resized) size per forward pass (SEKD; default 1)")
    parser.add_argument("--num-workers", type=non_negative_int, default=1,
                        help="image decoding processes (default 1; 0: in the main process)")
    parser.add_argument("--backend", choices=["torch", "onnxruntime"],
                        help="SEKD network backend (default: the conf's, torch); onnxruntime is the CPU fast path")
    parser.add_argument("--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="conf options, e.g. model.max_keypoints=2000 "
                        "preprocessing.resize_max=1024 (the trainer's dotlist syntax; unknown keys are refused)")
    args = parser.parse_args(argv)

    conf = get_conf(args.conf)
    if args.weights is not None:
        conf["model"]["weights"] = str(args.weights)
    if args.backend is not None:
        if conf["model"]["name"] != "sekd":
            parser.error(f"--backend applies to SEKD confs, not to {args.conf}")
        conf["model"]["backend"] = args.backend
    main_rank = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 prints the summary

    def summary(result: ExtractionResult) -> int:
        if main_rank:
            _print_summary(result)
        return EXIT_FAILED if result.failed else EXIT_OK

    def with_overrides(**kwargs):  # inside run_cli: a bad override is one line and exit 2
        return extract(conf=override_conf(conf, parse_dotlist(args.overrides), "the overrides"), **kwargs)

    return run_cli(with_overrides, image_dir=args.images, export_dir=args.export_dir,
                   as_half=not args.full_precision, image_list=args.image_list, feature_path=args.output,
                   overwrite=args.overwrite, device=args.device, allow_outside=args.allow_outside_images,
                   batch_size=args.batch_size, num_workers=args.num_workers, on_success=summary,
                   quiet=args.quiet or not main_rank,
                   resume_hint="the images written so far are kept; run the same command again to resume")


if __name__ == "__main__":
    raise SystemExit(cli())
