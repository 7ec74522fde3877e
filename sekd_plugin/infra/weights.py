"""Command line for model weights: ``python -m sekd_plugin.weights {fetch,verify,list,where}``.

A thin shell over :mod:`sekd_plugin.assets`::

    python -m sekd_plugin.weights list
    python -m sekd_plugin.weights fetch sekd [--dest DIR] [--url URL] [--force]
    python -m sekd_plugin.weights verify path/to/sekd.pth [--name sekd]
    python -m sekd_plugin.weights where sekd

Exit codes: 0 success, 1 verification failed (mismatch), 2 error (unknown asset, missing
file, download failure), printed as one line without a traceback.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from . import assets
from ..common import run_cli


def _found_at(asset: assets.Asset) -> str:
    try:
        return str(assets.resolve(asset))
    except assets.AssetNotFoundError:
        return "missing"


def format_table(kind: str = "weights") -> str:
    """Table of the manifests of one kind: name, filename, where it was found, licence."""
    rows = [("name", "filename", "found at", "licence")]
    rows += [(a.name, a.filename, _found_at(a), a.license) for a in assets.list_assets(kind)]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3] for r in rows)


def add_commands(sub, kind: str = "weights") -> None:
    """Add the shared subcommands (fetch, verify, list, where) to an argparse subparsers object."""
    p = sub.add_parser("fetch", help="download and verify one asset")
    p.add_argument("name")
    p.add_argument("--dest", help="target folder (default: the cache, $SEKD_PLUGIN_CACHE)")
    p.add_argument("--url", help="download from this URL instead of the manifest's")
    p.add_argument("--force", action="store_true", help="download even if a good copy exists")
    p = sub.add_parser("verify", help="check a local file against its manifest")
    p.add_argument("path")
    p.add_argument("--name", help="manifest name (default: inferred from the file name)")
    sub.add_parser("list", help=f"list known {kind} and where they are")
    p = sub.add_parser("where", help="print the local path of an asset")
    p.add_argument("name")


def run(args: argparse.Namespace, kind: str = "weights") -> int:
    """Execute the shared subcommands; returns the exit code."""
    if args.command == "fetch":
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            path = assets.fetch(args.name, dest_dir=args.dest, url=args.url, force=args.force)
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
        print(path)
    elif args.command == "verify":
        result = assets.verify(args.path, name=args.name)
        print(result.message)
        return 0 if result.ok else 1
    elif args.command == "list":
        print(format_table(kind))
    elif args.command == "where":
        print(assets.resolve(args.name))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sekd_plugin.weights",
                                     description="Find, download and verify model weights.")
    add_commands(parser.add_subparsers(dest="command", required=True), "weights")
    args = parser.parse_args(argv)
    return run_cli(run, args=args, on_success=lambda code: code)


if __name__ == "__main__":
    raise SystemExit(main())
