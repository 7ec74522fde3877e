"""Issue #24 (items 1 and 13): a full disk, and other errors of the machine, are one line
``error: <file>: <cause>`` with exit 2, and every entry written before stays intact.

The full disk is simulated: the free-space probe (``common.files.free_bytes``) is replaced,
or h5py / torch raise the errors they raise on a real full disk."""

from __future__ import annotations

import errno
import itertools
import re

import h5py
import os

import numpy as np
import pytest
import torch

from sekd_plugin import match_features as mf
from sekd_plugin.common import files, run_cli
from sekd_plugin.common.errors import DiskFullError
from sekd_plugin.io import h5_open
from sekd_plugin.io.h5 import list_names, open_h5, write_features
from sekd_plugin.pairs import write_pairs
from tests.helpers import only_error_line

H5PY_ENOSPC = ("Can't write data (file write failed: time = Sun Dec  6 14:19:22 2026\n, filename = '{}', "
               "file descriptor = 3, errno = 28, error message = 'No space left on device', buf = 0x55ad47d991e0, "
               "total write size = 976, bytes this sub-write = 976, offset = 69632)")


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    names = [f"img{i}.jpg" for i in range(8)]
    for name in names:
        d = rng.normal(size=(32, 60)).astype(np.float32)
        write_features(tmp_path / "feats.h5", name, {
            "keypoints": rng.uniform(0, 60, (60, 2)).astype(np.float32), "scores": np.ones(60, np.float32),
            "descriptors": d / np.linalg.norm(d, axis=0), "image_size": np.array([64, 64])})
    pairs = list(itertools.combinations(names, 2))
    write_pairs(tmp_path / "pairs8.txt", pairs[:8])
    write_pairs(tmp_path / "pairs28.txt", pairs)
    return tmp_path


def _match(root, pairs, out="m.h5"):
    return mf.cli(["--pairs", str(root / pairs), "--features", str(root / "feats.h5"), "--output", str(root / out)])


def _disk_filling_after(monkeypatch, probes: int):
    """The probe reports plenty of space ``probes`` times, then a full disk."""
    from sekd_plugin.io import h5_parts

    monkeypatch.setattr(h5_parts, "PART_S", 0.0)  # a part per entry: one free-space probe per pair
    calls = itertools.count()
    monkeypatch.setattr(files, "free_bytes",
                        lambda path: 10**12 if next(calls) < probes else 28 * 1024)


def _complete_pairs(path):
    with open_h5(path, "r", "matches") as fd:
        return h5_open.list_entries(fd, complete_only=True)


def test_matches_full_disk_keeps_earlier_pairs_and_resumes(data, monkeypatch, capsys):
    assert _match(data, "pairs8.txt") == 0
    before = _complete_pairs(data / "m.h5")
    assert len(before) == 8
    _disk_filling_after(monkeypatch, 2)  # room for a few of the 20 new pairs
    assert _match(data, "pairs28.txt") == 2
    line = only_error_line(capsys)
    assert line.startswith(f"error: {data / 'm.h5'}: no space left on device (")
    assert "pairs written, resume after freeing space)" in line
    written = int(line.split("(")[1].split()[0])
    after = _complete_pairs(data / "m.h5")  # the file opens, nothing earlier is lost
    assert set(before) <= set(after)
    # the pairs written since are kept in finished parts (the publish into m.h5 needs room), not lost
    from sekd_plugin.io.h5 import finished_parts

    kept = set()
    for part in finished_parts(data / "m.h5"):
        with h5py.File(part, "r") as fd:
            kept |= {f"{a}/{b}" for a in fd for b in fd[a]}
    assert len(set(after) | kept) == 8 + written
    monkeypatch.setattr(files, "free_bytes", lambda path: 10**12)  # space freed: the rerun completes
    assert _match(data, "pairs28.txt") == 0
    assert len(_complete_pairs(data / "m.h5")) == 28


def test_matches_full_disk_at_the_start_writes_nothing(data, monkeypatch, capsys):
    assert _match(data, "pairs8.txt") == 0
    size = (data / "m.h5").stat().st_size
    monkeypatch.setattr(files, "free_bytes", lambda path: 28 * 1024)
    assert _match(data, "pairs28.txt") == 2
    assert only_error_line(capsys) == (f"error: {data / 'm.h5'}: no space left on device "
                                   "(0 pairs written, resume after freeing space)")
    assert (data / "m.h5").stat().st_size == size and len(_complete_pairs(data / "m.h5")) == 8
    # a fresh file is not even created
    assert _match(data, "pairs8.txt", out="fresh.h5") == 2
    assert "fresh.h5: no space left on device" in only_error_line(capsys)
    assert not (data / "fresh.h5").exists()


def test_h5py_enospc_during_a_write_is_one_line_and_earlier_pairs_stay(data, monkeypatch, capsys):
    """The race the probe cannot see: h5py raises errno 28 while writing a pair."""
    assert _match(data, "pairs8.txt") == 0
    import h5py

    real = h5py.Group.create_dataset
    calls = itertools.count()

    def create_dataset(self, *args, **kwargs):
        if next(calls) >= 6:  # 3 pairs, then the disk is full
            raise OSError(H5PY_ENOSPC.format(data / "m.h5"))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", create_dataset)
    assert _match(data, "pairs28.txt") == 2
    line = only_error_line(capsys)
    # a part is all or nothing: the pairs of the part that hit the full disk are computed again
    assert re.fullmatch(rf"error: {re.escape(str(data / 'm.h5'))}: no space left on device "
                        r"\(\d+ pairs written, resume after freeing space\)", line)
    assert "damaged" not in line
    assert len(_complete_pairs(data / "m.h5")) == 8  # the file opens, the earlier pairs stay
    monkeypatch.setattr(h5py.Group, "create_dataset", real)
    assert _match(data, "pairs28.txt") == 0 and len(_complete_pairs(data / "m.h5")) == 28


