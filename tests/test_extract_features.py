"""sekd_plugin.extract_features with the SIFT conf on small synthetic images."""

from __future__ import annotations

import os
import signal

import cv2
import h5py
import numpy as np
import pytest
import torch

pytest.importorskip("pycolmap")

from sekd_plugin import extract_features as ef  # noqa: E402
from sekd_plugin.extractors.base import (  # noqa: E402
    EXTRACTOR_MODULES, BaseExtractor, register_extractor, unregister_extractor)
from sekd_plugin.extractors.confs import confs, get_conf  # noqa: E402
from sekd_plugin.io.h5 import list_names, read_features  # noqa: E402
from tests.helpers import texture  # noqa: E402


class FakeExtractor(BaseExtractor):
    """Test extractor: rejects images under 8 px like SEKD does under its minimum, and can
    send itself SIGTERM on its n-th call to simulate `kill` during a run."""

    default_conf = {"sigterm_at": None}
    runtime_conf_keys = ("sigterm_at",)  # a test hook, not part of what the features are

    def _init(self, conf):
        self.calls = 0

    def _forward(self, data):
        self.calls += 1
        if self.calls == self.conf["sigterm_at"]:
            os.kill(os.getpid(), signal.SIGTERM)
        h, w = data["image"].shape[-2:]
        if min(h, w) < 8:
            raise ValueError(f"image of {w} x {h} px is too small")
        return {"keypoints": torch.tensor([[[0.0, 0.0], [w - 1.0, h - 1.0]]]),
                "scores": torch.ones(1, 2), "descriptors": torch.ones(1, 4, 2)}


@pytest.fixture(autouse=True)
def fake_extractor():
    """The test extractor is registered for each test and removed after it (no import-time state)."""
    register_extractor("fake", __name__)
    yield
    unregister_extractor("fake")


_texture = texture


@pytest.fixture
def images(tmp_path):
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    cv2.imwrite(str(root / "a.png"), _texture(90, 120, 0))
    cv2.imwrite(str(root / "sub" / "b.jpg"), _texture(100, 80, 1))
    cv2.imwrite(str(root / "c.png"), _texture(60, 70, 2))
    return root


def _sift_conf(**preprocessing):
    conf = get_conf("sift")
    conf["preprocessing"].update(preprocessing)
    return conf


def test_confs_shape():
    for name, conf in confs.items():
        assert set(conf) == {"output", "model", "preprocessing"}, name
        assert conf["model"]["name"] in EXTRACTOR_MODULES, name
        assert {"grayscale", "resize_max"} <= set(conf["preprocessing"]), name
    sekd_keys = {"name", "confidence_threshold", "nms_radius", "max_keypoints", "multi_scale",
                 "sub_pixel", "sampling", "remove_borders", "weights", "checkpoint", "precision", "backend"}
    for conf in confs.values():
        if conf["model"]["name"] == "sekd":
            assert set(conf["model"]) <= sekd_keys


def test_sift_end_to_end_hloc_layout(images, tmp_path):
    path = ef.main(get_conf("sift"), images, export_dir=tmp_path / "out")
    assert path == tmp_path / "out" / "feats-rootsift-r1600.h5"
    assert list_names(path) == ["a.png", "c.png", "sub/b.jpg"]
    with h5py.File(path, "r") as fd:
        group = fd["sub"]["b.jpg"]
        n = group["keypoints"].shape[0]
        assert n > 0
        assert group["keypoints"].shape == (n, 2) and group["keypoints"].dtype == np.float16
        assert group["scores"].shape == (n,)
        assert group["descriptors"].shape == (128, n) and group["descriptors"].dtype == np.float16
        assert group["image_size"][()].tolist() == [80, 100]
        assert group["keypoints"].attrs["uncertainty"] == pytest.approx(1.0)
        assert {"scales", "oris"} <= set(group)


def test_postprocess_rescale_convention():
    pred = {"keypoints": np.array([[0.0, 0.0], [99.0, 49.0]], np.float32), "scales": np.array([1.0, 2.0], np.float32)}
    out, uncertainty = ef.postprocess(pred, np.array([200, 100]), np.array([100, 50]), detection_noise=2.0)
    # pixel centres map to pixel centres: (0, 0) -> (0.5, 0.5), last pixel -> last pixel
    assert out["keypoints"].tolist() == [[0.5, 0.5], [198.5, 98.5]]
    assert out["scales"].tolist() == [2.0, 4.0]
    assert out["image_size"].tolist() == [200, 100]
    assert uncertainty == pytest.approx(4.0)


