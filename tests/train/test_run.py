"""End-to-end runs of ``python -m sekd_plugin.train`` (in process) on tiny synthetic images."""

import json

import h5py
import pytest
import torch

from sekd_plugin.extractors.sekd import SEKD
from sekd_plugin.train import labels, state, steps
from sekd_plugin.train.command import cli as main
from sekd_plugin.training import cli as top_level_cli
from tests.helpers import lock_is_free

from .conftest import TINY


def _args(image_dir, out, *extra):
    return ["--images", str(image_dir), "--output", str(out), "--no-progress", *TINY, *extra]


@pytest.fixture(scope="module")
def tiny_run(image_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    assert main(_args(image_dir, out)) == 0
    return out


@pytest.mark.integration
def test_end_to_end_outputs(tiny_run):
    for name in ("model.pth", "best.pth", "state.pth", "config.yaml", "report.md", "metrics.json", "losses.png",
                 "keypoints.png", "validation.png"):
        assert (tiny_run / name).is_file(), name
    assert lock_is_free(tiny_run)  # released at exit
    for r in range(2):
        for kind in ("detect", "reliability"):
            path = tiny_run / "labels" / f"round{r}_{kind}.h5"
            with h5py.File(path) as f:
                assert f.attrs["num_images"] == 6  # 8 images (+1 unreadable), 2 held out
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["status"] == "complete"
    assert metrics["data"] == {**metrics["data"], "train_images": 6, "val_images": 2, "skipped_unreadable": 1}
    assert [v["after"] for v in metrics["validation"]] == ["init", "round 0", "round 1"]
    assert all(0.0 <= v["mma@3"] <= 1.0 for v in metrics["validation"])
    last = metrics["validation"][-1]["groups"]
    assert set(last) == {"mild", "rotation", "zoom", "photometric"}
    assert set(last["zoom"]) == {"deploy", "top500"} and last["zoom"]["top500"]["pairs"] == 2
    assert metrics["best"]["round"] in (-1, 0, 1)  # -1: the starting (random) model stayed best
    st = metrics["rounds"][1]["steps"]["reliability"]
    assert st["nms_maxima_per_image"] >= st["keypoints_per_image"] and "nms_maxima_median" in st
    rnd = metrics["rounds"][1]["steps"]
    assert rnd["detect"]["mode"] == "detect" and rnd["reliability"]["keypoints_per_image"] >= 0
    assert len(rnd["descriptor"]["epochs"]) == 1 and "triplet" in rnd["descriptor"]["epochs"][0]
    assert "focal" in rnd["detector"]["epochs"][0]
    assert metrics["rounds"][0]["steps"]["detect"]["mode"] == "random"
    report = (tiny_run / "report.md").read_text()
    assert "MMA@3" in report and "Round 1" in report


def test_model_loads_in_the_extractor(tiny_run):
    state = torch.load(tiny_run / "model.pth", weights_only=True)
    assert state["round"] == 2 and state["step"] == "detect"
    torch.load(tiny_run / "state.pth", weights_only=True)  # everything is plain data
    extractor = SEKD({"weights": str(tiny_run / "model.pth"), "max_keypoints": 50, "confidence_threshold": 0.0})
    out = extractor({"image": torch.rand(1, 1, 64, 64)})
    assert out["keypoints"].shape[-1] == 2 and out["descriptors"].shape[1] == 128


@pytest.mark.integration
def test_resume_after_interrupt_continues_without_redoing(image_dir, tmp_path, monkeypatch, capsys):
    extra = ["schedule.epochs_descriptor=2"]
    ref = tmp_path / "reference"
    assert main(_args(image_dir, ref, *extra)) == 0

    real_epoch, real_labels = steps.train_epoch, labels.compute_labels
    calls = {"epochs": 0, "labels": []}

    def interrupting_epoch(*a, **k):
        calls["epochs"] += 1
        if calls["epochs"] == 2:  # second epoch of round 0's descriptor step
            raise KeyboardInterrupt
        return real_epoch(*a, **k)

    run = tmp_path / "run"
    monkeypatch.setattr(steps, "train_epoch", interrupting_epoch)
    assert main(_args(image_dir, run, *extra)) == 130
    err = capsys.readouterr().err
    assert "--resume" in err
    state = torch.load(run / "state.pth", weights_only=True)
    assert state["progress"] == {"round": 0, "step": "descriptor", "epoch": 1}
    assert "interrupted" in json.loads((run / "metrics.json").read_text())["status"]
    # (a new run into a folder whose run finished no round replaces it: tests/train/test_first_run.py)

    def counting_epoch(*a, **k):
        calls["epochs"] += 1
        return real_epoch(*a, **k)

    def counting_labels(kind, *a, **k):
        calls["labels"].append((kind, a[5] if len(a) > 5 else k.get("round_idx")))
        return real_labels(kind, *a, **k)

    calls["epochs"] = 0
    monkeypatch.setattr(steps, "train_epoch", counting_epoch)
    monkeypatch.setattr(labels, "compute_labels", counting_labels)
    assert main(["--output", str(run), "--resume", "--no-progress"]) == 0
    # round 0: 1 descriptor epoch left + 1 detector epoch; round 1: 2 + 1
    assert calls["epochs"] == 5
    assert calls["labels"] == [("reliability", 0), ("detect", 1), ("reliability", 1)]
    # same schedule, same result as the uninterrupted run
    a = torch.load(ref / "model.pth", weights_only=True)["state_dict"]
    b = torch.load(run / "model.pth", weights_only=True)["state_dict"]
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-5), k
    ma = json.loads((ref / "metrics.json").read_text())
    mb = json.loads((run / "metrics.json").read_text())
    assert [len(r["steps"]["descriptor"]["epochs"]) for r in mb["rounds"]] == [2, 2]
    assert ma["validation"][-1]["mma@3"] == pytest.approx(mb["validation"][-1]["mma@3"], abs=1e-6)


