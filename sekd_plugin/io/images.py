"""Image decoding, resizing and the dataset every stage of the package reads images with.

Conventions
-----------
* ``read_image`` returns ``uint8``: ``H x W`` for grayscale, ``H x W x 3`` **RGB** for colour.
* ``load_image`` / :class:`ImageDataset` return hloc's model input: a ``float32`` tensor
  ``C x H x W`` in [0, 1] (C = 1 grayscale, 3 RGB) plus ``original_size`` and ``size``,
  both ``(W, H)`` int arrays, before and after resizing.
* Sizes are always ``(W, H)``; arrays are always ``H x W``.

Decoding policy
---------------
* OpenCV decodes the file bytes (``cv2.imdecode``). For ordinary 8-bit files the grayscale
  result is identical to ``cv2.imread(path, cv2.IMREAD_GRAYSCALE)`` (the SEKD parity
  fixtures were made that way) and the colour result to ``cv2.imread(path)`` converted
  BGR -> RGB.
* **EXIF orientation is ignored** (``cv2.IMREAD_IGNORE_ORIENTATION``), as in hloc: images
  are used as stored, so keypoints are in stored-pixel coordinates and agree with COLMAP,
  which also ignores the orientation tag. An image tagged "rotate 90" therefore keeps its
  stored (W, H).
* 16-bit images are mapped to 8 bits with ``round(value / 257)`` (so 65535 -> 255 exactly;
  plain ``cv2.imread`` would truncate with ``value >> 8``, at most one grey level apart).
* An alpha channel is dropped; a grayscale file requested as colour is replicated to 3
  channels; a colour file requested as grayscale uses OpenCV's conversion.
* Empty, truncated, corrupt or non-image files raise :class:`ImageReadError` naming the
  file. ``cv2.imdecode`` rejects truncated JPEG/PNG data (``cv2.imread`` would return a
  partially grey image with only a warning).
* Tiny images are not rejected here: the extractor decides what it can process.

Resizing follows hloc exactly: when ``resize_max`` is set and ``max(W, H) > resize_max``
(or ``resize_force``), ``scale = resize_max / max(W, H)`` and the new size is
``round(dim * scale)`` (at least 1). The resize runs on the float32 image with
``interpolation`` = ``"cv2_area"`` (default; falls back to ``INTER_LINEAR`` when
upsampling), any other ``"cv2_<name>"`` (``cv2.INTER_<NAME>``) or ``"pil_<name>"``
(``PIL.Image.Resampling.<NAME>``; ``pil_linear`` = BILINEAR, ``pil_cubic`` = BICUBIC;
applied to the uint8 image).
"""

from __future__ import annotations

import logging
import os
import posixpath
from pathlib import Path
from typing import Any, Iterable, Sequence

import cv2
import numpy as np
import PIL.Image
import torch

from ..common.conf import check_keys
from ..common.errors import ConfigError, InputError

logger = logging.getLogger(__name__)

# The one list of image file extensions (any case) of every command: folder listing, image
# lists, training. A named file with another extension is refused with its name.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".bmp", ".tif", ".tiff", ".webp", ".gif")

DEFAULT_PREPROCESSING: dict[str, Any] = {
    "grayscale": False,
    "resize_max": None,  # longest side after resizing; None or 0: keep the size
    "resize_force": False,  # also resize (upsample) images smaller than resize_max
    "interpolation": "cv2_area",
    "globs": None,  # only used to list images; see list_images
}


class ImageReadError(InputError):
    """An image file cannot be used (missing, empty, truncated, not an image...)."""


class NoImagesError(InputError):
    """No usable image: a missing or empty image folder or image list (one line for the user)."""


# --------------------------------------------------------------------------- decoding


def read_image(path: str | os.PathLike, grayscale: bool = False) -> np.ndarray:
    """Decode an image file to ``uint8`` ``H x W`` (grayscale) or ``H x W x 3`` (RGB).

    Raises :class:`ImageReadError` (naming ``path``) when the file cannot be decoded.
    """
    path = Path(path)
    if not path.name.lower().endswith(IMAGE_EXTENSIONS) and not path.is_dir():
        raise ImageReadError(f"not an image file name: {path} (image extensions: {' '.join(IMAGE_EXTENSIONS)})")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise ImageReadError(f"image file not found: {path}") from None
    except IsADirectoryError:
        raise ImageReadError(f"expected an image file, got a directory: {path}") from None
    except OSError as error:
        raise ImageReadError(f"cannot read image file {path}: {error}") from None
    if data.size == 0:
        raise ImageReadError(f"image file is empty (0 bytes): {path}")

    flags = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_IGNORE_ORIENTATION
    flags |= cv2.IMREAD_GRAYSCALE if grayscale else cv2.IMREAD_COLOR
    try:
        image = cv2.imdecode(data, flags)
    except cv2.error as error:  # e.g. an image over OpenCV's pixel limit
        raise ImageReadError(f"cannot decode image {path}: {error}") from None
    if image is None or image.size == 0:
        raise ImageReadError(
            f"cannot decode image {path}: the file is truncated, corrupt or not an image "
            "in a format OpenCV reads"
        )

    if image.dtype == np.uint16:
        image = np.round(image / 257.0).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageReadError(
            f"unsupported pixel type {image.dtype} in {path} (expected 8- or 16-bit integers)"
        )
    if not grayscale:
        image = np.ascontiguousarray(image[:, :, ::-1])  # BGR -> RGB
    return image


