import json

import cv2
import numpy as np
import pytest

from sekd_plugin.benchmark.homography.run import run
from sekd_plugin.benchmark.homography.protocols import pixel_scale_matrix, prepare
from sekd_plugin.datasets.hpatches import DatasetError, load_dataset


def _texture(w=200, h=150, seed=0):
    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.integers(0, 255, (h // 6, w // 6), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    for _ in range(25):
        x, y, r = rng.integers(10, w - 10), rng.integers(10, h - 10), int(rng.integers(3, 9))
        cv2.circle(img, (int(x), int(y)), r, int(rng.integers(0, 255)), -1)
    return img


def _write_hpatches_seq(root, name, warp=True):
    d = root / name
    d.mkdir(parents=True)
    img = _texture()
    cv2.imwrite(str(d / "1.ppm"), cv2.cvtColor(img, cv2.COLOR_GRAY2BGR))
    for k in range(2, 7):
        H = np.array([[1, 0.02 * k, 3.0 * k], [0, 1, 2.0 * k], [0, 0, 1]]) if warp else np.eye(3)
        out = cv2.warpPerspective(img, H, (img.shape[1], img.shape[0])) if warp else np.clip(img * (1 - 0.05 * k), 0, 255).astype(np.uint8)
        cv2.imwrite(str(d / f"{k}.ppm"), cv2.cvtColor(out, cv2.COLOR_GRAY2BGR))
        np.savetxt(d / f"H_1_{k}", H)


def _write_oxford_wall(root):
    """Oxford layout with image 1 of a different size than images 2-6 (like `wall`)."""
    d = root / "wall"
    d.mkdir(parents=True)
    img = _texture(220, 160)
    cv2.imwrite(str(d / "img1.pgm"), img)
    small = img[:150, :200]
    for k in range(2, 7):
        cv2.imwrite(str(d / f"img{k}.png"), small)
        np.savetxt(d / f"H1to{k}p", np.eye(3))


@pytest.fixture()
def dataset(tmp_path):
    root = tmp_path / "hp"
    _write_hpatches_seq(root, "v_toy", warp=True)
    _write_hpatches_seq(root, "i_toy", warp=False)
    _write_oxford_wall(root)
    return root


def test_layouts_and_types(dataset):
    seqs = {s.name: s for s in load_dataset(dataset)}
    assert {n: s.kind for n, s in seqs.items()} == {"v_toy": "v", "i_toy": "i", "wall": "v"}
    assert seqs["wall"].images[0].suffix == ".pgm"
    assert {s.name: s.kind for s in load_dataset(dataset, {"wall": "i"})}["wall"] == "i"
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(dataset.parent / "missing")
    (dataset.parent / "empty").mkdir()
    with pytest.raises(DatasetError, match="no sequences"):
        load_dataset(dataset.parent / "empty")


def test_sekd_protocol_rescales_homographies_exactly(tmp_path):
    d = tmp_path / "hp" / "v_big"
    d.mkdir(parents=True)
    img = cv2.cvtColor(_texture(1000, 750), cv2.COLOR_GRAY2BGR)
    H = np.array([[1.1, 0.05, 12.0], [-0.02, 0.95, 7.0], [1e-5, 2e-5, 1.0]])
    for k in range(1, 7):
        cv2.imwrite(str(d / f"{k}.ppm"), img)
        if k > 1:
            np.savetxt(d / f"H_1_{k}", H)
    seq = load_dataset(d.parent)[0]
    prep = prepare([seq], "sekd", tmp_path / "img")[0]
    assert prep.sizes[0] == (640, 480)  # 1000x750 -> 640x480, already multiples of 16
    A = pixel_scale_matrix(640 / 1000, 480 / 750)
    pt = np.array([37.0, 81.0, 1.0])
    expected = A @ H @ pt
    got = prep.homographies[0] @ A @ pt
    assert np.allclose(expected[:2] / expected[2], got[:2] / got[2])


def test_small_images_are_not_upscaled_only_cropped(dataset, tmp_path):
    seqs = [s for s in load_dataset(dataset) if s.name == "v_toy"]
    prep = prepare(seqs, "sekd", tmp_path / "img")[0]
    assert prep.sizes[0] == (192, 144)  # 200x150 cropped to multiples of 16
    assert np.allclose(prep.homographies[0], seqs[0].homographies[0])


@pytest.mark.integration
def test_benchmark_end_to_end_and_resume(dataset, tmp_path):
    out = tmp_path / "out"
    res = run([dataset], out, ["sift", "orb"], "sekd", plot_matches=True)
    for f in ("results.json", "results.md", "curves.png"):
        assert (out / f).is_file()
    data = json.loads((out / "results.json").read_text())
    assert data["protocol"] == "sekd" and set(data["methods"]) == {"sift", "orb"}
    sift = data["methods"]["sift"]
    assert sift["all"]["num_pairs"] == 15 and sift["i"]["num_pairs"] == 5
    assert sift["all"]["mma"]["3"] > 0.5 and sift["ms_per_image"] > 0
    assert len([r for r in data["rows"] if r["method"] == "sift"]) == 15 and "wall" in "".join(sift["per_sequence"])
    assert set(data) == {"protocol", "settings", "environment", "methods", "rows", "skipped", "failed"}
    md = (out / "results.md").read_text()
    assert "| method | MMA@1 | MMA@3 | MMA@5 | MMA@10 | H@1 | H@3 | H@5 | AUC@1 | AUC@3 | AUC@5 | rep@3 | #kp | #matches | ms/img |" in md
    assert any(line.startswith("| sift |") for line in md.splitlines())
    assert list((out / "matches" / "sift").glob("*.png"))
    # a second run reuses the cached features (file untouched) and gives the same numbers
    h5 = out / "features" / "sekd" / "sift.h5"
    mtime = h5.stat().st_mtime_ns
    res2 = run([dataset], out, ["sift"], "sekd")
    assert h5.stat().st_mtime_ns == mtime
    assert res2["methods"]["sift"]["all"]["mma"] == res["methods"]["sift"]["all"]["mma"]


def test_missing_weights_are_reported_as_skipped(dataset, tmp_path, monkeypatch):
    monkeypatch.delenv("SEKD_PLUGIN_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("SEKD_PLUGIN_CACHE", str(tmp_path / "empty-cache"))
    res = run([dataset], tmp_path / "out", ["d2net", "orb"], "d2net")
    assert "d2net" in res["skipped"] and "weights not found" in res["skipped"]["d2net"]
    assert "third_party/d2_tf.toml" in res["skipped"]["d2net"]
    assert "orb" in res["methods"]


@pytest.mark.integration
def test_labelled_methods_and_weights_invalidate_the_cache(dataset, tmp_path, sekd_weights):
    out = tmp_path / "out"
    res = run([dataset], out, ["official=sekd"], "sekd", weights={"official": sekd_weights})
    assert res["methods"]["official"]["weights"] == str(sekd_weights)
    assert res["methods"]["official"]["conf"]["model"]["confidence_threshold"] == 0.4  # protocol override
    h5 = out / "features" / "sekd" / "official.h5"
    mtime = h5.stat().st_mtime_ns
    run([dataset], out, ["official=sekd-ms"], "sekd", weights={"official": sekd_weights})
    assert h5.stat().st_mtime_ns != mtime  # another conf under the same label: re-extracted


@pytest.mark.integration
def test_failed_image_leaves_its_pairs_out_and_the_report_is_written(dataset, tmp_path):
    tiny = dataset / "i_toy" / "4.ppm"
    cv2.imwrite(str(tiny), np.full((6, 6, 3), 128, np.uint8))  # SEKD rejects < 8 px
    res = run([dataset], tmp_path / "out", ["sekd-selftrained"], "d2net")
    r = res["methods"]["sekd-selftrained"]
    assert r["failed_images"] == ["hp/i_toy/4.ppm"]
    assert r["all"]["num_pairs"] == 14 and (tmp_path / "out" / "results.md").is_file()


def test_too_small_for_protocol_is_a_clear_error(dataset, tmp_path):
    from sekd_plugin.datasets.hpatches import DatasetError

    cv2.imwrite(str(dataset / "i_toy" / "4.ppm"), np.full((10, 10, 3), 128, np.uint8))
    with pytest.raises(DatasetError, match="4.ppm.*too small"):
        prepare(load_dataset(dataset), "sekd", tmp_path / "img")


@pytest.mark.integration
def test_replaced_checkpoint_file_invalidates_the_cache(dataset, tmp_path, sekd_weights):
    import shutil

    from sekd_plugin.infra.assets import resolve

    ckpt = tmp_path / "model.pth"
    shutil.copy(sekd_weights, ckpt)
    out = tmp_path / "out"
    first = run([dataset], out, ["mine=sekd"], "sekd", weights={"mine": ckpt})
    shutil.copy(resolve("sekd_selftrained"), ckpt)  # retrained in place
    second = run([dataset], out, ["mine=sekd"], "sekd", weights={"mine": ckpt})
    assert first["methods"]["mine"]["all"]["mma"] != second["methods"]["mine"]["all"]["mma"]


def test_a_failing_method_is_recorded_and_the_others_go_on(dataset, tmp_path, monkeypatch, capsys):
    """One method that crashes: ``failed`` names it, the other method's numbers are there, exit 1."""
    from sekd_plugin.benchmark import __main__ as cli
    from sekd_plugin.benchmark.homography import run as R

    real = R.extract_method

    def extract(method, *args, **kwargs):
        if method == "broken":
            raise RuntimeError("forced failure")
        return real(method, *args, **kwargs)

    monkeypatch.setattr(R, "extract_method", extract)
    out = tmp_path / "out"
    assert cli.main(["hpatches", "--dataset", str(dataset), "--methods", "broken=orb,orb", "--output", str(out)]) == 1
    data = json.loads((out / "results.json").read_text())
    assert data["failed"] == {"broken": "RuntimeError: forced failure"} and set(data["methods"]) == {"orb"}
    assert "- broken: RuntimeError: forced failure" in (out / "results.md").read_text()
