"""Command line for data sets: ``python -m sekd_plugin.datasets {fetch,verify,list,where,demo}``.

    python -m sekd_plugin.datasets fetch hpatches [--dest DIR] [--url URL] [--force] [--keep-archive]
    python -m sekd_plugin.datasets demo [--output DIR] [--seed N]

``fetch`` downloads the archive with :func:`sekd_plugin.infra.assets.fetch` and unpacks it safely into
``DIR/<folder>`` (default: the cache, ``$SEKD_PLUGIN_CACHE``); ``demo`` builds the offline demo
set of :mod:`sekd_plugin.datasets.demo` (photos, HPatches-style sequences, and a rendered
multi-view 3D scene with ground-truth cameras for the SfM walk-through). Errors print one line
and exit with code 2.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from ..infra import assets
from ..common import run_cli
from ..common.cli import non_negative_int
from ..infra.weights import add_commands, run


def fetch_dataset(name: str, dest_dir=None, url: str | None = None, force: bool = False,
                  keep_archive: bool = False) -> Path:
    """Download, verify and unpack a data set; returns the extracted folder."""
    asset = assets.load_manifest(name)
    dest = Path(dest_dir).expanduser() if dest_dir is not None else assets.cache_dir()
    target = dest / asset.local_name
    if asset.extract_dir and target.exists() and not force:
        return target
    had_archive = (dest / asset.filename).exists()
    with assets.removing_new_folders(dest):
        archive = assets.fetch(asset, dest_dir=dest, url=url, force=force)
        if not asset.extract_dir:
            return archive
        try:
            from ..infra.archives import extract

            folder = extract(asset, archive, dest, force=force)
        except assets.AssetError:  # refused (unsafe member, wrong layout): it is not kept
            if not had_archive:
                archive.unlink(missing_ok=True)
            raise
    if not keep_archive:
        archive.unlink()
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sekd_plugin.datasets",
                                     description="Fetch benchmark data sets or build the demo set.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_commands(sub, "dataset")
    sub.choices["fetch"].add_argument("--keep-archive", action="store_true",
                                      help="keep the downloaded archive after unpacking")
    demo = sub.add_parser("demo", help="build the offline demo images, HPatches-style sequences and multi-view scene")
    demo.add_argument("--output", help="target folder (default: <cache>/demo)")
    demo.add_argument("--seed", type=non_negative_int, default=0,
                      help="seed of the HPatches-style sequences (the scene is fixed)")
    args = parser.parse_args(argv)
    return run_cli(_run, args=args, on_success=lambda code: code)


def _run(args) -> int:
    if args.command == "fetch":
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            path = fetch_dataset(args.name, args.dest, args.url, args.force, args.keep_archive)
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
        print(path)
        return 0
    if args.command == "demo":
        from .demo import SCENE_CAMERAS, build_demo_hpatches, build_demo_images, build_demo_scene

        out = Path(args.output) if args.output else assets.cache_dir() / "demo"
        images = build_demo_images(out / "images")
        sequences = build_demo_hpatches(out / "hpatches", seed=args.seed)
        print(f"{len(images)} images in {out / 'images'}")
        print(f"{len(sequences)} sequences in {out / 'hpatches'}")
        views = build_demo_scene(out / "scene")
        print(f"{len(views)} views of a 3D scene in {out / 'scene'} (cameras: {out / 'scene' / SCENE_CAMERAS})")
        return 0
    return run(args, kind="dataset")


if __name__ == "__main__":
    raise SystemExit(main())
