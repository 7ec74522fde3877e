from pathlib import Path

import pytest

from sekd_plugin.train import config
from sekd_plugin.train.command import cli as main

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


def test_release_yaml_is_the_release_schedule():
    conf = config.load_config(ROOT / "benchmark_configs/train/release.yaml")
    assert conf.schedule.rounds == 5 and conf.schedule.epochs_descriptor == conf.schedule.epochs_detector == 10
    assert conf.detect.num_refs == conf.reliability.num_refs == 12 and conf.optim.lr == 1e-4 and conf.optim.batch_size == 2
    assert conf.pair_warp.degrees == 40 and conf.reliability.desc_mode == "native" and conf.schedule.first_round == "skip"


@pytest.mark.integration
def test_release_yaml_runs_tiny_on_cpu(tmp_path, image_dir):
    from .conftest import TINY

    tiny = [o for o in TINY if not o.startswith(("schedule.rounds", "data.crop_size"))]
    rc = main(["--images", str(image_dir), "--output", str(tmp_path / "rel"), "--no-progress",
               "--config", str(ROOT / "benchmark_configs/train/release.yaml"), *tiny,
               "schedule.rounds=1", "data.crop_size=32", "data.num_workers=0", "val.dev_datasets=[]",
               "val.official_weights=null", "optim.amp=none"])
    assert rc == 0
