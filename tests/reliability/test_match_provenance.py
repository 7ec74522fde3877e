"""Issue #24 (item 3): a matches file records what made it (the effective matcher conf and the
fingerprint of the features' provenance); another matcher conf, other features, or a torchrun
part of another conf are refused naming both (exit 2); ``--overwrite`` rebuilds the file."""

from __future__ import annotations

import hashlib
import itertools
import os

import numpy as np
import pytest

from sekd_plugin import match_features as mf
from sekd_plugin.io.h5 import has_matches, read_conf, record_conf, write_features
from sekd_plugin.pairs import write_pairs
from tests.helpers import only_error_line


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _features(path, seed, conf):
    rng = np.random.default_rng(seed)
    for i in range(5):
        d = rng.normal(size=(32, 40)).astype(np.float32)
        write_features(path, f"{i}.jpg", {"keypoints": rng.uniform(0, 50, (40, 2)).astype(np.float32),
                                           "descriptors": d / np.linalg.norm(d, axis=0)})
    record_conf(path, conf)
    return path


@pytest.fixture
def root(tmp_path):
    _features(tmp_path / "a.h5", 0, {"model": {"name": "sekd", "max_keypoints": 40}})
    _features(tmp_path / "b.h5", 1, {"model": {"name": "sift", "max_keypoints": 40}})
    write_pairs(tmp_path / "pairs.txt", list(itertools.combinations([f"{i}.jpg" for i in range(5)], 2)))
    return tmp_path


def _match(root, conf="NN-mutual", features="a.h5", *extra):
    return mf.cli(["--pairs", str(root / "pairs.txt"), "--features", str(root / features),
                   "--output", str(root / "m.h5"), "--conf", conf, *extra])


def test_the_matcher_conf_and_features_fingerprint_are_recorded(root):
    assert _match(root) == 0
    recorded = read_conf(root / "m.h5", "matches")
    assert recorded["matcher"] == {"name": "nearest_neighbor", "do_mutual_check": True, "ratio_threshold": None,
                                   "distance_threshold": None}
    assert recorded["features"] == mf.features_fingerprint(root / "a.h5") is not None
    assert mf.features_fingerprint(root / "a.h5") != mf.features_fingerprint(root / "b.h5")


def test_another_matcher_conf_is_refused_naming_both(root, capsys):
    assert _match(root) == 0
    capsys.readouterr()
    sha = _sha(root / "m.h5")
    assert _match(root, "NN-ratio") == 2
    line = only_error_line(capsys)
    assert str(root / "m.h5") in line and "ratio_threshold: null -> 0.8" in line and "--overwrite" in line
    assert _sha(root / "m.h5") == sha
    assert _match(root) == 0  # the same conf: nothing to match
    assert "10 already done" in capsys.readouterr().out


def test_other_features_are_refused_naming_both(root, capsys):
    assert _match(root) == 0
    capsys.readouterr()
    assert _match(root, "NN-mutual", "b.h5") == 2
    line = only_error_line(capsys)
    old, new = mf.features_fingerprint(root / "a.h5"), mf.features_fingerprint(root / "b.h5")
    assert f'features: "{old}" -> "{new}"' in line and str(root / "b.h5") in line


def test_overwrite_rebuilds_with_the_new_conf(root, capsys):
    assert _match(root) == 0
    assert _match(root, "NN-ratio", "a.h5", "--overwrite") == 0
    assert read_conf(root / "m.h5", "matches")["matcher"]["ratio_threshold"] == 0.8
    assert "10 pairs matched, 0 already done" in capsys.readouterr().out
    assert _match(root, "NN-ratio") == 0


def test_a_torchrun_part_of_another_conf_is_not_merged(root, capsys):
    parts = root / "m.h5.parts"
    parts.mkdir()
    # what an interrupted NN-mutual torchrun leaves: a part with some pairs and its provenance
    mf.match_from_paths(mf.get_conf("NN-mutual"), root / "pairs.txt", root / "part.h5", root / "a.h5", root / "a.h5")
    os.replace(root / "part.h5", parts / "rank0-of2.h5")
    assert _match(root, "NN-ratio") == 2
    line = only_error_line(capsys)
    assert "rank0-of2.h5" in line and "ratio_threshold" in line
    assert not (root / "m.h5").exists() and (parts / "rank0-of2.h5").exists()
    assert _match(root, "NN-mutual") == 0  # the same conf: the part is merged, nothing recomputed
    assert "0 pairs matched, 10 already done" in capsys.readouterr().out
    assert has_matches(root / "m.h5", "0.jpg", "1.jpg") and not parts.exists()
