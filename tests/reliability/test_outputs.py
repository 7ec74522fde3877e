"""Issue #24 (second round), outputs and assets: an empty common region in the homography
benchmark, unchecked image writes, the HPatches extension list, ``weights verify`` on a missing
path, ``datasets fetch`` leftovers, the extraction conf-mismatch message."""

from __future__ import annotations

import io
import tarfile

import cv2
import numpy as np
import pytest

from sekd_plugin.infra import assets
from sekd_plugin.datasets.hpatches import load_dataset
from tests.conftest import shared_file
from tests.helpers import texture


def _error_lines(capsys):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("error:")]


# ------------------------------------------------------------------ 15: HPatches extensions

@pytest.mark.parametrize("ext", [".webp", ".gif"])
def test_hpatches_reader_uses_the_one_extension_list(tmp_path, ext):
    seq = tmp_path / "v_x"
    seq.mkdir()
    for i in range(1, 7):
        image = cv2.cvtColor(texture(48, 64, i), cv2.COLOR_GRAY2BGR)
        if ext == ".gif":
            from PIL import Image

            Image.fromarray(image).save(seq / f"{i}{ext}")
        else:
            cv2.imwrite(str(seq / f"{i}{ext}"), image)
    for i in range(2, 7):
        np.savetxt(seq / f"H_1_{i}", np.eye(3))
    (sequence,) = load_dataset(seq)
    assert [p.name for p in sequence.images] == [f"{i}{ext}" for i in range(1, 7)]


# ------------------------------------------------------------------ 15: weights verify

def test_weights_verify_missing_path_says_not_found(tmp_path, capsys):
    from sekd_plugin.weights import main

    path = tmp_path / "nope.pth"
    assert main(["verify", str(path)]) == 2
    (line,) = _error_lines(capsys)
    assert "not found" in line and str(path) in line and "manifest" not in line


# ------------------------------------------------------------------ 15: datasets fetch leftovers

def _tar_gz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_failed_dataset_fetch_leaves_nothing_behind(tmp_path):
    from sekd_plugin.datasets.__main__ import fetch_dataset

    manifest = tmp_path / "seqs.toml"
    manifest.write_text('name = "seqs"\nlicense = "test"\nattribution = "test"\nkind = "dataset"\n'
                        'filename = "seqs.tar.gz"\nurl = "unused"\narchive = "tar.gz"\nextract_dir = "seqs"\n')
    asset = assets.Asset.from_toml(manifest)
    evil = tmp_path / "evil.tar.gz"
    evil.write_bytes(_tar_gz({"seqs/x": b"1", "../evil": b"2"}))
    dest = tmp_path / "new" / "data"
    with pytest.raises(assets.AssetError, match="outside"), pytest.warns(UserWarning):
        fetch_dataset(asset, dest, url=evil.as_uri())
    assert not (tmp_path / "evil").exists()
    assert not (tmp_path / "new").exists()  # neither the refused archive nor the folders it made
    with pytest.raises(assets.DownloadError):
        fetch_dataset(asset, dest, url=(tmp_path / "absent.tar.gz").as_uri())
    assert not (tmp_path / "new").exists()
    # a --dest that was there is kept (and what was in it)
    dest.mkdir(parents=True)
    (dest / "mine.txt").write_text("x")
    with pytest.raises(assets.DownloadError):
        fetch_dataset(asset, dest, url=(tmp_path / "absent.tar.gz").as_uri())
    assert sorted(p.name for p in dest.iterdir()) == ["mine.txt"]


# ------------------------------------------------------------------ 15: conf mismatch names the checkpoints

def test_conf_mismatch_names_the_checkpoints(tmp_path):
    pytest.importorskip("pycolmap")
    official = shared_file("weights/sekd.pth")
    from sekd_plugin import extract_features as ef
    from sekd_plugin.extractors.confs import get_conf

    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), texture(64, 80, 0))
    path = tmp_path / "f.h5"
    ef.extract(get_conf("sekd-selftrained"), images, feature_path=path, num_workers=0)
    conf = get_conf("sekd-selftrained")
    conf["model"]["weights"] = str(official)
    with pytest.raises(ef.FeatureConfMismatch) as error:
        ef.extract(conf, images, feature_path=path, num_workers=0)
    message = str(error.value)
    assert "checkpoint sekd_selftrained" in message and f"weights {official}" in message
    assert "sekd features, this run asks for sekd)" not in message


