from pathlib import Path

import pytest

from sekd_plugin.train import config
from sekd_plugin.train.loop import cli as main

ROOT = Path(__file__).resolve().parents[2]


def test_paper_yaml_is_the_default_schedule():
    paper = config.load_config(ROOT / "benchmark_configs/train/paper.yaml")
    assert config.diff(paper, config.load_config()) == []
    assert paper.schedule.rounds == 5 and paper.detect.num_refs == 12 and paper.data.crop_size == 512
    assert paper.optim.lr == 1e-4 and paper.detect.budget_area == 85 and paper.reliability.desc_mode == "native"
    assert paper.pair_warp.degrees == 40 and paper.pair_warp.form == "release" and paper.pair_warp.warped_views == 1


def test_cpu_small_loads_and_overrides_apply():
    conf = config.load_config(ROOT / "benchmark_configs/train/cpu-small.yaml", ["schedule.rounds=3", "optim.lr=0.01"])
    assert conf.schedule.rounds == 3 and conf.optim.lr == 0.01 and conf.data.crop_size == 160


def test_unknown_key_lists_valid_keys(tmp_path):
    with pytest.raises(config.TrainConfigError, match="valid keys: .*optim.lr"):
        config.load_config(overrides=["optim.learning_rate=1"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("schedule:\n  roundz: 3\n")
    with pytest.raises(config.TrainConfigError, match="roundz"):
        config.load_config(bad)


def test_bad_values_are_refused():
    with pytest.raises(config.TrainConfigError):
        config.load_config(overrides=["schedule.rounds=many"])
    with pytest.raises(config.TrainConfigError, match="crop_size"):
        config.load_config(overrides=["data.crop_size=30"])
    with pytest.raises(config.TrainConfigError, match="key=value"):
        config.load_config(overrides=["schedule.rounds"])


def test_cli_unknown_key_exit_2(tmp_path, image_dir, capsys):
    rc = main(["--images", str(image_dir), "--output", str(tmp_path / "run"), "nope.key=1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error: unknown config key") and "valid keys" in err
    assert len(err.splitlines()) == 1
