"""sekd_plugin.io.provenance: the one weights fingerprint (sha256, cached per path/size/mtime)."""

from __future__ import annotations

import hashlib
import os

from sekd_plugin.extractors.base import weights_fingerprint
from sekd_plugin.io import provenance
from sekd_plugin.io.provenance import file_sha256


def test_file_sha256_is_the_content_hash_computed_once_per_version(tmp_path, monkeypatch):
    path = tmp_path / "w.pth"
    path.write_bytes(b"weights v1")
    assert file_sha256(path) == hashlib.sha256(b"weights v1").hexdigest()
    reads = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda *a, **k: reads.append(a[0]) or real_open(*a, **k))
    assert file_sha256(path) == hashlib.sha256(b"weights v1").hexdigest() and reads == []  # a stat only
    path.write_bytes(b"weights v2, replaced")
    os.utime(path, ns=(1, 1))
    assert file_sha256(path) == hashlib.sha256(b"weights v2, replaced").hexdigest() and len(reads) == 1
    assert len([k for k in provenance._SHA256 if k[0] == os.path.realpath(path)]) == 2


def test_weights_fingerprint_is_the_sha256_of_the_resolved_file(tmp_path):
    path = tmp_path / "mine.pth"
    path.write_bytes(b"not really a checkpoint")
    assert weights_fingerprint({"name": "sekd", "weights": str(path)}) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert weights_fingerprint({"name": "sift"}) is None
    assert weights_fingerprint({"name": "sekd", "weights": str(tmp_path / "missing.pth")}) is None
