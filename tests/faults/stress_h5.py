"""Stress of the .h5 crash guarantees (issue 34, item 2), runnable against any checkout:

    nice -n 10 python tests/faults/stress_h5.py --package-root . --kills 30 --out stress.json

It drives the command-line tools in subprocesses and reads the files with plain h5py, so the
same script measures an old checkout (``--package-root /tmp/old``) and this one:

* ``--kills`` seeded SIGKILLs of extraction and as many of matching. After every kill: the
  output opens (plain h5py), no finished entry is lost or changed (finished: complete in the
  output, or in a finished part ``<output>.parts/*.h5``); each completed run equals a clean run
  array for array, and leaves nothing beside the output but its 0-byte lock file.
* ``--concurrent`` trials of 2 writers (one killed at random) and 2 readers on one output.
* ``--disk-full`` seeded full-disk runs of extraction and matching (the free-space probe
  reports 4 KiB after a random number of calls): one error line, every entry written before
  kept, resume equal to a clean run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import h5py
import numpy as np

DRIVER = """
import itertools, runpy, sys
from sekd_plugin.common import files
budget, module = int(sys.argv[1]), sys.argv[2]
calls = itertools.count()
files.free_bytes = lambda path: 10**12 if next(calls) < budget else 4096
try:  # where entries go through parts: one part per entry, so that the disk fills up between entries
    from sekd_plugin.io import h5_parts
    h5_parts.PART_S = 0.0
except ImportError:
    pass
sys.argv = [module, *sys.argv[3:]]
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""

READER = """
import sys, time
from sekd_plugin.io.h5 import list_names, read_features
path, until = sys.argv[1], time.monotonic() + float(sys.argv[2])
reads = errors = 0
while time.monotonic() < until:
    try:
        for name in list_names(path):
            read_features(path, name)
            reads += 1
    except Exception as error:
        if "not found" not in str(error):
            errors += 1
            print(type(error).__name__, error, file=sys.stderr)
    time.sleep(0.05)
print(reads, errors)
"""


def texture(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 2)
    return cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)


class Runner:
    def __init__(self, root: Path, work: Path):
        self.env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
        self.work = work

    def cmd(self, module: str, *args) -> list[str]:
        return [sys.executable, "-m", module, *map(str, args)]

    def run(self, cmd: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, cwd=self.work, env=self.env, capture_output=True, text=True, timeout=900)

    def start(self, cmd: list[str], **kw) -> subprocess.Popen:
        return subprocess.Popen(cmd, cwd=self.work, env=self.env, **kw)


def entries(path: Path) -> dict[str, dict[str, np.ndarray]] | None:
    """Complete entries of one file by plain h5py; None when it does not open."""
    out = {}
    try:
        with h5py.File(path, "r") as fd:
            marked = "sekd_plugin_format" in fd.attrs

            def visit(name, obj):
                if isinstance(obj, h5py.Group) and any(isinstance(v, h5py.Dataset) for v in obj.values()):
                    if not marked or obj.attrs.get("complete", 0) == 1:
                        out[name] = {k: v[()] for k, v in obj.items() if isinstance(v, h5py.Dataset)}

            fd.visititems(visit)
    except Exception:  # noqa: BLE001 - any failure to open is what is counted
        return None
    return out


def finished(path: Path) -> tuple[dict, bool]:
    """Entries finished so far (output and finished parts) and whether the output opens."""
    found, opens = {}, True
    parts = path.with_name(path.name + ".parts")
    for part in sorted(parts.glob("*.h5")) if parts.is_dir() else []:
        found.update(entries(part) or {})
    if path.exists():
        main = entries(path)
        opens = main is not None
        found.update(main or {})
    return found, opens


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[n].keys() == b[n].keys() and all(
        np.array_equal(a[n][k], b[n][k]) for k in a[n]) for n in a)


def leftovers(folder: Path, keep: set[str]) -> list[str]:
    """Files other than ``keep`` and 0-byte lock files, with their sizes."""
    out = []
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name not in keep and not (p.name.endswith(".lock") and p.stat().st_size == 0):
            out.append(f"{p.relative_to(folder)} ({p.stat().st_size} B)")
        elif p.is_dir() and p.name not in keep and not any(p.iterdir()):
            out.append(f"{p.relative_to(folder)}/ (empty folder)")
    return out


