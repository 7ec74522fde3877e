"""HPatches-style sequence folders: HPatches layout and Oxford Affine layout.

* HPatches: ``<seq>/1.ppm .. 6.ppm`` (any image extension) and ``H_1_2 .. H_1_6``;
  the type comes from the ``i_`` (illumination) / ``v_`` (viewpoint) prefix.
* Oxford Affine: ``<seq>/img1.<ext> .. img6.<ext>`` and ``H1to2p .. H1to6p``; the type comes
  from :data:`OXFORD_TYPES` (overridable), as those names carry no prefix.

``H_1_k`` maps pixel coordinates of image 1 to image k (``x_k ~ H @ [x_1, y_1, 1]``).
Images of one sequence may differ in size (Oxford ``wall``): never assume a fixed size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..common.errors import InputError
from ..io.images import IMAGE_EXTENSIONS  # the one list (.webp, .gif included)
# photometric ("i") vs geometric ("v") change, for the Oxford sequences, as in the papers
OXFORD_TYPES = {
    "leuven": "i", "bikes": "i", "trees": "i", "ubc": "i",
    "graf": "v", "wall": "v", "bark": "v", "boat": "v",
}
# high-resolution sequences D2-Net's protocol leaves out
D2NET_EXCLUDED = (
    "i_contruction", "i_crownnight", "i_dc", "i_pencils", "i_whitebuilding",
    "v_artisans", "v_astronautis", "v_talent",
)


class DatasetError(InputError):
    """A dataset folder is missing, empty or malformed (the message names the path)."""


@dataclass
class Sequence:
    name: str
    kind: str  # "i" or "v"
    images: list[Path]  # 6 paths, image 1 first
    homographies: list[np.ndarray] = field(default_factory=list)  # H_1_k for k = 2..6
    dataset: str = ""

    @property
    def key(self) -> str:
        """Unique name across datasets, used as the image-name prefix in feature files."""
        return f"{self.dataset}/{self.name}" if self.dataset else self.name


def _find_image(folder: Path, stem: str) -> Path | None:
    for ext in IMAGE_EXTENSIONS:
        for candidate in (folder / f"{stem}{ext}", folder / f"{stem}{ext.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def _read_h(path: Path) -> np.ndarray:
    """A 3 x 3 homography file; anything else (not 3 x 3, NaN/Inf, singular) names the file."""
    try:
        h = np.loadtxt(path, dtype=np.float64)
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path}: not a readable 3x3 homography ({e})") from None
    if h.shape != (3, 3):
        raise DatasetError(f"{path}: expected a 3x3 matrix, got shape {h.shape}")
    if not np.isfinite(h).all():
        raise DatasetError(f"{path}: the homography holds NaN or Inf values")
    if np.linalg.cond(h) > 1e12:  # cannot be inverted (the metrics need H^-1)
        raise DatasetError(f"{path}: the homography is singular (determinant {np.linalg.det(h):.3g})")
    return h


def load_sequence(folder: Path, dataset: str = "", types: dict[str, str] | None = None) -> Sequence | None:
    """Parse one sequence folder; ``None`` if it is in neither layout."""
    types = {**OXFORD_TYPES, **(types or {})}
    name = folder.name
    if any((folder / f"H_1_{i}").is_file() for i in range(2, 7)):
        stems, hnames = [str(i) for i in range(1, 7)], [f"H_1_{i}" for i in range(2, 7)]
        kind = name[0] if name[:2] in ("i_", "v_") else types.get(name)
    elif any((folder / f"H1to{i}p").is_file() for i in range(2, 7)):
        stems, hnames = [f"img{i}" for i in range(1, 7)], [f"H1to{i}p" for i in range(2, 7)]
        kind = types.get(name, name[0] if name[:2] in ("i_", "v_") else None)
    else:
        return None
    if kind not in ("i", "v"):
        raise DatasetError(
            f"{folder}: cannot tell illumination from viewpoint; name it i_*/v_* or pass a type "
            f"for '{name}' (known: {sorted(types)})"
        )
    images = [_find_image(folder, s) for s in stems]
    missing = [s for s, p in zip(stems, images) if p is None]
    if missing:
        raise DatasetError(f"{folder}: missing image(s) {missing} (extensions {IMAGE_EXTENSIONS})")
    missing = [h for h in hnames if not (folder / h).is_file()]
    if missing:
        raise DatasetError(f"{folder}: missing homography file(s) {missing}")
    hs = [_read_h(folder / h) for h in hnames]
    return Sequence(name, kind, images, hs, dataset)


def load_dataset(root: str | os.PathLike, types: dict[str, str] | None = None) -> list[Sequence]:
    """All sequences under ``root`` (a folder of sequences, or one sequence folder)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    single = load_sequence(root, "", types)
    if single is not None:
        single.dataset = root.parent.name
        return [single]
    seqs = [s for d in sorted(root.iterdir()) if d.is_dir() for s in [load_sequence(d, root.name, types)] if s]
    if not seqs:
        raise DatasetError(f"{root}: no sequences in HPatches (1.ppm, H_1_2) or Oxford (img1, H1to2p) layout")
    return seqs