def test_features_full_disk_is_not_called_damaged(data, monkeypatch, capsys):
    pytest.importorskip("pycolmap")
    import cv2

    from sekd_plugin import extract_features as ef
    from tests.helpers import texture

    images = data / "images"
    images.mkdir()
    for i in range(4):
        cv2.imwrite(str(images / f"{i}.png"), texture(64, 80, i))
    out = data / "f.h5"
    assert ef.cli(["--conf", "sift", "--images", str(images), "--output", str(out), "--image-list",
                   str(_list(data, ["0.png", "1.png"])), "--num-workers", "0"]) == 0
    capsys.readouterr()
    _disk_filling_after(monkeypatch, 2)
    assert ef.cli(["--conf", "sift", "--images", str(images), "--output", str(out), "--num-workers", "0"]) == 2
    line = only_error_line(capsys)
    assert line.startswith(f"error: {out}: no space left on device (") and "images written" in line
    assert "damaged" not in line
    assert {"0.png", "1.png"} <= set(list_names(out))


def _list(root, names):
    path = root / "list.txt"
    path.write_text("\n".join(names) + "\n")
    return path


# ------------------------------------------------------------------ write_atomic: checkpoints, reports, labels

def test_write_atomic_full_disk_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    files.write_json(path, {"a": 1})

    def fail(tmp):
        tmp.write_bytes(b"{")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DiskFullError, match=f"{path}: no space left on device"):
        files.write_atomic(path, fail)
    assert path.read_text().strip().replace(" ", "").replace("\n", "") == '{"a":1}'
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary left behind
    monkeypatch.setattr(files, "free_bytes", lambda p: 1000)
    with pytest.raises(DiskFullError, match="results.json: no space left on device"):
        files.write_json(path, {"a": 2})


def test_checkpoint_save_short_write_says_disk_full(tmp_path, monkeypatch):
    from sekd_plugin.train import state as loop_state

    def short_write(obj, f):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")

    monkeypatch.setattr(torch, "save", short_write)
    with pytest.raises(DiskFullError) as error:
        loop_state.atomic_torch_save({"x": torch.zeros(3)}, tmp_path / "state.pth")
    assert str(error.value).startswith(f"{tmp_path / 'state.pth'}: no space left on device")
    assert not list(tmp_path.iterdir())


def test_labels_full_disk_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    import h5py

    from sekd_plugin.train.labels import write_labels

    path = tmp_path / "labels.h5"
    labels = {"a.png": (np.zeros((3, 2), np.int16), np.ones(3, np.float16))}
    write_labels(path, labels)
    before = path.read_bytes()

    def full(self, *args, **kwargs):  # what h5py raises when the disk fills during the write
        raise OSError(H5PY_ENOSPC.format(tmp_path / f".labels.h5.tmp{os.getpid()}"))

    monkeypatch.setattr(h5py.Group, "create_dataset", full)
    with pytest.raises(DiskFullError) as error:
        write_labels(path, {**labels, "b.png": labels["a.png"]})
    assert str(error.value).startswith(f"{path}: no space left on device")
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["labels.h5"]


# ------------------------------------------------------------------ 13: the CLI policy for OS errors

@pytest.mark.parametrize("error, expected", [
    (OSError(errno.ENOSPC, "No space left on device"), "error: no space left on device ("),
    (OSError(errno.ENOSPC, "No space left on device", "/x/curves.png"), "error: /x/curves.png: no space left on device ("),
    (RuntimeError(H5PY_ENOSPC.format("/x/labels.h5")), "error: /x/labels.h5: no space left on device ("),
    (OSError(errno.ENAMETOOLONG, "File name too long", "/x/aaaa.h5"), "error: /x/aaaa.h5: file name too long"),
])
def test_run_cli_machine_errors_are_one_line(error, expected, capsys):
    def main():
        raise error

    assert run_cli(main) == 2
    assert only_error_line(capsys).startswith(expected)


def test_run_cli_keeps_tracebacks_of_bugs():
    def main():
        raise OSError(errno.EINVAL, "Invalid argument")

    with pytest.raises(OSError):
        run_cli(main)


def test_benchmark_hpatches_full_disk_exit_2(tmp_path, monkeypatch, capsys):
    from sekd_plugin.benchmark import __main__ as bench
    from sekd_plugin.benchmark.homography import run as hrun

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "results.json"))

    monkeypatch.setattr(hrun, "run", full)
    assert bench.main(["hpatches", "--output", str(tmp_path)]) == 2
    assert only_error_line(capsys).startswith(f"error: {tmp_path / 'results.json'}: no space left on device")


def test_extract_features_name_too_long_exit_2(tmp_path, capsys):
    from sekd_plugin import extract_features as ef

    import cv2

    from tests.helpers import texture

    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "0.png"), texture(64, 80, 0))
    out = tmp_path / ("a" * 300 + ".h5")
    assert ef.cli(["--conf", "sift", "--images", str(images), "--output", str(out)]) == 2
    line = only_error_line(capsys)
    assert "file name too long" in line and "a" * 300 in line
