"""Validation that sees rotation, zoom and photometric change, on held-out images.

Four groups of synthetic pairs (``val.groups``), each of ``val.pairs_per_group`` pairs (the
held-out images are reused with other random warps to reach the count), deterministic for
``val.seed`` so that every validation of a run, and of other runs, sees the same pairs:

* ``mild``: a random homography (corners moved up to ``val.corner_shift`` of the size,
  rotation +-``val.degrees``) -- the former validation;
* ``rotation``: rotation by 40-90 degrees (either sign) about the centre, small perspective;
* ``zoom``: zoom by 1.4-2.5 about a random point near the centre, or its inverse (half each);
* ``photometric``: a small homography plus one of gamma 0.4-2.5, brightness 0.4-1.8 / contrast,
  Gaussian blur (sigma 1-3) or JPEG quality 10-30.

Keypoints come from the current network in two settings: ``deploy`` (the extractor's
defaults: confidence ``val.deploy_threshold`` = 0.55, NMS 4, 500 keypoints) and ``top500``
(the strongest 500 NMS peaks, no threshold). Descriptors are sampled as the extractor does and
matched by the package's matcher (``val.matcher``, mutual nearest neighbour). Metrics per pair
(from :mod:`sekd_plugin.metrics.homography`): MMA@1 and @3, homography accuracy@3 (RANSAC, mean
corner error <= 3 px), repeatability@3.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np
import torch

from ..metrics import homography as metrics
from ..extractors import sekd as sekd_stages
from ..ops import topk_in_groups
from ..ops.gray import rgb_to_gray_u8
from .data import derive_seed

GROUPS = ("mild", "rotation", "zoom", "photometric")
SETTINGS = ("deploy", "top500")
METRICS = ("mma@1", "mma@3", "homography_accuracy@3", "repeatability@3", "keypoints", "matches")


def fit_image(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize so that the image covers ``height x width`` (aspect kept), then centre-crop."""
    h, w = img.shape[:2]
    s = max(height / h, width / w)
    if abs(s - 1.0) > 1e-9:
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
        img = cv2.resize(img, (max(width, round(w * s)), max(height, round(h * s))), interpolation=interp)
    h, w = img.shape[:2]
    y0, x0 = (h - height) // 2, (w - width) // 2
    return np.ascontiguousarray(img[y0 : y0 + height, x0 : x0 + width])


def _corners(height: int, width: int) -> np.ndarray:
    return np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], np.float64)


def _from_corners(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    return cv2.getPerspectiveTransform(src.astype(np.float32), dst.astype(np.float32)).astype(np.float64)


def corner_homography(rng: np.random.Generator, width: int, height: int, corner_shift: float, degrees: float) -> np.ndarray:
    """Homography moving the image corners (rotated about the centre) by up to ``corner_shift`` x size."""
    src = _corners(height, width)
    c = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
    a = math.radians(rng.uniform(-degrees, degrees))
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    dst = (src - c) @ rot.T + c
    dst += rng.uniform(-corner_shift, corner_shift, size=(4, 2)) * np.array([width, height])
    return _from_corners(src, dst)


def _similarity(height: int, width: int, angle_deg: float, scale: float, centre: np.ndarray, shift: float, rng) -> np.ndarray:
    """Rotation + zoom about ``centre``, then corners jittered by ``shift`` x size (small perspective)."""
    src = _corners(height, width)
    a = math.radians(angle_deg)
    rot = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    dst = (src - centre) @ rot.T + np.array([(width - 1) / 2.0, (height - 1) / 2.0])
    dst += rng.uniform(-shift, shift, size=(4, 2)) * np.array([width, height])
    return _from_corners(src, dst)


def _photometric(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    kind = int(rng.integers(0, 4))
    x = img.astype(np.float32) / 255.0
    if kind == 0:  # gamma
        x = x ** float(np.exp(rng.uniform(math.log(0.4), math.log(2.5))))
    elif kind == 1:  # brightness and contrast
        x = (x - 0.5) * rng.uniform(0.5, 1.5) + 0.5
        x = x * rng.uniform(0.4, 1.8)
    elif kind == 2:  # blur
        x = cv2.GaussianBlur(x, (0, 0), float(rng.uniform(1.0, 3.0)))
    else:  # JPEG
        q = int(rng.integers(10, 31))
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])
        return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE) if ok else img
    return np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)


