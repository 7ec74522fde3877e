"""sekd_plugin.io.images: decoding policy, resizing, listing and the dataset."""

from __future__ import annotations

import cv2
import numpy as np
import PIL.Image
import pytest
import torch

from sekd_plugin.extractors.base import ConfigError
from sekd_plugin.io.images import (
    ImageDataset,
    ImageReadError,
    list_images,
    load_image,
    parse_image_list,
    preprocess,
    read_image,
    resized_size,
)


def _noise(h, w, c=None, seed=0):
    rng = np.random.default_rng(seed)
    shape = (h, w) if c is None else (h, w, c)
    return (rng.random(shape) * 255).astype(np.uint8)


def test_gray_equals_cv2_imread(tmp_path):
    for ext in ("png", "jpg", "bmp", "ppm"):
        path = tmp_path / f"a.{ext}"
        cv2.imwrite(str(path), _noise(30, 40, 3))
        assert np.array_equal(read_image(path, grayscale=True), cv2.imread(str(path), cv2.IMREAD_GRAYSCALE))


def test_color_is_rgb(tmp_path):
    bgr = _noise(20, 30, 3)
    cv2.imwrite(str(tmp_path / "a.png"), bgr)
    rgb = read_image(tmp_path / "a.png", grayscale=False)
    assert rgb.dtype == np.uint8 and rgb.shape == (20, 30, 3)
    assert np.array_equal(rgb, bgr[:, :, ::-1])


def test_grayscale_file_as_rgb(tmp_path):
    gray = _noise(20, 30)
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    rgb = read_image(tmp_path / "g.png", grayscale=False)
    assert rgb.shape == (20, 30, 3)
    assert all(np.array_equal(rgb[..., i], gray) for i in range(3))


def test_rgba_drops_alpha(tmp_path):
    bgr = _noise(20, 30, 3)
    cv2.imwrite(str(tmp_path / "a.png"), np.dstack([bgr, np.full((20, 30), 9, np.uint8)]))
    assert np.array_equal(read_image(tmp_path / "a.png", False), bgr[:, :, ::-1])
    gray = read_image(tmp_path / "a.png", True)
    assert gray.shape == (20, 30)
    assert np.array_equal(gray, cv2.imread(str(tmp_path / "a.png"), cv2.IMREAD_GRAYSCALE))


def test_16bit_png_scaled_to_8bit(tmp_path):
    values = np.array([[0, 257, 65535, 32896]], np.uint16)
    cv2.imwrite(str(tmp_path / "d.png"), values)
    gray = read_image(tmp_path / "d.png", True)
    assert gray.dtype == np.uint8
    assert gray.tolist() == [[0, 1, 255, 128]]
    assert read_image(tmp_path / "d.png", False).shape == (1, 4, 3)


@pytest.mark.parametrize("content", [b"", b"this is not an image", None])
def test_bad_files_raise_naming_the_file(tmp_path, content):
    path = tmp_path / "bad.jpg"
    if content is None:  # truncated JPEG
        cv2.imwrite(str(tmp_path / "ok.jpg"), _noise(200, 200, 3))
        data = (tmp_path / "ok.jpg").read_bytes()
        content = data[: len(data) // 2]
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match="bad.jpg"):
        read_image(path, True)


def test_truncated_png_and_missing_file(tmp_path):
    cv2.imwrite(str(tmp_path / "ok.png"), _noise(100, 100))
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[:-30])
    with pytest.raises(ImageReadError, match="t.png"):
        read_image(tmp_path / "t.png", True)
    with pytest.raises(ImageReadError, match="missing.png"):
        read_image(tmp_path / "missing.png", True)


def test_exif_orientation_is_ignored(tmp_path):
    stored = PIL.Image.fromarray(_noise(20, 40, 3))  # W=40, H=20
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW" when displayed
    stored.save(tmp_path / "r.jpg", exif=exif.tobytes())
    assert PIL.Image.open(tmp_path / "r.jpg").getexif()[0x0112] == 6
    assert read_image(tmp_path / "r.jpg", True).shape == (20, 40)
    data = load_image(tmp_path / "r.jpg", {"grayscale": False})
    assert data["original_size"].tolist() == [40, 20]
    assert data["image"].shape == (3, 20, 40)


