"""Matching stage: hloc matches layout, batching, reuse, overwrite and file errors."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from sekd_plugin import match_features as MF
from sekd_plugin.io.h5 import H5FileError, get_matches, has_matches, read_features, write_features, write_matches
from sekd_plugin.matchers import match_nearest_neighbor
from sekd_plugin.matchers import nearest_neighbor as NN
from sekd_plugin.pairs import write_pairs


def _unit(x):
    return (x / np.linalg.norm(x, axis=0, keepdims=True)).astype(np.float32)


@pytest.fixture
def scene(tmp_path):
    """Features of a.jpg, b.jpg (a permutation of a's descriptors + noise) and c.jpg (random)."""
    rng = np.random.default_rng(0)
    d, n = 32, 50
    desc_a = _unit(rng.normal(size=(d, n)))
    perm = rng.permutation(n)
    desc_b = _unit(desc_a[:, perm] + 0.05 * rng.normal(size=(d, n)))
    desc_c = _unit(rng.normal(size=(d, 40)))
    feats = tmp_path / "feats.h5"
    for name, desc in (("a.jpg", desc_a), ("b.jpg", desc_b), ("seq/c.jpg", desc_c)):
        write_features(feats, name, {"keypoints": rng.uniform(0, 100, (desc.shape[1], 2)).astype(np.float32),
                                     "scores": np.ones(desc.shape[1], np.float32), "descriptors": desc},
                       as_half=True)
    pairs = write_pairs(tmp_path / "pairs.txt", [("a.jpg", "b.jpg"), ("b.jpg", "a.jpg"), ("a.jpg", "seq/c.jpg"),
                                                 ("b.jpg", "seq/c.jpg")])
    return {"feats": feats, "pairs": pairs, "perm": perm, "tmp": tmp_path, "descs": (desc_a, desc_b, desc_c)}


def test_confs():
    assert {"NN-mutual", "NN-ratio", "NN-superpoint"} <= set(MF.confs)
    assert {"mutual_nn", "nn-ratio", "nn-distance"} <= set(MF.confs)  # names of earlier releases
    assert MF.get_conf("NN-ratio")["model"]["ratio_threshold"] == 0.8
    assert MF.get_conf("nn-ratio")["model"] == MF.get_conf("NN-ratio")["model"]
    assert MF.get_conf("mutual_nn")["output"] == "matches-mutual-nn"  # old file names kept
    with pytest.raises(ValueError, match="available"):
        MF.get_conf("superglue")


def test_writes_hloc_layout(scene):
    out = MF.main(MF.get_conf("mutual_nn"), scene["pairs"], scene["feats"], matches=scene["tmp"] / "m.h5")
    with h5py.File(out, "r") as fd:
        group = fd["a.jpg"]["b.jpg"]  # nested names_to_pair group
        assert group["matches0"].dtype == np.int16 and group["matches0"].shape == (50,)
        assert group["matching_scores0"].dtype == np.float16
        assert "seq-c.jpg" in fd["a.jpg"]  # "/" in a name becomes "-"
        assert "a.jpg" not in fd["b.jpg"]  # the reverse pair was not matched again
    matches, scores = get_matches(out, "a.jpg", "b.jpg")
    # every descriptor of a finds its permuted copy in b
    inv = np.argsort(scene["perm"])
    assert len(matches) >= 48
    assert np.array_equal(matches[:, 1], inv[matches[:, 0]])
    assert np.all(scores > 0.9)
    flipped, _ = get_matches(out, "b.jpg", "a.jpg")
    assert np.array_equal(np.sort(flipped[:, 0]), np.sort(matches[:, 1]))


def test_same_result_as_single_calls(scene, monkeypatch):
    """The batched path (same shapes) and the per-pair path agree with direct calls."""
    monkeypatch.setattr(MF, "MAX_BATCH_ELEMENTS", 10**9)
    out = MF.main(MF.get_conf("nn-ratio"), scene["pairs"], scene["feats"], matches=scene["tmp"] / "m.h5")
    a, b, c = (torch.from_numpy(d.astype(np.float16).astype(np.float32)) for d in scene["descs"])
    for (n0, d0), (n1, d1) in ((("a.jpg", a), ("b.jpg", b)), (("a.jpg", a), ("seq/c.jpg", c)),
                               (("b.jpg", b), ("seq/c.jpg", c))):
        m, s = match_nearest_neighbor(d0, d1, True, 0.8, None)
        valid = (m >= 0).numpy()
        expected = np.stack([np.flatnonzero(valid), m.numpy()[valid]], -1)
        got, scores = get_matches(out, n0, n1)
        assert np.array_equal(got, expected)
        assert np.allclose(scores, s.numpy()[valid], atol=1e-3)


def test_one_call_per_image_against_all_its_partners(scene, monkeypatch):
    calls = []
    real = NN.match_one_to_many

    def spy(d0, d1, counts1=None, **kw):
        calls.append(d1.shape[0])
        return real(d0, d1, counts1, **kw)

    monkeypatch.setattr(NN, "match_one_to_many", spy)
    feats = scene["feats"]
    rng = np.random.default_rng(1)
    for name in ("x.jpg", "y.jpg", "z.jpg"):
        write_features(feats, name, {"keypoints": np.zeros((50, 2), np.float32),
                                     "descriptors": _unit(rng.normal(size=(32, 50)))})
    pairs = write_pairs(scene["tmp"] / "xyz.txt", [("x.jpg", "y.jpg"), ("x.jpg", "z.jpg"), ("y.jpg", "z.jpg"),
                                                   ("a.jpg", "x.jpg")])
    MF.main(MF.get_conf("mutual_nn"), pairs, feats, matches=scene["tmp"] / "xyz.h5")
    assert calls == [2, 1, 1]  # x against y and z in one call; then y, then a
    for name0, name1 in [("x.jpg", "y.jpg"), ("x.jpg", "z.jpg"), ("a.jpg", "x.jpg")]:
        d0 = torch.from_numpy(read_features(feats, name0)["descriptors"].astype(np.float32))
        d1 = torch.from_numpy(read_features(feats, name1)["descriptors"].astype(np.float32))
        m, _ = NN.match_nearest_neighbor(d0, d1)
        got, _ = get_matches(scene["tmp"] / "xyz.h5", name0, name1)
        assert np.array_equal(got[:, 1], m[m >= 0].numpy()) and np.array_equal(got[:, 0], np.flatnonzero(m >= 0))


def test_reuses_existing_pairs_and_overwrite(scene, monkeypatch):
    matches = scene["tmp"] / "m.h5"
    conf = MF.get_conf("mutual_nn")
    MF.main(conf, scene["pairs"], scene["feats"], matches=matches)
    calls = []
    real = NN.match_one_to_many
    monkeypatch.setattr(NN, "match_one_to_many", lambda *a, **k: calls.append(1) or real(*a, **k))
    counts = MF.match_from_paths(conf, scene["pairs"], matches, scene["feats"], scene["feats"])
    assert calls == [] and counts == {"pairs": 3, "matched": 0, "skipped": 3}
    # a pair stored by someone else in reverse order counts as done
    write_pairs(scene["tmp"] / "more.txt", [("seq/c.jpg", "a.jpg"), ("b.jpg", "a.jpg")])
    assert MF.match_from_paths(conf, scene["tmp"] / "more.txt", matches, scene["feats"], scene["feats"])["matched"] == 0
    # overwrite matches everything again
    counts = MF.match_from_paths(conf, scene["pairs"], matches, scene["feats"], scene["feats"], overwrite=True)
    assert counts["matched"] == 3 and calls


def test_stem_and_export_dir(scene):
    import shutil

    shutil.copy(scene["feats"], scene["tmp"] / "feats-x.h5")
    out = MF.main(MF.get_conf("nn-distance"), scene["pairs"], "feats-x", export_dir=scene["tmp"])
    assert out == scene["tmp"] / "feats-x_matches-nn-distance_pairs.h5"
    assert has_matches(out, "a.jpg", "b.jpg")
    with pytest.raises(ValueError, match="export_dir"):
        MF.main(MF.get_conf("mutual_nn"), scene["pairs"], "feats-x")
    with pytest.raises(ValueError, match="matches output"):
        MF.main(MF.get_conf("mutual_nn"), scene["pairs"], scene["feats"])


def test_features_ref(scene):
    ref = scene["tmp"] / "ref.h5"
    desc = scene["descs"][1]
    write_features(ref, "r.jpg", {"keypoints": np.zeros((desc.shape[1], 2), np.float32), "descriptors": desc})
    pairs = write_pairs(scene["tmp"] / "qr.txt", [("a.jpg", "r.jpg")])
    out = MF.main(MF.get_conf("mutual_nn"), pairs, scene["feats"], matches=scene["tmp"] / "qr.h5", features_ref=ref)
    assert len(get_matches(out, "a.jpg", "r.jpg")[0]) >= 48
    with pytest.raises(H5FileError, match="not in features file"):  # r.jpg is not a query image
        MF.main(MF.get_conf("mutual_nn"), pairs, scene["feats"], matches=scene["tmp"] / "qr2.h5")


def test_binary_descriptors(tmp_path):
    rng = np.random.default_rng(0)
    d0 = rng.integers(0, 256, (32, 30), dtype=np.uint8)
    d1 = d0[:, ::-1].copy()
    feats = tmp_path / "f.h5"
    for name, d in (("a", d0), ("b", d1)):
        write_features(feats, name, {"keypoints": np.zeros((30, 2), np.float32), "descriptors": d})
    pairs = write_pairs(tmp_path / "p.txt", [("a", "b")])
    out = MF.main(MF.get_conf("mutual_nn"), pairs, feats, matches=tmp_path / "m.h5")
    m, s = get_matches(out, "a", "b")
    assert np.array_equal(m[:, 1], 29 - m[:, 0]) and len(m) == 30 and np.allclose(s, 1)


def test_corrupt_and_foreign_files(scene):
    conf = MF.get_conf("mutual_nn")
    corrupt = scene["tmp"] / "corrupt.h5"
    corrupt.write_bytes(b"this is not hdf5" * 10)
    with pytest.raises(H5FileError, match="corrupt.h5"):
        MF.main(conf, scene["pairs"], scene["feats"], matches=corrupt)
    # a features file given as the matches output
    with pytest.raises(H5FileError, match="features file"):
        MF.main(conf, scene["pairs"], scene["feats"], matches=scene["feats"])
    # a matches file given as the features
    m = scene["tmp"] / "m.h5"
    write_matches(m, "a.jpg", "b.jpg", np.zeros(3, int), np.zeros(3))
    with pytest.raises(H5FileError, match="matches file"):
        MF.main(conf, scene["pairs"], m, matches=scene["tmp"] / "out.h5")
    # a foreign HDF5 file (e.g. some other tool's) as the matches output
    foreign = scene["tmp"] / "foreign.h5"
    with h5py.File(foreign, "w") as fd:
        fd.create_group("stuff").create_dataset("weights", data=np.zeros(3))
    with pytest.raises(H5FileError, match="not an hloc matches file"):
        MF.main(conf, scene["pairs"], scene["feats"], matches=foreign)
    with pytest.raises(FileNotFoundError, match="features file not found"):
        MF.main(conf, scene["pairs"], scene["tmp"] / "missing.h5", matches=scene["tmp"] / "x.h5")


def test_cli(scene, capsys):
    out = scene["tmp"] / "cli.h5"
    assert MF.cli(["--pairs", str(scene["pairs"]), "--features", str(scene["feats"]), "--output", str(out),
                   "--conf", "nn-ratio"]) == 0
    assert has_matches(out, "b.jpg", "seq/c.jpg")
    bad = scene["tmp"] / "bad.h5"
    bad.write_bytes(b"junk")
    assert MF.cli(["--pairs", str(scene["pairs"]), "--features", str(scene["feats"]), "--output", str(bad)]) == 2
    assert "bad.h5" in capsys.readouterr().err
