"""A small, deterministic demo data set built from the real photos bundled with scikit-image.

No download is needed: every photo used here ships inside the scikit-image wheel
(``skimage.data``), so demos, tests and CI can run offline.

* :func:`build_demo_images` writes the photos as PNGs (long side <= 640 px).
* :func:`build_demo_scene` renders one rigid 3D scene (textured boxes on a textured ground in
  front of a textured wall) from 8 cameras on an arc, with their ground-truth cameras: the
  multi-view set for the SfM walk-through (see :mod:`sekd_plugin.datasets.scene_render`).
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

from ..infra.assets import default_permissions
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


# --------------------------------------------------------------------------- demo 3D scene

SCENE_VIEWS = 8
SCENE_SIZE = (640, 480)
SCENE_FOCAL = 1.2 * max(SCENE_SIZE)  # = COLMAP's default focal prior for images without EXIF
SCENE_CAMERAS = "gt_dense_cameras"
_W = (0.5, 0.5, 1.0)  # whole photo (largest window of the quad's aspect)


def demo_scene_quads() -> list:
    """The demo scene (metres, z up): a 12 m x 12 m ground of 9 photo tiles, a folded 3.5 m
    wall of 3 photos behind, and 4 boxes of different sizes (one in front of the others, so
    views differ by occlusions as well as by parallax)."""
    from .scene_render import Quad, box_quads

    ground = [["gravel", "grass", "immunohistochemistry"], ["hubble_deep_field", "coffee", "gravel"],
              ["cell", "grass", "camera"]]
    windows = [[_W, _W, _W], [_W, (0.7, 0.5, 0.6), (0.3, 0.3, 0.5)], [_W, (0.7, 0.7, 0.5), _W]]
    quads = [Quad((-6 + 4 * i, -2 + 4 * j, 0), (4, 0, 0), (0, -4, 0), ground[j][i], windows[j][i])
             for j in range(3) for i in range(3)]
    wall = [(-5.5, 2.5), (-2.0, 4.5), (2.0, 4.5), (5.5, 2.5)]
    for (x0, y0), (x1, y1), name in zip(wall, wall[1:], ("chelsea", "astronaut", "motorcycle")):
        quads.append(Quad((x0, y0, 3.5), (x1 - x0, y1 - y0, 0), (0, 0, -3.5), name))
    boxes = [((0.0, 0.3), (2.0, 1.4, 1.2), ("coffee", "retina", "page", "coins", "rocket"),
              (_W, _W, _W, _W, _W)),
             ((1.7, 1.6), (0.7, 0.7, 2.3), ("astronaut", "immunohistochemistry", "text", "hubble_deep_field", "clock"),
              ((0.35, 0.5, 1.0), (0.3, 0.5, 1.0), _W, _W, _W)),
             ((-1.8, 1.3), (1.2, 0.9, 0.7), ("rocket", "chelsea", "moon", "camera", "coffee"),
              ((0.2, 0.6, 0.6), (0.3, 0.4, 0.7), _W, _W, (0.8, 0.5, 0.5))),
             ((1.3, -1.6), (0.6, 0.6, 0.5), ("motorcycle", "coins", "grass", "retina", "astronaut"),
              ((0.6, 0.5, 0.6), (0.4, 0.4, 0.5), _W, (0.3, 0.3, 0.5), (0.5, 0.2, 0.4)))]
    for centre, size, names, wins in boxes:
        quads += box_quads(centre, size, names, wins)
    return quads


def demo_scene_cameras(num_views: int = SCENE_VIEWS) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(K, R camera-to-world, C)`` of each view: an arc of radius 5.5 m in front of the scene,
    20 degrees between neighbours (140 degrees for 8 views), heights alternating 2.6 / 2.9 m."""
    from .scene_render import look_at

    w, h = SCENE_SIZE
    K = np.array([[SCENE_FOCAL, 0, w / 2], [0, SCENE_FOCAL, h / 2], [0, 0, 1.0]])
    cameras = []
    for k in range(num_views):
        azimuth = np.deg2rad(-90 - 20 * (num_views - 1) / 2 + 20 * k)
        C = np.array([5.5 * np.cos(azimuth), 5.5 * np.sin(azimuth), 2.6 + 0.3 * (k % 2)])
        cameras.append((K, look_at(C, (0.0, 0.6, 0.7)), C))
    return cameras


def render_demo_scene(num_views: int = SCENE_VIEWS) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(image H x W x 3 uint8 RGB, depth H x W float32)`` of each view of the demo scene."""
    from .scene_render import crop_texture, render_view

    photos: dict[str, np.ndarray] = {}
    textures: dict = {}

    def texture(quad):
        key = (quad.texture, quad.window, round(quad.aspect, 6))
        if key not in textures:
            if quad.texture not in photos:
                photos[quad.texture] = load_photo(quad.texture)
            textures[key] = crop_texture(photos[quad.texture], quad.aspect, quad.window)
        return textures[key]

    quads = demo_scene_quads()
    return [render_view(quads, texture, K, R, C, SCENE_SIZE) for K, R, C in demo_scene_cameras(num_views)]


def format_strecha_camera(K: np.ndarray, R: np.ndarray, C: np.ndarray, size: tuple[int, int]) -> str:
    """A Strecha ``.camera`` file's text (K, zero distortion, R camera-to-world, centre, size)."""
    rows = [*K, np.zeros(3), *R, C]
    return "".join(" ".join(f"{v:.12g}" for v in row) + "\n" for row in rows) + f"{size[0]} {size[1]}\n"


def build_demo_scene(out_dir: str | os.PathLike) -> list[Path]:
    """Render the demo scene into ``out_dir/0000.png ..`` with ground-truth cameras in
    ``out_dir/gt_dense_cameras/<image name>.camera``; returns the image paths (cached).

    The images are a real multi-view set (one rigid scene, 20 degrees between neighbouring
    views), so ``sekd_plugin.reconstruction`` registers them all with default options. The focal
    length is COLMAP's own default guess for images without EXIF (1.2 x the long side) and the
    principal point the image centre, so self-calibration starts from the true camera.
    Deterministic (no randomness) and cached via ``out_dir/demo_scene.json``.
    """
    out_dir = Path(out_dir)
    (out_dir / SCENE_CAMERAS).mkdir(parents=True, exist_ok=True)
    names = [f"{k:04d}.png" for k in range(SCENE_VIEWS)]
    paths = [out_dir / n for n in names]
    header = {"generator": "sekd_plugin.datasets.demo.build_demo_scene", "version": GENERATOR_VERSION,
              "views": SCENE_VIEWS, "size": list(SCENE_SIZE)}
    if _manifest_matches(out_dir, "demo_scene.json", header):
        return paths
    files = []
    for name, path, (image, _), (K, R, C) in zip(names, paths, render_demo_scene(), demo_scene_cameras()):
        for target, data in ((path, _encode_png(image)),
                             (out_dir / SCENE_CAMERAS / f"{name}.camera",
                              format_strecha_camera(K, R, C, SCENE_SIZE).encode())):
            if not (target.is_file() and target.read_bytes() == data):
                write_atomic(target, data)
            files.append(target)
    _write_manifest(out_dir, "demo_scene.json", header, files)
    return paths