def stamp(out: Path) -> tuple:
    """What the writer has changed so far (stat only: output, parts, temporary files)."""
    found = []
    for p in out.parent.rglob("*"):
        try:
            if p.is_file() and not p.name.endswith(".lock"):
                found.append((p.name, p.stat().st_mtime_ns, p.stat().st_size))
        except OSError:  # removed meanwhile
            continue
    return tuple(sorted(found))


def kill_loop(r: Runner, make_cmd, out_dir: Path, name: str, reference: dict, kills: int, rng: random.Random,
              max_delay: float) -> dict:
    stats = {"kills": 0, "lost_or_changed": 0, "output_unopenable": 0, "completed_runs": 0,
             "completed_equal": 0, "leftovers": []}
    out_dir.mkdir()
    out = out_dir / name
    done: dict = {}
    while stats["kills"] < kills:
        proc = r.start(make_cmd(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        before, t0 = stamp(out), time.monotonic()
        while proc.poll() is None and stamp(out) == before and time.monotonic() - t0 < 120:
            time.sleep(0.02)  # until it writes something (stat only), then a random point of the work
        time.sleep(rng.uniform(0, max_delay))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            stats["kills"] += 1
            now, opens = finished(out)
            stats["output_unopenable"] += not opens
            lost = [n for n in done if n not in now or not same({n: done[n]}, {n: now[n]})]
            stats["lost_or_changed"] += len(lost)
            done = {**done, **now}
            continue
        proc.wait()
        stats["completed_runs"] += 1  # finished before the kill: compare, then start again from nothing
        now, opens = finished(out)
        stats["output_unopenable"] += not opens
        stats["completed_equal"] += same(entries(out) or {}, reference)
        stats["leftovers"] += leftovers(out_dir, {name})
        shutil.rmtree(out_dir)
        out_dir.mkdir()
        done = {}
    final = r.run(make_cmd(out))  # resume the last interrupted run
    stats["resume_rc"] = final.returncode
    stats["resume_equal"] = same(entries(out) or {}, reference)
    stats["leftovers"] += leftovers(out_dir, {name})
    return stats


def concurrent(r: Runner, extract_cmd, half_cmd, reference: dict, trials: int, rng: random.Random,
               base: Path) -> dict:
    stats = {"trials": trials, "reader_errors": 0, "reads": 0, "file_lost": 0, "final_equal": 0, "leftovers": []}
    for t in range(trials):
        folder = base / f"conc{t}"
        folder.mkdir()
        out = folder / "f.h5"
        assert r.run(half_cmd(out)).returncode == 0  # a published file with half the images
        readers = [r.start([sys.executable, "-c", READER, str(out), "25"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True) for _ in range(2)]
        writers = [r.start(extract_cmd(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                   for _ in range(2)]
        time.sleep(rng.uniform(2.0, 5.0))
        writers[0].send_signal(signal.SIGKILL)
        for w in writers:
            w.wait()
        for rd in readers:
            o, e = rd.communicate()
            reads, errors = (int(x) for x in (o.split() or ["0", "1"]))
            stats["reads"] += reads
            stats["reader_errors"] += errors
        stats["file_lost"] += not out.exists()
        final = r.run(extract_cmd(out))  # resume what the killed writer left
        stats["final_equal"] += final.returncode == 0 and same(entries(out) or {}, reference)
        stats["leftovers"] += leftovers(folder, {"f.h5"})
    return stats


def disk_full(r: Runner, make_cmd, base: Path, name: str, reference: dict, seeds: int, unit: str,
              budgets: range) -> dict:
    stats = {"runs": 0, "failed_runs": 0, "one_error_line": 0, "entries_lost": 0, "unopenable": 0, "resume_equal": 0, "leftovers": []}
    for seed in range(seeds):
        folder = base / f"full-{name}-{seed}"
        folder.mkdir()
        out = folder / name
        done: dict = {}
        for budget in sorted(random.Random(seed).sample(budgets, 2)):
            proc = r.run([sys.executable, "-c", DRIVER, str(budget), *make_cmd(out)[2:]])
            stats["runs"] += 1
            if proc.returncode == 0:
                continue
            stats["failed_runs"] += 1
            lines = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
            stats["one_error_line"] += (proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr
                                        and "no space left" in lines[0] and unit in lines[0])
            now, opens = finished(out)
            stats["unopenable"] += not opens
            stats["entries_lost"] += sum(n not in now for n in done)
            done = {**done, **now}
        final = r.run(make_cmd(out))
        stats["resume_equal"] += final.returncode == 0 and same(entries(out) or {}, reference)
        stats["leftovers"] += leftovers(folder, {name})
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--package-root", type=Path, default=Path(__file__).resolve().parents[2])
    parser.add_argument("--kills", type=int, default=30, help="SIGKILLs of extraction, and as many of matching")
    parser.add_argument("--concurrent", type=int, default=3)
    parser.add_argument("--disk-full", type=int, default=3, help="seeds for extraction and for matching")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--only", default="extract,match,concurrent,disk", help="sections to run")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    base = Path(tempfile.mkdtemp(prefix="stress-h5-"))
    r = Runner(args.package_root.resolve(), base)
    photos = base / "photos"
    photos.mkdir()
    for i in range(24):
        cv2.imwrite(str(photos / f"{i:02d}.png"), texture(240, 320, i))

    def extract_cmd(out):
        return r.cmd("sekd_plugin.extract_features", "--conf", "sekd-selftrained", "--images", photos, "--output",
                     out, "--quiet", "--device", "cpu", "--num-workers", "0")

    feats = base / "ref-f.h5"
    assert r.run(extract_cmd(feats)).returncode == 0
    pairs = base / "pairs.txt"
    names = sorted(p.name for p in photos.iterdir())
    pairs.write_text("".join(f"{a} {b}\n" for a, b in itertools.combinations(names, 2)))

    def match_cmd(out):
        return r.cmd("sekd_plugin.match_features", "--pairs", pairs, "--features", feats, "--output", out)

    assert r.run(match_cmd(base / "ref-m.h5")).returncode == 0
    ref_f, ref_m = entries(feats), entries(base / "ref-m.h5")
    report: dict = {"package_root": str(args.package_root.resolve()), "seed": args.seed}
    start = time.monotonic()
    only = set(args.only.split(","))
    if "extract" in only:
        report["extract_kills"] = kill_loop(r, extract_cmd, base / "kill-extract", "f.h5", ref_f, args.kills, rng, 2.0)
    if "match" in only:
        report["match_kills"] = kill_loop(r, match_cmd, base / "kill-match", "m.h5", ref_m, args.kills, rng, 1.0)
    half = base / "half.txt"
    half.write_text("".join(f"{n}\n" for n in names[::2]))

    def half_cmd(out):
        return [*extract_cmd(out), "--image-list", half]

    if "concurrent" in only:
        report["concurrent"] = concurrent(r, extract_cmd, half_cmd, ref_f, args.concurrent, rng, base)
    few = base / "few"  # the disk-full runs: sift on 8 small images
    few.mkdir()
    for i in range(8):
        cv2.imwrite(str(few / f"{i:02d}.png"), texture(96, 128, i))

    def sift_cmd(out):
        return r.cmd("sekd_plugin.extract_features", "--conf", "sift", "--images", few, "--output", out,
                     "--quiet", "--num-workers", "0")

    if "disk" in only:
        assert r.run(sift_cmd(base / "ref-sift.h5")).returncode == 0
        report["disk_full_extract"] = disk_full(r, sift_cmd, base, "f.h5", entries(base / "ref-sift.h5"),
                                                args.disk_full, "images", range(2, 14))
        report["disk_full_match"] = disk_full(r, match_cmd, base, "m.h5", ref_m, args.disk_full, "pairs",
                                              range(2, 12))
    report["seconds"] = round(time.monotonic() - start, 1)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