# ------------------------------------------------------------------ 6 / 8: homography benchmark

def _sequence(root, name, far_pair: int | None = None):
    """A viewpoint sequence of one texture shifted by k px; ``far_pair``: H_1_k sends image 1
    10,000 px away (no common region)."""
    seq = root / name
    seq.mkdir(parents=True)
    base = texture(140, 180, 3)
    for k in range(1, 7):
        cv2.imwrite(str(seq / f"{k}.png"), np.ascontiguousarray(base[10:130, 10 + k:170 + k]))
    for k in range(2, 7):
        H = np.array([[1.0, 0, -(k - 1)], [0, 1, 0], [0, 0, 1]])
        if k == far_pair:
            H[0, 2] = 10000.0
        np.savetxt(seq / f"H_1_{k}", H)
    return seq


def test_empty_common_region_is_warned_per_pair_and_counted(tmp_path, caplog):
    pytest.importorskip("pycolmap")
    import json

    from sekd_plugin.benchmark.__main__ import main as bench_main
    from sekd_plugin.metrics import homography as M

    data = tmp_path / "data"
    _sequence(data, "v_far", far_pair=2)
    out = tmp_path / "out"
    with caplog.at_level("WARNING"):
        assert bench_main(["hpatches", "--dataset", str(data), "--output", str(out), "--methods", "sift"]) == 0
    said = [r.getMessage() for r in caplog.records if "no common" in r.getMessage()]
    assert len(said) == 1 and "v_far/1-2" in said[0]
    results = json.loads((out / "results.json").read_text())
    assert results["settings"]["empty_common_region"] == {"count": 1, "pairs": ["data/v_far/1-2"]}
    pairs = {r["pair"]: r for r in results["rows"] if r["method"] == "sift"}
    assert pairs["data/v_far/1-2"]["empty_common_region"] is True
    assert "empty_common_region" not in pairs["data/v_far/1-3"]
    assert "without a common region" in (out / "results.md").read_text()
    # the geometry: shifted far away, a small image 1 inside image 0
    assert M.common_region_fraction(np.eye(3), (100, 80), (100, 80)) == 1.0
    assert M.common_region_fraction(np.array([[1, 0, 1e4], [0, 1, 0], [0, 0, 1.0]]), (100, 80), (100, 80)) == 0.0
    # H and -H are one homography (Oxford's leuven H1to5p is stored with a negative scale)
    assert M.common_region_fraction(-np.eye(3), (100, 80), (100, 80)) == 1.0
    # the image plane's horizon inside image 0: only the points in front count
    horizon = np.array([[1, 0, 0], [0, 1, 0], [-1 / 50, 0, 1.0]])
    assert 0 < M.common_region_fraction(horizon, (100, 80), (100, 80)) < 0.5
    assert M.common_region_fraction(np.diag([50.0, 50, 1]), (100, 80), (100, 80)) > 0


def test_unwritable_match_image_is_an_error_naming_the_path(tmp_path, capsys):
    pytest.importorskip("pycolmap")
    from sekd_plugin.benchmark.__main__ import main as bench_main
    from sekd_plugin.common.files import ImageWriteError, write_image

    data = tmp_path / "d"
    name = "v_" + "x" * 248  # 250 characters: the drawing's file name is over the 255-byte limit
    _sequence(data, name)
    out = tmp_path / "out"
    rc = bench_main(["hpatches", "--dataset", str(data), "--output", str(out), "--methods", "sift",
                     "--plot-matches"])
    assert rc == 2
    (line,) = _error_lines(capsys)
    assert "cannot write image" in line and f"d_{name}_1-2.png" in line
    # the helper: no encoder for the extension, a missing folder's parent being a file
    with pytest.raises(ImageWriteError, match="nope.xyz"):
        write_image(tmp_path / "nope.xyz", np.zeros((4, 4), np.uint8))
    (tmp_path / "file").write_text("")
    with pytest.raises(ImageWriteError, match="file/a.png"):
        write_image(tmp_path / "file" / "a.png", np.zeros((4, 4), np.uint8))
