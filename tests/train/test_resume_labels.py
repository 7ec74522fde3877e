"""Point 1 (issues 36.5, 33.6): a label step keeps its finished images' labels, so an
interruption followed by ``--resume`` continues at the first unfinished image, and the labels
(and the step's statistics) equal those of an uninterrupted run."""

import pytest
import json

import h5py
import numpy as np
import torch

from sekd_plugin.models.sekd import SEKDNet
from sekd_plugin.train import labels
from sekd_plugin.train.command import cli

from .conftest import TINY

# one round whose only label step is step 3 (reliability: real label computation with NMS
# statistics); no validation images (nothing here depends on validation)
ARGS = [*[o for o in TINY if not o.startswith(("schedule.rounds", "data.val_images"))],
        "schedule.rounds=1", "schedule.epochs_descriptor=0", "data.val_images=0"]


def _args(images, out):
    return ["--images", str(images), "--output", str(out), "--no-progress", *ARGS]


def _read(path):
    with h5py.File(path) as f:
        return {g.attrs["name"]: (g["keypoints"][()], g["scores"][()]) for g in f["images"].values()}


@pytest.mark.integration
def test_interrupted_label_step_resumes_at_the_first_unfinished_image(image_dir, tmp_path, monkeypatch, capsys):
    ref = tmp_path / "reference"
    assert cli(_args(image_dir, ref)) == 0

    real = labels.reliability_keypoints
    calls = []

    def interrupting(*a, **k):
        calls.append(1)
        if len(calls) == 4:  # Ctrl-C while the 4th of 8 images is labelled
            raise KeyboardInterrupt
        return real(*a, **k)

    run = tmp_path / "run"
    monkeypatch.setattr(labels, "reliability_keypoints", interrupting)
    assert cli(_args(image_dir, run)) == 130
    err = capsys.readouterr().err
    assert "labels of 3/8 images kept; --resume continues there" in err and "--resume" in err
    parts = list((run / "labels" / "round0_reliability.parts").glob("part-*.h5"))
    assert parts and not (run / "labels" / "round0_reliability.h5").exists()

    calls.clear()
    monkeypatch.setattr(labels, "reliability_keypoints", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    assert cli(["--output", str(run), "--resume", "--no-progress"]) == 0
    assert len(calls) == 5  # only the five unfinished images are labelled again
    assert not (run / "labels" / "round0_reliability.parts").exists()  # parts removed once the step's file is written

    a, b = _read(ref / "labels" / "round0_reliability.h5"), _read(run / "labels" / "round0_reliability.h5")
    assert sorted(a) == sorted(b) and len(a) == 8
    for k in a:
        np.testing.assert_array_equal(a[k][0], b[k][0])
        np.testing.assert_array_equal(a[k][1], b[k][1])
    sa = json.loads((ref / "metrics.json").read_text())["rounds"][0]["steps"]["reliability"]
    sb = json.loads((run / "metrics.json").read_text())["rounds"][0]["steps"]["reliability"]
    drop = ("time_s",)
    assert {k: v for k, v in sa.items() if k not in drop} == {k: v for k, v in sb.items() if k not in drop}
    ma = torch.load(ref / "model.pth", weights_only=True)["state_dict"]
    mb = torch.load(run / "model.pth", weights_only=True)["state_dict"]
    for k in ma:  # the detector step after it trains on the same labels
        assert torch.equal(ma[k], mb[k]), k


def test_parts_of_another_network_or_damaged_parts_are_not_used(tmp_path, caplog):
    net = SEKDNet()
    fp = labels.network_fingerprint(net)
    with torch.no_grad():
        next(net.parameters()).add_(1.0)
    assert labels.network_fingerprint(net) != fp
    folder = tmp_path / "round0_detect.parts"
    keep = labels.PartialLabels(folder, fp, flush_s=3600)
    lab = (np.array([[1, 2], [3, 4]], np.int16), np.array([0.5, 0.25], np.float16))
    keep.add("a.png", lab, (8, 8), np.arange(6, dtype=np.float32))
    assert not folder.exists()  # not yet due
    keep.flush()
    other = labels.PartialLabels(folder, labels.network_fingerprint(net))
    other.add("b.png", lab, (8, 8), None)
    other.flush()
    (folder / "part-0-1-2.h5").write_bytes(b"not hdf5")  # damage from outside
    got, sizes, stats = labels.PartialLabels(folder, fp).load()
    assert list(got) == ["a.png"] and sizes == {"a.png": (8, 8)}
    np.testing.assert_array_equal(got["a.png"][0], lab[0])
    assert stats["a.png"].dtype == np.float32 and stats["a.png"].tolist() == list(range(6))
    assert "another network" in caplog.text and "labelled again" in caplog.text
