"""Issue #24 (item 14): negative, zero or non-finite numeric options and empty method lists are
refused at parse time (one ``error:`` line naming the option and the value, exit 2, no
traceback, nothing written)."""

from __future__ import annotations

import argparse

import pytest

from sekd_plugin import extract_features as ef
from sekd_plugin.benchmark import __main__ as bench
from sekd_plugin.common.cli import comma_list, finite_positive_float, non_negative_int, positive_int


def _exit_code(call) -> int:
    try:
        return call()
    except SystemExit as stop:
        return stop.code


def _usage_error(capsys, option, value):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and option in lines[0] and value in lines[0], err


@pytest.mark.parametrize("argv, option, value", [
    (["speed", "--threads", "-1"], "--threads", "-1"),
    (["speed", "--runs", "0"], "--runs", "0"),
    (["speed", "--methods", ""], "--methods", "''"),
    (["train-speed", "--threads", "-1"], "--threads", "-1"),
    (["train-speed", "--iters", "-1"], "--iters", "-1"),
    (["train-speed", "--iters", "0"], "--iters", "0"),
    (["train-speed", "--reps", "0"], "--reps", "0"),
    (["pose", "--config", "x.yaml", "--threshold", "inf"], "--threshold", "inf"),
    (["pose", "--config", "x.yaml", "--threshold", "nan"], "--threshold", "nan"),
    (["pose", "--config", "x.yaml", "--threshold", "-1"], "--threshold", "-1"),
    (["pose", "--config", "x.yaml", "--methods", ""], "--methods", "''"),
    (["reconstruction", "--config", "x.yaml", "--methods", " , "], "--methods", "' , '"),
    (["hpatches", "--methods", ""], "--methods", "''"),
    (["hpatches", "--ratio", "inf"], "--ratio", "inf"),
])
def test_benchmark_options_are_checked_at_parse_time(argv, option, value, capsys):
    assert _exit_code(lambda: bench.main(argv)) == 2
    _usage_error(capsys, option, value)


@pytest.mark.parametrize("option, value", [("--num-workers", "-1"), ("--batch-size", "0"), ("--batch-size", "x")])
def test_extract_features_options_leave_no_file(tmp_path, option, value, capsys):
    (tmp_path / "images").mkdir()
    out = tmp_path / "f.h5"
    code = _exit_code(lambda: ef.cli(["--conf", "sift", "--images", str(tmp_path / "images"), "--output", str(out),
                                      option, value]))
    assert code == 2
    _usage_error(capsys, option, value)
    assert not out.exists()


def test_extract_api_refuses_negative_workers_before_writing(tmp_path):
    from sekd_plugin.common import ConfigError
    from sekd_plugin.extractors.confs import get_conf

    (tmp_path / "images").mkdir()
    with pytest.raises(ConfigError, match="num_workers must be 0 or more, got -1"):
        ef.extract(get_conf("sift"), tmp_path / "images", feature_path=tmp_path / "f.h5", num_workers=-1)
    assert not (tmp_path / "f.h5").exists()


def test_the_shared_types():
    assert positive_int("3") == 3 and non_negative_int("0") == 0 and finite_positive_float("0.5") == 0.5
    assert comma_list(" sekd, ,sift ") == "sekd,sift"
    for function, text in ((positive_int, "0"), (non_negative_int, "-1"), (finite_positive_float, "inf"),
                           (finite_positive_float, "0"), (comma_list, ","), (positive_int, "1.5")):
        with pytest.raises(argparse.ArgumentTypeError):
            function(text)
