"""Pairs generation: exhaustive, sequential, from a list; the pairs file format."""

from __future__ import annotations

import numpy as np
import pytest

from sekd_plugin import pairs as P
from sekd_plugin.io.h5 import write_features


def _no_dupes(pairs):
    keys = [frozenset(p) for p in pairs]
    return len(keys) == len(set(keys)) and all(len(k) == 2 for k in keys)


def test_exhaustive():
    names = [f"{i}.jpg" for i in range(5)]
    pairs = P.exhaustive_pairs(names)
    assert len(pairs) == 10 and _no_dupes(pairs)
    assert pairs[0] == ("0.jpg", "1.jpg") and all(names.index(a) < names.index(b) for a, b in pairs)
    assert P.exhaustive_pairs(names + ["0.jpg"]) == pairs  # repeated name ignored
    assert P.exhaustive_pairs(["a"]) == []


def test_exhaustive_with_references():
    pairs = P.exhaustive_pairs(["q1", "q2", "r1"], ["r1", "r2"])
    assert pairs == [("q1", "r1"), ("q1", "r2"), ("q2", "r1"), ("q2", "r2"), ("r1", "r2")]


def test_sequential_window_and_loop():
    names = ["c.jpg", "a.jpg", "b.jpg", "e.jpg", "d.jpg"]  # sorted by name first
    assert P.sequential_pairs(names, 2) == [
        ("a.jpg", "b.jpg"), ("a.jpg", "c.jpg"), ("b.jpg", "c.jpg"), ("b.jpg", "d.jpg"),
        ("c.jpg", "d.jpg"), ("c.jpg", "e.jpg"), ("d.jpg", "e.jpg")]
    looped = P.sequential_pairs(names, 2, loop=True)
    assert len(looped) == 10 and _no_dupes(looped)
    assert ("e.jpg", "a.jpg") in looped and ("d.jpg", "a.jpg") in looped
    # a window larger than the sequence gives the exhaustive set, once
    assert len(P.sequential_pairs(names, 10, loop=True)) == 10
    assert P.sequential_pairs(names, 1) == [("a.jpg", "b.jpg"), ("b.jpg", "c.jpg"), ("c.jpg", "d.jpg"),
                                            ("d.jpg", "e.jpg")]
    with pytest.raises(P.PairsError, match="window"):
        P.sequential_pairs(names, 0)


def test_from_list_cleans(tmp_path):
    raw = tmp_path / "raw.txt"
    raw.write_text("# comment\na b\nb a\na a\n\na b extra tokens\nc a\n")
    out = P.main(tmp_path / "pairs.txt", mode="from_list", pairs_list=raw)
    assert out.read_text() == "a b\nc a\n"
    assert P.read_pairs(out) == [("a", "b"), ("c", "a")]
    with pytest.raises(P.PairsError, match="unknown image"):
        P.main(tmp_path / "p2.txt", image_list=["a", "b"], mode="from_list", pairs_list=raw)
    raw.write_text("a b\nlonely\n")
    with pytest.raises(P.PairsError, match=":2:"):
        P.read_pairs(raw)
    with pytest.raises(P.PairsError, match="pairs_list"):
        P.main(tmp_path / "p3.txt", mode="from_list")


def test_main_sources(tmp_path):
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    for name in ("b.jpg", "a.png", "sub/c.jpg", "notes.txt"):
        (images / name).write_bytes(b"")
    out = P.main(tmp_path / "pairs.txt", image_dir=images)
    assert P.read_pairs(out) == [("a.png", "b.jpg"), ("a.png", "sub/c.jpg"), ("b.jpg", "sub/c.jpg")]

    listing = tmp_path / "list.txt"
    listing.write_text("x.jpg\ny.jpg\nz.jpg\n")
    out = P.main(tmp_path / "seq.txt", image_list=listing, mode="sequential", window=1)
    assert out.read_text() == "x.jpg y.jpg\ny.jpg z.jpg\n"

    feats = tmp_path / "f.h5"
    for name in ("u.jpg", "v.jpg"):
        write_features(feats, name, {"keypoints": np.zeros((1, 2), np.float32),
                                     "descriptors": np.zeros((4, 1), np.float32)})
    assert P.read_pairs(P.main(tmp_path / "f.txt", features=feats)) == [("u.jpg", "v.jpg")]

    with pytest.raises(P.PairsError, match="mode"):
        P.main(tmp_path / "x.txt", image_list=["a"], mode="bogus")
    with pytest.raises(P.PairsError, match="give image_list"):
        P.main(tmp_path / "x.txt")


def test_cli(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(4):
        (images / f"{i:04d}.jpg").write_bytes(b"")
    assert P.cli(["--output", str(tmp_path / "ex.txt"), "--images", str(images)]) == 0
    assert len(P.read_pairs(tmp_path / "ex.txt")) == 6
    assert P.cli(["--output", str(tmp_path / "seq.txt"), "--images", str(images), "--window", "2"]) == 0
    assert len(P.read_pairs(tmp_path / "seq.txt")) == 5
    assert P.cli(["--output", str(tmp_path / "clean.txt"), "--from-list", str(tmp_path / "ex.txt")]) == 0
    with pytest.raises(SystemExit) as stop:  # refused at parse time (common.cli.number)
        P.cli(["--output", str(tmp_path / "bad.txt"), "--images", str(images), "--window", "0"])
    assert stop.value.code == 2
    assert "window" in capsys.readouterr().err
