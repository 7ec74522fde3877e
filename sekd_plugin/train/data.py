"""Training images: recursive listing, gray decoding, held-out split, pair crops.

Images are read as 8-bit gray with OpenCV (its BGR->gray weights, as the SEKD release),
optionally downscaled so that the longer side is at most ``data.max_side``. Unreadable files
are skipped with a warning and counted. Every random choice derives from a seed and the
(round, step, epoch, image) it belongs to, so a resumed run draws the same crops and warps.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from . import warps

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"}


class NoImagesError(ValueError):
    """No usable image was found (the message is meant for the command line)."""


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
    for k, d in enumerate(dirs):
        d = Path(d)
        if not d.is_dir():
            raise NoImagesError(f"image folder not found: {d}")
        files = sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        for p in files:
            rel = p.relative_to(d).as_posix()
            out.append((f"{k}:{rel}" if len(dirs) > 1 else rel, p))
    if not out:
        exts = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise NoImagesError(f"no images ({exts}) found in {', '.join(str(d) for d in dirs)}")
    return out


def read_gray(path: str | Path, max_side: int | None = None) -> np.ndarray | None:
    """8-bit gray image, or ``None`` when the file cannot be decoded."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
        img = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data.size else None
    except (OSError, cv2.error, ValueError):
        img = None
    if img is None or img.ndim != 2 or min(img.shape) < 1:
        return None
    if max_side and max(img.shape) > max_side:
        s = max_side / max(img.shape)
        size = (max(1, round(img.shape[1] * s)), max(1, round(img.shape[0] * s)))
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    return img


@dataclass
class ImageSet:
    """Readable images of a run: training and held-out validation entries."""

    keys: list[str]
    paths: list[Path]
    val_keys: list[str]
    val_paths: list[Path]
    skipped: list[str] = field(default_factory=list)
    max_side: int | None = None
    cache: bool = False
    _cache: dict = field(default_factory=dict, repr=False)

    def image(self, i: int) -> np.ndarray:
        if i in self._cache:
            return self._cache[i]
        img = read_gray(self.paths[i], self.max_side)
        if img is None:  # vanished or corrupted after the scan
            raise OSError(f"cannot read image {self.paths[i]}")
        if self.cache:
            self._cache[i] = img
        return img

    def val_image(self, i: int) -> np.ndarray:
        img = read_gray(self.val_paths[i], self.max_side)
        if img is None:
            raise OSError(f"cannot read image {self.val_paths[i]}")
        return img

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
) -> ImageSet:
    """List, shuffle (seeded), check readability and split into validation + training.

    The first ``val_images`` readable images of the seeded permutation are held out; the
    training set is the next ``max_images`` (all if ``None``), in sorted key order.
    """
    from tqdm import tqdm

    entries = list_images(dirs)
    perm = np.random.default_rng(derive_seed(seed, 7)).permutation(len(entries))
    val, train, skipped, cached = [], [], [], {}
    want = None if max_images is None else val_images + max_images
    for j in tqdm(perm, desc="scan images", disable=not progress, leave=False):
        key, path = entries[j]
        img = read_gray(path, max_side)
        if img is None:
            warnings.warn(f"skipping unreadable image {path}", stacklevel=2)
            skipped.append(str(path))
            continue
        if len(val) < val_images:
            val.append(j)
        else:
            train.append(j)
            if cache:
                cached[j] = img
        if want is not None and len(val) + len(train) >= want:
            break
    if not train:
        raise NoImagesError(
            f"no readable training image in {', '.join(str(d) for d in dirs)} "
            f"({len(entries)} files, {len(skipped)} unreadable, {len(val)} held out for validation)"
        )
    train.sort(key=lambda j: entries[j][0])
    val.sort(key=lambda j: entries[j][0])
    s = ImageSet(
        keys=[entries[j][0] for j in train],
        paths=[entries[j][1] for j in train],
        val_keys=[entries[j][0] for j in val],
        val_paths=[entries[j][1] for j in val],
        skipped=skipped,
        max_side=max_side,
        cache=cache,
    )
    if cache:
        s._cache = {i: cached[j] for i, j in enumerate(train)}
    return s


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 ``H x W`` -> float ``1 x 1 x H x W`` in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(img)).float().div_(255.0)[None, None]


def context_size(crop: int, context: float) -> int:
    return int(math.ceil(crop * context / 4.0) * 4)


