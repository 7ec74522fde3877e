"""Batched and sharded extraction / matching: the same files as one process, batch size 1."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import h5py
import numpy as np
import pytest

from sekd_plugin.infra import distributed
from sekd_plugin import extract_features as ef
from sekd_plugin.infra.distributed import balanced_split
from sekd_plugin.extractors.confs import get_conf
from sekd_plugin.io.h5 import list_names
from tests.helpers import texture  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


_texture = texture


def _folder(root: Path) -> Path:
    """7 images in 3 sizes (one needs resizing to 160 px), one unreadable, a nested name."""
    (root / "sub").mkdir(parents=True)
    sizes = [(96, 128), (96, 128), (80, 64), (96, 128), (80, 64), (120, 200), (96, 128)]
    for i, (h, w) in enumerate(sizes):
        cv2.imwrite(str(root / ("sub" if i == 3 else "") / f"im{i}.png"), _texture(h, w, i))
    (root / "broken.png").write_bytes(b"not a png")
    return root


def _contents(path: Path) -> dict:
    out = {}
    with h5py.File(path, "r") as fd:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = (obj[()], dict(obj.attrs))
        fd.visititems(visit)
    return out


def _assert_same_features(a: Path, b: Path) -> None:
    ca, cb = _contents(a), _contents(b)
    assert sorted(ca) == sorted(cb)
    for key in ca:
        assert ca[key][0].dtype == cb[key][0].dtype and np.array_equal(ca[key][0], cb[key][0]), key
        assert ca[key][1] == cb[key][1], key


def test_balanced_split_is_deterministic_and_balanced():
    costs = [9, 1, 1, 5, 5, 3, 3, 1]
    parts = balanced_split(costs, 3)
    assert parts == balanced_split(costs, 3)
    assert sorted(i for p in parts for i in p) == list(range(len(costs)))
    loads = [sum(costs[i] for i in p) for p in parts]
    assert max(loads) - min(loads) <= 1
    assert ef.make_batches([(4, 4), (2, 2), (4, 4), None, (4, 4)], 2) == [[0, 2], [1], [3], [4]]


def test_batch_size_gives_the_same_file_as_one_at_a_time(tmp_path, sekd_weights):
    images = _folder(tmp_path / "images")
    conf = get_conf("sekd")
    conf["model"].update(weights=str(sekd_weights), max_keypoints=100)
    conf["preprocessing"]["resize_max"] = 160
    one = ef.extract(conf, images, feature_path=tmp_path / "one.h5", num_workers=0)
    many = ef.extract(conf, images, feature_path=tmp_path / "many.h5", num_workers=2, batch_size=3)
    assert list(one.failed) == list(many.failed) == ["broken.png"]
    assert sorted(many.extracted) == sorted(one.extracted) and len(one.extracted) == 7
    _assert_same_features(tmp_path / "one.h5", tmp_path / "many.h5")


def _torchrun(args: list[str], nproc: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    # --standalone: a local rendezvous on a free port; cwd is the project root so `-m` imports this checkout
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), *args]
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if run.returncode not in (0, 1) and "address already in use" in run.stderr.lower():
        run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)  # port race
    return run


@pytest.mark.integration
def test_torchrun_extraction_and_matching_equal_one_process(tmp_path):
    pytest.importorskip("pycolmap")
    images = _folder(tmp_path / "images")
    single = tmp_path / "single.h5"
    ef.extract(get_conf("sift"), images, feature_path=single, num_workers=0, as_half=True)

    # resume: a previous 2-rank run was interrupted after rank 1 had written one image
    sharded = tmp_path / "sharded.h5"
    parts = sharded.with_name(sharded.name + ".parts")
    ef.extract(get_conf("sift"), images, image_list=["im5.png"], feature_path=tmp_path / "im5.h5", num_workers=0)
    _leave_part(tmp_path / "im5.h5", sharded)
    run = _torchrun(["-m", "sekd_plugin.extract_features", "--conf", "sift", "--images", str(images),
                     "--output", str(sharded), "--num-workers", "0"])
    assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-4000:]  # 1: broken.png failed (rank 0 reports)
    log = run.stdout + run.stderr[-3000:]
    assert "1 images failed: broken.png" in run.stdout and "6 extracted, 1 already done" in run.stdout, log
    assert not parts.exists(), log
    _assert_same_features(single, sharded)

    pairs = tmp_path / "pairs.txt"
    names = list_names(single)
    pairs.write_text("".join(f"{a} {b}\n" for i, a in enumerate(names) for b in names[i + 1:]))
    from sekd_plugin import match_features as mf

    mf.main(mf.get_conf("NN-mutual"), pairs, single, matches=tmp_path / "m1.h5")
    run = _torchrun(["-m", "sekd_plugin.match_features", "--pairs", str(pairs), "--features", str(sharded),
                     "--output", str(tmp_path / "m2.h5")])
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    c1, c2 = _contents(tmp_path / "m1.h5"), _contents(tmp_path / "m2.h5")
    assert sorted(c1) == sorted(c2) and len(c1) == 2 * len(names) * (len(names) - 1) // 2
    assert all(np.array_equal(c1[k][0], c2[k][0]) for k in c1)


def test_parts_of_an_interrupted_sharded_matching_are_kept(tmp_path):
    from sekd_plugin import match_features as mf
    from sekd_plugin.io.h5 import get_matches, write_features, write_matches

    feats = tmp_path / "f.h5"
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        d = rng.normal(size=(16, 20)).astype(np.float32)
        write_features(feats, name, {"keypoints": np.zeros((20, 2), np.float32),
                                     "descriptors": d / np.linalg.norm(d, axis=0)})
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("a b\na c\nb c\n")
    out = tmp_path / "m.h5"
    marker = np.full(20, 7, np.int16)  # not what matching would give: proves the part was kept
    write_matches(tmp_path / "part.h5", "b", "c", marker, np.ones(20))
    _leave_part(tmp_path / "part.h5", out)
    counts = mf.match_from_paths(mf.get_conf("NN-mutual"), pairs, out, feats, feats)
    assert counts == {"pairs": 3, "matched": 2, "skipped": 1}
    assert not out.with_name("m.h5.parts").exists()
    assert (get_matches(out, "b", "c")[0][:, 1] == 7).all()


# --------------------------------------------------------------------------- ShardedFile, without torchrun


@dataclasses.dataclass(frozen=True)
class _Rank(distributed.Context):
    """Rank ``rank`` of ``world`` whose gather sees ``main`` as rank 0's object (its own elsewhere)."""

    main: Any = None

    def gather(self, obj: Any) -> list[Any]:
        return [obj if r == self.rank else (self.main if r == 0 else obj) for r in range(self.world)]


