"""SEKD through hloc's own pipeline (hloc is optional: skipped with the reason when absent)."""

from __future__ import annotations

import inspect
import sys
from copy import deepcopy

import numpy as np
import pytest

from ..conftest import shared_file

import sekd_plugin.integrations.hloc


def test_register_without_hloc(monkeypatch):
    """Without an importable hloc, register() is a logged no-op returning False."""
    for name in [n for n in sys.modules if n == "hloc" or n.startswith("hloc.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "hloc", None)  # makes "import hloc" raise ImportError
    assert sekd_plugin.integrations.hloc.register() is False


@pytest.fixture(scope="module")
def registered():
    pytest.importorskip("hloc", reason="hloc is not installed (optional; install it from its git repository)")
    assert sekd_plugin.integrations.hloc.register() is True
    return True


def test_register_adds_confs_and_module(registered):
    from hloc import extract_features, extractors
    from hloc.utils.base_model import BaseModel, dynamic_load

    assert {"sekd", "sekd-ms"} <= set(extract_features.confs)
    assert extract_features.confs["sekd"]["model"]["name"] == "sekd"
    assert "hloc.extractors.sekd" in sys.modules
    Model = dynamic_load(extractors, "sekd")
    assert inspect.isclass(Model) and issubclass(Model, BaseModel)
    assert sekd_plugin.integrations.hloc.register() is True  # idempotent
    assert dynamic_load(extractors, "sekd") is Model
    assert sekd_plugin.integrations.hloc.is_registered()


def test_hloc_model_contract(registered, sekd_weights):
    import torch
    from hloc import extractors
    from hloc.utils.base_model import dynamic_load

    Model = dynamic_load(extractors, "sekd")
    model = Model({"name": "sekd", "weights": str(sekd_weights), "max_keypoints": 100}).eval()
    image = torch.rand(1, 1, 96, 128)
    pred = model({"image": image})
    n = pred["keypoints"].shape[1]
    assert pred["keypoints"].shape == (1, n, 2) and pred["scores"].shape == (1, n)
    assert pred["descriptors"].shape[0] == 1 and pred["descriptors"].shape[2] == n
    if n:
        assert torch.allclose(pred["descriptors"].norm(dim=1), torch.ones(1, n), atol=1e-4)


@pytest.mark.integration
def test_hloc_pipeline_end_to_end(registered, sekd_weights, tmp_path, monkeypatch):
    """hloc's extract_features -> pairs_from_exhaustive -> match_features -> reconstruction, unchanged."""
    from hloc import extract_features, match_features, pairs_from_exhaustive, reconstruction
    from hloc.utils.io import get_keypoints

    images = shared_file("scenes/fountain-P11/images")
    monkeypatch.setenv("SEKD_PLUGIN_WEIGHTS_DIR", str(sekd_weights.parent))
    names = ["0003.jpg", "0004.jpg", "0005.jpg", "0006.jpg"]
    conf = deepcopy(extract_features.confs["sekd"])
    conf["preprocessing"]["resize_max"] = 640
    conf["model"]["max_keypoints"] = 1000
    conf["model"]["confidence_threshold"] = 0.3
    features = extract_features.main(conf, images, tmp_path, image_list=names, as_half=False)
    assert features.exists()
    kp = get_keypoints(features, names[0])
    assert len(kp) > 100 and kp[:, 0].max() > 700  # rescaled to the original 1536 x 1024

    pairs = tmp_path / "pairs.txt"
    pairs_from_exhaustive.main(pairs, image_list=names)
    matches = match_features.main(match_features.confs["NN-mutual"], pairs, conf["output"], tmp_path)
    assert matches.exists()

    rec = reconstruction.main(tmp_path / "sfm", images, pairs, features, matches, image_list=names,
                              camera_mode=__import__("pycolmap").CameraMode.SINGLE)
    assert rec is not None
    assert rec.num_reg_images() >= 3
    assert rec.num_points3D() > 50
    assert np.isfinite(rec.compute_mean_reprojection_error())


@pytest.mark.slow
def test_hloc_pipeline_sacre_coeur(registered, sekd_weights, tmp_path, monkeypatch):
    """hloc's demo scene (10 Internet photos, one camera each) with SEKD: ~40 s on 2 CPU cores."""
    import pycolmap
    from hloc import extract_features, match_features, pairs_from_exhaustive, reconstruction

    images = shared_file("scenes/sacre_coeur/images")
    monkeypatch.setenv("SEKD_PLUGIN_WEIGHTS_DIR", str(sekd_weights.parent))
    names = sorted(p.name for p in images.iterdir())
    conf = deepcopy(extract_features.confs["sekd"])
    conf["preprocessing"]["resize_max"] = 800
    conf["model"].update(max_keypoints=2000, confidence_threshold=0.3)
    features = extract_features.main(conf, images, tmp_path, image_list=names, as_half=False)
    pairs = tmp_path / "pairs.txt"
    pairs_from_exhaustive.main(pairs, image_list=names)
    matches = match_features.main(match_features.confs["NN-mutual"], pairs, conf["output"], tmp_path)
    rec = reconstruction.main(tmp_path / "sfm", images, pairs, features, matches, image_list=names,
                              camera_mode=pycolmap.CameraMode.AUTO)
    assert rec is not None
    assert rec.num_reg_images() >= 8
    assert rec.num_points3D() > 300
