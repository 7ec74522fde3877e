"""Regression tests of the reliability issue: each bad input gives one clear line naming the
file/key/value (exit 2 from the CLIs), never a traceback, and changes nothing on disk."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest
import torch

from sekd_plugin import extract_features as ef
from sekd_plugin import match_features as mf
from sekd_plugin import pairs as P
from sekd_plugin.common import CheckpointError, InputError
from sekd_plugin.datasets.hpatches import DatasetError, load_dataset
from sekd_plugin.io.h5 import H5FileError, list_names, read_features, write_features
from sekd_plugin.io.images import ImageReadError, list_images, read_image
from sekd_plugin.models.checkpoint import load_state_dict, load_weights
from sekd_plugin.models.sekd import SEKDNet
from tests.helpers import texture  # noqa: E402


_texture = texture


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    err = [line for line in err if line.startswith("error:")]
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


@pytest.fixture
def photos(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    cv2.imwrite(str(root / "my photo.png"), _texture(120, 160, 0))
    cv2.imwrite(str(root / "b.png"), _texture(120, 160, 1))
    cv2.imwrite(str(root / "c d e.webp"), _texture(120, 160, 2))
    return root


# ------------------------------------------------------------------ 3: names with whitespace

def test_pairs_file_round_trips_any_name(tmp_path):
    pairs = [("my photo.jpg", "b.jpg"), ("a.jpg", "b.jpg"), ('"quoted".jpg', "#hash.jpg"), ("tab\tx.jpg", "ü ö.jpg")]
    path = P.write_pairs(tmp_path / "pairs.txt", pairs)
    assert P.read_pairs(path) == pairs
    # plain names keep hloc's format, readable by a whitespace split
    assert path.read_text().splitlines()[1] == "a.jpg b.jpg"


def test_names_with_spaces_through_extraction_pairs_and_matching(photos, tmp_path):
    feats = ef.main(ef.get_conf("sift"), photos, feature_path=tmp_path / "f.h5")
    assert "my photo.png" in list_names(feats) and "c d e.webp" in list_names(feats)
    pairs = P.main(tmp_path / "pairs.txt", features=feats)
    matches = mf.main(mf.get_conf("NN-ratio"), pairs, feats, matches=tmp_path / "m.h5")
    from sekd_plugin.io.h5 import get_matches

    m, _ = get_matches(matches, "my photo.png", "c d e.webp")
    assert m.ndim == 2


# ------------------------------------------------------------------ 7 / 11 / 15: weights

@pytest.mark.parametrize("content", [b"hello, this is a text file\n", bytes(range(256)) * 40])
def test_text_or_random_bytes_as_weights(tmp_path, content):
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint") as info:
        load_state_dict(path)
    assert str(path) in str(info.value) and "weights_only=False" not in str(info.value)


def test_truncated_checkpoint_and_directory(tmp_path):
    good = tmp_path / "good.pth"
    torch.save(SEKDNet().state_dict(), good)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="damaged") as info:
        load_state_dict(cut)
    assert "\n" not in str(info.value)
    with pytest.raises(CheckpointError, match="directory"):
        load_state_dict(tmp_path)


def test_non_finite_weights_are_refused_by_name(tmp_path):
    state = SEKDNet().state_dict()
    state["conv0.weight"][0, 0, 0, 0] = float("nan")
    path = tmp_path / "nan.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"non-finite.*conv0\.weight"):
        load_weights(SEKDNet(), path)


def test_extract_cli_text_file_as_weights(photos, tmp_path, capsys):
    bad = tmp_path / "notes.txt"
    bad.write_text("not weights")
    code = ef.cli(["--conf", "sekd", "--images", str(photos), "--output", str(tmp_path / "f.h5"),
                   "--weights", str(bad), "--quiet"])
    assert code == 2
    assert str(bad) in _one_error_line(capsys)


# ------------------------------------------------------------------ 7 / 11: h5 files

def test_damaged_h5_metadata_is_one_line_and_left_untouched(photos, tmp_path, capsys):
    feats = tmp_path / "f.h5"
    for i in range(4):
        write_features(feats, f"img{i}.jpg", {"keypoints": np.zeros((20, 2), np.float32),
                                              "descriptors": np.ones((8, 20), np.float32)})
    data = bytearray(feats.read_bytes())
    found = False
    for offset in range(0, len(data) - 8, 97):  # find a byte range whose flip damages metadata
        damaged = bytearray(data)
        damaged[offset:offset + 8] = bytes(b ^ 0xFF for b in damaged[offset:offset + 8])
        feats.write_bytes(damaged)
        try:
            for name in list_names(feats):
                read_features(feats, name)
        except H5FileError as error:
            assert str(feats) in str(error)
            found = True
            break
    assert found, "no damaging byte flip found"
    before = _sha(feats)
    pairs = P.write_pairs(tmp_path / "pairs.txt", [("img0.jpg", "img1.jpg")])
    assert mf.cli(["--pairs", str(pairs), "--features", str(feats), "--output", str(tmp_path / "m.h5")]) == 2
    assert str(feats) in _one_error_line(capsys)
    assert _sha(feats) == before


def test_output_directory_and_images_file_messages(photos, tmp_path, capsys):
    (tmp_path / "outdir").mkdir()
    assert ef.cli(["--conf", "sift", "--images", str(photos), "--output", str(tmp_path / "outdir"), "--quiet"]) == 2
    assert "directory" in _one_error_line(capsys)
    a_file = photos / "b.png"
    assert ef.cli(["--conf", "sift", "--images", str(a_file), "--output", str(tmp_path / "f.h5"), "--quiet"]) == 2
    line = _one_error_line(capsys)
    assert "got a file" in line and str(a_file) in line


def test_empty_pairs_file_says_nothing_was_written(photos, tmp_path, capsys):
    feats = ef.main(ef.get_conf("sift"), photos, feature_path=tmp_path / "f.h5")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    out = tmp_path / "m.h5"
    assert mf.cli(["--pairs", str(empty), "--features", str(feats), "--output", str(out)]) == 0
    assert "not written" in capsys.readouterr().out and not out.exists()


def test_binary_pairs_file_is_named(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(P.PairsError, match=str(path)):
        P.read_pairs(path)


def test_thin_image_reports_file_and_resized_size(tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    cv2.imwrite(str(root / "thin.png"), _texture(5, 5000, 0))
    conf = ef.get_conf("sekd-selftrained")  # shipped weights: runs without ../shared
    result = ef.extract(conf, root, feature_path=tmp_path / "f.h5")
    message = result.failed["thin.png"]
    assert "5000 x 5 px" in message and "resized to 1600 x 2 px" in message


# ------------------------------------------------------------------ 12 / 13: image names

def test_one_extension_list(photos, tmp_path):
    assert "c d e.webp" in list_images(photos)
    import PIL.Image

    PIL.Image.fromarray(_texture(40, 40, 3)).save(photos / "anim.gif")
    assert "anim.gif" in list_images(photos)
    assert read_image(photos / "anim.gif", grayscale=True).shape == (40, 40)
    (photos / "notes.txt").write_text("x")
    assert "notes.txt" not in list_images(photos)
    with pytest.raises(ImageReadError, match="notes.txt"):
        read_image(photos / "notes.txt")


def test_image_list_names_stay_inside_the_folder(photos, tmp_path):
    outside = tmp_path / "outside.png"
    cv2.imwrite(str(outside), _texture(120, 160, 4))
    for name in ("../outside.png", str(outside)):
        with pytest.raises(InputError, match="outside the image folder"):
            ef.extract(ef.get_conf("sift"), photos, image_list=[name], feature_path=tmp_path / "f.h5")
    assert not (tmp_path / "f.h5").exists()
    result = ef.extract(ef.get_conf("sift"), photos, image_list=["../outside.png"],
                        feature_path=tmp_path / "f.h5", allow_outside=True)
    assert result.extracted == ["../outside.png"]


# ------------------------------------------------------------------ 9: HPatches loader

def _sequence(root, name="v_x", drop=None, H2=None):
    folder = root / name
    folder.mkdir(parents=True)
    for i in range(1, 7):
        cv2.imwrite(str(folder / f"{i}.png"), _texture(64, 64, i))
    for i in range(2, 7):
        if f"H_1_{i}" != drop:
            np.savetxt(folder / f"H_1_{i}", np.eye(3) if (i != 2 or H2 is None) else H2)
    return folder


def test_missing_first_homography_is_an_error(tmp_path):
    _sequence(tmp_path, drop="H_1_2")
    with pytest.raises(DatasetError, match="H_1_2"):
        load_dataset(tmp_path)


def test_singular_and_nan_homographies_name_the_file(tmp_path):
    _sequence(tmp_path / "a", H2=np.zeros((3, 3)))
    with pytest.raises(DatasetError, match=r"H_1_2: the homography is singular"):
        load_dataset(tmp_path / "a")
    _sequence(tmp_path / "b", H2=np.full((3, 3), np.nan))
    with pytest.raises(DatasetError, match=r"H_1_2: the homography holds NaN"):
        load_dataset(tmp_path / "b")


# ------------------------------------------------------------------ issue 16: one reader, lookups read only

def test_training_and_extraction_read_exif_rotated_jpegs_alike(tmp_path):
    import PIL.Image

    from sekd_plugin.io.images import load_image
    from sekd_plugin.train.data import read_rgb

    stored = PIL.Image.fromarray(_texture(40, 80, 5)).convert("RGB")  # H 40 x W 80 as stored
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW" when displayed
    stored.save(tmp_path / "r.jpg", exif=exif.tobytes())
    assert read_rgb(tmp_path / "r.jpg").shape[:2] == (40, 80)
    assert tuple(load_image(tmp_path / "r.jpg")["original_size"]) == (80, 40)


def test_find_new_pairs_does_not_modify_an_hloc_written_file(tmp_path):
    import h5py

    path = tmp_path / "hloc_matches.h5"
    with h5py.File(path, "w") as fd:  # as hloc writes it: no format attribute, no complete marks
        grp = fd.create_group("a.jpg").create_group("b.jpg")
        grp.create_dataset("matches0", data=np.array([0, -1, 1], np.int16))
        grp.create_dataset("matching_scores0", data=np.ones(3, np.float16))
    before = _sha(path)
    new = mf.find_new_pairs([("a.jpg", "b.jpg"), ("a.jpg", "c.jpg")], path)
    assert new == [("a.jpg", "c.jpg")]
    assert _sha(path) == before
