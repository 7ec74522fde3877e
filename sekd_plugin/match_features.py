"""Match the local features of image pairs into hloc's matches .h5 file.

    python -m sekd_plugin.match_features --pairs pairs.txt --features feats.h5 --output matches.h5 \\
        [--conf mutual_nn|nn-ratio|nn-distance] [--features-ref ref.h5] [--overwrite]

``main(conf, pairs, features, export_dir=None, matches=None, features_ref=None,
overwrite=False) -> Path`` mirrors ``hloc.match_features.main``:

* ``features`` is a path to the features .h5 (then ``matches`` must be given), or the
  stem of ``export_dir/<features>.h5`` (then the output defaults to
  ``export_dir/<features>_<conf output>_<pairs stem>.h5``);
* ``features_ref``: a separate features file for the second image of every pair;
* pairs already stored (either order, hloc's nested or legacy key) are skipped unless
  ``overwrite``; a pair listed twice or in both orders is matched once.

Matching is nearest neighbour on the descriptors (:mod:`sekd_plugin.matchers`), float
descriptors by L2 distance of unit vectors, uint8 ones by Hamming distance. Pairs whose
descriptor arrays have the same shapes are matched together in one batched call (e.g.
detectors with a fixed keypoint budget); the others one pair at a time, always vectorised.
A corrupt or foreign .h5 file raises :class:`~sekd_plugin.io.h5.H5FileError` naming it.
"""

from __future__ import annotations

import argparse
import logging
import os
import pprint
import sys
from collections import OrderedDict, defaultdict
from copy import deepcopy
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm import tqdm

from .extractors.base import ConfigError
from .io.h5 import H5FileError, _find_pair, list_names, open_h5, read_features, write_matches
from .matchers.nearest_neighbor import NN_CONFS, match_nearest_neighbor
from .pairs import read_pairs, unique_pairs

logger = logging.getLogger(__name__)

confs: dict[str, dict[str, Any]] = {
    name: {"output": f"matches-{name.replace('_', '-')}", "model": {"name": "nearest_neighbor", **opts}}
    for name, opts in NN_CONFS.items()
}
# hloc's names for the same matchers
ALIASES = {"NN-mutual": "mutual_nn", "NN-ratio": "nn-ratio", "NN-superpoint": "nn-distance"}

# Largest distance matrix (elements, summed over a batch) matched in one call.
MAX_BATCH_ELEMENTS = 2**25


def get_conf(name: str) -> dict[str, Any]:
    """A deep copy of ``confs[name]`` (hloc's NN-* names accepted); unknown -> ConfigError."""
    name = ALIASES.get(name, name)
    if name not in confs:
        raise ConfigError(f"unknown matcher conf '{name}'; available: {sorted(confs)}")
    return deepcopy(confs[name])


def _matcher_options(conf: dict[str, Any]) -> dict[str, Any]:
    model = dict(conf.get("model", {}))
    name = model.pop("name", "nearest_neighbor")
    if name != "nearest_neighbor":
        raise ConfigError(f"unsupported matcher model '{name}' (only 'nearest_neighbor')")
    valid = {"mutual_check", "ratio_threshold", "distance_threshold"}
    unknown = sorted(set(model) - valid)
    if unknown:
        raise ConfigError(f"unknown matcher option(s) {unknown}; valid: {sorted(valid)}")
    return {"mutual_check": True, "ratio_threshold": None, "distance_threshold": None, **model}


class _DescriptorCache:
    """Descriptors (D x N tensors) of recently used images, read on demand."""

    def __init__(self, path: Path, device: torch.device, size: int = 256):
        self.path, self.device, self.size = path, device, size
        self.data: OrderedDict[str, torch.Tensor] = OrderedDict()

    def __call__(self, name: str) -> torch.Tensor:
        if name in self.data:
            self.data.move_to_end(name)
            return self.data[name]
        feats = read_features(self.path, name)
        if "descriptors" not in feats:
            raise H5FileError(f"image '{name}' of {self.path} has no descriptors")
        desc = np.asarray(feats["descriptors"])
        if desc.ndim != 2:
            raise H5FileError(f"descriptors of '{name}' in {self.path} have shape {desc.shape}, expected D x N")
        if desc.dtype != np.uint8:
            desc = desc.astype(np.float32)
        tensor = torch.from_numpy(desc).to(self.device)
        self.data[name] = tensor
        if len(self.data) > self.size:
            self.data.popitem(last=False)
        return tensor


def find_new_pairs(pairs: Sequence[Sequence[str]], match_path: Path | None) -> list[tuple[str, str]]:
    """Unique pairs (no self/duplicate/reverse) not yet stored in ``match_path``."""
    pairs = unique_pairs(pairs)
    if match_path is None or not match_path.exists():
        return pairs
    with open_h5(match_path, "a", "matches") as fd:  # "a": also checks an unmarked file's entries
        return [p for p in pairs if _find_pair(fd, *p) is None]


def _descriptor_shapes(path: Path, names) -> dict[str, tuple[tuple[int, ...], str]]:
    """``name -> (shape, kind)`` of the stored descriptors (kind "binary" for uint8, else "float")."""
    out = {}
    with open_h5(path, "r", "features") as fd:
        for name in names:
            ds = fd[name].get("descriptors") if name in fd else None
            if ds is None:
                raise H5FileError(f"image '{name}' of {path} has no descriptors")
            if ds.ndim != 2:
                raise H5FileError(f"descriptors of '{name}' in {path} have shape {ds.shape}, expected D x N")
            out[name] = (tuple(ds.shape), "binary" if ds.dtype == np.uint8 else "float")
    return out


