"""A small, deterministic demo data set built from the real photos bundled with scikit-image.

No download is needed: every photo used here ships inside the scikit-image wheel
(``skimage.data``), so demos, tests and CI can run offline.

* :func:`build_demo_images` writes the photos as PNGs (long side <= 640 px).
* :func:`build_demo_hpatches` writes HPatches-layout sequences (``<seq>/1.png .. 6.png`` and
  ``H_1_2 .. H_1_6``, plain-text 3x3 matrices mapping image-1 pixels to image-k pixels):
  viewpoint sequences ``v_<photo>`` with seeded random homographies of increasing strength,
  illumination sequences ``i_<photo>`` with identity homographies and seeded photometric changes.

Both are deterministic and cached: a small JSON manifest (generator version, seed, sha256 of
every file) is written last; when it matches the files on disk nothing is rebuilt. Files and
sequences are written to temporary names and renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zlib
from pathlib import Path

import cv2
import numpy as np

from ..assets import default_permissions
from ..common import write_atomic, write_json

GENERATOR_VERSION = 1
MAX_SIDE = 640
NUM_VIEWS = 6
VIEWPOINT_PHOTOS = ("astronaut", "coffee", "rocket", "motorcycle")
ILLUMINATION_PHOTOS = ("chelsea", "camera", "brick", "coins")
PHOTOS = VIEWPOINT_PHOTOS + ILLUMINATION_PHOTOS
CROP_MARGIN = 0.1  # viewpoint reference = central crop; views see real content beyond it


def load_photo(name: str) -> np.ndarray:
    """One bundled photo as H x W x 3 uint8 RGB, resized (INTER_AREA) so its long side <= 640."""
    from skimage import data

    image = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    image = np.ascontiguousarray(image[..., :3].astype(np.uint8))
    scale = MAX_SIDE / max(image.shape[:2])
    if scale < 1:
        size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return image


# --------------------------------------------------------------------------- file helpers

def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _encode_png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        from ..common.files import ImageWriteError

        raise ImageWriteError("PNG encoding of a demo image failed")
    return buf.tobytes()


def _manifest_matches(root: Path, manifest_name: str, expected: dict) -> bool:
    """True if ``root/manifest_name`` has the expected header and every file hash still holds."""
    try:
        manifest = json.loads((root / manifest_name).read_text())
    except (OSError, ValueError):
        return False
    if any(manifest.get(k) != v for k, v in expected.items()):
        return False
    files = manifest.get("files", {})
    return bool(files) and all((root / f).is_file() and _sha256(root / f) == h for f, h in files.items())


def _write_manifest(root: Path, manifest_name: str, header: dict, files: list[Path]) -> None:
    hashes = {p.relative_to(root).as_posix(): _sha256(p) for p in sorted(files)}
    write_json(root / manifest_name, {**header, "files": hashes})


# --------------------------------------------------------------------------- demo images

def build_demo_images(out_dir: str | os.PathLike) -> list[Path]:
    """Write the bundled photos as ``<out_dir>/<photo>.png``; returns their paths (cached)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png" for name in PHOTOS]
    header = {"generator": "sekd_plugin.datasets.demo.build_demo_images",
              "version": GENERATOR_VERSION}
    if _manifest_matches(out_dir, "demo_images.json", header):
        return paths
    for name, path in zip(PHOTOS, paths):
        data = _encode_png(load_photo(name))
        if not (path.is_file() and path.read_bytes() == data):
            write_atomic(path, data)
    _write_manifest(out_dir, "demo_images.json", header, paths)
    return paths


# --------------------------------------------------------------------------- demo HPatches

def _translation(tx: float, ty: float) -> np.ndarray:
    return np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]], dtype=np.float64)


def random_homography(rng: np.random.Generator, width: int, height: int, strength: float) -> np.ndarray:
    """A random homography about the image centre; ``strength`` in (0, 1] scales every effect.

    Rotation up to 30 deg, scale change up to 1.5x either way, perspective tilt that changes
    the depth of the image corners by up to ~18 %, shift up to 6 % of the image size.
    """
    sign_angle, sign_scale = rng.choice([-1.0, 1.0], size=2)
    angle = np.deg2rad(sign_angle * 30.0 * strength * rng.uniform(0.5, 1.0))
    scale = np.exp(sign_scale * np.log(1.5) * strength * rng.uniform(0.4, 1.0))
    px, py = rng.uniform(-1, 1, 2) * 0.35 * strength / np.array([width, height])
    shift = rng.uniform(-1, 1, 2) * 0.06 * strength * np.array([width, height])
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    similarity = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    perspective = np.array([[1, 0, 0], [0, 1, 0], [px, py, 1]])
    cx, cy = (width - 1) / 2, (height - 1) / 2
    H = _translation(cx + shift[0], cy + shift[1]) @ perspective @ similarity @ _translation(-cx, -cy)
    return H / H[2, 2]


