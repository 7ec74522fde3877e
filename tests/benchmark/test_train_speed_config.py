"""``benchmark train-speed`` carries its default config inside the package (an installed
package has no ``benchmark_configs/``): it must stay the repository's ``gpu-short.yaml``."""

from pathlib import Path

from omegaconf import OmegaConf

from sekd_plugin.benchmark import train_speed
from sekd_plugin.train import config

YAML = Path(__file__).resolve().parents[2] / "benchmark_configs" / "train" / train_speed.DEFAULT_CONFIG_NAME


def test_the_embedded_default_is_the_shipped_yaml():
    from_file = config.load_config(YAML)
    embedded = config.load_config(base=OmegaConf.merge(OmegaConf.structured(config.TrainConfig),
                                                       train_speed.DEFAULT_CONFIG))
    assert config.diff(from_file, embedded) == []
    # and the embedded one is not the trainer's defaults (the comparison can fail)
    assert config.diff(config.load_config(), embedded)


def test_no_path_outside_the_package():
    text = Path(train_speed.__file__).read_text()
    assert "parents[" not in text and "benchmark_configs\" /" not in text
