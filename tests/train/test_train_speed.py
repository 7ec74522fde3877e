"""``python -m sekd_plugin.benchmark train-speed`` on tiny sizes (seconds)."""

import pytest
from sekd_plugin.benchmark.__main__ import main


@pytest.mark.integration
def test_train_speed_prints_every_number(capsys, tmp_path):
    import json

    from sekd_plugin.benchmark.core import ENVELOPE_KEYS

    rc = main(["train-speed", "--device", "cpu", "--output", str(tmp_path), "--iters", "1", "--reps", "1", "data.crop_size=32",
               "optim.batch_size=2", "detect.num_refs=2", "reliability.num_refs=2", "reliability.neighbours=target"])
    out = capsys.readouterr().out
    assert rc == 0
    for text in ("descriptor training, fp32", "detector training, bf16 autocast", "step 1 detect labels",
                 "step 3 reliability labels"):
        assert text in out, out
    assert "views/s" in out and "ms per image" in out
    data = json.loads((tmp_path / "results.json").read_text())
    assert set(data) == set(ENVELOPE_KEYS) and set(data["methods"]) == {"training", "labels"} and not data["failed"]
    assert data["methods"]["labels"]["reliability_ms_per_image"] > 0 and "| reliability |" in (tmp_path / "results.md").read_text()


def test_a_failing_part_is_recorded_and_exits_1(tmp_path, monkeypatch):
    import json

    from sekd_plugin.benchmark import train_speed

    def broken(*args, **kwargs):
        raise RuntimeError("forced failure")

    monkeypatch.setattr(train_speed, "_label_ms", broken)
    rc = main(["train-speed", "--device", "cpu", "--skip", "train", "--output", str(tmp_path), "data.crop_size=32"])
    data = json.loads((tmp_path / "results.json").read_text())
    assert rc == 1 and data["failed"] == {"labels": "RuntimeError: forced failure"} and data["methods"] == {}
