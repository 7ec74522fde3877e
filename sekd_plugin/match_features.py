"""Match the local features of image pairs into hloc's matches .h5 file.

    python -m sekd_plugin.match_features --pairs pairs.txt --features feats.h5 --output matches.h5 \\
        [--conf NN-mutual|NN-ratio|NN-superpoint] [--features-ref ref.h5] [--overwrite]

``main(conf, pairs, features, export_dir=None, matches=None, features_ref=None,
overwrite=False) -> Path`` mirrors ``hloc.match_features.main``:

* ``features`` is a path to the features .h5 (then ``matches`` must be given), or the
  stem of ``export_dir/<features>.h5`` (then the output defaults to
  ``export_dir/<features>_<conf output>_<pairs stem>.h5``);
* ``features_ref``: a separate features file for the second image of every pair;
* pairs already stored (either order, hloc's nested or legacy key) are skipped unless
  ``overwrite``; a pair listed twice or in both orders is matched once;
* the file records what made it (:func:`provenance`: the effective matcher conf and the
  fingerprint of the features files' own provenance); a run with another matcher conf or other
  features into it is refused naming both (:class:`MatchConfMismatch`), ``overwrite`` rebuilds it.

The matcher is the one named by ``conf["model"]["name"]`` in :mod:`sekd_plugin.matchers`
(hloc's named confs ``NN-mutual``, ``NN-ratio``, ``NN-superpoint``; the names of earlier
releases ``mutual_nn``, ``nn-ratio``, ``nn-distance`` still work). Nearest neighbour compares
float descriptors by L2 distance of unit vectors, uint8 ones by Hamming distance. Pairs whose
descriptor arrays have the same shapes are matched together in one batched call (e.g.
detectors with a fixed keypoint budget); the others one pair at a time, always vectorised.
A corrupt or foreign .h5 file raises :class:`~sekd_plugin.io.h5.H5FileError` naming it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pprint
from collections import OrderedDict, defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm import tqdm

from .infra import distributed
from .common import ConfigError, run_cli
from .common.errors import DiskFullError, InputError
from .common.files import ensure_free_space
from .io.h5 import (H5FileError, conf_differences, features_fingerprint, list_names, open_h5, read_conf,
                    matches_entry, read_features)
from .io.matches import find_pair
from .matchers import load_matcher
from .matchers.nearest_neighbor import pad_descriptors
from .matchers.confs import confs, get_conf  # noqa: F401  (hloc's names: match_features.confs[...])
from .io.pairs_file import read_pairs, unique_pairs
from .infra.sharded import ShardedFile

logger = logging.getLogger(__name__)

# Largest distance matrix (elements, summed over a batch) matched in one call.
MAX_BATCH_ELEMENTS = 2**25


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


class MatchConfMismatch(InputError):
    """The matches file holds matches of another matcher conf or of other features."""


def provenance(name: str, matcher, feature_path_q: Path, feature_path_ref: Path) -> dict[str, Any]:
    """What makes matches comparable: the effective matcher conf (defaults filled in) and the
    fingerprints of the features matched (see :func:`features_fingerprint`)."""
    out = {"matcher": {"name": name, **matcher.conf},
           "features": features_fingerprint(feature_path_q)}
    if Path(feature_path_ref) != Path(feature_path_q):
        out["features_ref"] = features_fingerprint(feature_path_ref)
    return json.loads(json.dumps(out))  # as read back from the file (tuples -> lists)


def _check_provenance(path: Path, wanted: dict[str, Any], overwrite: bool, features: Path) -> bool:
    """Raise :class:`MatchConfMismatch` when ``path`` holds matches of another conf or other
    features; returns True when it must be rebuilt (``overwrite`` and a mismatch)."""
    if not path.exists():
        return False
    found = read_conf(path, "matches")
    if found is None or found == wanted:
        return False
    if not _has_entries(path):  # e.g. left by a run that failed before its first pair: nothing to defend
        logger.info("%s holds no matches; replacing it", path)
        return True
    differences = "; ".join(conf_differences(found, wanted))
    if overwrite:
        logger.warning("%s holds matches of another matcher or features; --overwrite: rebuilding it (%s)",
                       path, differences)
        return True
    raise MatchConfMismatch(
        f"{path} holds matches of another matcher or other features than this run ({differences}; "
        f"'features' is the fingerprint of the provenance of {features}). "
        "Use another output file, or --overwrite to rebuild it")


def find_new_pairs(pairs: Sequence[Sequence[str]], match_path: Path | None) -> list[tuple[str, str]]:
    """Unique pairs (no self/duplicate/reverse) not yet stored in ``match_path``."""
    pairs = unique_pairs(pairs)
    if match_path is None or not match_path.exists():
        return pairs
    with open_h5(match_path, "r", "matches") as fd:  # a lookup: never modifies the file
        return [p for p in pairs if find_pair(fd, *p) is None]


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


def _has_entries(path: Path) -> bool:
    with open_h5(path, "r", "matches") as fd:
        return len(fd) > 0


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
    if "model" not in conf:
        raise ConfigError(f"matcher conf needs a 'model' entry, got keys {sorted(conf)}")
    device = distributed.context().device(device)
    matcher = load_matcher(conf["model"], device)
    for path, what in ((feature_path_q, "query"), (feature_path_ref, "reference")):
        if not Path(path).exists():
            raise FileNotFoundError(f"{what} features file not found: {path}")
    if not Path(pairs_path).exists():
        raise FileNotFoundError(f"pairs file not found: {pairs_path}")
    match_path.parent.mkdir(parents=True, exist_ok=True)

    shard = ShardedFile(match_path, "matches", unit="pairs")
    ctx = shard.ctx
    wanted = provenance(conf["model"]["name"], matcher, Path(feature_path_q), Path(feature_path_ref))
    shard.prepare(lambda path: _check_provenance(path, wanted, overwrite, Path(feature_path_q)), wanted, overwrite)
    all_pairs = unique_pairs(read_pairs(pairs_path))
    pairs = find_new_pairs(all_pairs, None if overwrite else match_path)
    counts = {"pairs": len(all_pairs), "matched": len(pairs), "skipped": len(all_pairs) - len(pairs)}
    if pairs:  # a foreign or corrupt file, or a full disk, fails here, before any work
        if match_path.exists():
            with open_h5(match_path, "r", "matches"):
                pass
        try:
            ensure_free_space(match_path)
        except DiskFullError as error:
            raise DiskFullError(error.path, written=0, unit="pairs") from None
    if not pairs:
        logger.info("All %d pairs are already in %s; nothing to match.", len(all_pairs), match_path)
        return counts
    _check_names(pairs, feature_path_q, 0)
    _check_names(pairs, feature_path_ref, 1)
    logger.info("Matching %d pairs (%d already done) with:\n%s", len(pairs), counts["skipped"], pprint.pformat(conf))

    desc_q = _DescriptorCache(feature_path_q, device)
    desc_r = desc_q if Path(feature_path_ref) == Path(feature_path_q) else _DescriptorCache(feature_path_ref, device)
    shapes_q = _descriptor_shapes(feature_path_q, {a for a, _ in pairs})
    shapes_r = _descriptor_shapes(feature_path_ref, {b for _, b in pairs})
    for name0, name1 in pairs:
        s0, s1 = shapes_q[name0], shapes_r[name1]
        if s0[0][0] != s1[0][0] or s0[1] != s1[1]:
            raise H5FileError(f"descriptors of {name0} {s0[0]} {s0[1]} and {name1} {s1[0]} {s1[1]} "
                              "cannot be compared (different size or type)")

    # One image against all its partners in one call (pairs grouped by their first image);
    # under torchrun the groups are split across ranks, balanced by distance-matrix size.
    by_first: dict[str, list[str]] = defaultdict(list)
    for name0, name1 in pairs:
        by_first[name0].append(name1)
    firsts = list(by_first)
    costs = [shapes_q[a][0][1] * sum(shapes_r[b][0][1] for b in by_first[a]) + 1 for a in firsts]
    firsts = [firsts[i] for i in shard.share(costs)]
    record = wanted  # an hloc file's entries are not ours to vouch for: None
    if match_path.exists() and read_conf(match_path, "matches") is None and _has_entries(match_path):
        logger.warning("%s holds matches without a recorded conf (e.g. written by hloc); adding to it "
                       "without checking that they are comparable", match_path)
        record = None
    grouped = hasattr(matcher, "match_one_to_many")
    writer = shard.writer(wanted, depth=256)
    todo = sum(len(by_first[a]) for a in firsts)
    try:
        with torch.inference_mode(), tqdm(total=todo, desc="match", unit="pair", disable=not ctx.is_main) as bar:
            for name0 in firsts:
                partners = by_first[name0]
                n0 = shapes_q[name0][0][1]
                if grouped:
                    widest = max(shapes_r[b][0][1] for b in partners)
                    step = max(1, MAX_BATCH_ELEMENTS // max(1, n0 * widest))
                    for start in range(0, len(partners), step):
                        chunk = partners[start:start + step]
                        d1, counts1 = pad_descriptors([desc_r(b) for b in chunk])
                        pred = matcher.match_one_to_many(desc_q(name0), d1, counts1)
                        matches0 = pred["matches0"].cpu().numpy()  # one transfer per group
                        scores0 = pred["matching_scores0"].cpu().numpy()
                        for k, name1 in enumerate(chunk):
                            writer.put(**matches_entry(name0, name1, matches0[k], scores0[k]))
                        bar.update(len(chunk))
                else:
                    for name1 in partners:
                        pred = matcher({"descriptors0": desc_q(name0)[None], "descriptors1": desc_r(name1)[None]})
                        writer.put(**matches_entry(name0, name1, pred["matches0"][0].cpu().numpy(),
                                                   pred["matching_scores0"][0].cpu().numpy()))
                        bar.update(1)
        writer.close()
    except BaseException:
        try:
            writer.close()  # what is queued is computed already
        finally:
            shard.publish_interrupted(record)
        raise
    shard.finish(record)
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
    """Command line; returns the exit code (0 ok, 2 usage error, 130 interrupted, 143 terminated)."""
    parser = argparse.ArgumentParser(prog="python -m sekd_plugin.match_features",
                                     description="Descriptor matching into an hloc matches .h5 file.",
                                     epilog="Exit status: 0 done, 2 usage error, 130 interrupted, 143 terminated.")
    parser.add_argument("--pairs", type=Path, required=True, help="pairs .txt (name0 name1 per line)")
    parser.add_argument("--features", type=Path, required=True, help="features .h5")
    parser.add_argument("--features-ref", type=Path, help="features .h5 of the second images (default: --features)")
    parser.add_argument("--output", type=Path, required=True, help="matches .h5 to write or extend")
    parser.add_argument("--conf", default="NN-mutual", choices=sorted(confs), help="matcher (default: NN-mutual)")
    parser.add_argument("--overwrite", action="store_true",
                        help="re-match pairs already in the output (rebuild it when it holds another matcher's)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="matcher options, e.g. "
                        "model.ratio_threshold=0.8 (the trainer's dotlist syntax; unknown keys are refused)")
    args = parser.parse_args(argv)

    def summary(counts: dict[str, int]) -> None:
        if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 prints
            return
        if counts["pairs"] == 0:
            print(f"no pairs in {args.pairs}: nothing matched, {args.output} not written")
        else:
            print(f"{counts['matched']} pairs matched, {counts['skipped']} already done -> {args.output}")

    def with_overrides(**kwargs):  # inside run_cli: a bad override is one line and exit 2
        from .common.conf_layers import parse_dotlist
        from .matchers.base import override_conf

        conf = override_conf(get_conf(args.conf), parse_dotlist(args.overrides), "the overrides")
        return match_from_paths(conf=conf, **kwargs)

    return run_cli(with_overrides, pairs_path=args.pairs, match_path=args.output,
                   feature_path_q=args.features, feature_path_ref=args.features_ref or args.features,
                   overwrite=args.overwrite, on_success=summary,
                   resume_hint="the pairs written so far are kept; run the same command again to resume")


if __name__ == "__main__":
    raise SystemExit(cli())
