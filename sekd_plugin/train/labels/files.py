"""Label files: one HDF5 file per round and label step (layout in :mod:`sekd_plugin.train.labels`),
written atomically, read back with every damage as one :class:`LabelFileError` line; and the
statistics the report shows."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from ...common.errors import InputError
from ...common.files import write_atomic

LABEL_FORMAT = 1
STEP_IDS = {"detect": 1, "descriptor": 2, "reliability": 3, "detector": 4}

Labels = dict[str, tuple[np.ndarray, np.ndarray]]  # key -> ((y, x) int16 N x 2, scores float16 N)


class LabelFileError(InputError):
    """A label file is unreadable or malformed (the message names the file)."""


# --------------------------------------------------------------------------- storage
def write_labels(path: str | Path, labels: Labels, sizes: dict[str, tuple[int, int]] | None = None,
                 image_stats: dict[str, np.ndarray] | None = None, **attrs) -> None:
    """Write labels atomically (:func:`sekd_plugin.common.write_atomic`); ``image_stats``: the
    per-image NMS statistics (:func:`maxima_stats`), stored as ``nms_stats`` beside the labels."""

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            f.attrs["version"] = LABEL_FORMAT
            f.attrs["num_images"] = len(labels)
            for k, v in attrs.items():
                f.attrs[k] = v
            grp = f.create_group("images")
            for i, key in enumerate(sorted(labels)):
                yx, sc = labels[key]
                g = grp.create_group(f"{i:06d}")
                g.attrs["name"] = key
                if sizes and key in sizes:
                    g.attrs["height"], g.attrs["width"] = sizes[key][:2]
                g.create_dataset("keypoints", data=np.asarray(yx, dtype=np.int16).reshape(-1, 2))
                g.create_dataset("scores", data=np.asarray(sc, dtype=np.float16).reshape(-1))
                if image_stats and key in image_stats:
                    g.create_dataset("nms_stats", data=np.asarray(image_stats[key]))  # dtype kept: equal statistics

    write_atomic(path, write)


def read_labels_with_sizes(path: str | Path, image_stats: dict[str, np.ndarray] | None = None
                           ) -> tuple[Labels, dict[str, tuple[int, int]], dict]:
    """``(labels, image sizes (H, W), root attributes)`` of a label file (the per-image NMS
    statistics go into ``image_stats`` when given).

    A truncated, corrupt or malformed file raises :class:`LabelFileError` naming it.
    """
    out: Labels = {}
    sizes: dict[str, tuple[int, int]] = {}
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
            if attrs.get("version") != LABEL_FORMAT or "images" not in f:
                raise LabelFileError(f"{path}: not a label file of this trainer (version {attrs.get('version')!r})")
            for g in f["images"].values():
                name = g.attrs["name"]
                name = name.decode() if isinstance(name, bytes) else str(name)
                yx, sc = g["keypoints"][()], g["scores"][()]
                if yx.ndim != 2 or yx.shape[1] != 2 or len(sc) != len(yx):
                    raise LabelFileError(f"{path}: malformed labels of image {name}")
                out[name] = (yx, sc)
                if "height" in g.attrs:
                    sizes[name] = (int(g.attrs["height"]), int(g.attrs["width"]))
                if image_stats is not None and "nms_stats" in g:
                    image_stats[name] = g["nms_stats"][()]
            if len(out) != int(attrs.get("num_images", -1)):
                raise LabelFileError(f"{path}: holds {len(out)} images, its header says {attrs.get('num_images')}")
    except LabelFileError:
        raise
    except Exception as e:  # noqa: BLE001 - h5py raises OSError, KeyError, ValueError ... on damage
        raise LabelFileError(f"{path}: unreadable label file ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    return out, sizes, attrs


def read_labels(path: str | Path) -> tuple[Labels, dict]:
    """``(labels, root attributes)`` of a label file."""
    labels, _, attrs = read_labels_with_sizes(path)
    return labels, attrs


def label_stats(labels: Labels, sizes: dict[str, tuple[int, int]]) -> dict:
    """Mean keypoints per image and the negative-class weight of the focal loss.

    The weight is the release's ``avg_points / (avg_pixels - avg_points)``.
    """
    n = [len(v[0]) for v in labels.values()]
    pixels = [sizes[k][0] * sizes[k][1] for k in labels]
    avg_pts = float(np.mean(n)) if n else 0.0
    avg_pix = float(np.mean(pixels)) if pixels else 1.0
    return {
        "keypoints_per_image": avg_pts,
        "keypoints_min": int(min(n)) if n else 0,
        "keypoints_max": int(max(n)) if n else 0,
        "images": len(n),
        "negative_weight": avg_pts / max(avg_pix - avg_pts, 1.0),
    }


def maxima_stats(per_image: list[np.ndarray]) -> dict:
    """Round summary of the per-image NMS statistics ``[maxima, labels, p10, p50, p90, floor-passing]``."""
    if not per_image:
        return {}
    a = np.stack(per_image)
    return {
        "nms_maxima_per_image": float(a[:, 0].mean()),
        "nms_maxima_p10": float(np.nanmedian(a[:, 2])),
        "nms_maxima_median": float(np.nanmedian(a[:, 3])),
        "nms_maxima_p90": float(np.nanmedian(a[:, 4])),
        "above_threshold_per_image": float(a[:, 5].mean()),
        "labels_per_image_min": int(a[:, 1].min()),
        "labels_per_image_median": float(np.median(a[:, 1])),
    }
