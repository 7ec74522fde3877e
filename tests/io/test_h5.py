"""sekd_plugin.io.h5: hloc layout, completion marks, foreign files, matches helpers."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from sekd_plugin.io.h5 import (
    H5FileError,
    get_keypoints,
    get_matches,
    has_matches,
    list_names,
    names_to_pair,
    names_to_pair_old,
    read_features,
    write_features,
    write_matches,
)


def _pred(n=5, d=8, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "keypoints": rng.random((n, 2), dtype=np.float32) * np.float32([119, 79]),  # inside the 120 x 80 image
        "scores": rng.random(n, dtype=np.float32),
        "descriptors": rng.random((d, n), dtype=np.float32),
        "image_size": np.array([120, 80]),
    }


def test_write_read_roundtrip_nested_names(tmp_path):
    path = tmp_path / "f.h5"
    pred = _pred()
    write_features(path, "db/sub/a.jpg", pred, as_half=False, uncertainty=2.5)
    write_features(path, "b.png", _pred(3), as_half=True)
    assert list_names(path) == ["b.png", "db/sub/a.jpg"]
    out = read_features(path, "db/sub/a.jpg")
    assert set(out) == set(pred)
    for key in pred:
        assert np.array_equal(out[key], pred[key])
    assert read_features(path, "b.png")["descriptors"].dtype == np.float16
    assert read_features(path, "b.png")["image_size"].dtype == np.int64
    kp, unc = get_keypoints(path, "db/sub/a.jpg", return_uncertainty=True)
    assert kp.shape == (5, 2) and unc == 2.5
    with h5py.File(path, "r") as fd:  # plain hloc-style access works
        assert fd["db"]["sub"]["a.jpg"]["keypoints"].shape == (5, 2)


def test_rewrite_replaces_group(tmp_path):
    path = tmp_path / "f.h5"
    write_features(path, "a.jpg", _pred(5))
    write_features(path, "a.jpg", _pred(7, seed=1))
    assert read_features(path, "a.jpg")["keypoints"].shape == (7, 2)


def test_incomplete_group_is_missing_and_redone(tmp_path):
    path = tmp_path / "f.h5"
    first = _pred(4)
    write_features(path, "a.jpg", first)
    # Simulate an interruption: a group with some datasets but no completion mark.
    with h5py.File(path, "a") as fd:
        group = fd.create_group("b.jpg")
        group.create_dataset("keypoints", data=np.zeros((3, 2), np.float32))
    assert list_names(path) == ["a.jpg"]
    with pytest.raises(H5FileError, match="b.jpg"):
        read_features(path, "b.jpg")
    write_features(path, "b.jpg", _pred(6, seed=2))
    assert list_names(path) == ["a.jpg", "b.jpg"]
    assert read_features(path, "b.jpg")["keypoints"].shape == (6, 2)
    assert np.array_equal(read_features(path, "a.jpg")["keypoints"], first["keypoints"])


def test_exception_during_write_keeps_earlier_groups(tmp_path):
    path = tmp_path / "f.h5"
    write_features(path, "a.jpg", _pred())
    with pytest.raises(TypeError):
        write_features(path, "b.jpg", {"keypoints": np.zeros((2, 2), np.float32), "bad": object()})
    assert list_names(path) == ["a.jpg"]


def test_not_hdf5_and_foreign_files(tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("hello")
    with pytest.raises(H5FileError, match="notes.h5"):
        write_features(text, "a.jpg", _pred())
    with pytest.raises(H5FileError, match="notes.h5"):
        list_names(text)
    assert text.read_text() == "hello"  # never clobbered

    foreign = tmp_path / "other.h5"
    with h5py.File(foreign, "w") as fd:
        fd.create_dataset("x/y", data=np.zeros(3))
    with pytest.raises(H5FileError, match="other.h5"):
        write_features(foreign, "a.jpg", _pred())
    with pytest.raises(H5FileError, match="other.h5"):
        list_names(foreign)

    matches = tmp_path / "m.h5"
    write_matches(matches, "a.jpg", "b.jpg", np.array([0, -1]), np.array([0.5, 0.0]))
    with pytest.raises(H5FileError, match="matches"):
        write_features(matches, "a.jpg", _pred())


def test_empty_file_is_treated_as_new(tmp_path):
    path = tmp_path / "f.h5"
    path.touch()
    write_features(path, "a.jpg", _pred())
    assert list_names(path) == ["a.jpg"]


def test_hloc_written_file_is_read_and_adopted(tmp_path):
    path = tmp_path / "hloc.h5"
    with h5py.File(path, "w") as fd:  # as hloc writes it: no marks at all
        fd.create_group("q/a.jpg").create_dataset("keypoints", data=np.ones((2, 2), np.float16))
    assert list_names(path) == ["q/a.jpg"]
    assert get_keypoints(path, "q/a.jpg").shape == (2, 2)
    write_features(path, "b.jpg", _pred())
    assert list_names(path) == ["b.jpg", "q/a.jpg"]


def test_names_to_pair():
    assert names_to_pair("db/a.jpg", "q/b.jpg") == "db-a.jpg/q-b.jpg"
    assert names_to_pair_old("db/a.jpg", "q/b.jpg") == "db-a.jpg_q-b.jpg"


def test_matches_roundtrip_both_orders(tmp_path):
    path = tmp_path / "m.h5"
    matches0 = np.array([2, -1, 0, -1])
    scores0 = np.array([0.9, 0.0, 0.5, 0.0], np.float32)
    write_matches(path, "db/a.jpg", "b.jpg", matches0, scores0)
    with h5py.File(path, "r") as fd:
        group = fd["db-a.jpg"]["b.jpg"]
        assert group["matches0"].dtype == np.int16 and group["matching_scores0"].dtype == np.float16
    m, s = get_matches(path, "db/a.jpg", "b.jpg")
    assert m.tolist() == [[0, 2], [2, 0]] and np.allclose(s, [0.9, 0.5], atol=1e-3)
    m, s = get_matches(path, "b.jpg", "db/a.jpg")
    assert m.tolist() == [[2, 0], [0, 2]]
    assert has_matches(path, "b.jpg", "db/a.jpg") and not has_matches(path, "a.jpg", "c.jpg")
    with pytest.raises(H5FileError, match="c.jpg"):
        get_matches(path, "a.jpg", "c.jpg")


def test_matches_legacy_key_and_large_indices(tmp_path):
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as fd:  # hloc's legacy flat key, stored as (b, a)
        group = fd.create_group(names_to_pair_old("b.jpg", "a.jpg"))
        group.create_dataset("matches0", data=np.array([1, -1], np.int16))
        group.create_dataset("matching_scores0", data=np.array([0.25, 0], np.float16))
    m, s = get_matches(path, "a.jpg", "b.jpg")
    assert m.tolist() == [[1, 0]] and s.tolist() == [0.25]
    big = np.array([40000, -1, 3])
    write_matches(path, "c.jpg", "d.jpg", big, np.ones(3))
    assert get_matches(path, "c.jpg", "d.jpg")[0].tolist() == [[0, 40000], [2, 3]]
