"""Extraction and matching speed (median after warm-up).

    python -m sekd_plugin.benchmark speed [--methods sekd,sift] [--runs 5] [--device cpu]
        [--backends torch,onnxruntime] [--breakdown] [--matching]

* Extraction: ms per 640 x 480 image for each extractor. SEKD methods run once per backend
  (``torch``, and ``onnxruntime`` when installed), **interleaved** run by run, so that the
  ratio between the backends is measured under the same machine load; the network alone is
  timed too.
* GFLOP per 640 x 480 image of every learned method, counted from its layers
  (:mod:`sekd_plugin.models.flops`: 2 FLOP per multiply-add of the convolutions and matrix
  products that run, every scale included; GMAC = half of it, the unit of e.g. ALIKE's table).
* ``--breakdown``: the end-to-end path of one image split into its stages (JPEG decoding,
  conversion and resizing, network, NMS, selection, descriptor sampling, h5 writing).
* ``--matching``: mutual-nearest-neighbour pairs/s on synthetic unit descriptors shaped like
  SIFT's (6 images x ~7,000 keypoints, all 15 pairs): one pair at a time vs one image
  against all its partners in one matrix product, on CPU and (when present) on CUDA.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

from ..common import ConfigError, pick_device
from ..extractors.base import load_extractor
from ..extractors.confs import get_conf
from ..ops.gray import rgb_to_gray_u8
from ..extractors.sekd import SEKD
from ..models.flops import model_gflops
from . import core

DEFAULT_METHODS = ("sekd-best", "sekd", "sekd-ms", "sift", "superpoint", "d2net-ss", "orb", "akaze", "brisk")
BACKENDS = ("torch", "onnxruntime")
SIZE = (640, 480)  # (W, H)


def test_photo() -> np.ndarray:
    """A real photo (scikit-image's astronaut) at 640 x 480, uint8 RGB ``H x W x 3``."""
    from skimage import data

    return cv2.resize(data.astronaut(), SIZE, interpolation=cv2.INTER_AREA)


def test_image(grayscale: bool) -> torch.Tensor:
    """:func:`test_photo` as a ``1 x C x H x W`` float tensor in [0, 1]."""
    image = test_photo()
    if grayscale:
        image = rgb_to_gray_u8(image)[..., None]
    return torch.from_numpy(image.astype(np.float32) / 255).permute(2, 0, 1)[None].contiguous()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn: Callable[[], object], runs: int, device: torch.device) -> float:
    """Median wall time of ``fn()`` in ms over ``runs`` calls after two warm-up calls."""
    return _time_interleaved({"x": fn}, runs, device)["x"]


def _time_interleaved(fns: dict[str, Callable[[], object]], runs: int, device: torch.device,
                      warmup: int = 2) -> dict[str, float]:
    """Median ms of each function, the functions called in turn within every run (same load)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for i in range(runs + warmup):
        for key, fn in fns.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            if i >= warmup:
                times[key].append(1000 * (time.perf_counter() - start))
    return {k: statistics.median(v) for k, v in times.items()}


def available_backends(requested=None) -> tuple[list[str], list[str]]:
    """(backends to run, messages about those skipped)."""
    from ..models.onnx_runtime import onnx_missing

    wanted = list(requested or BACKENDS)
    unknown = sorted(set(wanted) - set(BACKENDS))
    if unknown:
        raise ConfigError(f"unknown backend(s) {unknown}; known: {list(BACKENDS)}")
    notes = []
    if "onnxruntime" in wanted and onnx_missing():
        notes.append(f"backend onnxruntime skipped: {onnx_missing()}")
        wanted.remove("onnxruntime")
    return wanted, notes


def breakdown(model: SEKD, runs: int, device: torch.device) -> dict[str, float]:
    """Median ms of each stage of SEKD's end-to-end path on one 640 x 480 JPEG."""
    from ..extractors.sekd import describe, peaks, select
    from ..io.h5 import write_features
    from ..io.images import preprocess

    conf = model.conf
    jpeg = cv2.imencode(".jpg", cv2.cvtColor(test_photo(), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])[1]
    large = cv2.resize(test_photo(), (2 * SIZE[0], 2 * SIZE[1]))
    flags = cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION
    gray_u8 = cv2.imdecode(jpeg, flags)
    pre = {"grayscale": True, "resize_max": max(SIZE)}
    gray = preprocess(gray_u8, pre)["image"].to(device)[None]
    prob, desc_map, padded = model.network_batch(gray[:, 0])
    size = tuple(gray.shape[-2:])
    mask = peaks(prob, size, conf)
    batch, pos, scores = select(prob, mask, size, conf)
    out = model({"image": gray})
    pred = {"keypoints": out["keypoints"][0].cpu().numpy(), "scores": out["scores"][0].cpu().numpy(),
            "descriptors": out["descriptors"][0].cpu().numpy(), "image_size": np.array(SIZE)}
    with tempfile.TemporaryDirectory() as tmp:
        h5 = Path(tmp, "f.h5")
        stages = {
            "decode (JPEG -> uint8)": lambda: cv2.imdecode(jpeg, flags),
            "to float tensor (no resize)": lambda: preprocess(gray_u8, pre),
            "resize 1280x960 -> 640x480": lambda: preprocess(rgb_to_gray_u8(large), pre),
            "network": lambda: model.network_batch(gray[:, 0]),
            "NMS": lambda: peaks(prob, size, conf),
            "selection (threshold + top-k)": lambda: select(prob, mask, size, conf),
            "descriptor sampling": lambda: describe(desc_map, batch, pos, padded, conf),
            "to host (numpy)": lambda: {k: v[0].cpu().numpy() for k, v in out.items()},
            "h5 write (float16)": lambda: write_features(h5, "img.jpg", pred, as_half=True, uncertainty=1.0),
        }
        with torch.inference_mode():
            return _time_interleaved(stages, runs, device)