# --------------------------------------------------------------------------- resizing


def check_preprocessing(conf: dict[str, Any] | None) -> dict[str, Any]:
    """Merge ``conf`` over :data:`DEFAULT_PREPROCESSING`; unknown keys raise ConfigError."""
    conf = dict(conf or {})
    check_keys(conf, DEFAULT_PREPROCESSING, "preprocessing")
    conf = {**DEFAULT_PREPROCESSING, **conf}
    interp = conf["interpolation"]
    if not (isinstance(interp, str) and interp.startswith(("cv2_", "pil_"))):
        raise ConfigError(f"preprocessing interpolation must be 'cv2_*' or 'pil_*', got {interp!r}")
    if conf["resize_max"] is not None and conf["resize_max"] < 0:
        raise ConfigError(f"preprocessing resize_max must be positive, got {conf['resize_max']}")
    return conf


def resized_size(size: Sequence[int], resize_max: int | None, force: bool = False) -> tuple[int, int]:
    """The ``(W, H)`` an image of ``size = (W, H)`` gets with hloc's resize rule."""
    w, h = int(size[0]), int(size[1])
    if resize_max and (force or max(w, h) > resize_max):
        scale = resize_max / max(w, h)
        return max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    return w, h


# hloc's names for PIL filters that Pillow >= 10 only knows by their long name
_PIL_ALIASES = {"LINEAR": "BILINEAR", "CUBIC": "BICUBIC", "ANTIALIAS": "LANCZOS"}


def resize_image(image: np.ndarray, size: tuple[int, int], interpolation: str = "cv2_area") -> np.ndarray:
    """Resize an ``H x W [x C]`` image to ``size = (W, H)``; keeps the dtype."""
    h, w = image.shape[:2]
    if (w, h) == tuple(size):
        return image
    if interpolation.startswith("cv2_"):
        name = "INTER_" + interpolation[len("cv2_"):].upper()
        if not hasattr(cv2, name):
            raise ConfigError(f"unknown interpolation {interpolation!r} (no cv2.{name})")
        mode = getattr(cv2, name)
        if mode == cv2.INTER_AREA and (size[0] > w or size[1] > h):
            mode = cv2.INTER_LINEAR  # INTER_AREA is meant for downsampling
        return cv2.resize(image, tuple(size), interpolation=mode)
    if interpolation.startswith("pil_"):
        name = interpolation[len("pil_"):].upper()
        name = _PIL_ALIASES.get(name, name)
        if not hasattr(PIL.Image.Resampling, name):
            raise ConfigError(f"unknown interpolation {interpolation!r} (no PIL resampling {name})")
        pil = PIL.Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
        pil = pil.resize(tuple(size), resample=getattr(PIL.Image.Resampling, name))
        return np.asarray(pil).astype(image.dtype)
    raise ConfigError(f"unknown interpolation {interpolation!r}")


def preprocess(image: np.ndarray, conf: dict[str, Any] | None = None) -> dict[str, Any]:
    """Turn a ``uint8`` image from :func:`read_image` into hloc's model input.

    Returns ``{"image": float32 tensor C x H' x W' in [0, 1], "original_size": (W, H),
    "size": (W', H')}``; sizes are int64 arrays.
    """
    conf = check_preprocessing(conf)
    original_size = (image.shape[1], image.shape[0])
    size = resized_size(original_size, conf["resize_max"], conf["resize_force"])
    image = image.astype(np.float32)
    image = resize_image(image, size, conf["interpolation"])
    if image.ndim == 2:
        image = image[None]
    else:
        image = image.transpose(2, 0, 1)
    return {
        "image": torch.from_numpy(np.ascontiguousarray(image / 255.0, dtype=np.float32)),
        "original_size": np.array(original_size, dtype=np.int64),
        "size": np.array(size, dtype=np.int64),
    }


def load_image(path: str | os.PathLike, conf: dict[str, Any] | None = None) -> dict[str, Any]:
    """:func:`read_image` + :func:`preprocess` (``conf`` is a preprocessing conf)."""
    conf = check_preprocessing(conf)
    return preprocess(read_image(path, conf["grayscale"]), conf)


