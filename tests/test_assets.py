"""Asset manifests, resolution order, download + verification (local HTTP server), CLI."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import os
import shutil
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest

from sekd_plugin.infra import assets
from sekd_plugin.infra.assets import Asset, AssetNotFoundError, ChecksumError, DownloadError

from .conftest import shared_file

SEKD_SHA256 = "5d09a3ca240531f547a0271c601d26d97e5f8c869d828d79f891ac2a4edbf2d3"


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """A private cache, no user asset folders, and no proxy for the 127.0.0.1 server."""
    monkeypatch.setenv("SEKD_PLUGIN_CACHE", str(tmp_path / "cache"))
    for var in ("SEKD_PLUGIN_WEIGHTS_DIR", "SEKD_PLUGIN_DATA_DIR", "http_proxy", "HTTP_PROXY",
                "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    return tmp_path / "cache"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """(folder served, base URL) of an HTTP server on 127.0.0.1 running in a thread."""
    root = tmp_path / "www"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _corrupt_copy(src: Path, dst: Path) -> Path:
    data = bytearray(src.read_bytes())
    for i in (1000, len(data) // 2, len(data) - 10):
        data[i] ^= 0xFF
    dst.write_bytes(bytes(data))
    return dst


def _synthetic(tmp_path: Path, name: str, body: str) -> Asset:
    path = tmp_path / f"{name}.toml"
    path.write_text(f'name = "{name}"\nlicense = "test"\nattribution = "test"\n{body}')
    return Asset.from_toml(path)


# --------------------------------------------------------------------------- manifests

def test_manifests_parse_and_describe_every_asset():
    by_name = {a.name: a for a in assets.list_assets()}
    assert {"sekd", "sekd_wo_affine", "sekd_wo_desc_dist", "sekd_wo_desc_rep", "sekd_wo_det_rep",
            "superpoint_v1", "d2_tf", "d2_ots", "d2_tf_no_phototourism",
            "hpatches_sequences"} <= set(by_name)
    sekd = by_name["sekd"]
    assert sekd.sha256 == SEKD_SHA256 and sekd.size == 2671483 and "MIT" in sekd.license
    assert sekd.url.endswith("/assets/sekd.pth")
    assert by_name["superpoint_v1"].git_blob_sha1 == "107a444ca318d487390137d619d49f2f0a3b1ad8"
    assert not by_name["d2_tf"].has_checksum
    assert by_name["hpatches_sequences"].kind == "dataset"
    assert assets.load_manifest("hpatches") is not None  # alias
    with pytest.raises(assets.UnknownAssetError, match="known assets"):
        assets.load_manifest("no_such_asset")


def test_shipped_weights_match_their_manifests_and_carry_their_notice():
    shipped = [a for a in assets.list_assets() if a.packaged]
    assert {"sekd_selftrained", "sekd_evolved"} <= {a.name for a in shipped}
    for a in shipped:
        result = assets.verify(a.packaged_path, a)
        assert result.status == "verified" and result.method == "sha256", a.name
    # derived from the official MIT checkpoint: its licence notice ships beside the weights
    evolved = assets.load_manifest("sekd_evolved")
    notice = evolved.packaged_path.parent / "LICENSE-sekd_evolved"
    assert "Copyright (c) 2020 Alibaba Cloud" in notice.read_text() and "MIT" in evolved.license


def test_bad_manifest_is_rejected(tmp_path):
    with pytest.raises(assets.AssetError, match="unknown keys"):
        _synthetic(tmp_path, "bad", 'kind = "weights"\nfilename = "x"\nurl = "u"\nsha265 = "0"\n')


# --------------------------------------------------------------------------- resolution

def test_resolution_order(tmp_path, monkeypatch, isolated_env):
    explicit = tmp_path / "mine.pth"
    env_dir, cache = tmp_path / "env", isolated_env
    for folder in (env_dir, cache):
        folder.mkdir(parents=True)
        (folder / "sekd.pth").write_bytes(b"x")
    explicit.write_bytes(b"x")
    monkeypatch.setenv("SEKD_PLUGIN_WEIGHTS_DIR", str(env_dir))

    assert assets.resolve("sekd", explicit) == explicit
    assert assets.resolve("sekd") == env_dir / "sekd.pth"
    (env_dir / "sekd.pth").unlink()
    assert assets.resolve("sekd") == cache / "sekd.pth"
    monkeypatch.delenv("SEKD_PLUGIN_WEIGHTS_DIR")
    assert assets.resolve("sekd") == cache / "sekd.pth"


def test_explicit_missing_path_is_an_error_naming_it(tmp_path, isolated_env):
    isolated_env.mkdir()
    (isolated_env / "sekd.pth").write_bytes(b"x")  # the cache must not be used instead
    missing = tmp_path / "nowhere" / "sekd.pth"
    with pytest.raises(AssetNotFoundError, match=str(missing)):
        assets.resolve("sekd", missing)


def test_missing_asset_message(tmp_path, monkeypatch, isolated_env):
    monkeypatch.setenv("SEKD_PLUGIN_WEIGHTS_DIR", str(tmp_path / "env"))
    with pytest.raises(FileNotFoundError) as info:
        assets.resolve("sekd")
    message = str(info.value)
    assert isinstance(info.value, AssetNotFoundError)
    assert "python -m sekd_plugin.weights fetch sekd" in message
    assert str(tmp_path / "env" / "sekd.pth") in message and str(isolated_env / "sekd.pth") in message
    with pytest.raises(AssetNotFoundError, match="python -m sekd_plugin.datasets fetch hpatches_sequences"):
        assets.resolve("hpatches")


# --------------------------------------------------------------------------- fetch + verify

def test_fetch_good_file_lands_and_verifies(server, isolated_env):
    root, url = server
    os.symlink(shared_file("weights/sekd.pth"), root / "sekd.pth")
    path = assets.fetch("sekd", url=f"{url}/sekd.pth")
    assert path == isolated_env / "sekd.pth"
    assert _leftovers(isolated_env) == ["sekd.pth"]
    result = assets.verify(path)
    assert result and result.status == "verified" and result.actual == SEKD_SHA256
    assert assets.resolve("sekd") == path
    # A good copy is kept: no second download (the URL is now unreachable).
    assert assets.fetch("sekd", url=f"{url}/gone.pth") == path


def test_fetch_rejects_corrupted_download(server, isolated_env):
    root, url = server
    _corrupt_copy(shared_file("weights/sekd.pth"), root / "sekd.pth")
    with pytest.raises(ChecksumError) as info:
        assets.fetch("sekd", url=f"{url}/sekd.pth")
    assert SEKD_SHA256 in str(info.value) and "got" in str(info.value)
    assert _leftovers(isolated_env) == []  # no file, no temporary file


def test_fetch_rejects_truncated_download_and_http_errors(server, tmp_path):
    root, url = server
    (root / "sekd.pth").write_bytes(shared_file("weights/sekd.pth").read_bytes()[:1000])
    dest = tmp_path / "dest"
    with pytest.raises(ChecksumError, match="size"):
        assets.fetch("sekd", dest_dir=dest, url=f"{url}/sekd.pth")
    with pytest.raises(DownloadError, match="404"):
        assets.fetch("sekd", dest_dir=dest, url=f"{url}/missing.pth")
    assert _leftovers(dest) == []


def test_verify_detects_corruption(tmp_path):
    bad = _corrupt_copy(shared_file("weights/sekd.pth"), tmp_path / "sekd.pth")
    result = assets.verify(bad)
    assert not result and result.status == "mismatch" and result.expected == SEKD_SHA256
    (tmp_path / "something_else.pth").write_bytes(b"x")  # a file no manifest describes
    with pytest.raises(assets.UnknownAssetError):
        assets.verify(tmp_path / "something_else.pth")


def test_git_blob_sha1(server, tmp_path, isolated_env):
    root, url = server
    payload = b"synthetic weights \x00\x01\x02" * 100
    blob = hashlib.sha1(b"blob %d\0" % len(payload) + payload).hexdigest()
    if shutil.which("git"):  # the definition matches git's own object id
        out = subprocess.run(["git", "hash-object", "--stdin"], input=payload, capture_output=True)
        assert out.stdout.decode().strip() == blob
    (root / "tiny.bin").write_bytes(payload)
    good = _synthetic(tmp_path, "tiny", f'kind = "weights"\nfilename = "tiny.bin"\n'
                      f'url = "{url}/tiny.bin"\ngit_blob_sha1 = "{blob}"\n')
    path = assets.fetch(good)
    assert assets.check_file(path, good).status == "verified"
    wrong = _synthetic(tmp_path, "tiny2", f'kind = "weights"\nfilename = "tiny2.bin"\n'
                       f'url = "{url}/tiny.bin"\ngit_blob_sha1 = "{"0" * 40}"\n')
    with pytest.raises(ChecksumError, match="git_blob_sha1"):
        assets.fetch(wrong)
    assert _leftovers(isolated_env) == ["tiny.bin"]


def test_git_blob_sha1_of_recovered_superpoint():
    """The shared README records the git object id of the recovered file (not the original)."""
    result = assets.verify(shared_file("weights/superpoint_v1_recovered.pth"), name="superpoint_v1")
    assert result.status == "mismatch" and result.method == "git_blob_sha1"
    assert result.actual == "192cc8ddd8a73e24566b9e6f3086bf7219f24f38"


def test_unverified_assets_only_get_a_header_check(server, tmp_path, isolated_env):
    torch = pytest.importorskip("torch")
    root, url = server
    torch.save({"model": {"w": torch.zeros(2)}}, root / "good.pth")
    (root / "page.html").write_text("<html>Not found</html>")
    asset = _synthetic(tmp_path, "nock", 'kind = "weights"\nfilename = "nock.pth"\nurl = "unused"\n')
    with pytest.warns(UserWarning, match="no checksum published"):
        path = assets.fetch(asset, url=f"{url}/good.pth")
    result = assets.check_file(path, asset)
    assert result and result.status == "unverified" and "no checksum published" in result.message
    with pytest.raises(ChecksumError, match="torch.save header"):
        assets.fetch(asset, url=f"{url}/page.html", force=True)
    assert _leftovers(isolated_env) == ["nock.pth"]  # the good copy survives a failed --force


# --------------------------------------------------------------------------- archives

def _tar_gz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_fetch_dataset_extracts_safely(server, tmp_path):
    from sekd_plugin.datasets.__main__ import fetch_dataset

    root, url = server
    (root / "ok.tar.gz").write_bytes(_tar_gz({"seqs/v_a/1.png": b"1", "seqs/v_a/H_1_2": b"2"}))
    (root / "evil.tar.gz").write_bytes(_tar_gz({"seqs/x": b"1", "../evil": b"2"}))
    asset = _synthetic(tmp_path, "seqs", 'kind = "dataset"\nfilename = "seqs.tar.gz"\nurl = "unused"\n'
                       'archive = "tar.gz"\nextract_dir = "seqs"\n')
    dest = tmp_path / "data"
    with pytest.warns(UserWarning, match="no checksum published"):
        folder = fetch_dataset(asset, dest, url=f"{url}/ok.tar.gz")
    assert folder == dest / "seqs" and (folder / "v_a" / "H_1_2").read_bytes() == b"2"
    assert _leftovers(dest) == ["seqs"]  # archive removed, no temporary folders
    with pytest.raises(assets.AssetError, match="outside"), pytest.warns(UserWarning):
        fetch_dataset(asset, tmp_path / "data2", url=f"{url}/evil.tar.gz")
    assert not (tmp_path / "evil").exists()
    assert not (tmp_path / "data2").exists()  # the refused archive and the new --dest are removed


# --------------------------------------------------------------------------- CLI

def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "sekd_plugin.weights", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=120)


@pytest.mark.integration
def test_cli_verify_and_errors(tmp_path):
    weights = shared_file("weights/sekd.pth")
    out = _cli("verify", str(weights))
    assert out.returncode == 0, out.stderr
    assert "verified" in out.stdout and SEKD_SHA256 in out.stdout

    out = _cli("where", "sekd")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.count("\n") == 1 and "python -m sekd_plugin.weights fetch sekd" in out.stderr

    out = _cli("list", env={"SEKD_PLUGIN_WEIGHTS_DIR": str(weights.parent)})
    assert out.returncode == 0
    line = next(s for s in out.stdout.splitlines() if s.startswith("sekd "))
    assert str(weights) in line and "MIT" in line

    bad = _corrupt_copy(weights, tmp_path / "sekd.pth")
    assert _cli("verify", str(bad)).returncode == 1