def test_preprocess_shapes_and_range(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), _noise(30, 50, 3))
    gray = load_image(tmp_path / "a.png", {"grayscale": True})
    assert gray["image"].dtype == torch.float32 and gray["image"].shape == (1, 30, 50)
    assert 0 <= gray["image"].min() and gray["image"].max() <= 1
    assert gray["original_size"].tolist() == gray["size"].tolist() == [50, 30]
    expected = cv2.imread(str(tmp_path / "a.png"), cv2.IMREAD_GRAYSCALE) / 255.0
    assert np.allclose(gray["image"][0].numpy(), expected, atol=1e-6)


def test_resize_rule_like_hloc():
    assert resized_size((4000, 3000), 1600) == (1600, 1200)
    assert resized_size((1000, 333), 500) == (500, 166)  # round(166.5) = 166 (Python round)
    assert resized_size((800, 600), 1600) == (800, 600)  # not upsampled ...
    assert resized_size((800, 600), 1600, force=True) == (1600, 1200)  # ... unless forced
    assert resized_size((800, 600), None) == (800, 600)


def test_large_image_resized_with_area(tmp_path):
    image = _noise(1200, 2000)
    cv2.imwrite(str(tmp_path / "big.png"), image)
    data = load_image(tmp_path / "big.png", {"grayscale": True, "resize_max": 500})
    assert data["original_size"].tolist() == [2000, 1200]
    assert data["size"].tolist() == [500, 300]
    assert data["image"].shape == (1, 300, 500)
    expected = cv2.resize(image.astype(np.float32), (500, 300), interpolation=cv2.INTER_AREA) / 255
    assert np.allclose(data["image"][0].numpy(), expected, atol=1e-6)


def test_upscaling_uses_linear(tmp_path):
    image = _noise(10, 20)
    data = preprocess(image, {"grayscale": True, "resize_max": 40, "resize_force": True})
    expected = cv2.resize(image.astype(np.float32), (40, 20), interpolation=cv2.INTER_LINEAR) / 255
    assert np.allclose(data["image"][0].numpy(), expected, atol=1e-6)
    pil = preprocess(image, {"grayscale": True, "resize_max": 40, "resize_force": True, "interpolation": "pil_linear"})
    assert pil["image"].shape == (1, 20, 40)


def test_bad_preprocessing_conf():
    with pytest.raises(ConfigError, match="resize_maxx"):
        preprocess(_noise(4, 4), {"resize_maxx": 3})
    with pytest.raises(ConfigError, match="interpolation"):
        preprocess(_noise(8, 8), {"resize_max": 4, "interpolation": "cv2_nope"})


def test_tiny_images_are_not_rejected():
    data = preprocess(_noise(1, 1), {"grayscale": True, "resize_max": 1600})
    assert data["image"].shape == (1, 1, 1)


def test_list_images(tmp_path):
    for rel in ["b.JPG", "a.png", "sub/c.jpeg", "sub/deeper/d.TIF", "x.pgm", "notes.txt", "sub/e.npy"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    assert list_images(tmp_path) == ["a.png", "b.JPG", "sub/c.jpeg", "sub/deeper/d.TIF", "x.pgm"]
    assert list_images(tmp_path, globs=["*.png", "*.jpeg"]) == ["a.png", "sub/c.jpeg"]
    assert list_images(tmp_path / "sub") == ["c.jpeg", "deeper/d.TIF"]


def test_parse_image_list(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("# comment\nq/a.jpg SIMPLE_RADIAL 640 480 500 320 240 0\n\nb.png\nb.png\n")
    assert parse_image_list(path) == ["q/a.jpg", "b.png"]
    assert parse_image_list(["x.jpg", tmp_path.__class__("y/z.png")]) == ["x.jpg", "y/z.png"]


def test_dataset_reports_bad_image_by_name(tmp_path):
    cv2.imwrite(str(tmp_path / "good.png"), _noise(20, 30))
    (tmp_path / "bad.png").write_bytes(b"garbage")
    dataset = ImageDataset(tmp_path, ["bad.png", "good.png", "gone.png"], {"grayscale": True})
    bad, good, gone = dataset[0], dataset[1], dataset[2]
    assert bad["name"] == "bad.png" and "bad.png" in bad["error"] and "image" not in bad
    assert "gone.png" in gone["error"]
    assert good["name"] == "good.png" and good["image"].shape == (1, 20, 30)
    assert good["original_size"].tolist() == [30, 20]
