"""Training images: recursive listing, decoding, held-out split, pair crops.

Images are decoded by :mod:`sekd_plugin.io.images` (the package's one decoding policy:
EXIF orientation ignored, 16-bit rule, extension list) as 8-bit **RGB**, so that the colour
jitter of the release (brightness, contrast, saturation, hue) applies before the gray
conversion the network sees; gray files are replicated to 3 channels. Images are optionally
downscaled so that the longer side is at most ``data.max_side``. Unreadable files, and
images too small or too thin for the crops and the network, are skipped with a warning at
indexing time and counted. Every random choice derives from a seed and the
(round, step, epoch, image) it belongs to, so a resumed run draws the same crops and warps.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ..common.errors import InputError
from ..io.images import IMAGE_EXTENSIONS, ImageReadError, NoImagesError, read_image, resize_image
from ..io.images import list_images as io_list_images
from . import warps

logger = logging.getLogger(__name__)

MAX_ASPECT = 16.0  # images thinner than 1:16 are skipped (no useful crop, degenerate warps)


def derive_seed(*parts: int) -> int:
    """A 63-bit seed mixing integers (stable across processes and platforms)."""
    state = np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


def generator(*parts: int) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(*parts))


def list_images(dirs: list[str | Path]) -> list[tuple[str, Path]]:
    """``(key, path)`` of every image file under ``dirs`` (recursive, sorted).

    The key is the path relative to its folder, prefixed by ``<k>:`` when several folders
    are given. Raises :class:`NoImagesError` for a missing folder or when nothing is found.
    """
    if not dirs:
        raise NoImagesError("no image folder given (--images DIR [DIR ...])")
    out = []
    exts = tuple(e.lower() for e in IMAGE_EXTENSIONS)
    for k, d in enumerate(dirs):
        d = Path(d)
        if not d.is_dir():
            raise NoImagesError(f"image folder not found: {d}")
        for rel in io_list_images(d):  # the package's one image listing
            out.append((f"{k}:{rel}" if len(dirs) > 1 else rel, d / rel))
    if not out:
        raise NoImagesError(f"no images ({', '.join(sorted(exts))}) found in {', '.join(str(d) for d in dirs)}")
    return out


def read_rgb(path: str | Path, max_side: int | None = None) -> np.ndarray:
    """uint8 ``H x W x 3`` RGB through :func:`sekd_plugin.io.images.read_image`, downscaled to ``max_side``.

    Raises :class:`~sekd_plugin.io.images.ImageReadError` when the file cannot be decoded.
    """
    img = read_image(path, grayscale=False)
    h, w = img.shape[:2]
    if max_side and max(h, w) > max_side:
        s = max_side / max(h, w)
        img = resize_image(img, (max(1, round(w * s)), max(1, round(h * s))), "cv2_area")
    return np.ascontiguousarray(img)


def min_image_side(conf) -> int:
    """Smallest image side the steps can use: the label borders must leave an interior."""
    borders = max(int(conf.detect.ref_border), int(conf.reliability.border), int(conf.detect.border))
    return max(16, 2 * borders + 8)


@dataclass
class ImageSet:
    """Readable images of a run: training and held-out validation entries."""

    keys: list[str]
    paths: list[Path]
    val_keys: list[str]
    val_paths: list[Path]
    skipped: list[str] = field(default_factory=list)
    too_small: list[str] = field(default_factory=list)
    max_side: int | None = None
    cache: bool = False
    short_sides: list[int] = field(default_factory=list)  # min(H, W) of every training image
    _cache: dict = field(default_factory=dict, repr=False)

    def image(self, i: int) -> np.ndarray:
        """uint8 ``H x W x 3`` RGB of training image ``i``."""
        if i in self._cache:
            return self._cache[i]
        try:
            img = read_rgb(self.paths[i], self.max_side)
        except ImageReadError as e:  # vanished or corrupted after the scan
            raise InputError(f"training image became unreadable during the run: {e}") from None
        if self.cache:
            self._cache[i] = img
        return img

    def val_image(self, i: int) -> np.ndarray:
        return read_rgb(self.val_paths[i], self.max_side)

    def round_indices(self, round_idx: int, sub_set: int) -> list[int]:
        """Images of a round: every ``sub_set``-th, starting at ``round % sub_set`` (the release)."""
        return list(range(round_idx % sub_set, len(self.keys), sub_set))


def scan_images(
    dirs: list[str | Path],
    seed: int,
    val_images: int,
    max_images: int | None = None,
    max_side: int | None = None,
    cache: bool = False,
    progress: bool = True,
    min_side: int = 16,
) -> ImageSet:
    """List, shuffle (seeded), check readability and size, split into validation + training.

    The first ``val_images`` usable images of the seeded permutation are held out; the
    training set is the next ``max_images`` (all if ``None``), in sorted key order. An image
    whose shorter side (after ``max_side``) is below ``min_side`` or whose aspect ratio
    exceeds :data:`MAX_ASPECT` is skipped with a warning (it would crash the label steps).
    """
    from tqdm import tqdm

    entries = list_images(dirs)
    perm = np.random.default_rng(derive_seed(seed, 7)).permutation(len(entries))
    val, train, skipped, small, cached, short = [], [], [], [], {}, {}
    want = None if max_images is None else val_images + max_images
    for j in tqdm(perm, desc="scan images", disable=not progress, leave=False):
        key, path = entries[j]
        try:
            img = read_rgb(path, max_side)
        except ImageReadError as e:
            logger.warning("skipping unreadable image %s (%s)", path, e)
            skipped.append(str(path))
            continue
        h, w = img.shape[:2]
        if min(h, w) < min_side or max(h, w) > MAX_ASPECT * min(h, w):
            logger.warning(
                "skipping image %s: %d x %d is too small or too thin for training (needs a side >= %d, aspect <= %g)",
                path, w, h, min_side, MAX_ASPECT,
            )
            small.append(str(path))
            continue
        if len(val) < val_images:
            val.append(j)
        else:
            train.append(j)
            short[j] = min(h, w)
            if cache:
                cached[j] = img
        if want is not None and len(val) + len(train) >= want:
            break
    if not train:
        raise NoImagesError(
            f"no readable training image in {', '.join(str(d) for d in dirs)} "
            f"({len(entries)} files, {len(skipped)} unreadable, {len(small)} too small, {len(val)} held out for validation)"
        )
    train.sort(key=lambda j: entries[j][0])
    val.sort(key=lambda j: entries[j][0])
    s = ImageSet(
        keys=[entries[j][0] for j in train],
        paths=[entries[j][1] for j in train],
        val_keys=[entries[j][0] for j in val],
        val_paths=[entries[j][1] for j in val],
        skipped=skipped,
        too_small=small,
        max_side=max_side,
        cache=cache,
        short_sides=[short[j] for j in train],
    )
    if cache:
        s._cache = {i: cached[j] for i, j in enumerate(train)}
    return s


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 ``H x W`` or ``H x W x 3`` -> float ``1 x C x H x W`` in [0, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(img)).float().div_(255.0)
    return t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]


def context_size(crop: int, context: float) -> int:
    return int(math.ceil(crop * context / 4.0) * 4)


def fit_crop_to_photos(crop: int, context: float, short_sides: list[int], quantile: float = 0.1) -> tuple[int, int]:
    """The largest crop (multiple of 4, at most ``crop``) whose context window fits inside at
    least ``1 - quantile`` of the photos, and how many photos would still be upscaled.

    Crops are never upscaled silently: the caller warns when the crop shrinks.
    """
    if not short_sides:
        return crop, 0
    allowed = int(np.quantile(np.asarray(short_sides), quantile))
    new = crop
    while new > 16 and context_size(new, context) > allowed:
        new -= 4
    return new, int(sum(s < context_size(new, context) for s in short_sides))


class PairDataset(Dataset):
    """One training sample per image: a context crop, its label keypoints and the view warps.

    The views themselves are made on the device (:func:`make_views`), batched. A sample
    holds

    * ``context``: uint8 ``3 x C x C`` RGB crop, ``C = ceil(crop * context / 4) * 4``, and
      ``valid`` its ``1 x C x C`` content mask. With ``data.crop_mode=inside`` the window
      lies inside the image (an image smaller than ``C`` contributes its largest centred
      square, resized to ``C``), so ``valid`` is all ones; ``pad`` places it at random and
      zero-pads (the former behaviour);
    * ``keypoints``: ``N x 2`` (x, y) label keypoints in context coordinates;
    * ``H0``, ``H1``: ``3 x 3`` context -> view warps (``H0`` a centre crop when
      ``pair_warp.warped_views = 1``, the release), ``jitter0``, ``jitter1`` colour factors.
    """

    def __init__(self, images: ImageSet, indices: list[int], labels: dict[str, np.ndarray], conf, seed: int):
        self.images = images
        self.indices = list(indices)
        self.labels = labels
        self.crop = int(conf.data.crop_size)
        self.ctx = context_size(self.crop, float(conf.data.context))
        self.mode = str(conf.data.crop_mode)
        self.warp_conf = conf.pair_warp
        self.seed = seed
        self.epoch_key: tuple[int, ...] = (0,)
        # the window read from the image: the context plus the margin the warps reach into
        self.margin = warp_margin(conf.pair_warp, self.ctx, self.crop) if bool(conf.data.warp_margin) else 0
        self.size = self.ctx + 2 * self.margin

    def set_epoch_key(self, *key: int) -> None:
        self.epoch_key = tuple(int(k) for k in key)

    def __len__(self) -> int:
        return len(self.indices)

    def _window(self, img: np.ndarray, gen: torch.Generator) -> tuple[np.ndarray, np.ndarray, float, int, int]:
        """``(window uint8 S x S x 3, valid S x S, scale, ox, oy)`` with ``S = C + 2 margin``:
        window = (image - (ox, oy)) * scale + margin (pixel centres), zero and invalid beyond the image."""
        h, w = img.shape[:2]
        c, m = self.ctx, self.margin
        if self.mode == "inside":
            side = min(c, h, w)
            oy = int(torch.randint(0, h - side + 1, (1,), generator=gen))
            ox = int(torch.randint(0, w - side + 1, (1,), generator=gen))
            scale = c / side
            if side == c and m == 0:  # the window is a plain slice of the image
                return np.ascontiguousarray(img[oy : oy + c, ox : ox + c]), np.ones((c, c), np.float32), 1.0, ox, oy
        else:
            oy = int(torch.randint(min(0, h - c), max(0, h - c) + 1, (1,), generator=gen))
            ox = int(torch.randint(min(0, w - c), max(0, w - c) + 1, (1,), generator=gen))
            scale = 1.0
        if scale == 1.0:  # integer offsets: copy what the image has, zero elsewhere
            s = self.size
            win = np.zeros((s, s, 3), np.uint8)
            valid = np.zeros((s, s), np.float32)
            y0, x0 = max(oy - m, 0), max(ox - m, 0)
            y1, x1 = min(oy - m + s, h), min(ox - m + s, w)
            win[y0 - oy + m : y1 - oy + m, x0 - ox + m : x1 - ox + m] = img[y0:y1, x0:x1]
            valid[y0 - oy + m : y1 - oy + m, x0 - ox + m : x1 - ox + m] = 1.0
            return win, valid, 1.0, ox, oy
        # a small image: its largest square resized up to the context (and the margin around it)
        t = (0.5 - np.array([ox, oy])) * scale - 0.5 + m
        A = np.array([[scale, 0, t[0]], [0, scale, t[1]]], np.float64)
        win = cv2.warpAffine(img, A, (self.size, self.size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        valid = cv2.warpAffine(np.ones((h, w), np.float32), A, (self.size, self.size), flags=cv2.INTER_NEAREST,
                               borderMode=cv2.BORDER_CONSTANT)
        return win, valid, scale, ox, oy

    def __getitem__(self, i: int) -> dict:
        idx = self.indices[i]
        img = self.images.image(idx)
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        gen = generator(self.seed, *self.epoch_key, idx)
        c = self.ctx
        ctx, valid, scale, ox, oy = self._window(img, gen)
        key = self.images.keys[idx]
        yx = self.labels.get(key)
        if yx is None or len(yx) == 0:
            kp = torch.zeros(0, 2)
        else:
            xy = torch.from_numpy(np.asarray(yx)[:, ::-1].astype(np.float32).copy())
            # pixel centres: (x + 0.5) * s - 0.5 maps the window's pixels onto the context's
            kp = (xy - torch.tensor([ox, oy], dtype=torch.float32) + 0.5) * scale - 0.5 + self.margin
            kp = kp[warps.inside(kp, (self.size, self.size))]
        wc = self.warp_conf
        if float(wc.strong_fraction) > 0 and float(torch.rand((), generator=gen)) < float(wc.strong_fraction):
            wc = _strong(wc)
        if int(wc.warped_views) == 1:  # the release: an image and its warped copy
            H = torch.cat([warps.identity_warps(1, (c, c), (self.crop, self.crop)),
                           warps.random_warp_from_conf(1, (c, c), (self.crop, self.crop), wc, gen)])
        else:
            H = warps.random_warp_from_conf(2, (c, c), (self.crop, self.crop), wc, gen)
        if self.margin:  # the warps were drawn for the C x C context: shift them onto the larger window
            H = H @ _shift(-self.margin)
        jit = warps.random_jitter(2, wc, gen)
        return {
            "context": torch.from_numpy(ctx).permute(2, 0, 1).contiguous(),
            "valid": torch.from_numpy(valid)[None],
            "keypoints": kp,
            "H0": H[0],
            "H1": H[1],
            "jitter0": jit[0],
            "jitter1": jit[1],
            "index": idx,
        }


def _shift(d: float) -> torch.Tensor:
    """``3 x 3`` translation by ``(d, d)``."""
    T = torch.eye(3)
    T[0, 2] = T[1, 2] = d
    return T


def warp_margin(conf, context: int, crop: int, samples: int = 512, quantile: float = 0.95) -> int:
    """Pixels to read around a ``context`` window so that ``quantile`` of the views drawn with
    the pair-warp ``conf`` (strong pairs included) see image content only (even, >= 0).

    The preimage of each view's corners under its warp tells how far the view reaches beyond
    the context; the warps are drawn with a fixed seed, so every process agrees.
    """
    gen = torch.Generator().manual_seed(0)
    f = min(float(conf.strong_fraction), 0.9)
    # the strong pairs in their proportion of the mixture
    confs = [(conf, samples)] + ([(_strong(conf), max(1, round(samples * f / (1 - f))))] if f > 0 else [])
    corners = torch.tensor([[0.0, 0.0], [crop - 1, 0.0], [crop - 1, crop - 1], [0.0, crop - 1]])
    need = []
    for wc, n in confs:
        H = warps.random_warp_from_conf(n, (context, context), (crop, crop), wc, gen)
        src = warps.transform_points(torch.linalg.inv(H.double()).float(), corners.expand(n, -1, -1))
        out = torch.maximum(-src, src - (context - 1)).amax(dim=(1, 2)).clamp(min=0)
        need.append(out)
    m = float(torch.quantile(torch.cat(need), quantile))
    return int(math.ceil(m / 2.0) * 2)


def _strong(wc):
    """The pair warp conf of a strong pair: a rotation up to ``strong_degrees`` and an isotropic
    zoom in ``strong_scale`` (no shear; translation, perspective and jitter as configured)."""
    from types import SimpleNamespace

    d = {k: wc[k] for k in wc}
    d.update(degrees=float(wc.strong_degrees), scale=list(wc.strong_scale), form="legacy", shear=0.0)
    return SimpleNamespace(**d)


def collate_pairs(samples: list[dict]) -> dict:
    """Stack samples; keypoints are padded to ``B x N x 2`` with a ``B x N`` mask."""
    out = {k: torch.stack([s[k] for s in samples]) for k in ("context", "valid", "H0", "H1", "jitter0", "jitter1")}
    out["index"] = torch.tensor([s["index"] for s in samples])
    n = max([len(s["keypoints"]) for s in samples] + [1])
    kp = torch.zeros(len(samples), n, 2)
    mask = torch.zeros(len(samples), n, dtype=torch.bool)
    for b, s in enumerate(samples):  # collation runs in the loader workers, off the training thread
        k = len(s["keypoints"])
        kp[b, :k] = s["keypoints"]
        mask[b, :k] = True
    out["keypoints"], out["kp_mask"] = kp, mask
    # H0^-1 on the host (float64), so that the device never runs a small linalg.inv
    out["H01"] = (out["H1"].double() @ torch.linalg.inv(out["H0"].double())).float()
    return out


@dataclass
class Views:
    images: torch.Tensor  # 2B x 1 x S x S: the B views 0 then the B views 1
    valid: torch.Tensor  # 2B x 1 x S x S bool (image content)
    kp0: torch.Tensor  # B x N x 2 label keypoints in view 0
    kp1: torch.Tensor  # B x N x 2 the same keypoints in view 1
    in0: torch.Tensor  # B x N bool: inside the content of view 0
    in1: torch.Tensor  # B x N bool: inside the content of view 1
    H01: torch.Tensor  # B x 3 x 3 view 0 -> view 1


def to_device(batch: dict, device: torch.device) -> dict:
    """Tensors of a batch on ``device`` (non-blocking from pinned memory)."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def make_views(batch: dict, crop: int, device: torch.device) -> Views:
    """Jitter (RGB, then gray) and warp the context crops into two views each, on ``device``, batched."""
    b = to_device(batch, device)
    ctx = b["context"].float().div_(255.0) if b["context"].dtype == torch.uint8 else b["context"]
    valid = b["valid"]
    H0, H1 = b["H0"], b["H1"]
    size = (crop, crop)
    # both views' jitter and warp in one batched call each
    ctx2 = torch.cat([ctx, ctx])
    valid2 = torch.cat([valid, valid])
    H = torch.cat([H0, H1])
    gray = warps.jitter_to_gray(ctx2, torch.cat([b["jitter0"], b["jitter1"]]), valid2)
    images = warps.warp_images(gray, H, size)
    vmask = warps.warp_valid_mask(H, ctx.shape[-2:], size, valid2)
    kp, m = b["keypoints"], b["kp_mask"]
    kp0, kp1 = warps.transform_points(H0, kp), warps.transform_points(H1, kp)
    n = ctx.shape[0]
    in0 = m & _in_mask(kp0, vmask[:n])
    in1 = m & _in_mask(kp1, vmask[n:])
    H01 = b["H01"] if "H01" in b else H1 @ torch.linalg.inv(H0)
    return Views(images, vmask, kp0, kp1, in0, in1, H01)


def _in_mask(points: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Whether (x, y) points fall (rounded) on true pixels of ``B x 1 x H x W`` masks."""
    h, w = mask.shape[-2:]
    r = points.round().long()
    ok = warps.inside(r.float(), (h, w))
    x, y = r[..., 0].clamp(0, w - 1), r[..., 1].clamp(0, h - 1)
    b = torch.arange(points.shape[0], device=points.device)[:, None].expand_as(x)
    return ok & mask[b, 0, y, x]
