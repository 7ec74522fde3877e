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
* Achieved GFLOP/s (GFLOP / seconds, end to end and network only) against the machine's peak,
  measured in the same run on the same threads (:mod:`.peak`: torch fp32 / bf16 / int8 and
  onnxruntime fp32 / int8 matrix products, best of 5), so that the distance to the limit is
  printed ("% of fp32 peak"; the fp32 product is also timed among each method's runs).
* ``--matching``: mutual nearest neighbour on synthetic unit descriptors
  (:mod:`.speed_matching`): ms per 4,096 x 4,096 pair, full-matrix path (before) vs blocked,
  with a check that their matches are identical; and pairs/s over 6 SIFT-like images
  (~7,000 keypoints, all 15 pairs), on CPU and (when present) on CUDA.

The default methods: every SEKD setting below, and SIFT, SuperPoint, ALIKE and R2D2 in their
recommended confs (``extractors.confs.RECOMMENDED``), except R2D2 at a single scale
(``r2d2-ss``; its multi-scale conf ``r2d2`` takes ~10 s per image here: ``--methods r2d2``).
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
from . import core, peak, speed_matching

DEFAULT_METHODS = ("sekd-best", "sekd-best-fast", "sekd", "sekd-fast", "sekd-ms", "sift-best", "superpoint-demo",
                   "alike-s", "r2d2-ss", "d2net-ss", "orb", "akaze", "brisk")
# SEKD network backends, timed side by side (a conf's int8 precision runs on the CPU runtimes only)
BACKENDS = ("torch", "onnxruntime", "openvino")
AUTHORS = "authors' code"  # the row of --authors-code, timed in every SEKD method's interleaved runs
SIZE = (640, 480)  # (W, H)
PEAK_KEY = "fp32 peak product"  # timed among a method's backends


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
    from ..models.openvino_runtime import openvino_missing

    wanted = list(requested or BACKENDS)
    unknown = sorted(set(wanted) - set(BACKENDS))
    if unknown:
        raise ConfigError(f"unknown backend(s) {unknown}; known: {list(BACKENDS)}")
    notes = []
    for backend, reason in (("onnxruntime", onnx_missing()), ("openvino", openvino_missing() or onnx_missing())):
        if backend in wanted and reason:
            notes.append(f"backend {backend} skipped: {reason}")
            wanted.remove(backend)
    return wanted, notes


def sekd_variants(model_conf: dict, backends: list[str], device: torch.device) -> list[str]:
    """The backends an SEKD conf is timed on: fp32 on every one (the CPU runtimes on the CPU
    only), int8 on the CPU runtimes, bf16 on torch."""
    precision = model_conf.get("precision", "fp32")
    runs_on = {"fp32": ("torch", "onnxruntime", "openvino"), "int8": ("onnxruntime", "openvino"),
               "bf16": ("torch",)}[precision]
    return [b for b in backends if b in runs_on and (device.type == "cpu" or b == "torch")]


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


def matching(runs: int, device: torch.device, **kwargs) -> list[dict]:
    """:func:`.speed_matching.matching` with this module's interleaved timer."""
    return speed_matching.matching(runs, device, _time_interleaved, **kwargs)


def matching_pair(runs: int, device: torch.device, **kwargs) -> list[dict]:
    """:func:`.speed_matching.matching_pair` with this module's interleaved timer."""
    return speed_matching.matching_pair(runs, device, _time_interleaved, **kwargs)


def with_rates(fp32_peak: float | None, row: dict) -> dict:
    """``row`` plus achieved GFLOP/s (end to end, network only) and their fractions of ``fp32_peak``
    (GFLOP/s of the fp32 product timed in the same interleaved runs as the row)."""
    e2e, net = peak.gflops_per_s(row.get("gflop"), row.get("ms_end_to_end")), peak.gflops_per_s(
        row.get("gflop"), row.get("ms_network"))
    return {**row, "gflops_end_to_end": e2e, "gflops_network": net, "fp32_peak_same_load": fp32_peak,
            "fraction_fp32_peak_end_to_end": peak.fraction_of(e2e, fp32_peak),
            "fraction_fp32_peak_network": peak.fraction_of(net, fp32_peak)}


def run(methods=None, runs: int = 5, device: str | None = None, threads: int | None = None,
        backends=None, show_breakdown: bool = False, show_matching: bool = False,
        output: str | Path | None = "outputs/speed", overrides: list[str] | None = None,
        authors_code: str | Path | None = None) -> dict:
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
    authors = None
    if authors_code is not None:  # the authors' release, the official weights (never downloaded)
        from ..infra import assets
        from . import authors_code as reference

        weights = assets.locate("sekd").path
        if weights is None:
            raise ConfigError("--authors-code needs the official weights: python -m sekd_plugin.weights fetch sekd")
        authors = reference.load(authors_code, weights)
    settings = {"benchmark": "speed", "image_size": list(SIZE), "runs": runs, "warmup": 2, "backends": backends,
                "backend_notes": notes, "threads": torch.get_num_threads() if dev.type == "cpu" else None,
                "methods": methods, "overrides": list(overrides or []), "confs": confs,
                "authors_code": str(authors_code) if authors_code else None}
    results = core.new_results("speed", settings, device=str(dev))
    # the limit, measured now (same load, same threads): fp32 / bf16 / int8 matrix products
    peaks = peak.matmul_peaks(dev)
    size = next(p.get("size") or 256 for p in peaks if p["dtype"] == "fp32")
    peak_product, peak_gflop = peak.fp32_product(size, dev), 2 * size ** 3 / 1e9

    def evaluate(method: str) -> tuple[dict, list[dict]]:
        conf = confs[method]
        image = test_image(conf.get("preprocessing", {}).get("grayscale", False)).to(dev)
        is_sekd = conf["model"]["name"] == "sekd"
        variants = sekd_variants(conf["model"], backends, dev) if is_sekd else [None]
        if not variants:
            raise ConfigError(f"{method}: precision {conf['model'].get('precision')} runs on none of the "
                              f"backends {backends} here")
        models = {}
        for backend in variants:
            model_conf = dict(conf["model"], backend=backend) if backend else conf["model"]
            models[backend] = load_extractor(model_conf, dev)
        with torch.inference_mode():
            # the fp32 product of the peak timed in the same loop: the peak under the same load
            fns = {b: (lambda m=m: m({"image": image})) for b, m in models.items()}
            if is_sekd and authors is not None:  # the authors' single-scale code, in the same runs
                gray_np = image[0].mean(0).cpu().numpy()
                fns[AUTHORS] = lambda: authors(gray_np)
            total = _time_interleaved({**fns, PEAK_KEY: peak_product}, runs, dev)
            net = {}
            if is_sekd:  # the network alone, to show the post-processing cost
                gray = image[:, 0] if image.shape[1] == 1 else image.mean(1)
                net = _time_interleaved({b: (lambda m=m: m.network_batch(gray)) for b, m in models.items()}, runs, dev)
        # the operations of the network (the same for every backend and precision): counted on torch
        counted = models.get("torch") or (load_extractor(dict(conf["model"], backend="torch", precision="fp32"), dev)
                                          if is_sekd else models[None])
        ops = model_gflops(counted, {"image": image})
        peak_now = peak.gflops_per_s(peak_gflop, total[PEAK_KEY])
        rows = []
        for backend, model in models.items():
            with torch.inference_mode():
                n = model({"image": image})["keypoints"].shape[1]
            rows.append(with_rates(peak_now, {
                "kind": "extraction", "backend": backend or "-", "ms_end_to_end": total[backend],
                "ms_network": net.get(backend), "keypoints": n,
                "gflop": ops["gflop"] if ops else None, "gmac": ops["gmac"] if ops else None,
                "vs_torch": total[backend] / total["torch"] if is_sekd and "torch" in total else None,
                "authors_over_this": total[AUTHORS] / total[backend] if AUTHORS in total else None}))
            if show_breakdown and is_sekd:
                rows.append({"kind": "stages", "backend": backend, "ms": breakdown(model, runs, dev)})
        if AUTHORS in total:  # its network is the single-scale one: counted on our torch twin
            single = load_extractor(dict(conf["model"], backend="torch", precision="fp32", multi_scale=False), dev)
            ops1 = model_gflops(single, {"image": image})
            rows.append(with_rates(peak_now, {
                "kind": "extraction", "backend": AUTHORS, "ms_end_to_end": total[AUTHORS], "ms_network": None,
                "keypoints": int(authors(gray_np)[0].shape[1]), "gflop": ops1["gflop"] if ops1 else None,
                "gmac": ops1["gmac"] if ops1 else None, "vs_torch": None, "authors_over_this": 1.0}))
        summary = {r["backend"]: {k: v for k, v in r.items() if k not in ("kind", "backend")} for r in rows
                   if r["kind"] == "extraction"}
        return summary, rows

    core.run_methods(results, methods, evaluate,
                     skip_reason=lambda m: missing_weights_reason(confs[m]["model"], label=m))
    results["rows"].extend({"method": "matmul-peak", "kind": "peak", **p} for p in peaks)
    if show_matching:
        devices = [torch.device("cpu")] + ([dev] if dev.type == "cuda" else [])
        for d in devices:
            results["rows"].extend({"method": "mutual-nn", "kind": "matching-pair", **r}
                                   for r in matching_pair(max(3, runs), d))
            results["rows"].extend({"method": "mutual-nn", "kind": "matching", **r}
                                   for r in matching(max(1, min(runs, 2)), d))
    text = markdown(results)
    print(text)
    if output is not None:
        core.save(output, results, text)
    return results


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def markdown(results: dict) -> str:
    """The tables of a speed run: the measured peak, extraction (with achieved GFLOP/s and the
    fraction of the fp32 peak), the stage split (``--breakdown``), matching (``--matching``)."""
    st, env = results["settings"], results["environment"]
    rows = results["rows"]
    threads = f", {st['threads']} threads" if st.get("threads") else ""
    out = [f"ms per {st['image_size'][0]}x{st['image_size'][1]} image, median of {st['runs']} runs after 2 warm-up runs "
           f"(backends of one method interleaved run by run); device {env.get('device')}{threads}, torch {env['torch']}", ""]
    peaks = [r for r in rows if r["kind"] == "peak"]
    if peaks:
        out += [f"Measured peak of this machine in this run (square matrix products, best of 5{threads}): "
                f"{peak.describe(peaks)}.", ""]
    ext = [r for r in rows if r["kind"] == "extraction"]
    if any(r.get("authors_over_this") for r in ext):
        out += [f"`{AUTHORS}`: the authors' SEKD release ({st.get('authors_code')}), single scale, timed in the same "
                "interleaved runs as every SEKD row of its method; 'x authors' code' = its ms / the row's ms.", ""]
    out.append(core.markdown_table(
        ("method", "backend", "ms/img (end to end)", "ms/img (network only)", "end to end vs torch", "#kp",
         "GFLOP/img", "GMAC/img", "GFLOP/s (end to end)", "GFLOP/s (network)", "fp32 peak, same load (GFLOP/s)",
         "% of fp32 peak (end to end / network)", "x authors' code"),
        [(r["method"], r["backend"], core.fmt(r["ms_end_to_end"], ".1f"), core.fmt(r["ms_network"], ".1f"),
          "-" if r["vs_torch"] is None else f"{r['vs_torch']:.2f}x", r["keypoints"],
          core.fmt(r.get("gflop"), ".2f"), core.fmt(r.get("gmac"), ".2f"),
          core.fmt(r.get("gflops_end_to_end"), ".1f"), core.fmt(r.get("gflops_network"), ".1f"),
          core.fmt(r.get("fp32_peak_same_load"), ".1f"),
          f"{_pct(r.get('fraction_fp32_peak_end_to_end'))} / {_pct(r.get('fraction_fp32_peak_network'))}",
          "-" if r.get("authors_over_this") is None else f"{r['authors_over_this']:.2f}x")
         for r in ext]))
    out += ["", "GFLOP: 2 per multiply-add of the convolutions and matrix products run for one image (every scale); "
            "GMAC = multiply-adds (what e.g. ALIKE's table calls GFLOPs); '-' for methods without learned layers. "
            "GFLOP/s = GFLOP / seconds per image. fp32 peak, same load: the fp32 torch.mm product of the peak "
            "line, timed in the same interleaved runs as the method (median), so that a busy machine slows both; "
            "% of fp32 peak = GFLOP/s / that peak (onnxruntime / openvino rows: the same FLOP, another library's kernels; "
            "int8 rows count the same multiply-adds)."]
    stages = {f"{r['method']} [{r['backend']}]": r["ms"] for r in rows if r["kind"] == "stages"}
    if stages:
        names = list(stages)
        out += ["", "End-to-end split of one 640x480 JPEG (ms, median; stages timed separately):", ""]
        out.append(core.markdown_table(("stage", *names), [(stage, *(f"{stages[n][stage]:.2f}" for n in names))
                                                           for stage in next(iter(stages.values()))]))
    pair = [r for r in rows if r["kind"] == "matching-pair"]
    if pair:
        out += ["", f"Mutual nearest neighbour of one pair of {pair[0]['keypoints']} x {pair[0]['keypoints']} "
                f"{pair[0]['dim']}-D unit descriptors (synthetic), the two paths interleaved, median:", ""]
        out.append(core.markdown_table(
            ("path", "device", "ms/pair", "speed-up vs before", "mutual matches", "identical to before"),
            [(r["mode"], r["device"], f"{r['ms_per_pair']:.1f}", f"{r['speedup']:.2f}x", r["mutual_matches"],
              "yes" if r["identical"] else "NO") for r in pair]))
    match = [r for r in rows if r["kind"] == "matching"]
    if match:
        out += ["", f"Mutual nearest neighbour, {match[0]['pairs']} pairs of ~{match[0]['keypoints']} x 128-D unit "
                "descriptors (synthetic), median of the runs:", ""]
        out.append(core.markdown_table(("mode", "device", "pairs/s"),
                                       [(r["mode"], r["device"], f"{r['pairs_per_s']:.2f}") for r in match]))
    out += core.outcome_lines(results)
    return "\n".join(out) + "\n"
