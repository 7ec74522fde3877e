"""Steps 1 and 3 of a round: keypoint labels of the round's images, written to
``labels/round{r}_{detect|reliability}.h5``.

Finished images' labels are kept while the step runs (:class:`.labels.PartialLabels`), so an
interrupted step resumes at the first unfinished image and ends with the labels an
uninterrupted run writes.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from . import labels
from .state import STEPS, RunError

WHAT = {"random": "random keypoints", "detect": "step 1 detect keypoints", "reliability": "step 3 reliability keypoints"}


def label_path(out: Path, r: int, step: str) -> Path:
    """Labels are named by the step that wrote them: ``round{r}_detect.h5`` / ``round{r}_reliability.h5``."""
    name = "detect" if step in ("detect", "descriptor") else "reliability"
    return out / "labels" / f"round{r}_{name}.h5"


def _skip(t, r: int, step: str) -> bool:
    """Round 0 with ``schedule.first_round=skip``, or a step no epoch would train on: mark and move on."""
    rnd = t.round_info(r)
    if step == "detect" and r == 0 and t.first_round_mode() == "skip":
        rnd["steps"]["detect"] = {"skipped": True, "time_s": 0.0}
        rnd["steps"]["descriptor"] = {"skipped": True, "time_s": 0.0}
        t.log("[sekd-train] round 0: steps 1-2 skipped (schedule.first_round=skip)")
        t.advance(r, "reliability")
        t.save()
        return True
    # labels that no epoch would train on are not computed (e.g. a descriptor-only schedule)
    train_step = "descriptor" if step == "detect" else "detector"
    if getattr(t.conf.schedule, f"epochs_{train_step}") == 0:
        rnd["steps"][step] = {"skipped": True, "time_s": 0.0}
        rnd["steps"][train_step] = {"skipped": True, "time_s": 0.0}
        t.log(f"[sekd-train] round {r}: {step} labels and the {train_step} update skipped (schedule.epochs_{train_step}=0)")
        t.advance(r, STEPS[STEPS.index(train_step) + 1])
        t.save()
        return True
    return False


def run_label_step(t, r: int, step: str, flush_s: float = 10.0) -> None:
    """Label the round's images for ``step`` ("detect" or "reliability") on trainer ``t``."""
    if _skip(t, r, step):
        return
    conf = t.conf
    kind = t.first_round_mode() if (step == "detect" and r == 0) else step
    t0 = time.time()
    indices = t.images.round_indices(r, conf.data.sub_set)
    mine = t.ctx.shard(indices)
    path = label_path(t.out, r, step)
    partial = labels.PartialLabels(path.with_suffix(".parts"), labels.network_fingerprint(t.net), t.ctx.rank, flush_s)
    kept, kept_sizes, kept_stats = partial.load()
    keys = t.images.keys
    todo = [i for i in mine if keys[i] not in kept]
    done = sum(keys[i] in kept for i in indices)
    what = WHAT[kind]
    if done:
        t.log(f"[sekd-train] round {r} {what}: labels of {done}/{len(indices)} images kept from the interrupted step")
    t.labels_kept = (done, len(indices))
    new_stats: dict[str, np.ndarray] = {}

    def finished(key, label, size, nms_stats) -> None:
        if nms_stats is not None:
            new_stats[key] = nms_stats
        partial.add(key, label, size, nms_stats)

    try:
        new, sizes, _ = labels.compute_labels(
            kind, t.net, t.images, todo, conf, conf.seed, r, t.device, progress=t.bars, desc=f"round {r} {what}",
            on_image=finished, done=len(mine) - len(todo),
        )
    finally:  # interrupted or not: what is finished is kept (atomic parts)
        partial.flush()
        t.labels_kept = (min(partial.saved, len(indices)), len(indices))
    # this rank's images in index order, kept ones from the parts
    lab = {keys[i]: kept[keys[i]] if keys[i] in kept else new[keys[i]] for i in mine}
    sizes = {k: kept_sizes[k] if k in kept_sizes else sizes[k] for k in lab}
    all_stats = {**kept_stats, **new_stats}
    nms = [all_stats[k] for k in lab if k in all_stats]
    lab = t.ctx.gather_dict(lab)
    sizes = t.ctx.gather_dict(sizes)
    nms = t.ctx.gather_list(nms)
    stats = labels.label_stats(lab, sizes)
    stats.update(labels.maxima_stats(nms))
    if t.main:
        labels.write_labels(path, lab, sizes, round=r, step=step, kind=kind)
    t.ctx.barrier()
    if t.main:
        partial.clear()
    t.labels_kept = None
    # every rank keeps the gathered labels: the training step does not re-read the file
    t.label_cache[(r, step)] = (lab, sizes)
    stats.update(mode=kind, time_s=time.time() - t0, file=path.name)
    t.round_info(r)["steps"][step] = stats
    extra = ""
    if "nms_maxima_median" in stats:
        extra = (
            f"; NMS maxima {stats['nms_maxima_per_image']:.0f}/image, scores p10/p50/p90 "
            f"{stats['nms_maxima_p10']:.3f}/{stats['nms_maxima_median']:.3f}/{stats['nms_maxima_p90']:.3f}"
        )
    t.log(f"[sekd-train] round {r} {what}: {stats['keypoints_per_image']:.1f} per image{extra} ({stats['time_s']:.1f} s)")
    t.next_step(r, step)
    t.save()


def labels_for(t, r: int, step: str) -> tuple[dict, dict]:
    """The labels a training step trains on: kept in memory, or read back after a resume."""
    source = "detect" if step == "descriptor" else "reliability"
    if (r, source) in t.label_cache:
        return t.label_cache[(r, source)]
    path = label_path(t.out, r, step)  # resumed mid-round: read what the label step wrote
    if not path.exists():
        raise RunError(f"label file {path} is missing; it is needed to continue round {r}")
    lab, sizes, _ = labels.read_labels_with_sizes(path)
    return lab, sizes
