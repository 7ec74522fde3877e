"""Issue #24 (item 9): ``--image-list`` names are normalised once, before the done-check, so
``./a.png``, ``a.png`` and absolute paths are extracted once and never again on a rerun."""

from __future__ import annotations

import cv2
import pytest

from sekd_plugin import extract_features as ef
from sekd_plugin.extractors.confs import get_conf
from sekd_plugin.io.h5 import entry_name, list_names
from sekd_plugin.io.images import normalise_names
from tests.helpers import texture

pytest.importorskip("pycolmap")


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    for i, name in enumerate(["img0.png", "img1.png", "sub/img2.png"]):
        cv2.imwrite(str(root / name), texture(64, 80, i))
    other = tmp_path / "other"
    other.mkdir()
    cv2.imwrite(str(other / "x.png"), texture(64, 80, 5))
    return root


def _run(folder, tmp_path, names, **kwargs):
    return ef.extract(get_conf("sift"), folder, image_list=names, feature_path=tmp_path / "f.h5", num_workers=0,
                      **kwargs)


def test_the_same_image_spelled_twice_is_extracted_once(folder, tmp_path):
    first = _run(folder, tmp_path, ["img0.png", "./img0.png", "sub//img2.png", "sub/../img1.png"])
    assert sorted(first.extracted) == ["img0.png", "img1.png", "sub/img2.png"]
    assert list_names(tmp_path / "f.h5") == ["img0.png", "img1.png", "sub/img2.png"]
    again = _run(folder, tmp_path, ["./img0.png", "./sub/img2.png", "img1.png"])
    assert again.extracted == [] and sorted(again.skipped) == ["img0.png", "img1.png", "sub/img2.png"]


def test_absolute_names_are_not_extracted_again(folder, tmp_path):
    inside, outside = str(folder / "img1.png"), str(tmp_path / "other" / "x.png")
    first = _run(folder, tmp_path, [inside, outside], allow_outside=True)
    assert sorted(first.extracted) == sorted(["img1.png", outside])
    assert sorted(list_names(tmp_path / "f.h5")) == sorted(["img1.png", entry_name(outside)])
    again = _run(folder, tmp_path, [inside, outside, "img1.png"], allow_outside=True)
    assert again.extracted == [] and len(again.skipped) == 2


def test_cli_rerun_with_dotted_names_extracts_nothing(folder, tmp_path, capsys):
    listing = tmp_path / "list.txt"
    listing.write_text("./img0.png\nimg0.png\n./img1.png\n")
    args = ["--conf", "sift", "--images", str(folder), "--output", str(tmp_path / "f.h5"),
            "--image-list", str(listing), "--num-workers", "0", "--quiet"]
    assert ef.cli(args) == 0
    assert "2 extracted, 0 already done" in capsys.readouterr().out
    assert ef.cli(args) == 0
    assert "0 extracted, 2 already done" in capsys.readouterr().out


def test_normalise_names():
    assert normalise_names("/data/images", ["./a.jpg", "a.jpg", "/data/images/b/c.jpg", "//x/y.jpg", "../z.jpg"]) == \
        ["a.jpg", "b/c.jpg", "/x/y.jpg", "../z.jpg"]
    assert entry_name("/x/./y.jpg") == "x/y.jpg"