def test_resume_refuses_schedule_changes(tiny_run, capsys):
    assert main(["--output", str(tiny_run), "--resume", "schedule.rounds=7"]) == 2
    assert "schedule.rounds" in capsys.readouterr().err


def test_empty_folder_is_a_one_line_error(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["--images", str(empty), "--output", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no images") and len(err.splitlines()) == 1
    assert main(["--images", str(tmp_path / "missing"), "--output", str(tmp_path / "run")]) == 2
    assert "not found" in capsys.readouterr().err


def test_only_unreadable_images_is_an_error(tmp_path, capsys):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "x.jpg").write_bytes(b"garbage")
    assert main(["--images", str(d), "--output", str(tmp_path / "run"), "--no-progress"]) == 2
    assert "no readable training image" in capsys.readouterr().err


@pytest.mark.integration
def test_a_step_without_epochs_computes_no_labels(image_dir, tmp_path):
    """A descriptor-only schedule (``schedule.epochs_detector=0``) skips step 3's labels and step 4."""
    out = tmp_path / "descriptor-only"
    assert main(_args(image_dir, out, "schedule.rounds=1", "schedule.epochs_detector=0")) == 0
    assert (out / "labels" / "round0_detect.h5").is_file() and not (out / "labels" / "round0_reliability.h5").exists()
    m = json.loads((out / "metrics.json").read_text())
    steps_ = m["rounds"][0]["steps"]
    assert m["status"] == "complete" and steps_["reliability"]["skipped"] and steps_["detector"]["skipped"]
    assert len(steps_["descriptor"]["epochs"]) == 1 and [v["round"] for v in m["validation"]] == [-1, 0]
    assert 0.0 < m["validation"][-1]["peak_height"] < 1.0  # median score of the top-500 keypoints
    assert "| 3. keypoints from reliability | skipped |" in (out / "report.md").read_text()


def test_steps_in_order():
    assert state.STEPS == ("detect", "descriptor", "reliability", "detector", "validate")


@pytest.mark.integration
def test_dev_benchmark_per_round_and_official_line(image_dir, tmp_path):
    from ..conftest import shared_file

    hp = shared_file("data/hpatches")
    weights = shared_file("weights/sekd.pth")
    out = tmp_path / "dev"
    extra = ["schedule.rounds=1", f"val.dev_datasets=[{hp}]", f"val.official_weights={weights}"]
    assert top_level_cli(_args(image_dir, out, *extra)) == 0  # the command that passes the DEV benchmark
    m = json.loads((out / "metrics.json").read_text())
    assert m["dev"][0]["conf"] == "sekd-best" and m["dev"][0]["settings"]["sekd"]["pairs"] == 5
    assert m["official"]["dev"]["pairs"] == 5 and 0 < m["official"]["dev"]["mma@3"] <= 1
    assert [d["round"] for d in m["dev"]] == [0] and m["dev"][0]["pairs"] == 5
    assert (out / "dev.png").is_file()
    report = (out / "report.md").read_text()
    assert "official sekd.pth" in report and "Real DEV sequences" in report