def test_resized_image_keypoints_in_original_pixels(images, tmp_path):
    small = _texture(150, 200, 3)
    cv2.imwrite(str(images / "small.png"), small)
    # 4x pixel replication: INTER_AREA brings it back to `small` exactly (4x4 block means).
    cv2.imwrite(str(images / "big.png"), np.repeat(np.repeat(small, 4, 0), 4, 1))
    conf = _sift_conf(resize_max=200)
    result = ef.extract(conf, images, image_list=["big.png", "small.png"], feature_path=tmp_path / "f.h5",
                        as_half=False, num_workers=0)
    assert result.extracted == ["big.png", "small.png"]
    big, ref = read_features(tmp_path / "f.h5", "big.png"), read_features(tmp_path / "f.h5", "small.png")
    assert big["image_size"].tolist() == [800, 600] and ref["image_size"].tolist() == [200, 150]
    assert len(ref["keypoints"]) > 10
    # (kp + 0.5) * scale - 0.5: the centre of the top-left pixel stays at (0, 0)
    assert np.allclose(big["keypoints"], (ref["keypoints"] + 0.5) * 4 - 0.5, atol=1e-4)
    assert np.allclose(big["scales"], ref["scales"] * 4, atol=1e-4)
    assert np.array_equal(big["descriptors"], ref["descriptors"])
    with h5py.File(tmp_path / "f.h5", "r") as fd:
        assert fd["big.png"]["keypoints"].attrs["uncertainty"] == pytest.approx(4.0)


def test_bad_image_reported_others_processed(images, tmp_path, caplog):
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    result = ef.extract(get_conf("sift"), images, feature_path=tmp_path / "f.h5", num_workers=0)
    assert set(result.failed) == {"broken.jpg"} and "broken.jpg" in result.failed["broken.jpg"]
    assert sorted(result.extracted) == ["a.png", "c.png", "sub/b.jpg"]
    assert list_names(tmp_path / "f.h5") == ["a.png", "c.png", "sub/b.jpg"]
    assert "1 image(s) failed: broken.jpg" in caplog.text


def test_extractor_rejection_and_missing_listed_image(images, tmp_path):
    cv2.imwrite(str(images / "tiny.png"), _texture(4, 4, 5))
    conf = {"output": "x", "model": {"name": "fake"}, "preprocessing": {"grayscale": True}}
    result = ef.extract(conf, images, image_list=["a.png", "tiny.png", "nope.png"],
                        feature_path=tmp_path / "f.h5", num_workers=0)
    assert result.extracted == ["a.png"]
    assert "too small" in result.failed["tiny.png"] and "nope.png" in result.failed["nope.png"]


