"""``python -m sekd_plugin.benchmark train-speed``: throughput of the trainer's hot paths.

Prints, for a config (default ``benchmark_configs/train/gpu-short.yaml``) on synthetic images
of the config's sizes (no files needed):

* training views/s of steps 2 and 4 (a view = one of the two warped images of a pair; data
  preparation through the real ``PairDataset`` / ``DataLoader``, views made on the device,
  forward + frozen copy + losses + backward + Adam), in fp32 and bf16 autocast;
* step-1 ("detect") and step-3 ("reliability") label ms per image (image + references).

Numbers are medians over timed repetitions after warm-up, with the device synchronised.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import torch

from ..common import pick_device
from ..models.sekd import SEKDNet
from . import core

# the default config, ``benchmark_configs/train/gpu-short.yaml``, as overrides of the trainer's
# defaults: the installed package carries it (tests/benchmark/test_train_speed_config.py keeps
# the two equal)
DEFAULT_CONFIG_NAME = "gpu-short.yaml"
DEFAULT_CONFIG = {
    "data": {"max_side": 320, "crop_size": 256, "sub_set": 2, "val_images": 16, "cache": True},
    "detect": {"num_refs": 8, "ref_border": 20},
    "reliability": {"num_refs": 8, "ref_chunk": 8},
    "optim": {"lr": 3.0e-4, "batch_size": 8},
    "schedule": {"rounds": 4, "epochs_descriptor": 3, "epochs_detector": 3},
}


class _SyntheticImages:
    """An in-memory image set of random textured RGB images (``ImageSet``'s interface)."""

    def __init__(self, n: int, height: int, width: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        base = rng.integers(0, 256, (n, height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
        import cv2

        self.imgs = [cv2.resize(b, (width, height), interpolation=cv2.INTER_CUBIC) for b in base]
        self.keys = [f"img{i:04d}" for i in range(n)]

    def image(self, i: int) -> np.ndarray:
        return self.imgs[i]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _train_views_per_s(conf, device, kind: str, amp: str, iters: int, warmup: int) -> float:
    from torch.utils.data import DataLoader

    from ..train import steps
    from ..train.data import PairDataset, collate_pairs

    conf.optim.amp = amp
    bs = int(conf.optim.batch_size)
    n = bs * (iters + warmup)
    images = _SyntheticImages(min(n, 256), 240, 320)
    rng = np.random.default_rng(0)
    labels = {k: np.stack([rng.integers(12, 228, 1000), rng.integers(12, 308, 1000)], 1) for k in images.keys}
    indices = [i % len(images.keys) for i in range(n)]
    ds = PairDataset(images, indices, labels, conf, seed=0)
    workers = int(conf.data.num_workers)
    loader = DataLoader(ds, batch_size=bs, shuffle=False, collate_fn=collate_pairs, num_workers=workers,
                        pin_memory=device.type == "cuda", persistent_workers=False, prefetch_factor=4 if workers else None)
    torch.manual_seed(0)
    net = SEKDNet().to(device)
    model = steps.FeatureNet(net)
    if device.type == "cuda" and conf.optim.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if conf.optim.compile:
        model = torch.compile(model)
    frozen = steps.frozen_copy(net, conf.loss.frozen_bn)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4, fused=(device.type == "cuda") or None)
    it = iter(loader)
    warm = [next(it) for _ in range(warmup)]
    steps.train_epoch(kind, model, frozen, warm, opt, conf, device, progress=False, check_every=0)
    _sync(device)
    timed = [next(it) for _ in range(iters)] if workers == 0 else _Take(it, iters)
    t0 = time.perf_counter()
    steps.train_epoch(kind, model, frozen, timed, opt, conf, device, progress=False, check_every=0)
    _sync(device)
    return 2 * bs * iters / (time.perf_counter() - t0)


class _Take:
    """The next ``n`` batches of a running loader (workers keep preparing them while we train)."""

    def __init__(self, it, n: int):
        self.it, self.n = it, n

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        for _ in range(self.n):
            yield next(self.it)


LABEL_VARIANTS = {
    # name: (fast path, freed memory retained)
    "exact": (False, False),  # the exact computation as before: the training network, glibc's default allocator
    "exact+retain": (False, True),  # the same with freed memory retained (common/memory.py)
    "fast": (True, True),  # what the trainer runs: LabelNet, the reference-frame neighbourhood, retained memory
}


def _label_ms(conf, device, kind: str, reps: int) -> dict[str, float]:
    """Median ms per image of a label step for each of :data:`LABEL_VARIANTS`, interleaved (same references)."""
    from ..common.memory import memory_retained, retain_freed_memory
    from ..train import labels

    torch.manual_seed(0)
    net = SEKDNet().to(device).eval()
    img = torch.from_numpy(_SyntheticImages(1, 240, 320).imgs[0]).permute(2, 0, 1)[None].float().div(255).to(device)
    fn = labels.detector_score if kind == "detect" else labels.reliability_score
    section = "detect" if kind == "detect" else "reliability"
    variants = {}
    for name, (fast, retain) in LABEL_VARIANTS.items():
        c = conf.copy()
        c[section].fast = fast
        variants[name] = (c, labels.label_network(net, fast), retain)
    times: dict[str, list[float]] = {k: [] for k in variants}
    was = memory_retained()
    try:
        with torch.no_grad():
            for c, n, retain in variants.values():
                retain_freed_memory(retain)
                fn(n, img, c, torch.Generator().manual_seed(0))  # warm-up
            for r in range(reps):
                for name, (c, n, retain) in variants.items():
                    retain_freed_memory(retain)
                    _sync(device)
                    t0 = time.perf_counter()
                    fn(n, img, c, torch.Generator().manual_seed(r + 1))
                    _sync(device)
                    times[name].append(time.perf_counter() - t0)
    finally:
        retain_freed_memory(was)
    return {k: 1000.0 * statistics.median(v) for k, v in times.items()}


def run(config: str | None = None, device: str | None = None, iters: int = 5, reps: int = 2,
        threads: int | None = None, overrides: list[str] | None = None, skip: list[str] | None = None,
        output: str | Path | None = "outputs/train-speed") -> dict:
    """Measure and print; returns :mod:`.core`'s envelope (``methods``: the parts ``training``
    and ``labels``, each ``{name: value}``; ``rows``: one per measurement), also written with
    ``results.md`` into ``output`` (``None``: print only)."""
    from ..train import config as config_mod

    dev = pick_device(device)
    if threads:
        torch.set_num_threads(threads)
    from omegaconf import OmegaConf

    base = None if config else OmegaConf.merge(OmegaConf.structured(config_mod.TrainConfig), DEFAULT_CONFIG)
    conf = config_mod.load_config(config, list(overrides or []), base=base)
    skip = set(skip or [])
    size = int(conf.data.crop_size)
    settings = {"benchmark": "train-speed", "config": str(config or DEFAULT_CONFIG_NAME), "overrides": list(overrides or []),
                "crop_size": size, "batch_size": int(conf.optim.batch_size), "num_workers": int(conf.data.num_workers),
                "label_size": [320, 240], "detect_refs": int(conf.detect.num_refs),
                "reliability_refs": int(conf.reliability.num_refs), "desc_mode": str(conf.reliability.desc_mode),
                "neighbours": str(conf.reliability.neighbours), "iters": iters, "reps": reps,
                "threads": torch.get_num_threads() if dev.type == "cpu" else None}
    results = core.new_results("train-speed", settings, device=str(dev))
    print(f"train-speed on {dev} ({torch.get_num_threads()} CPU threads), config {config or DEFAULT_CONFIG_NAME}: "
          f"crops {size} x {size}, batch {conf.optim.batch_size}, {conf.data.num_workers} workers, "
          f"labels on 320 x 240 with {conf.detect.num_refs} / {conf.reliability.num_refs} references "
          f"({conf.reliability.desc_mode} descriptor term, {conf.reliability.neighbours} neighbours)")

    def training(_: str) -> tuple[dict, list[dict]]:
        out, rows = {}, []
        for amp in ("none", "bf16"):
            for kind in ("descriptor", "detector"):
                v = _train_views_per_s(conf.copy(), dev, kind, amp, iters, warmup=2)
                precision = "fp32" if amp == "none" else amp
                out[f"{kind}_views_per_s_{precision}"] = v
                rows.append({"step": kind, "precision": precision, "views_per_s": v})
                print(f"  step {'2 descriptor' if kind == 'descriptor' else '4 detector'} training, "
                      f"{'fp32' if amp == 'none' else 'bf16 autocast'}: {v:.1f} views/s", flush=True)
        return out, rows

    def labels(_: str) -> tuple[dict, list[dict]]:
        out, rows = {}, []
        for kind in ("detect", "reliability"):
            v = _label_ms(conf, dev, kind, reps)
            out[f"{kind}_ms_per_image"] = v["fast"]
            out[f"{kind}_ms_per_image_exact"] = v["exact"]
            out[f"{kind}_ms_per_image_exact_retain"] = v["exact+retain"]
            rows.append({"step": kind, **{f"ms_per_image_{k}": t for k, t in v.items()}, "speedup": v["exact"] / v["fast"]})
            print(f"  step {'1 detect' if kind == 'detect' else '3 reliability'} labels: {v['fast']:.0f} ms per image; "
                  f"before (exact path, default allocator) {v['exact']:.0f} ms: {v['exact'] / v['fast']:.1f}x "
                  f"(exact path with retained memory {v['exact+retain']:.0f} ms)", flush=True)
        return out, rows

    parts = {"training": training, "labels": labels}
    core.run_methods(results, [p for p in parts if {"training": "train"}.get(p, p) not in skip],
                     lambda part: parts[part](part))
    if output is not None:
        core.save(output, results, markdown(results))
    return results


def markdown(results: dict) -> str:
    st = results["settings"]
    out = [f"# Trainer throughput on {results['environment'].get('device')}", "",
           f"Config {st['config']}: crops {st['crop_size']} x {st['crop_size']}, batch {st['batch_size']}; labels on "
           f"320 x 240 with {st['detect_refs']} / {st['reliability_refs']} references.", ""]
    train = [r for r in results["rows"] if r["method"] == "training"]
    if train:
        out += [core.markdown_table(("step", "precision", "views/s"),
                                    [(r["step"], r["precision"], f"{r['views_per_s']:.1f}") for r in train]), ""]
    lab = [r for r in results["rows"] if r["method"] == "labels"]
    if lab:
        out.append(core.markdown_table(
            ("labels", "before (exact, default allocator) ms", "exact + retained memory ms", "after ms", "speed-up"),
            [(r["step"], f"{r['ms_per_image_exact']:.0f}", f"{r['ms_per_image_exact+retain']:.0f}",
              f"{r['ms_per_image_fast']:.0f}", f"{r['speedup']:.1f}x") for r in lab]))
    out += core.outcome_lines(results)
    return "\n".join(out) + "\n"