def photometric_change(rng: np.random.Generator, image: np.ndarray, strength: float) -> np.ndarray:
    """Seeded gamma, contrast, brightness, colour tint, blur and noise (uint8 RGB in and out)."""
    x = image.astype(np.float32) / 255.0
    gamma = np.exp(rng.choice([-1.0, 1.0]) * 0.8 * strength * rng.uniform(0.5, 1.0))
    contrast = np.exp(rng.uniform(-1, 1) * 0.4 * strength)
    brightness = rng.uniform(-1, 1) * 0.25 * strength
    tint = np.exp(rng.uniform(-1, 1, 3) * 0.1 * strength).astype(np.float32)
    sigma_blur = rng.uniform(0, 1.5) * strength
    sigma_noise = 0.02 * strength
    x = (x ** gamma - 0.5) * contrast + 0.5 + brightness
    x = x * tint
    if sigma_blur > 0.3:
        x = cv2.GaussianBlur(x, (0, 0), sigma_blur)
    x = x + rng.normal(0.0, sigma_noise, x.shape).astype(np.float32)
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


def make_sequence(photo: np.ndarray, kind: str, rng: np.random.Generator):
    """Images 1..6 and homographies H_1_2..H_1_6 of one sequence (``kind`` = "v" or "i")."""
    if kind == "i":
        images = [photo] + [photometric_change(rng, photo, k / (NUM_VIEWS - 1)) for k in range(1, NUM_VIEWS)]
        return images, [np.eye(3) for _ in range(1, NUM_VIEWS)]
    h, w = photo.shape[:2]
    mx, my = round(w * CROP_MARGIN), round(h * CROP_MARGIN)
    ref = photo[my:h - my, mx:w - mx]
    hc, wc = ref.shape[:2]
    images, homographies = [np.ascontiguousarray(ref)], []
    for k in range(1, NUM_VIEWS):
        H = random_homography(rng, wc, hc, k / (NUM_VIEWS - 1))
        # View k is rendered from the whole photo, so it shows real content around the crop.
        view = cv2.warpPerspective(photo, H @ _translation(-mx, -my), (wc, hc),
                                   flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        images.append(view)
        homographies.append(H)
    return images, homographies


def sequence_names() -> list[str]:
    return [f"v_{p}" for p in VIEWPOINT_PHOTOS] + [f"i_{p}" for p in ILLUMINATION_PHOTOS]


def _write_sequence(out_dir: Path, name: str, images, homographies) -> list[Path]:
    """Write one sequence into a temporary folder, then rename it to ``out_dir/name``."""
    tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=f".{name}.", suffix=".part"))
    try:
        for k, image in enumerate(images, start=1):
            (tmp / f"{k}.png").write_bytes(_encode_png(image))
        for k, H in enumerate(homographies, start=2):
            np.savetxt(tmp / f"H_1_{k}", H)
        default_permissions(tmp)
        final = out_dir / name
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return sorted(final.iterdir())


def build_demo_hpatches(out_dir: str | os.PathLike, seed: int = 0) -> list[Path]:
    """Write HPatches-layout demo sequences under ``out_dir``; returns the sequence folders.

    Deterministic for a given ``seed`` (each sequence draws from its own generator seeded by
    ``seed`` and the sequence name) and cached via ``out_dir/demo_hpatches.json``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = sequence_names()
    header = {"generator": "sekd_plugin.datasets.demo.build_demo_hpatches",
              "version": GENERATOR_VERSION, "seed": seed, "sequences": names}
    if _manifest_matches(out_dir, "demo_hpatches.json", header):
        return [out_dir / n for n in names]
    files = []
    for name in names:
        kind, photo_name = name.split("_", 1)
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        images, homographies = make_sequence(load_photo(photo_name), kind, rng)
        files += _write_sequence(out_dir, name, images, homographies)
    _write_manifest(out_dir, "demo_hpatches.json", header, files)
    return [out_dir / n for n in names]