def test_empty_folder_and_empty_list(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(ef.NoImagesError, match="empty"):
        ef.main(get_conf("sift"), tmp_path / "empty", export_dir=tmp_path)
    (tmp_path / "list.txt").write_text("# nothing\n")
    with pytest.raises(ef.NoImagesError, match="list.txt"):
        ef.main(get_conf("sift"), tmp_path / "empty", image_list=tmp_path / "list.txt", export_dir=tmp_path)
    with pytest.raises(ef.NoImagesError, match="not found"):
        ef.main(get_conf("sift"), tmp_path / "missing", export_dir=tmp_path)


def test_skip_existing_and_overwrite(images, tmp_path):
    path = tmp_path / "f.h5"
    first = ef.extract(get_conf("sift"), images, feature_path=path, num_workers=0)
    assert len(first.extracted) == 3
    again = ef.extract(get_conf("sift"), images, feature_path=path, num_workers=0)
    assert again.extracted == [] and sorted(again.skipped) == ["a.png", "c.png", "sub/b.jpg"]
    redo = ef.extract(get_conf("sift"), images, feature_path=path, overwrite=True, num_workers=0)
    assert sorted(redo.extracted) == ["a.png", "c.png", "sub/b.jpg"] and redo.skipped == []
    assert list_names(path) == ["a.png", "c.png", "sub/b.jpg"]


def test_interrupted_run_resumes(images, tmp_path):
    path = tmp_path / "f.h5"
    ef.extract(get_conf("sift"), images, image_list=["a.png"], feature_path=path, num_workers=0)
    before = read_features(path, "a.png")
    with h5py.File(path, "a") as fd:  # a half-written group, as left by an interruption
        fd.create_group("c.png").create_dataset("keypoints", data=np.zeros((1, 2), np.float16))
    result = ef.extract(get_conf("sift"), images, feature_path=path, num_workers=0)
    assert result.skipped == ["a.png"] and sorted(result.extracted) == ["c.png", "sub/b.jpg"]
    assert read_features(path, "c.png")["keypoints"].shape[0] > 1
    after = read_features(path, "a.png")
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_sigterm_interrupts_cleanly(images, tmp_path):
    path = tmp_path / "f.h5"
    conf = {"output": "x", "model": {"name": "fake", "sigterm_at": 2}, "preprocessing": {"grayscale": True}}
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        ef.extract(conf, images, feature_path=path, num_workers=0)
    assert signal.getsignal(signal.SIGTERM) is previous  # handler restored
    assert list_names(path) == ["a.png"]  # first image kept, file readable
    conf["model"]["sigterm_at"] = None
    result = ef.extract(conf, images, feature_path=path, num_workers=0)
    assert result.skipped == ["a.png"] and sorted(result.extracted) == ["c.png", "sub/b.jpg"]


def test_cli(images, tmp_path, capsys):
    out = tmp_path / "cli.h5"
    (images / "bad.png").write_bytes(b"")
    assert ef.cli(["--conf", "sift", "--images", str(images), "--output", str(out), "--quiet"]) == 1
    captured = capsys.readouterr()
    assert "1 images failed: bad.png" in captured.out
    assert list_names(out) == ["a.png", "c.png", "sub/b.jpg"]

    (tmp_path / "none").mkdir()
    assert ef.cli(["--conf", "sift", "--images", str(tmp_path / "none"), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no images found") and "Traceback" not in err and err.count("\n") == 1

    assert ef.cli(["--conf", "sift", "--images", str(images), "--output", str(tmp_path / "w.h5"),
                   "--weights", "x.pth"]) == 2
    assert "weights" in capsys.readouterr().err


def test_cli_wrong_checkpoint_is_one_line(tmp_path, capsys):
    import cv2
    import numpy as np
    import torch

    from sekd_plugin.extract_features import cli

    images = tmp_path / "imgs"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), np.zeros((32, 32), np.uint8))
    bad = tmp_path / "bad.pth"
    torch.save({"state_dict": {"conv0.weight": torch.zeros(1)}}, bad)
    assert cli(["--conf", "sekd", "--images", str(images), "--output", str(tmp_path / "f.h5"),
                "--weights", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "missing keys" in err and "Traceback" not in err


def test_a_failed_extraction_leaves_no_file_and_a_file_without_entries_is_replaced(tmp_path, capsys):
    """Issue 33: a run failing before its first image (weights missing) left an empty features
    file that refused the corrected command ("another conf ... weights_sha256 <unset>")."""
    pytest.importorskip("pycolmap")
    import cv2

    from sekd_plugin.io.h5 import finished_parts, list_names, record_conf
    from tests.helpers import texture

    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        cv2.imwrite(str(images / f"{i}.png"), texture(96, 128, i))
    out = tmp_path / "f.h5"
    args = ["--images", str(images), "--output", str(out), "--quiet", "--num-workers", "0"]
    assert ef.cli(["--conf", "sekd", "--weights", str(tmp_path / "missing.pth"), *args]) == 2
    assert "missing.pth" in capsys.readouterr().err
    assert not out.exists() and not finished_parts(out)  # no file before the first entry
    record_conf(out, {"model": {"name": "sekd"}, "preprocessing": {}})  # what older releases left
    assert list_names(out) == []
    assert ef.cli(["--conf", "sift", *args]) == 0  # replaced, not defended
    assert list_names(out) == ["0.png", "1.png"]
