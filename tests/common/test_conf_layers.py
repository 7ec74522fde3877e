"""The one loader of options (issue 34.4): layers, error lines, per-method overrides, and that no
other module parses a YAML config or a dotlist itself."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from sekd_plugin.common import ConfigError
from sekd_plugin.common import conf_layers as L
from sekd_plugin.extractors.base import override_conf as extractor_override
from sekd_plugin.extractors.confs import get_conf
from sekd_plugin.matchers.base import override_conf as matcher_override
from sekd_plugin.matchers.confs import get_conf as get_matcher_conf
from sekd_plugin.train.config import TrainConfigError, load_config as train_config

PACKAGE = Path(L.__file__).resolve().parents[1]


def test_parse_dotlist_types_values_and_nests_keys():
    assert L.parse_dotlist(["model.max_keypoints=2000", "sekd-best.model.multi_scale=true", "a.b=[1, 2]"]) == {
        "model": {"max_keypoints": 2000}, "sekd-best": {"model": {"multi_scale": True}}, "a": {"b": [1, 2]}}


@pytest.mark.parametrize("items, expected", [
    (["model.max_keypoints"], "each must be key=value"),
    (["=3"], "each must be key=value"),
    (["model.x=${oc.env:PATH}"], "calls a resolver"),
    (["model.x=${nope}"], "cannot resolve its interpolation"),
    (["a=" + "{b: " * 100 + "1" + "}" * 100], "nested"),
    (["a=" + "{b: " * 40 + "1" + "}" * 40], "nested more than 32 levels"),
])
def test_bad_overrides_are_one_line(items, expected):
    with pytest.raises(ConfigError, match=expected) as error:
        L.parse_dotlist(items, "the overrides")
    assert "\n" not in str(error.value) and "the overrides" in str(error.value)


def test_split_by_label_every_method_then_its_own():
    parsed = L.parse_dotlist(["model.max_keypoints=1000", "sift.model.max_keypoints=50", "sift.model.nms_radius=2"])
    out = L.split_by_label(parsed, ["sekd", "sift"])
    assert out["sekd"] == {"model": {"max_keypoints": 1000}}
    assert out["sift"] == {"model": {"max_keypoints": 50, "nms_radius": 2}}


def test_extractor_and_matcher_overrides_check_every_key():
    conf = extractor_override(get_conf("sift"), {"model": {"max_keypoints": 7},
                                                 "preprocessing": {"resize_max": 320}}, "the overrides")
    assert conf["model"]["max_keypoints"] == 7 and conf["preprocessing"]["resize_max"] == 320
    assert "max_keypoints" not in get_conf("sift")["model"]  # the named conf is not changed
    with pytest.raises(ConfigError, match=r"unknown sift option key\(s\) \['bogus'\] in the overrides; valid keys"):
        extractor_override(get_conf("sift"), {"model": {"bogus": 1}}, "the overrides")
    with pytest.raises(ConfigError, match=r"unknown override key\(s\) \['modle'\]"):
        extractor_override(get_conf("sift"), {"modle": {"max_keypoints": 1}}, "the overrides")
    with pytest.raises(ConfigError, match="cannot change model.name"):
        extractor_override(get_conf("sift"), {"model": {"name": "sekd"}}, "the overrides")
    m = matcher_override(get_matcher_conf("NN-mutual"), {"model": {"ratio_threshold": 0.8}}, "the overrides")
    assert m["model"]["ratio_threshold"] == 0.8 and m["model"]["do_mutual_check"] is True
    with pytest.raises(ConfigError, match="unknown nearest_neighbor option key"):
        matcher_override(get_matcher_conf("NN-mutual"), {"model": {"ratio": 0.8}}, "the overrides")


def test_the_trainer_reads_its_files_through_the_loader(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  lr: [1\n")
    with pytest.raises(TrainConfigError, match=r"bad.yaml: YAML syntax error at line \d+, column \d+"):
        train_config(bad)
    good = tmp_path / "good.yaml"
    good.write_text("optim:\n  lr: 0.5\n")
    assert train_config(good, ["optim.batch_size=3"]).optim.lr == 0.5


def _calls(tree: ast.AST) -> set[str]:
    return {f"{n.func.value.id}.{n.func.attr}" for n in ast.walk(tree) if isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute) and isinstance(n.func.value, ast.Name)}


def test_no_other_module_parses_a_config_layer():
    """One way to set options: OmegaConf files and dotlists are read only by common/conf_layers.py."""
    readers = {"OmegaConf.load", "OmegaConf.from_dotlist", "OmegaConf.from_cli", "yaml.safe_load", "yaml.load"}
    found = sorted(f"{p.relative_to(PACKAGE.parent)}: {c}" for p in PACKAGE.rglob("*.py") if p.name != "conf_layers.py"
                   for c in _calls(ast.parse(p.read_text())) & readers)
    assert found == []
    assert _calls(ast.parse("OmegaConf.load(p)")) & readers  # the check sees a call