def make_pair(img: np.ndarray, group: str, conf, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(image0, image1, H_0to1)`` uint8 gray pair of one group."""
    hh, ww = int(conf.height), int(conf.width)
    im0 = fit_image(img, hh, ww)
    centre = np.array([(ww - 1) / 2.0, (hh - 1) / 2.0])
    if group == "mild":
        H = corner_homography(rng, ww, hh, conf.corner_shift, conf.degrees)
    elif group == "rotation":
        H = _similarity(hh, ww, rng.choice([-1.0, 1.0]) * rng.uniform(40.0, 90.0), 1.0, centre, 0.02, rng)
    elif group == "zoom":
        z = rng.uniform(1.4, 2.5)
        z = z if rng.random() < 0.5 else 1.0 / z
        c = centre + rng.uniform(-0.1, 0.1, 2) * np.array([ww, hh])
        H = _similarity(hh, ww, rng.uniform(-10.0, 10.0), z, c, 0.02, rng)
    elif group == "photometric":
        H = corner_homography(rng, ww, hh, 0.05, 5.0)
    else:
        raise ValueError(f"unknown validation group '{group}'")
    im1 = cv2.warpPerspective(im0, H, (ww, hh), flags=cv2.INTER_LINEAR, borderValue=0)
    if group == "photometric":
        im1 = _photometric(im1, rng)
    return im0, im1, H


def make_pairs(images: list[np.ndarray], conf, group: str = "mild",
               count: int | None = None) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``count`` (default ``val.pairs_per_group``) pairs of ``group`` from gray or RGB images, deterministic."""
    count = int(conf.pairs_per_group if count is None else count)
    gray = [rgb_to_gray_u8(im) for im in images]
    pairs = []
    gid = GROUPS.index(group)
    for k in range(count if gray else 0):
        rng = np.random.default_rng(derive_seed(conf.seed, 11, gid, k))
        pairs.append(make_pair(gray[k % len(gray)], group, conf, rng))
    return pairs


def make_groups(images: list[np.ndarray], conf) -> dict[str, list]:
    return {g: make_pairs(images, conf, g) for g in conf.groups}


# the options of an extraction conf that change what validation measures (the rest -- threshold,
# NMS, keypoint cap -- is the validation's own protocol: top-500 and the deployment threshold)
SETTING_KEYS = ("multi_scale", "multi_scale_min_size", "sub_pixel", "subpixel_score", "sampling")
PAPER_SETTING = {"multi_scale": False, "multi_scale_min_size": 128, "sub_pixel": False, "subpixel_score": "peak",
                 "sampling": "official"}


def setting_of(conf_name: str) -> dict:
    """The :data:`SETTING_KEYS` of a named SEKD extraction conf (``sekd_plugin.extractors.confs``).

    Raises ``ValueError`` with one line for an unknown name or a conf of another extractor."""
    from ..extractors.base import ConfigError
    from ..extractors.confs import confs, get_conf

    try:
        model = get_conf(conf_name)["model"]
    except ConfigError:
        raise ValueError(f"unknown extraction conf '{conf_name}'; SEKD confs: "
                         f"{sorted(n for n, c in confs.items() if c['model']['name'] == 'sekd')}") from None
    if model["name"] != "sekd":
        raise ValueError(f"extraction conf '{conf_name}' is a {model['name']} conf, not a SEKD one")
    return {k: model.get(k, sekd_stages.SEKD.default_conf[k]) for k in SETTING_KEYS}


def _network(net, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """``prob B x Hp x Wp``, ``desc`` and the padded size of ``B x 1 x H x W`` padded to multiples
    of 4 by edge replication (as the extractor)."""
    h, w = x.shape[-2:]
    ph, pw = -h % 4, -w % 4
    if ph or pw:
        x = torch.nn.functional.pad(x, (0, pw, 0, ph), mode="replicate")
    prob, desc = net(x)
    return prob[:, 0], desc, (h + ph, w + pw)


@torch.no_grad()
def extract(net, images: torch.Tensor, conf, thresholds: tuple[float, ...], setting: dict | None = None,
            base: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[list[list], torch.Tensor, torch.Tensor]:
    """Keypoints and descriptors of ``B x 1 x H x W`` images for each threshold, by the
    extractor's own stages (:func:`sekd_plugin.extractors.sekd.peaks`, ``select``, ``describe``,
    ``pyramid``) in ``setting`` (:data:`SETTING_KEYS`; default :data:`PAPER_SETTING`: one scale,
    no sub-pixel refinement); no border strip. ``base``: the network's output on ``images``
    when already computed (several settings share it).

    Returns ``(feats, peaks, heights)``: ``feats[t][b] = (keypoints N x 2 (x, y), unit
    descriptors N x C)`` for threshold ``thresholds[t]`` (at most ``conf.max_keypoints``),
    ``peaks`` ``T x B``, the NMS maxima of the full-size map above each threshold without that
    cap (a saturated count says nothing), and ``heights`` ``T x B``, the median detector
    probability of the kept keypoints (NaN for none): the calibration that decides how many
    clear a fixed threshold.
    """
    setting = {**PAPER_SETTING, **(setting or {})}
    size = tuple(images.shape[-2:])
    stage = {"nms_radius": int(conf.nms_radius), "remove_borders": 0, "max_keypoints": int(conf.max_keypoints),
             **setting}
    prob, desc = base if base is not None else net(images)
    levels = [(prob[:, 0], desc, size, size)]
    if setting["multi_scale"]:
        for small in sekd_stages.pyramid(images[:, 0], int(setting["multi_scale_min_size"])):
            p, d, padded = _network(net, small[:, None])
            levels.append((p, d, tuple(small.shape[-2:]), padded))
    masks = [sekd_stages.peaks(p, sz, stage) for p, _, sz, _ in levels]
    thr = torch.tensor(thresholds, dtype=prob.dtype, device=prob.device)
    counts = (masks[0][None] & (levels[0][0][None] > thr[:, None, None, None])).sum((-1, -2))
    feats, heights = [], []
    for t in thresholds:
        parts = []
        for (p, d, sz, padded), mask in zip(levels, masks):
            batch, pos, scores = sekd_stages.select(p, mask, sz, {**stage, "confidence_threshold": t})
            dd = sekd_stages.describe(d, batch, pos, padded, stage)
            if sz != size:  # back to the full image's pixels, as the extractor
                pos = (pos + 0.5) * pos.new_tensor([size[1] / sz[1], size[0] / sz[0]]) - 0.5
            parts.append((batch, pos, scores, dd))
        batch, pos, scores = (torch.cat([q[i] for q in parts]) for i in range(3))
        dd = torch.cat([q[3] for q in parts], dim=1)
        if len(parts) > 1:
            order = topk_in_groups(batch, scores, int(conf.max_keypoints))
            batch, pos, scores, dd = batch[order], pos[order], scores[order], dd[:, order]
        d = dd.T.cpu().float()
        batch, pos, scores = batch.cpu(), pos.cpu().double().numpy(), scores.cpu().float()
        per_image = [batch == b for b in range(images.shape[0])]
        feats.append([(pos[m.numpy()], d[m]) for m in per_image])
        heights.append([float(scores[m].quantile(0.5)) if bool(m.any()) else float("nan") for m in per_image])
    return feats, counts.cpu(), torch.tensor(heights)


@functools.lru_cache(maxsize=4)
def _matcher(name: str):
    """The package's matcher by name (``sekd_plugin.matchers`` registry, hloc conf names)."""
    from ..matchers import get_matcher_conf, load_matcher

    m = load_matcher(get_matcher_conf(name)["model"])

    def match(d0: torch.Tensor, d1: torch.Tensor) -> np.ndarray:
        out = m({"descriptors0": d0.T[None], "descriptors1": d1.T[None]})
        return out["matches0"][0].cpu().numpy()

    return match


def mutual_nn(d0: torch.Tensor, d1: torch.Tensor, matcher: str = "NN-mutual") -> tuple[np.ndarray, np.ndarray]:
    """Matches of ``N x C`` and ``M x C`` unit descriptors by the package's matcher: ``(i0, i1)``."""
    if len(d0) == 0 or len(d1) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    m0 = _matcher(matcher)(d0, d1)
    i0 = np.nonzero(m0 >= 0)[0]
    return i0, m0[i0]


def pair_metrics(k0, d0, k1, d1, H: np.ndarray, size: tuple[int, int], px: float = 3.0, matcher: str = "NN-mutual") -> dict:
    """Metrics of one pair; ``size = (H, W)`` of both images. Uses :mod:`sekd_plugin.metrics.homography`."""
    h, w = size
    i0, i1 = mutual_nn(d0, d1, matcher)
    matches = np.stack([i0, i1], axis=1) if len(i0) else np.zeros((0, 2), np.int64)
    errors = metrics.reprojection_errors(k0, k1, matches, H)
    mma1, mma = (float(v) for v in metrics.matching_accuracy(errors, (1.0, px)))
    Hest = metrics.estimate_homography(k0, k1, matches, threshold=px) if len(matches) >= 4 else None
    corner_err = metrics.corner_error(Hest, H, (w, h))
    rep = metrics.repeatability(k0, k1, H, (w, h), (w, h), threshold=px) if len(k0) and len(k1) else 0.0
    return {
        "mma@1": mma1,
        "mma": mma,
        "homography_accuracy": float(corner_err <= px),
        "corner_error": corner_err,
        "repeatability": float(rep),
        "matches": len(i0),
        "keypoints": 0.5 * (len(k0) + len(k1)),
    }


def _nanmean(values) -> float:
    """Mean of the finite values (NaN for none, without numpy's empty-slice warning)."""
    finite = [float(v) for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _summary(rows: list[dict]) -> dict:
    if not rows:
        return {}
    return {
        "mma@1": float(np.mean([r["mma@1"] for r in rows])),
        "mma@3": float(np.mean([r["mma"] for r in rows])),
        "homography_accuracy@3": float(np.mean([r["homography_accuracy"] for r in rows])),
        "repeatability@3": float(np.mean([r["repeatability"] for r in rows])),
        "keypoints": float(np.mean([r["keypoints"] for r in rows])),
        "matches": float(np.mean([r["matches"] for r in rows])),
        "peaks": float(np.mean([r.get("peaks", r["keypoints"]) for r in rows])),
        "peak_height": _nanmean([r.get("peak_height", np.nan) for r in rows]),
        "pairs": len(rows),
    }


@torch.no_grad()
def evaluate(net, groups: dict[str, list] | list, conf, device: torch.device, batch: int = 16,
             settings: dict[str, dict] | None = None, progress: bool = False, desc: str = "validation") -> dict:
    """Metrics per group and setting (``net(image) -> (prob, desc)``).

    ``settings``: extraction settings by name (:func:`setting_of`; default the paper's single
    scale); the first is the measured one, the others ride on the same network passes and are
    reported under ``"settings"``. Returns ``{"groups": {group: {threshold setting: {metric:
    mean}}}, "mma@3": ..., ..., "settings": {name: {the same}}}`` where the top-level metrics are
    the means over the groups with the ``top500`` keypoints (the model selection metric; also
    what the plots show). ``progress``: a bar over the batches.
    """
    from tqdm import tqdm

    if isinstance(groups, list):
        groups = {"mild": groups}
    settings = settings or {"paper": PAPER_SETTING}
    was_training = net.training
    net.eval()
    res = {name: {g: {s: [] for s in SETTINGS} for g in groups} for name in settings}
    total = sum((len(p) + batch - 1) // batch for p in groups.values())
    bar = tqdm(total=total, desc=desc, disable=not progress, leave=False, dynamic_ncols=True)
    try:
        for name, pairs in groups.items():
            for a in range(0, len(pairs), batch):
                chunk = pairs[a : a + batch]
                imgs = np.stack([im for p in chunk for im in p[:2]])
                x = torch.from_numpy(imgs).float().div_(255.0)[:, None].to(device)
                thresholds = (float(conf.deploy_threshold), 0.0)
                base = net(x)  # one full-size pass for every setting
                for sname, setting in settings.items():
                    feats, peaks, heights = extract(net, x, conf, thresholds, setting, base=base)
                    for t, thr_setting in enumerate(SETTINGS):
                        for j, (_, _, H) in enumerate(chunk):
                            (k0, d0), (k1, d1) = feats[t][2 * j], feats[t][2 * j + 1]
                            row = pair_metrics(k0, d0, k1, d1, H, chunk[0][0].shape, conf.pixel_threshold, conf.matcher)
                            row["peaks"] = 0.5 * float(peaks[t, 2 * j] + peaks[t, 2 * j + 1])
                            row["peak_height"] = _nanmean(heights[t, 2 * j : 2 * j + 2].tolist())
                            res[sname][name][thr_setting].append(row)
                bar.update(1)
    finally:
        bar.close()
        net.train(was_training)
    if not groups:
        return {}
    names = list(settings)
    out = _overall({g: {s: _summary(r) for s, r in v.items()} for g, v in res[names[0]].items()})
    out["settings"] = {n: _overall({g: {s: _summary(r) for s, r in v.items()} for g, v in res[n].items()}) for n in names[1:]}
    return out


def _overall(per_group: dict) -> dict:
    """The means over the groups of one extraction setting (see :func:`evaluate`)."""
    out: dict = {"groups": per_group}
    for m in ("mma@1", "mma@3", "homography_accuracy@3", "repeatability@3", "keypoints", "matches"):
        out[m] = float(np.mean([g["top500"].get(m, 0.0) for g in per_group.values()]))
    # keypoints per image that clear the extractor's threshold (best-checkpoint eligibility)
    out["deploy_keypoints"] = float(np.mean([g["deploy"].get("keypoints", 0.0) for g in per_group.values()]))
    # the same without the max_keypoints cap: a random detector saturates the capped count
    out["deploy_peaks"] = float(np.mean([g["deploy"].get("peaks", 0.0) for g in per_group.values()]))
    # median detector probability of the top-500 keypoints: where the map's peaks sit against 0.55
    out["peak_height"] = _nanmean([g["top500"].get("peak_height", np.nan) for g in per_group.values()])
    out["deploy_mma@3"] = float(np.mean([g["deploy"].get("mma@3", 0.0) for g in per_group.values()]))
    return out
