"""Image pairs for matching, written as hloc's pairs file (``name0 name1`` per line).

    python -m sekd_plugin.pairs --output pairs.txt --images DIR                 # exhaustive
    python -m sekd_plugin.pairs --output pairs.txt --images DIR --window 3     # sequential
    python -m sekd_plugin.pairs --output pairs.txt --from-list raw_pairs.txt   # clean a list
    python -m sekd_plugin.pairs --output pairs.txt --covisibility MODEL --num 5
    python -m sekd_plugin.pairs --output pairs.txt --poses MODEL_OR_GT_DIR --num 5
    python -m sekd_plugin.pairs --output pairs.txt --images DIR --window 3 --quadratic --loop
    python -m sekd_plugin.pairs --output pairs.txt --images DIR --gps --num 10

Image names come (first that is given) from ``image_list`` (a text file or a list of
names), a features .h5 file (its image groups) or ``image_dir`` (found recursively).

Modes (``main(..., mode=...)``):

* ``exhaustive``: every unordered pair once, ``(names[i], names[j])`` with ``i < j``; with
  ``ref_list`` every query against every reference (hloc's query/reference layout).
* ``sequential``: for ordered captures; names are sorted and each image is paired with the
  next ``window`` images (``loop=True`` also closes the sequence end -> start).
* ``from_list``: pairs read from an existing pairs file, cleaned.
* ``covisibility`` (``model``): each image with the ``num`` images sharing most 3D points;
  ``poses`` (``model``: a COLMAP model or a Strecha GT camera folder): the ``num`` nearest
  cameras whose viewing direction is within ``max_angle`` deg; ``gps``: the ``num`` nearest by
  EXIF GPS (images without it named in one warning); ``sequential`` with ``quadratic``: also
  the images ``2^k`` ahead (COLMAP's quadratic overlap). See :mod:`sekd_plugin.pair_selection`.

Every output has no self-pair and no pair listed twice, in either order (the first
occurrence is kept, with its order), like hloc's ``find_unique_new_pairs``.

File format: :mod:`sekd_plugin.io.pairs_file` (hloc's, with quoted names where needed).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Sequence

from .common import run_cli
from .common.cli import number, positive_int
from .io.images import list_images, parse_image_list
# the pairs file: its reader and writer are the step's public names too (hloc style)
from .io.pairs_file import PairsError, format_name, read_pairs, unique_pairs, write_pairs  # noqa: F401

logger = logging.getLogger(__name__)

MODES = ("exhaustive", "sequential", "from_list", "covisibility", "poses", "gps")
Pair = tuple[str, str]


# --------------------------------------------------------------------------- generation


def exhaustive_pairs(names: Sequence[str], ref_names: Sequence[str] | None = None) -> list[Pair]:
    """All unordered pairs of ``names`` (``i < j``), or every name against every reference."""
    names = list(dict.fromkeys(names))
    if ref_names is None:
        return [(names[i], names[j]) for i in range(len(names)) for j in range(i + 1, len(names))]
    return unique_pairs((n, r) for n in names for r in dict.fromkeys(ref_names))


def sequential_pairs(names: Sequence[str], window: int, loop: bool = False, sort: bool = True) -> list[Pair]:
    """Each image with its next ``window`` neighbours in capture order.

    ``sort``: order by name first (ordered captures are usually numbered). ``loop``: also
    pair the last images with the first ones (a closed trajectory around an object).
    """
    if window < 1:
        raise PairsError(f"the sequential window must be >= 1, got {window}")
    names = list(dict.fromkeys(names))
    if sort:
        names = sorted(names)
    n = len(names)
    pairs = []
    for i in range(n):
        for k in range(1, min(window, n - 1) + 1):  # larger offsets only repeat these (capped: no huge loops)
            j = i + k
            if j >= n:
                if not loop:
                    break
                j %= n
            pairs.append((names[i], names[j]))  # self-pairs and repeats dropped below
    return unique_pairs(pairs)


def _names(image_list=None, features=None, image_dir=None) -> list[str]:
    if image_list is not None:
        names = parse_image_list(image_list)
    elif features is not None:
        from .io.h5 import list_names

        names = list_names(features)
    elif image_dir is not None:
        names = list_images(image_dir)
    else:
        raise PairsError("give image_list, features or image_dir to know the image names")
    return names


def main(
    output: str | os.PathLike,
    image_list: str | os.PathLike | Sequence[str] | None = None,
    features: str | os.PathLike | None = None,
    image_dir: str | os.PathLike | None = None,
    mode: str = "exhaustive",
    window: int = 5,
    loop: bool = False,
    ref_list: str | os.PathLike | Sequence[str] | None = None,
    ref_features: str | os.PathLike | None = None,
    pairs_list: str | os.PathLike | None = None,
    quadratic: bool = False,
    model: str | os.PathLike | None = None,
    num: int = 10,
    max_angle: float = 30.0,
) -> Path:
    """Write the pairs of ``mode`` to ``output`` and return its path.

    ``ref_list`` / ``ref_features`` (exhaustive only) give reference names: every query is
    then paired with every reference. ``pairs_list`` (mode ``from_list``) is the file to
    clean; when names are also given, pairs naming unknown images are an error.
    """
    if mode not in MODES:
        raise PairsError(f"unknown pairs mode '{mode}'; valid: {list(MODES)}")
    if mode in ("covisibility", "poses", "gps"):
        from . import pair_selection as pairing

        if mode == "gps":
            if image_dir is None:
                raise PairsError("--gps needs --images (the EXIF GPS is read from the image files)")
            names = _names(image_list, features, image_dir)
            pairs = pairing.gps_pairs(image_dir, names, num)
        elif model is None:
            raise PairsError(f"mode '{mode}' needs a model (--{mode} MODEL)")
        elif mode == "covisibility":
            pairs = pairing.covisibility_pairs(model, num)
        else:
            pairs = pairing.pose_pairs(model, num, max_angle)
    elif mode == "from_list":
        if pairs_list is None:
            raise PairsError("mode 'from_list' needs pairs_list (a pairs file)")
        raw = read_pairs(pairs_list)
        if image_list is not None or features is not None or image_dir is not None:
            known = set(_names(image_list, features, image_dir))
            unknown = sorted({n for p in raw for n in p} - known)
            if unknown:
                raise PairsError(f"{pairs_list} names {len(unknown)} unknown image(s): {unknown[:10]}")
        pairs = unique_pairs(raw)
    else:
        names = _names(image_list, features, image_dir)
        if not names:
            raise PairsError("no images to pair")
        if mode == "exhaustive":
            refs = None
            if ref_list is not None or ref_features is not None:
                refs = _names(ref_list, ref_features)
            pairs = exhaustive_pairs(names, refs)
        else:
            if ref_list is not None or ref_features is not None:
                raise PairsError("reference lists are only supported in exhaustive mode")
            if quadratic:
                from .pair_selection import quadratic_pairs

                pairs = quadratic_pairs(names, window, loop)
            else:
                pairs = sequential_pairs(names, window, loop)
    logger.info("Writing %d pairs (%s) to %s", len(pairs), mode, output)
    return write_pairs(output, pairs)


def cli(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sekd_plugin.pairs",
                                     description="Write an hloc pairs file (name0 name1 per line).")
    parser.add_argument("--output", type=Path, required=True, help="pairs .txt to write")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--images", type=Path, help="image folder (searched recursively)")
    src.add_argument("--image-list", type=Path, help="text file of image names")
    src.add_argument("--features", type=Path, help="features .h5 (its image names)")
    parser.add_argument("--window", type=positive_int, help="sequential pairs: match each image with the next N")
    parser.add_argument("--loop", action="store_true", help="sequential: also pair the end with the start")
    parser.add_argument("--ref-list", type=Path, help="exhaustive query x reference: reference names")
    parser.add_argument("--ref-features", type=Path, help="exhaustive query x reference: reference features")
    parser.add_argument("--from-list", type=Path, help="clean this pairs file (drop self/duplicate/reverse pairs)")
    parser.add_argument("--quadratic", action="store_true", help="sequential: also the images 2^k ahead (k < window)")
    parser.add_argument("--covisibility", type=Path, metavar="MODEL", help="top --num images by shared 3D points")
    parser.add_argument("--poses", type=Path, metavar="MODEL",
                        help="nearest --num cameras (COLMAP model or Strecha GT camera folder)")
    parser.add_argument("--max-angle", type=number(float, low=0, high=180), default=30.0,
                        help="--poses: max viewing-angle difference (deg)")
    parser.add_argument("--gps", action="store_true", help="nearest --num images by EXIF GPS (needs --images)")
    parser.add_argument("--num", type=positive_int, default=10, help="partners per image for --covisibility/--poses/--gps")
    args = parser.parse_args(argv)
    if sum(x is not None and x is not False for x in (args.from_list, args.covisibility, args.poses, args.gps or None)) > 1:
        parser.error("choose one of --from-list, --covisibility, --poses, --gps")
    if args.quadratic and args.window is None:
        parser.error("--quadratic needs --window N")
    model = args.covisibility or args.poses
    if args.covisibility is not None:
        mode = "covisibility"
    elif args.poses is not None:
        mode = "poses"
    elif args.gps:
        mode = "gps"
    elif args.from_list is not None:
        mode = "from_list"
    elif args.window is not None:
        mode = "sequential"
    else:
        mode = "exhaustive"

    def summary(path: Path) -> None:
        print(f"{len(read_pairs(path))} pairs -> {path}")

    return run_cli(main, output=args.output, image_list=args.image_list, features=args.features,
                   image_dir=args.images, mode=mode, window=args.window if args.window is not None else 5,
                   loop=args.loop, ref_list=args.ref_list, ref_features=args.ref_features,
                   pairs_list=args.from_list, quadratic=args.quadratic, model=model, num=args.num,
                   max_angle=args.max_angle, on_success=summary)


if __name__ == "__main__":
    raise SystemExit(cli())
