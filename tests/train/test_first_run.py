"""Points 2-4 (issues 36.5, 33.6): ``--init-weights NAME --resume auto`` resumes the identical
command; bad numbers and interpolations are refused in one line before anything is written; a
run folder with no finished round is replaced; the starting model is scored under a progress bar."""

import json

import pytest

from sekd_plugin.train import labels
from sekd_plugin.train.command import cli

from .conftest import TINY

# one round, no training epochs: the run is a validation-free round (seconds)
QUICK = [*[o for o in TINY if not o.startswith(("schedule.rounds", "data.val_images"))],
         "schedule.rounds=1", "schedule.epochs_descriptor=0", "schedule.epochs_detector=0", "data.val_images=0"]


def _args(images, out, *extra):
    return ["--images", str(images), "--output", str(out), "--no-progress", *QUICK, *extra]


def test_init_weights_name_with_resume_auto_resumes_the_identical_command(image_dir, tmp_path, capsys):
    out = tmp_path / "run"
    # data.crop_size=48 needs 72 px windows on 64 px photos: the run fits it to 40 px, and the
    # repeated command is still the same command
    args = [*_args(image_dir, out, "data.crop_size=48"), "--init-weights", "sekd_evolved", "--resume", "auto"]
    assert cli(args) == 0
    saved = (out / "config.yaml").read_text()
    assert "sekd_evolved" in saved  # the resolved file of the name is what the run records
    assert json.loads((out / "metrics.json").read_text())["crop"]["crop_size"] < 48
    capsys.readouterr()
    assert cli(args) == 0  # the same command again: resumes (the run is complete), no "keys differ"
    assert "differ" not in capsys.readouterr().err
    # another starting model is still a different run
    assert cli([*_args(image_dir, out, "data.crop_size=48"), "--init-weights", "sekd_selftrained", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "init_weights" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("override, key", [
    ("optim.lr=nan", "optim.lr"), ("optim.lr=-1", "optim.lr"), ("val.height=0", "val.height"),
    ("data.crop_size=${oc.env:SEKD_TEST_NOPE}", "data.crop_size"), ("loss.margin=inf", "loss.margin"),
    ("val.deploy_threshold=1.5", "val.deploy_threshold"), ("optim.lr=${nope.key}", "optim.lr"),
    ("val.conf=sift", "val.conf"), ("val.report_confs=[nope]", "val.report_confs"),
])
def test_bad_values_are_one_line_before_anything_is_written(image_dir, tmp_path, capsys, override, key):
    out = tmp_path / "run"
    assert cli(_args(image_dir, out, override)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and key in err and "Traceback" not in err
    assert not out.exists()  # nothing written, not even the folder


def test_a_run_with_no_finished_round_is_replaced_one_with_a_round_is_defended(image_dir, tmp_path, monkeypatch, caplog):
    out = tmp_path / "run"
    real = labels.reliability_keypoints

    def stop(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(labels, "reliability_keypoints", stop)
    assert cli(_args(image_dir, out, "schedule.epochs_detector=1", "optim.lr=0.5")) == 130
    assert (out / "state.pth").exists()
    (out / "notes.txt").write_text("mine")  # not a run file: stays
    monkeypatch.setattr(labels, "reliability_keypoints", real)
    # the corrected command, without --resume: the unfinished run is replaced
    assert cli(_args(image_dir, out, "schedule.epochs_detector=1", "optim.lr=0.001")) == 0
    assert "finished no round: replaced" in caplog.text
    assert "lr: 0.001" in (out / "config.yaml").read_text() and (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / "metrics.json").read_text())["status"] == "complete"
    # a run with a finished round is defended
    assert cli(_args(image_dir, out, "schedule.epochs_detector=1")) == 2


def test_resume_auto_replaces_an_unfinished_run_of_another_command(image_dir, tmp_path, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setattr(labels, "reliability_keypoints", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    assert cli(_args(image_dir, out, "schedule.epochs_detector=1", "optim.lr=0.5", "--resume", "auto")) == 130
    monkeypatch.undo()
    assert cli(_args(image_dir, out, "optim.lr=0.001", "--resume", "auto")) == 0
    assert "lr: 0.001" in (out / "config.yaml").read_text()


def test_scoring_the_starting_model_shows_a_progress_bar(image_dir, tmp_path, capsys):
    over = [o for o in QUICK if not o.startswith("data.val_images")] + ["data.val_images=2", "val.report_confs=[]"]
    assert cli(["--images", str(image_dir), "--output", str(tmp_path / "run"), *over]) == 0
    err = capsys.readouterr().err
    assert "validation of the starting model" in err and "100%" in err
