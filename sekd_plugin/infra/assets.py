"""External assets (weights, data sets): manifests, resolution, download and verification.

Every third-party file the project can use is described by one TOML manifest in the repository's
top-level ``third_party/`` folder (name, kind, filename, url, optional size / sha256 /
git_blob_sha1, licence, attribution, notes). This module is the only place that turns a
manifest into a local path:

* :func:`resolve` finds a file that is already on disk: an explicit path, then
  ``$SEKD_PLUGIN_WEIGHTS_DIR/<filename>`` (``$SEKD_PLUGIN_DATA_DIR`` for data sets), then
  ``cache_dir()/<filename>``. It never downloads.
* :func:`fetch` downloads (the only function that does), into a temporary file next to the
  target, verifies it, then moves it into place atomically. A file that fails verification is
  deleted, never left in the cache.
* :func:`verify` checks a local file against its manifest: sha256 or git blob SHA-1 where known;
  where no checksum is published only the file header is checked and the result says
  ``unverified (no checksum published)``.
* :func:`extract` unpacks a fetched archive (data sets) safely and atomically.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import Iterator

from ..common.errors import UserError
from ..common.files import write_atomic

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

# sekd_plugin/third_party links to the top-level third_party/, so wheels carry the manifests
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # sekd_plugin/
MANIFEST_DIR = PACKAGE_DIR / "third_party"
CACHE_ENV = "SEKD_PLUGIN_CACHE"
DIR_ENV = {"weights": "SEKD_PLUGIN_WEIGHTS_DIR", "dataset": "SEKD_PLUGIN_DATA_DIR"}
FETCH_COMMAND = {
    "weights": "python -m sekd_plugin.weights fetch {name}",
    "dataset": "python -m sekd_plugin.datasets fetch {name}",
}
UNVERIFIED = "unverified (no checksum published)"

# First bytes of a torch.save file: a zip archive (torch >= 1.6) or the legacy pickle that
# starts with protocol 2 and the long integer magic number 0x1950a86a20f9469cfc6c.
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19")
_GZIP_MAGIC = b"\x1f\x8b"


class AssetError(UserError):
    """Base class of the errors raised here; its message is a complete one-line explanation."""


class UnknownAssetError(AssetError, LookupError):
    """No manifest has this name."""


class AssetNotFoundError(AssetError, FileNotFoundError):
    """The asset is not on disk; the message says where we looked and how to fetch it."""


class ChecksumError(AssetError):
    """A file does not match its manifest (checksum, size or file type)."""


class DownloadError(AssetError, OSError):
    """The download itself failed (network, HTTP status, disk)."""


@dataclasses.dataclass(frozen=True)
class Asset:
    """One external file, as described by ``third_party/<name>.toml``."""

    name: str
    kind: str  # "weights" | "dataset"
    filename: str
    url: str
    license: str
    attribution: str
    size: int | None = None
    sha256: str | None = None
    git_blob_sha1: str | None = None
    notes: str = ""
    archive: str | None = None  # e.g. "tar.gz" for data sets shipped as archives
    extract_dir: str | None = None  # folder the archive unpacks to
    aliases: tuple[str, ...] = ()
    packaged: str | None = None  # path inside the sekd_plugin package of a file shipped with it
    manifest: Path | None = None

    @classmethod
    def from_toml(cls, path: str | os.PathLike) -> "Asset":
        """Parse and validate one manifest file."""
        path = Path(path)
        with open(path, "rb") as f:
            data = tomllib.load(f)
        fields = {f.name for f in dataclasses.fields(cls)} - {"manifest"}
        unknown = sorted(set(data) - fields)
        missing = sorted({"name", "kind", "filename", "url", "license", "attribution"} - set(data))
        if not data.get("url") and not data.get("packaged"):
            missing.append("url (or packaged)")
        if unknown or missing:
            raise AssetError(f"bad manifest {path}: unknown keys {unknown}, missing keys {missing}")
        if data["kind"] not in DIR_ENV:
            raise AssetError(f"bad manifest {path}: kind must be one of {sorted(DIR_ENV)}")
        for key, n in (("sha256", 64), ("git_blob_sha1", 40)):
            value = data.get(key)
            if value is not None and (len(value) != n or not all(c in "0123456789abcdef" for c in value)):
                raise AssetError(f"bad manifest {path}: {key} must be {n} lower-case hex digits")
        data["aliases"] = tuple(data.get("aliases", ()))
        return cls(**data, manifest=path)

    @property
    def has_checksum(self) -> bool:
        return bool(self.sha256 or self.git_blob_sha1)

    @property
    def local_name(self) -> str:
        """What :func:`resolve` looks for: the extracted folder of an archive, else the file."""
        return self.extract_dir or self.filename

    @property
    def fetch_command(self) -> str:
        if self.packaged:
            return "reinstall sekd_plugin (the file ships with the package)"
        return FETCH_COMMAND[self.kind].format(name=self.name)

    @property
    def packaged_path(self) -> Path | None:
        return PACKAGE_DIR / self.packaged if self.packaged else None


@dataclasses.dataclass(frozen=True)
class Located:
    """Where :func:`locate` looked for an asset and what it found (``path`` is None if nothing).

    ``looked`` lists ``(path, label)`` in search order, so a caller can say why an asset is
    missing without parsing a message.
    """

    asset: Asset
    path: Path | None
    looked: tuple[tuple[Path, str], ...]
    explicit: bool = False  # the caller gave a path (then only that path was looked at)

    @property
    def found(self) -> bool:
        return self.path is not None

    @property
    def where(self) -> str:
        return " or ".join(str(p) for p, _ in self.looked)

    @property
    def reason(self) -> str | None:
        """One-line explanation when missing (None when found)."""
        if self.found:
            return None
        if self.explicit:
            return (f"{self.asset.name}: the given path {self.looked[0][0]} does not exist "
                    f"(to download it instead run: {self.asset.fetch_command})")
        env = DIR_ENV[self.asset.kind]
        where = "; ".join(f"{p} ({label})" for p, label in self.looked)
        unset = "" if os.environ.get(env) else f"; ${env} is not set"
        return f"{self.asset.name} not found. Looked in: {where}{unset}. Download it with: {self.asset.fetch_command}"


@dataclasses.dataclass(frozen=True)
class VerifyResult:
    """Outcome of :func:`verify`. ``bool(result)`` is False only for a mismatch."""

    path: Path
    name: str
    status: str  # "verified" | "unverified" | "mismatch"
    method: str  # "sha256" | "git_blob_sha1" | "size" | "header"
    expected: str | None = None
    actual: str | None = None

    @property
    def ok(self) -> bool:
        return self.status != "mismatch"

    def __bool__(self) -> bool:
        return self.ok

    @property
    def message(self) -> str:
        if self.status == "verified":
            return f"{self.path}: verified as {self.name} ({self.method} {self.actual})"
        if self.status == "unverified":
            return f"{self.path}: {UNVERIFIED}; {self.actual} (manifest {self.name})"
        return (f"{self.path}: does not match {self.name}: {self.method} expected {self.expected}, "
                f"got {self.actual}")


def default_permissions(path: str | os.PathLike) -> None:
    """Give a file/folder made by ``tempfile`` (0600/0700) the usual umask-based mode."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~umask)


