"""Unpacking fetched dataset archives (tar) safely into place: only regular files and folders
inside the target, extracted in a temporary folder and renamed into place at the end."""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from .assets import Asset, AssetError, load_manifest


def _safe_members(tar: tarfile.TarFile, root: Path):
    """Yield the archive's members, refusing anything that would land outside ``root``."""
    root = root.resolve()
    for member in tar.getmembers():
        target = (root / member.name).resolve()
        if not (member.isfile() or member.isdir()):
            raise AssetError(f"refusing to extract {member.name!r}: not a regular file or folder")
        if os.path.isabs(member.name) or (target != root and root not in target.parents):
            raise AssetError(f"refusing to extract {member.name!r}: outside the target folder")
        yield member


def extract(name: str | Asset, archive: str | os.PathLike, dest_dir: str | os.PathLike | None = None,
            force: bool = False) -> Path:
    """Unpack a fetched tar archive into ``dest_dir/<extract_dir>`` (default: next to it).

    Only regular files and folders inside the target are accepted. Extraction happens in a
    temporary folder that is renamed into place at the end; an existing target is kept unless
    ``force``.
    """
    asset = load_manifest(name)
    archive = Path(archive)
    dest = Path(dest_dir).expanduser() if dest_dir is not None else archive.parent
    if not asset.extract_dir:
        raise AssetError(f"{asset.name} is not an archive (no extract_dir in its manifest)")
    target = dest / asset.extract_dir
    if target.exists() and not force:
        return target
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest, prefix=f".{asset.extract_dir}.", suffix=".part"))
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = list(_safe_members(tar, tmp))
            kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(tmp, members=members, **kwargs)
        top = tmp / asset.extract_dir
        if not top.is_dir():
            raise AssetError(f"{archive} has no top-level folder {asset.extract_dir}/")
        if target.exists():
            shutil.rmtree(target)
        os.replace(top, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
