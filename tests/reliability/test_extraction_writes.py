"""Issue #18, extraction / h5 write path: undecodable file names, a different conf into an
existing file, and two processes writing one file."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

pytest.importorskip("pycolmap")

from sekd_plugin import extract_features as ef  # noqa: E402
from sekd_plugin.extractors.confs import get_conf  # noqa: E402
from sekd_plugin.io.h5 import H5FileError, list_names, open_h5  # noqa: E402
from tests.helpers import texture  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


_texture = texture


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    for i, name in enumerate(["a.png", "b.png", "c.png"]):
        cv2.imwrite(str(root / name), _texture(64, 80, i))
    return root


def test_non_utf8_file_name_is_reported_and_the_rest_extracted(folder, tmp_path):
    bad = os.fsencode(folder) + b"/\xff\xfe-bad.png"
    with open(bad, "wb") as f:
        f.write(cv2.imencode(".png", _texture(64, 80, 9))[1].tobytes())
    for _ in range(2):  # a rerun must not stop at the same image either
        result = ef.extract(get_conf("sift"), folder, feature_path=tmp_path / "f.h5", num_workers=0)
        assert list(result.failed) and "UTF-8" in next(iter(result.failed.values()))
        assert "bad.png" in next(iter(result.failed))
    assert list_names(tmp_path / "f.h5") == ["a.png", "b.png", "c.png"]


def test_other_conf_into_an_existing_file_is_refused_naming_both(folder, tmp_path):
    path = tmp_path / "f.h5"
    ef.extract(get_conf("sift"), folder, feature_path=path, num_workers=0)
    other = get_conf("sift")
    other["model"]["max_keypoints"] = 50
    with pytest.raises(ef.FeatureConfMismatch) as error:
        ef.extract(other, folder, feature_path=path, num_workers=0)
    message = str(error.value)
    assert "max_keypoints" in message and "50" in message and str(path) in message and "--overwrite" in message
    orb = get_conf("orb")
    with pytest.raises(ef.FeatureConfMismatch, match="orb"):
        ef.extract(orb, folder, feature_path=path, num_workers=0)
    # with overwrite the file is rebuilt with the new conf: no mixed descriptor types
    ef.extract(orb, folder, feature_path=path, overwrite=True, num_workers=0)
    with h5py.File(path, "r") as fd:
        assert {fd[n]["descriptors"].dtype for n in ("a.png", "b.png", "c.png")} == {np.dtype(np.uint8)}
    assert ef.extract(orb, folder, feature_path=path, num_workers=0).skipped == ["a.png", "b.png", "c.png"]


def test_locked_file_waits_then_names_the_holder(tmp_path, monkeypatch):
    path = tmp_path / "f.h5"
    with open_h5(path, "a", "features"):
        pass
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time, h5py
            f = h5py.File({str(path)!r}, "a")
            print("locked", flush=True)
            time.sleep(float(sys.argv[1]))
            f.close()
        """), "60"], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "locked"
        monkeypatch.setenv("SEKD_PLUGIN_H5_LOCK_TIMEOUT", "1")
        with pytest.raises(H5FileError) as error:
            list_names(path)
        message = str(error.value)
        assert "another process" in message and str(holder.pid) in message and str(path) in message
    finally:
        holder.kill()
        holder.wait()
    # once released, a waiting writer goes ahead (a fresh file: the killed holder left its flag)
    path = tmp_path / "f2.h5"
    with open_h5(path, "a", "features"):
        pass
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
            import time, h5py
            f = h5py.File({str(path)!r}, "a")
            print("locked", flush=True)
            time.sleep(1.0)
            f.close()
        """)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "locked"
        monkeypatch.setenv("SEKD_PLUGIN_H5_LOCK_TIMEOUT", "30")
        assert list_names(path) == []
    finally:
        holder.wait()