# --------------------------------------------------------------------------- manifests

def list_assets(kind: str | None = None) -> list[Asset]:
    """All manifests in ``third_party/`` (optionally only one kind), sorted by name."""
    assets = [Asset.from_toml(p) for p in sorted(MANIFEST_DIR.glob("*.toml"))]
    return [a for a in assets if kind is None or a.kind == kind]


def load_manifest(name: str | os.PathLike | Asset) -> Asset:
    """The manifest called ``name`` (or one of its aliases), or a manifest file path."""
    if isinstance(name, Asset):
        return name
    if str(name).endswith(".toml") and Path(name).is_file():
        return Asset.from_toml(name)
    path = MANIFEST_DIR / f"{name}.toml"
    if path.is_file():
        return Asset.from_toml(path)
    assets = list_assets()
    for asset in assets:
        if name in asset.aliases:
            return asset
    known = ", ".join(a.name for a in assets)
    raise UnknownAssetError(f"unknown asset {name!r}; known assets: {known}")


def cache_dir() -> Path:
    """``$SEKD_PLUGIN_CACHE`` or ``~/.cache/sekd_plugin`` (not created here)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "sekd_plugin").expanduser()


# --------------------------------------------------------------------------- resolution

def locate(name: str | Asset, path: str | os.PathLike | None = None) -> Located:
    """Look for an asset on disk (never downloads) and say where it looked.

    Order: ``path`` (only that, when given), ``$SEKD_PLUGIN_WEIGHTS_DIR/<filename>`` (data
    sets: ``$SEKD_PLUGIN_DATA_DIR``), ``cache_dir()/<filename>``, then the copy shipped in
    the package for packaged assets. Data sets shipped as archives resolve to their extracted
    folder.
    """
    asset = load_manifest(name)
    if path is not None:
        p = Path(path).expanduser()
        return Located(asset, p if p.exists() else None, ((p, "given path"),), explicit=True)
    env = DIR_ENV[asset.kind]
    looked = []
    if os.environ.get(env):
        looked.append((Path(os.environ[env]).expanduser() / asset.local_name, f"${env}"))
    looked.append((cache_dir() / asset.local_name, "cache"))
    if asset.packaged_path is not None:
        looked.append((asset.packaged_path, "shipped with sekd_plugin"))
    found = next((p for p, _ in looked if p.exists()), None)
    return Located(asset, found, tuple(looked))


def resolve(name: str | Asset, path: str | os.PathLike | None = None) -> Path:
    """Local path of an asset (see :func:`locate`); raises :class:`AssetNotFoundError` when missing."""
    located = locate(name, path)
    if not located.found:
        raise AssetNotFoundError(located.reason)
    return located.path


# --------------------------------------------------------------------------- verification

def _hash_file(path: Path) -> tuple[str, str]:
    """(sha256, git blob SHA-1) of a file in one pass; blob id = sha1(b"blob <size>\\0" + data)."""
    sha256 = hashlib.sha256()
    sha1 = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            sha256.update(chunk)
            sha1.update(chunk)
    return sha256.hexdigest(), sha1.hexdigest()


def _check_header(path: Path, asset: Asset) -> tuple[bool, str]:
    """Structural check used when no checksum is published: is it the right kind of file?"""
    with open(path, "rb") as f:
        head = f.read(16)
    if asset.archive in ("tar.gz", "tgz") or asset.filename.endswith((".tar.gz", ".tgz")):
        return head.startswith(_GZIP_MAGIC), "gzip header"
    if asset.filename.endswith((".pth", ".pt", ".ckpt")):
        return head.startswith(_TORCH_MAGIC), "torch.save header"
    return True, "file exists"


def check_file(path: str | os.PathLike, asset: str | Asset) -> VerifyResult:
    """Compare a local file with a given manifest (the file name is not used)."""
    asset, path = load_manifest(asset), Path(path)
    if not path.is_file():
        raise AssetNotFoundError(f"{path} does not exist or is not a file")
    actual_size = path.stat().st_size
    if asset.size is not None and actual_size != asset.size:
        return VerifyResult(path, asset.name, "mismatch", "size", f"{asset.size} bytes",
                            f"{actual_size} bytes")
    if asset.has_checksum:
        sha256, blob = _hash_file(path)
        method, expected, actual = (("sha256", asset.sha256, sha256) if asset.sha256
                                    else ("git_blob_sha1", asset.git_blob_sha1, blob))
        status = "verified" if actual == expected else "mismatch"
        return VerifyResult(path, asset.name, status, method, expected, actual)
    good, what = _check_header(path, asset)
    if not good:
        return VerifyResult(path, asset.name, "mismatch", "header", what, "something else")
    return VerifyResult(path, asset.name, "unverified", "header", None, f"{what} ok")


def verify(path: str | os.PathLike, name: str | Asset | None = None) -> VerifyResult:
    """Check a local file against its manifest, inferred from the file name if ``name`` is None."""
    path = Path(path)
    if not path.exists():
        raise AssetNotFoundError(f"file not found: {path}")
    if name is None:
        matches = [a for a in list_assets() if path.name == a.filename]
        if not matches:
            known = ", ".join(a.filename for a in list_assets())
            raise UnknownAssetError(f"no manifest for a file called {path.name!r} "
                                    f"(known files: {known}); pass the asset name explicitly")
        name = matches[0]
    return check_file(path, name)


# --------------------------------------------------------------------------- download

def _download(url: str, out, desc: str, expected_size: int | None) -> None:
    """Stream ``url`` into the open binary file ``out`` with a tqdm bar (hidden when not a tty)."""
    from tqdm.auto import tqdm

    request = urllib.request.Request(url, headers={"User-Agent": "sekd_plugin"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0) or expected_size
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                      disable=None) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as e:
        raise DownloadError(f"download of {url} failed: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise DownloadError(f"download of {url} failed: {reason}") from None


def fetch(name: str | Asset, dest_dir: str | os.PathLike | None = None, url: str | None = None,
          force: bool = False) -> Path:
    """Download an asset into ``dest_dir`` (default :func:`cache_dir`) and verify it.

    An existing file that verifies is kept (unless ``force``). The download goes to a temporary
    file in ``dest_dir`` and is moved into place with ``os.replace`` only after verification;
    on any failure the temporary file is deleted. Raises :class:`ChecksumError` on mismatch,
    :class:`DownloadError` on network errors. ``url`` overrides the manifest's URL (mirrors,
    ``file://`` copies, tests).
    """
    asset = load_manifest(name)
    if asset.packaged and not (url or asset.url):
        if asset.packaged_path.exists():
            return asset.packaged_path
        raise AssetNotFoundError(f"{asset.name} ships with sekd_plugin but {asset.packaged_path} is missing; "
                                 "reinstall the package")
    dest = Path(dest_dir).expanduser() if dest_dir is not None else cache_dir()
    with removing_new_folders(dest):
        return _fetch_into(asset, dest, url, force)


def new_folders(path: Path) -> list[Path]:
    """The folders ``path.mkdir(parents=True)`` would create, deepest first."""
    out = []
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        out.append(path)
        path = path.parent
    return out


@contextlib.contextmanager
def removing_new_folders(dest: Path) -> Iterator[None]:
    """Within the block, a failure removes the folders up to ``dest`` that the block created
    and left empty (a failed download leaves no empty ``--dest`` behind)."""
    created = new_folders(dest)
    try:
        yield
    except BaseException:
        for folder in created:
            try:
                folder.rmdir()  # only when empty
            except OSError:
                break
        raise


def _fetch_into(asset: Asset, dest: Path, url: str | None, force: bool) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / asset.filename
    if target.exists() and not force:
        result = check_file(target, asset)
        if result.ok:
            return target
        warnings.warn(f"{result.message}; downloading it again", stacklevel=3)

    def download_and_verify(tmp: Path) -> None:
        with open(tmp, "wb") as out:
            _download(url or asset.url, out, asset.filename, asset.size)
        result = check_file(tmp, asset)
        if not result.ok:
            raise ChecksumError(f"downloaded {asset.filename} from {url or asset.url} is corrupt: "
                                f"{result.method} expected {result.expected}, got {result.actual}; "
                                "nothing was saved")
        if result.status == "unverified":
            warnings.warn(f"{asset.filename}: {UNVERIFIED}; only its {result.actual}", stacklevel=3)

    write_atomic(target, download_and_verify)  # moved into place only once verified
    return target