def matching(runs: int, device: torch.device, images: int = 6, keypoints: int = 7000, dim: int = 128) -> list[dict]:
    """Pairs/s of mutual NN over all pairs of ``images`` synthetic images, per pair vs grouped."""
    from ..matchers.nearest_neighbor import (
        match_nearest_neighbor,
        match_one_to_many,
        pad_descriptors,
        pairwise_distance,
    )

    g = torch.Generator().manual_seed(0)
    counts = [keypoints - (keypoints // 200) * i for i in range(images)]  # unequal, as real images
    descs = [torch.nn.functional.normalize(torch.randn(dim, n, generator=g), dim=0).to(device) for n in counts]
    pairs = [(i, j) for i in range(images) for j in range(i + 1, images)]
    partners = {i: [j for a, j in pairs if a == i] for i in range(images)}
    padded = {i: pad_descriptors([descs[j] for j in js]) for i, js in partners.items() if js}

    def distance_matrix_per_pair():  # the formulation before this change (hloc's): full distance matrix
        for i, j in pairs:
            dist = pairwise_distance(descs[i][None], descs[j][None])
            top = dist.topk(1, dim=-1, largest=False)
            nn01 = top.indices[..., 0]
            mutual = dist.argmin(dim=1).gather(1, nn01) == torch.arange(dist.shape[1], device=device)
            torch.where(mutual, nn01, -1).cpu(), (1 - top.values[..., 0].square() / 4).cpu()

    def per_pair():
        for i, j in pairs:
            match_nearest_neighbor(descs[i], descs[j])[0].cpu()

    def grouped():
        for i, (d1, counts) in padded.items():
            match_one_to_many(descs[i], d1, counts)[0].cpu()

    modes = {"distance matrix, one pair at a time (before)": distance_matrix_per_pair,
             "similarity, one pair at a time": per_pair,
             "similarity, one image vs all its partners": grouped}
    with torch.inference_mode():
        ms = _time_interleaved(modes, runs, device, warmup=1)
    return [{"mode": k, "device": str(device), "pairs": len(pairs), "keypoints": keypoints,
             "pairs_per_s": len(pairs) / (v / 1000)} for k, v in ms.items()]


def run(methods=None, runs: int = 5, device: str | None = None, threads: int | None = None,
        backends=None, show_breakdown: bool = False, show_matching: bool = False,
        output: str | Path | None = "outputs/speed", overrides: list[str] | None = None) -> dict:
    """Time every method; returns :mod:`.core`'s envelope (one row per method and backend, the
    matching modes and the stage split as rows too) and writes it with ``results.md`` into
    ``output`` (``None``: print only). A method that fails is recorded and the others go on.
    ``overrides``: ``model.KEY=VALUE`` for every method, ``METHOD.model.KEY=VALUE`` for one."""
    from ..common.conf_layers import parse_dotlist, split_by_label
    from ..extractors.base import missing_weights_reason, override_conf

    if threads:
        torch.set_num_threads(threads)
    dev = pick_device(device)
    backends, notes = available_backends(backends)
    for note in notes:
        print(note)
    methods = list(methods or DEFAULT_METHODS)
    per_method = split_by_label(parse_dotlist(overrides or [], "the overrides"), methods)
    confs = {m: override_conf(get_conf(m), per_method[m], f"method {m}")  # an unknown name or key: one line
             for m in methods}
    settings = {"benchmark": "speed", "image_size": list(SIZE), "runs": runs, "warmup": 2, "backends": backends,
                "backend_notes": notes, "threads": torch.get_num_threads() if dev.type == "cpu" else None,
                "methods": methods, "overrides": list(overrides or []), "confs": confs}
    results = core.new_results("speed", settings, device=str(dev))

    def evaluate(method: str) -> tuple[dict, list[dict]]:
        conf = confs[method]
        image = test_image(conf.get("preprocessing", {}).get("grayscale", False)).to(dev)
        is_sekd = conf["model"]["name"] == "sekd"
        # onnxruntime: CPU and fp32 only
        fp32 = conf["model"].get("precision", "fp32") == "fp32"
        variants = [b for b in backends if (dev.type == "cpu" and fp32) or b == "torch"] if is_sekd else [None]
        models = {}
        for backend in variants:
            model_conf = dict(conf["model"], backend=backend) if backend else conf["model"]
            models[backend] = load_extractor(model_conf, dev)
        with torch.inference_mode():
            total = _time_interleaved({b: (lambda m=m: m({"image": image})) for b, m in models.items()}, runs, dev)
            net = {}
            if is_sekd:  # the network alone, to show the post-processing cost
                gray = image[:, 0] if image.shape[1] == 1 else image.mean(1)
                net = _time_interleaved({b: (lambda m=m: m.network_batch(gray)) for b, m in models.items()}, runs, dev)
        # the operations of the network (the same for every backend): counted on the torch one
        counted = models.get("torch", next(iter(models.values())))
        ops = model_gflops(counted, {"image": image})
        rows = []
        for backend, model in models.items():
            with torch.inference_mode():
                n = model({"image": image})["keypoints"].shape[1]
            rows.append({"kind": "extraction", "backend": backend or "-", "ms_end_to_end": total[backend],
                         "ms_network": net.get(backend), "keypoints": n,
                         "gflop": ops["gflop"] if ops else None, "gmac": ops["gmac"] if ops else None,
                         "vs_torch": total[backend] / total["torch"] if is_sekd and "torch" in total else None})
            if show_breakdown and is_sekd:
                rows.append({"kind": "stages", "backend": backend, "ms": breakdown(model, runs, dev)})
        summary = {r["backend"]: {k: v for k, v in r.items() if k not in ("kind", "backend")} for r in rows
                   if r["kind"] == "extraction"}
        return summary, rows

    core.run_methods(results, methods, evaluate,
                     skip_reason=lambda m: missing_weights_reason(confs[m]["model"], label=m))
    if show_matching:
        devices = [torch.device("cpu")] + ([dev] if dev.type == "cuda" else [])
        rows = [r for d in devices for r in matching(max(1, min(runs, 2)), d)]
        results["rows"].extend({"method": "mutual-nn", "kind": "matching", **r} for r in rows)
    text = markdown(results)
    print(text)
    if output is not None:
        core.save(output, results, text)
    return results


def markdown(results: dict) -> str:
    """The tables of a speed run: extraction, the stage split (``--breakdown``), matching."""
    st, env = results["settings"], results["environment"]
    rows = results["rows"]
    threads = f", {st['threads']} threads" if st.get("threads") else ""
    out = [f"ms per {st['image_size'][0]}x{st['image_size'][1]} image, median of {st['runs']} runs after 2 warm-up runs "
           f"(backends of one method interleaved run by run); device {env.get('device')}{threads}, torch {env['torch']}", ""]
    ext = [r for r in rows if r["kind"] == "extraction"]
    out.append(core.markdown_table(
        ("method", "backend", "ms/img (end to end)", "ms/img (network only)", "end to end vs torch", "#kp",
         "GFLOP", "GMAC"),
        [(r["method"], r["backend"], core.fmt(r["ms_end_to_end"], ".1f"), core.fmt(r["ms_network"], ".1f"),
          "-" if r["vs_torch"] is None else f"{r['vs_torch']:.2f}x", r["keypoints"],
          core.fmt(r.get("gflop"), ".2f"), core.fmt(r.get("gmac"), ".2f")) for r in ext]))
    out += ["", "GFLOP: 2 per multiply-add of the convolutions and matrix products run for one image (every scale); "
            "GMAC = multiply-adds (what e.g. ALIKE's table calls GFLOPs); '-' for methods without learned layers."]
    stages = {f"{r['method']} [{r['backend']}]": r["ms"] for r in rows if r["kind"] == "stages"}
    if stages:
        names = list(stages)
        out += ["", "End-to-end split of one 640x480 JPEG (ms, median; stages timed separately):", ""]
        out.append(core.markdown_table(("stage", *names), [(stage, *(f"{stages[n][stage]:.2f}" for n in names))
                                                           for stage in next(iter(stages.values()))]))
    match = [r for r in rows if r["kind"] == "matching"]
    if match:
        out += ["", f"Mutual nearest neighbour, {match[0]['pairs']} pairs of ~{match[0]['keypoints']} x 128-D unit "
                "descriptors (synthetic), median of the runs:", ""]
        out.append(core.markdown_table(("mode", "device", "pairs/s"),
                                       [(r["mode"], r["device"], f"{r['pairs_per_s']:.2f}") for r in match]))
    out += core.outcome_lines(results)
    return "\n".join(out) + "\n"