def _leave_part(written: Path, output: Path, name: str = "rank1-of2.h5") -> Path:
    """Move the file ``written`` into the parts of ``output``: what an interrupted run left."""
    part = output.with_name(output.name + ".parts") / name
    part.parent.mkdir(exist_ok=True)
    os.replace(written, part)
    return part


def _feats(value: float) -> dict:
    return {"keypoints": np.full((3, 2), value, np.float32), "descriptors": np.ones((4, 3), np.float32)}


def test_two_rank_parts_are_merged_by_rank_0(tmp_path):
    from sekd_plugin.io.h5 import features_entry, read_conf, read_features
    from sekd_plugin.infra.sharded import ShardedFile

    out, conf = tmp_path / "f.h5", {"model": {"name": "fake"}}
    ranks = [ShardedFile(out, "features", _Rank(r, 2)) for r in range(2)]
    shares = [s.share([5, 1, 1, 3]) for s in ranks]
    assert sorted(shares[0] + shares[1]) == [0, 1, 2, 3] and not set(shares[0]) & set(shares[1])
    for rank, name in zip(ranks, "ab"):
        writer = rank.writer(conf, depth=2)
        writer.put(**features_entry(name, _feats("ab".index(name))))
        writer.close()
    assert len(ranks[0].parts()) == 2 and not out.exists()  # nothing published before the end
    assert ranks[0].finish(conf, "mine") == ["mine", "mine"]
    assert list_names(out) == ["a", "b"] and read_conf(out) == conf
    assert (read_features(out, "b")["keypoints"] == 1).all()
    assert not out.with_name("f.h5.parts").exists()


def test_parts_of_an_interrupted_run_are_checked_then_merged_before_reading(tmp_path):
    from sekd_plugin.io.h5 import write_features
    from sekd_plugin.infra.sharded import ShardedFile

    out = tmp_path / "f.h5"
    write_features(out, "a", _feats(0))
    shard = ShardedFile(out, "features", distributed.Context())
    parts = out.with_name("f.h5.parts")
    write_features(tmp_path / "b.h5", "b", _feats(1))
    _leave_part(tmp_path / "b.h5", out)
    checked = []
    shard.prepare(lambda path: checked.append(path.name) or False, {"v": 1}, overwrite=False)
    assert checked == ["f.h5", "rank1-of2.h5"] and list_names(out) == ["a", "b"]
    assert not parts.exists()

    write_features(tmp_path / "c.h5", "c", _feats(2))
    _leave_part(tmp_path / "c.h5", out, "rank0-of2.h5")
    shard.prepare(lambda path: path == out, {"v": 2}, overwrite=True)  # rebuild: output and parts dropped
    assert not out.exists() and not parts.exists()


def test_an_error_of_rank_0_is_raised_on_every_rank(tmp_path):
    from sekd_plugin.common.errors import InputError
    from sekd_plugin.infra.sharded import ShardedFile

    def refuse(path):
        raise InputError(f"{path.name} holds another conf")

    with pytest.raises(InputError, match="f.h5 holds another conf"):
        ShardedFile(tmp_path / "f.h5", "features", _Rank(0, 2)).prepare(refuse, {}, overwrite=False)
    rank1 = _Rank(1, 2, main=(None, InputError("from rank 0")))
    with pytest.raises(InputError, match="from rank 0"):
        ShardedFile(tmp_path / "f.h5", "features", rank1).prepare(refuse, {}, overwrite=False)
    assert distributed.Context().on_main(lambda: 42) == 42