def _check_names(pairs, path: Path, index: int) -> None:
    known = set(list_names(path))
    missing = sorted({p[index] for p in pairs} - known)
    if missing:
        raise H5FileError(f"{len(missing)} image(s) of the pairs are not in features file {path}: {missing[:10]}")


def match_from_paths(
    conf: dict[str, Any],
    pairs_path: Path,
    match_path: Path,
    feature_path_q: Path,
    feature_path_ref: Path,
    overwrite: bool = False,
    device: str | torch.device | None = None,
) -> dict[str, int]:
    """Match the new pairs of ``pairs_path``; returns counts ``{"pairs", "matched", "skipped"}``."""
    options = _matcher_options(conf)
    for path, what in ((feature_path_q, "query"), (feature_path_ref, "reference")):
        if not Path(path).exists():
            raise FileNotFoundError(f"{what} features file not found: {path}")
    if not Path(pairs_path).exists():
        raise FileNotFoundError(f"pairs file not found: {pairs_path}")
    match_path.parent.mkdir(parents=True, exist_ok=True)

    all_pairs = unique_pairs(read_pairs(pairs_path))
    pairs = find_new_pairs(all_pairs, None if overwrite else match_path)
    counts = {"pairs": len(all_pairs), "matched": len(pairs), "skipped": len(all_pairs) - len(pairs)}
    if match_path.exists():  # a foreign or corrupt file fails here, before any work
        with open_h5(match_path, "a", "matches"):
            pass
    if not pairs:
        logger.info("All %d pairs are already in %s; nothing to match.", len(all_pairs), match_path)
        return counts
    _check_names(pairs, feature_path_q, 0)
    _check_names(pairs, feature_path_ref, 1)
    logger.info("Matching %d pairs (%d already done) with:\n%s", len(pairs), counts["skipped"], pprint.pformat(conf))

    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    desc_q = _DescriptorCache(feature_path_q, device)
    desc_r = desc_q if Path(feature_path_ref) == Path(feature_path_q) else _DescriptorCache(feature_path_ref, device)

    # Group pairs whose descriptor arrays have the same shapes: they are matched in one call.
    shapes_q = _descriptor_shapes(feature_path_q, {a for a, _ in pairs})
    shapes_r = _descriptor_shapes(feature_path_ref, {b for _, b in pairs})
    groups: dict[tuple, list[tuple[str, str]]] = defaultdict(list)
    for name0, name1 in pairs:
        s0, s1 = shapes_q[name0], shapes_r[name1]
        if s0[0][0] != s1[0][0] or s0[1] != s1[1]:
            raise H5FileError(f"descriptors of {name0} {s0[0]} {s0[1]} and {name1} {s1[0]} {s1[1]} "
                              "cannot be compared (different size or type)")
        groups[(s0, s1)].append((name0, name1))

    with torch.inference_mode(), tqdm(total=len(pairs), desc="match", unit="pair") as bar:
        for (s0, s1), group in groups.items():
            per_pair = max(1, s0[0][1] * s1[0][1])
            batch = max(1, MAX_BATCH_ELEMENTS // per_pair)
            for start in range(0, len(group), batch):
                chunk = group[start:start + batch]
                d0 = torch.stack([desc_q(a) for a, _ in chunk])
                d1 = torch.stack([desc_r(b) for _, b in chunk])
                matches0, scores0 = match_nearest_neighbor(d0, d1, **options)
                matches0, scores0 = matches0.cpu().numpy(), scores0.cpu().numpy()
                for k, (name0, name1) in enumerate(chunk):
                    write_matches(match_path, name0, name1, matches0[k], scores0[k])
                bar.update(len(chunk))
    logger.info("Wrote matches of %d pairs to %s", len(pairs), match_path)
    return counts


def main(
    conf: dict[str, Any],
    pairs: str | os.PathLike,
    features: str | os.PathLike,
    export_dir: str | os.PathLike | None = None,
    matches: str | os.PathLike | None = None,
    features_ref: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> Path:
    """hloc-compatible entry point; returns the path of the matches file."""
    pairs = Path(pairs)
    if isinstance(features, Path) or Path(features).exists() or str(features).endswith(".h5"):
        features_q = Path(features)
        if matches is None:
            raise ValueError("when features is a file path, give the matches output path too")
    else:
        if export_dir is None:
            raise ValueError("give export_dir when features is a feature file stem, not a path")
        features_q = Path(export_dir, str(features) + ".h5")
        if matches is None:
            matches = Path(export_dir, f"{features}_{conf['output']}_{pairs.stem}.h5")
    if features_ref is None:
        features_ref = features_q
    match_from_paths(conf, pairs, Path(matches), features_q, Path(features_ref), overwrite)
    return Path(matches)


def cli(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sekd_plugin.match_features",
                                     description="Nearest-neighbour matching into an hloc matches .h5 file.")
    parser.add_argument("--pairs", type=Path, required=True, help="pairs .txt (name0 name1 per line)")
    parser.add_argument("--features", type=Path, required=True, help="features .h5")
    parser.add_argument("--features-ref", type=Path, help="features .h5 of the second images (default: --features)")
    parser.add_argument("--output", type=Path, required=True, help="matches .h5 to write or extend")
    parser.add_argument("--conf", default="mutual_nn", choices=sorted(confs), help="matcher (default: mutual_nn)")
    parser.add_argument("--overwrite", action="store_true", help="re-match pairs already in the output")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        main(get_conf(args.conf), args.pairs, args.features, matches=args.output,
             features_ref=args.features_ref, overwrite=args.overwrite)
    except (ValueError, FileNotFoundError) as error:  # H5FileError, ConfigError, PairsError are ValueErrors
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the pairs written so far are kept; run again to resume", file=sys.stderr)
        return 130
    print(f"matches -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(cli())
