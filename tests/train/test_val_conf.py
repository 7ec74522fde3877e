"""Point 5 (issue 36.3): validation and the DEV veto measure the extraction setting users run
(``val.conf``, default ``sekd-best``: multi-scale + sub-pixel), the paper's single scale is
reported beside it."""

import json
from types import SimpleNamespace

import numpy as np
import torch

from sekd_plugin.infra.distributed import Context
from sekd_plugin.extractors.sekd import SEKD
from sekd_plugin.models.sekd import SEKDNet
from sekd_plugin.train import config, evaluation, validate
from sekd_plugin.train.command import cli

from .conftest import TINY, synthetic_image


def test_default_setting_is_the_recommended_one_and_the_paper_setting_is_reported():
    conf = config.load_config()
    assert conf.val.conf == "sekd-best" and list(conf.val.report_confs) == ["sekd"]
    best, paper = validate.setting_of("sekd-best"), validate.setting_of("sekd")
    assert best["multi_scale"] and best["sub_pixel"]
    assert not paper["multi_scale"] and not paper["sub_pixel"] and paper == validate.PAPER_SETTING
    assert list(evaluation.settings(conf)) == ["sekd-best", "sekd"]


def test_validation_extracts_what_the_extractor_extracts_in_that_setting(tmp_path):
    """320 x 400 images: multi-scale adds a 160 x 200 level; keypoints (sub-pixel) and
    descriptors equal the SEKD extractor's with the same weights."""
    torch.manual_seed(0)
    net = SEKDNet().eval()
    weights = tmp_path / "w.pth"
    torch.save({"state_dict": net.state_dict()}, weights)
    img = np.kron(synthetic_image(3, 80), np.ones((4, 5), np.uint8))  # 320 x 400
    x = torch.from_numpy(img).float().div(255.0)[None, None]
    vconf = config.load_config().val
    feats, _, _ = validate.extract(net, x, vconf, (0.0,), validate.setting_of("sekd-best"))
    k, d = feats[0][0]
    ext = SEKD({"weights": str(weights), "confidence_threshold": 0.0, "max_keypoints": 500, "multi_scale": True,
                "sub_pixel": True, "channels_last": False})
    out = ext({"image": x})
    ke, de = out["keypoints"][0].double().numpy(), out["descriptors"][0].T.float()
    assert len(k) == len(ke) == 500
    single, _, _ = validate.extract(net, x, vconf, (0.0,), validate.PAPER_SETTING)
    assert not np.allclose(single[0][0][0], k)  # the setting changes what is measured
    np.testing.assert_allclose(k, ke, atol=1e-4)
    torch.testing.assert_close(d, de, atol=1e-5, rtol=1e-4)


def test_the_dev_veto_uses_the_measured_setting(tmp_path):
    conf = config.load_config(overrides=["val.min_keypoints=0"])
    t = SimpleNamespace(conf=conf, main=True, ctx=Context(), out=tmp_path, net=SEKDNet(), log=lambda m: None,
                        history={"validation": [{"round": -1, "mma@3": 0.5}, {"round": 0, "mma@3": 0.6}], "dev": [], "best": None})
    t.model_file = lambda model, yaml: {"state_dict": model}
    # measured setting worse than the start, the paper setting better: vetoed
    t.history["dev"] = [{"round": -1, "mma@3": 0.70, "homography_accuracy@3": 0.8, "settings": {"sekd": {"mma@3": 0.60}}},
                        {"round": 0, "mma@3": 0.69, "homography_accuracy@3": 0.8, "settings": {"sekd": {"mma@3": 0.65}}}]
    evaluation.select_best(t, -1)
    evaluation.select_best(t, 0)
    assert t.history["best"]["round"] == -1 and "DEV MMA@3 0.690" in t.history["validation"][1]["not_eligible"]


def test_a_run_reports_both_settings(image_dir, tmp_path):
    out = tmp_path / "run"
    over = [o for o in TINY if not o.startswith("schedule.rounds")] + [
        "schedule.rounds=1", "schedule.epochs_descriptor=0", "schedule.epochs_detector=0"]
    assert cli(["--images", str(image_dir), "--output", str(out), "--no-progress", *over]) == 0
    m = json.loads((out / "metrics.json").read_text())
    for row in m["validation"]:
        assert row["conf"] == "sekd-best" and set(row["settings"]) == {"sekd"}
        assert 0.0 <= row["settings"]["sekd"]["mma@3"] <= 1.0
    report = (out / "report.md").read_text()
    assert "Extraction setting: `sekd-best`" in report and "Setting `sekd` (reported, not used for selection)" in report


def test_a_run_saved_before_val_conf_keeps_measuring_the_paper_setting():
    text = config.to_yaml(config.load_config())
    old = "\n".join(line for line in text.splitlines() if not line.strip().startswith(("conf:", "report_confs:", "- sekd")))
    conf = config.from_yaml(old)
    assert conf.val.conf == "sekd" and list(conf.val.report_confs) == []
    assert config.from_yaml(text).val.conf == "sekd-best"
