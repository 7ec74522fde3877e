"""``python -m sekd_plugin.benchmark train-speed`` on tiny sizes (seconds)."""

from sekd_plugin.benchmark.__main__ import main


def test_train_speed_prints_every_number(capsys):
    rc = main(["train-speed", "--device", "cpu", "--iters", "1", "--reps", "1", "data.crop_size=32",
               "optim.batch_size=2", "detect.num_refs=2", "reliability.num_refs=2", "reliability.neighbours=target"])
    out = capsys.readouterr().out
    assert rc == 0
    for text in ("descriptor training, fp32", "detector training, bf16 autocast", "step 1 detect labels",
                 "step 3 reliability labels"):
        assert text in out, out
    assert "views/s" in out and "ms per image" in out