class PairDataset(Dataset):
    """One training sample per image: a context crop, its label keypoints and two random warps.

    The views themselves are made on the device (:func:`make_views`), batched. A sample
    holds

    * ``context``: ``1 x C x C`` float gray crop (zero-padded where the image ends) and
      ``valid`` its ``1 x C x C`` content mask, ``C = ceil(crop * context / 4) * 4``;
    * ``keypoints``: ``N x 2`` (x, y) label keypoints in context coordinates;
    * ``H0``, ``H1``: ``3 x 3`` context -> view warps, ``jitter0``, ``jitter1`` colour factors.
    """

    def __init__(self, images: ImageSet, indices: list[int], labels: dict[str, np.ndarray], conf, seed: int):
        self.images = images
        self.indices = list(indices)
        self.labels = labels
        self.crop = int(conf.data.crop_size)
        self.ctx = context_size(self.crop, float(conf.data.context))
        self.warp_conf = conf.pair_warp
        self.seed = seed
        self.epoch_key: tuple[int, ...] = (0,)

    def set_epoch_key(self, *key: int) -> None:
        self.epoch_key = tuple(int(k) for k in key)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        idx = self.indices[i]
        img = self.images.image(idx)
        gen = generator(self.seed, *self.epoch_key, idx)
        h, w = img.shape
        c = self.ctx
        # crop origin: anywhere inside the image, or a random placement of a smaller image
        oy = int(torch.randint(min(0, h - c), max(0, h - c) + 1, (1,), generator=gen))
        ox = int(torch.randint(min(0, w - c), max(0, w - c) + 1, (1,), generator=gen))
        ctx = np.zeros((c, c), np.uint8)
        valid = np.zeros((c, c), np.float32)
        y0, x0 = max(oy, 0), max(ox, 0)
        y1, x1 = min(oy + c, h), min(ox + c, w)
        ctx[y0 - oy : y1 - oy, x0 - ox : x1 - ox] = img[y0:y1, x0:x1]
        valid[y0 - oy : y1 - oy, x0 - ox : x1 - ox] = 1.0
        key = self.images.keys[idx]
        yx = self.labels.get(key)
        if yx is None or len(yx) == 0:
            kp = torch.zeros(0, 2)
        else:
            kp = torch.from_numpy(yx[:, ::-1].astype(np.float32).copy()) - torch.tensor([ox, oy], dtype=torch.float32)
            kp = kp[warps.inside(kp, (c, c))]
        H = warps.random_warp_from_conf(2, (c, c), (self.crop, self.crop), self.warp_conf, gen)
        jit = warps.random_jitter(2, self.warp_conf, gen)
        return {
            "context": torch.from_numpy(ctx).float().div_(255.0)[None],
            "valid": torch.from_numpy(valid)[None],
            "keypoints": kp,
            "H0": H[0],
            "H1": H[1],
            "jitter0": jit[0],
            "jitter1": jit[1],
            "index": idx,
        }


def collate_pairs(samples: list[dict]) -> dict:
    """Stack samples; keypoints are padded to ``B x N x 2`` with a ``B x N`` mask."""
    out = {k: torch.stack([s[k] for s in samples]) for k in ("context", "valid", "H0", "H1", "jitter0", "jitter1")}
    out["index"] = torch.tensor([s["index"] for s in samples])
    n = max([len(s["keypoints"]) for s in samples] + [1])
    kp = torch.zeros(len(samples), n, 2)
    mask = torch.zeros(len(samples), n, dtype=torch.bool)
    for b, s in enumerate(samples):
        k = len(s["keypoints"])
        kp[b, :k] = s["keypoints"]
        mask[b, :k] = True
    out["keypoints"], out["kp_mask"] = kp, mask
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


def make_views(batch: dict, crop: int, device: torch.device) -> Views:
    """Warp the context crops into two colour-jittered views each, on ``device``, batched."""
    ctx = batch["context"].to(device)
    valid = batch["valid"].to(device)
    H0, H1 = batch["H0"].to(device), batch["H1"].to(device)
    size = (crop, crop)
    im0 = warps.warp_images(warps.color_jitter(ctx, batch["jitter0"].to(device), valid), H0, size)
    im1 = warps.warp_images(warps.color_jitter(ctx, batch["jitter1"].to(device), valid), H1, size)
    v0 = warps.warp_valid_mask(H0, ctx.shape[-2:], size, valid)
    v1 = warps.warp_valid_mask(H1, ctx.shape[-2:], size, valid)
    kp = batch["keypoints"].to(device)
    m = batch["kp_mask"].to(device)
    kp0, kp1 = warps.transform_points(H0, kp), warps.transform_points(H1, kp)
    in0 = m & _in_mask(kp0, v0)
    in1 = m & _in_mask(kp1, v1)
    H01 = H1 @ torch.linalg.inv(H0)
    return Views(torch.cat([im0, im1]), torch.cat([v0, v1]), kp0, kp1, in0, in1, H01)


def _in_mask(points: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Whether (x, y) points fall (rounded) on true pixels of ``B x 1 x H x W`` masks."""
    h, w = mask.shape[-2:]
    r = points.round().long()
    ok = warps.inside(r.float(), (h, w))
    x, y = r[..., 0].clamp(0, w - 1), r[..., 1].clamp(0, h - 1)
    b = torch.arange(points.shape[0], device=points.device)[:, None].expand_as(x)
    return ok & mask[b, 0, y, x]