# --------------------------------------------------------------------------- listing


def list_images(root: str | os.PathLike, globs: Iterable[str] | None = None) -> list[str]:
    """Sorted POSIX names, relative to ``root``, of the images found recursively (the package's
    one listing: extraction, training and the benchmarks).

    Without ``globs`` a file is an image when its extension (any case) is one of
    :data:`IMAGE_EXTENSIONS`. With ``globs`` (e.g. ``["*.jpg", "db/*.png"]``) the names
    matching any pattern under ``root`` or any of its subfolders are returned (hloc's rule).
    Symbolic links to folders are followed.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"image folder not found: {root}")
    names = set()
    if not root.is_dir():
        raise ImageReadError(f"expected a folder of images, got a file: {root}")
    if globs:
        for pattern in globs:
            for path in root.glob("**/" + pattern):
                if path.is_file():
                    names.add(path.relative_to(root).as_posix())
        return sorted(names)
    seen = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:  # a link cycle
            dirs[:] = []
            continue
        seen.add(real)
        for file in files:
            if file.lower().endswith(IMAGE_EXTENSIONS):
                names.add(Path(folder, file).relative_to(root).as_posix())
    return sorted(names)


def parse_image_list(path_or_list: str | os.PathLike | Iterable[str | os.PathLike]) -> list[str]:
    """Image names from a text file (one per line) or from an iterable of names.

    In a file, empty lines and lines starting with ``#`` are skipped and the name is the
    first whitespace-separated token (hloc lists may carry camera intrinsics after it).
    Names are returned as POSIX strings, in the given order, without duplicates.
    """
    if isinstance(path_or_list, (str, os.PathLike)):
        path = Path(path_or_list)
        try:
            lines = path.read_text().splitlines()
        except OSError as error:
            raise FileNotFoundError(f"cannot read image list {path}: {error}") from None
        names = [line.split()[0] for line in lines if line.strip() and not line.lstrip().startswith("#")]
    else:
        names = [Path(n).as_posix() if isinstance(n, os.PathLike) else str(n) for n in path_or_list]
    return list(dict.fromkeys(names))


def check_names_inside(root: str | os.PathLike, names: Sequence[str]) -> None:
    """Refuse image names that leave ``root`` (absolute, or ``..`` past it), naming them.

    Names are stored as the keys of the features file, so an image list naming
    ``../../etc/x.jpg`` would both read outside the image folder and store a key that no
    other tool resolves the same way.
    """
    outside = [n for n in names
               if Path(n).is_absolute() or os.path.normpath(n).split(os.sep)[0] == ".."]
    if outside:
        raise InputError(f"{len(outside)} image name(s) point outside the image folder {root}: "
                         f"{outside[:5]} (names are relative to it; allow them explicitly to read them anyway)")


def normalise_names(root: str | os.PathLike, names: Sequence[str]) -> list[str]:
    """Each name in one spelling, duplicates dropped (first kept), so that a name is looked up
    in a features file the way it is stored there.

    ``./a.jpg``, ``x//a.jpg``, ``x/../a.jpg`` become ``a.jpg``, ``x/a.jpg``, ``a.jpg``
    (``posixpath.normpath``); an absolute name inside ``root`` becomes relative to it; other
    absolute names stay absolute (HDF5 stores them without the leading ``/``, see
    :func:`sekd_plugin.io.h5.entry_name`).
    """
    base = Path(os.path.abspath(root))
    out = []
    for name in names:
        norm = posixpath.normpath(str(name))
        if norm.startswith("//"):
            norm = "/" + norm.lstrip("/")
        if posixpath.isabs(norm):
            try:
                norm = Path(norm).relative_to(base).as_posix()
            except ValueError:
                pass
        out.append(norm)
    return list(dict.fromkeys(out))


# --------------------------------------------------------------------------- dataset


class ImageDataset(torch.utils.data.Dataset):
    """Images ``root / name`` preprocessed with ``preprocessing_conf``.

    Item ``i`` is ``{"name", "image": C x H x W float32, "original_size": (W, H),
    "size": (W', H')}``; when the image cannot be read it is ``{"name", "error": message}``
    instead, so that a loader can report it and go on with the others.
    """

    def __init__(self, root: str | os.PathLike, names: Sequence[str], preprocessing_conf: dict[str, Any] | None = None):
        self.root = Path(root)
        self.names = list(names)
        self.conf = check_preprocessing(preprocessing_conf)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, idx: int) -> dict[str, Any]:
        name = self.names[idx]
        try:
            data = load_image(self.root / name, self.conf)
        except ImageReadError as error:
            return {"name": name, "error": str(error)}
        except (cv2.error, MemoryError) as error:
            return {"name": name, "error": f"cannot preprocess image {self.root / name}: {error}"}
        return {"name": name, **data}
