"""How a run judges its models: validation on synthetic pairs, the DEV benchmark (a callback
the caller gives), the official checkpoint for reference, and the best-checkpoint rule.

Both validation and DEV measure the extraction setting users run (``val.conf``, default the
recommended ``sekd-best``); the settings of ``val.report_confs`` (default the paper's single
scale, ``sekd``) are measured beside it for the report and never decide anything.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch

from ..models.checkpoint import load_weights
from ..models.sekd import SEKDNet
from . import config as config_mod
from . import validate
from .state import atomic_torch_save, to_cpu

# ``dev_eval(weights, DEV datasets, output folder, label, device, extraction conf name) ->
# {"mma@3", "homography_accuracy@3", ...}`` or ``{"skipped": reason}``
DevEval = Callable[[str, list, Path, str, torch.device, str], dict]


def settings(conf) -> dict[str, dict]:
    """The measured setting first (``val.conf``), then the reported ones, by conf name."""
    names = [conf.val.conf] + [n for n in conf.val.report_confs if n != conf.val.conf]
    return {n: validate.setting_of(n) for n in names}


def evaluate(t, net, desc: str) -> dict:
    return validate.evaluate(net, t.val_groups, t.conf.val, t.device, settings=settings(t.conf), progress=t.bars, desc=desc)


def dev_rows(t, weights: str, folder: Path, label: str) -> dict:
    """The DEV benchmark of ``weights`` in the measured setting, the reported ones under ``settings``."""
    names = list(settings(t.conf))
    datasets = list(t.conf.val.dev_datasets)
    row = dict(t.dev_eval(weights, datasets, folder / names[0], label, t.device, names[0]))
    row["conf"] = names[0]
    row["settings"] = {n: t.dev_eval(weights, datasets, folder / n, label, t.device, n) for n in names[1:]}
    return row


def official(t) -> None:
    """Score the official checkpoint once, by the same validation (and DEV benchmark), for the report."""
    path = t.conf.val.official_weights
    if not (t.main and path and t.val_groups):
        return
    net = SEKDNet().to(t.device)
    load_weights(net, path, map_location=t.device)
    row = {"weights": str(path), **evaluate(t, net, "validation (official checkpoint)")}
    if t.conf.val.dev_datasets:
        row["dev"] = dev_rows(t, str(path), t.out / "dev" / "official", "official")
    t.history["official"] = row
    dev = row.get("dev", {})
    t.log(
        f"[sekd-train] official checkpoint {path}: validation MMA@3 {row.get('mma@3', float('nan')):.3f}"
        + (f", DEV MMA@3 {dev.get('mma@3', float('nan')):.3f}, H@3 {dev.get('homography_accuracy@3', float('nan')):.3f}" if dev else "")
    )


def _other_settings(m: dict) -> str:
    return "".join(f"; {n}: MMA@3 {v.get('mma@3', float('nan')):.3f}" for n, v in m.get("settings", {}).items())


def validate_round(t, r: int, after: str) -> None:
    if t.main and t.val_groups:
        t0 = time.time()
        what = "the starting model" if r < 0 else f"round {r}"
        m = evaluate(t, t.net, f"validation of {what}")
        row = {"round": r, "after": after, "conf": t.conf.val.conf, **m, "time_s": time.time() - t0}
        t.history["validation"] = [v for v in t.history["validation"] if v.get("round") != r] + [row]
        groups = ", ".join(
            f"{g} {v['top500'].get('mma@3', 0):.3f}/{v['deploy'].get('mma@3', 0):.3f}" for g, v in m.get("groups", {}).items()
        )
        t.log(f"[sekd-train] validation after {after} ({t.conf.val.conf}): MMA@3 (top-500/deploy) {groups}"
              f"{_other_settings(m)} ({row['time_s']:.1f} s)")
    t.ctx.barrier()


def dev_round(t, r: int) -> None:
    if not (t.main and t.conf.val.dev_datasets):
        t.ctx.barrier()
        return
    tmp = t.out / "dev" / f"round{r}.pth"
    atomic_torch_save(t.model_file(to_cpu(t.net.state_dict()), config_mod.to_yaml(t.conf)), tmp)
    row = {"round": r, **dev_rows(t, str(tmp), t.out / "dev" / f"round{r}", f"round{r}")}
    tmp.unlink(missing_ok=True)
    t.history["dev"] = [v for v in t.history.get("dev", []) if v.get("round") != r] + [row]
    t.log(f"[sekd-train] DEV sequences after round {r} ({row['conf']}): MMA@3 {row.get('mma@3', float('nan')):.3f}, "
          f"H@3 {row.get('homography_accuracy@3', float('nan')):.3f}{_other_settings(row)}")
    t.ctx.barrier()


def select_best(t, r: int) -> None:
    """Make round ``r``'s model (``-1``: the starting model) ``best.pth`` if it is eligible and better.

    Eligible: at least ``val.min_keypoints`` keypoints per image above the deploy threshold
    and, when DEV sequences are benchmarked, not worse than the starting model on DEV MMA@3
    or H@3 (both in the measured setting ``val.conf``). Better: a higher ``val.select_metric``
    (mean over the validation groups, measured setting).
    """
    if not t.main:
        t.ctx.barrier()
        return
    vc = t.conf.val
    row = next((v for v in t.history["validation"] if v.get("round") == r), None)
    if row is None or vc.select_metric not in row:
        t.ctx.barrier()
        return
    score = float(row[vc.select_metric])
    why = []
    kp = float(row.get("deploy_keypoints", 0.0))
    if kp < vc.min_keypoints:
        why.append(f"{kp:.0f} keypoints per image above {vc.deploy_threshold} (< {vc.min_keypoints:g})")
    devs = {d.get("round"): d for d in t.history.get("dev", [])}
    if r >= 0 and -1 in devs and r in devs:
        for k, name in (("mma@3", "MMA@3"), ("homography_accuracy@3", "H@3")):
            a, b = devs[r].get(k), devs[-1].get(k)
            if a is not None and b is not None and a < b:
                why.append(f"DEV {name} {a:.3f} < starting model's {b:.3f}")
    row["eligible"] = not why
    if why:
        row["not_eligible"] = "; ".join(why)
    best = t.history.get("best")
    if not why and (best is None or score > best["score"]):
        t.history["best"] = {"round": r, "metric": vc.select_metric, "score": score, "starting_model": r < 0}
        f = t.model_file(to_cpu(t.net.state_dict()), config_mod.to_yaml(t.conf))
        f.update(round=r, step="validate", epoch=0, selected_by=f"{vc.select_metric} {score:.4f}")
        atomic_torch_save(f, t.out / "best.pth")
        t.log(f"[sekd-train] best.pth <- {'the starting model' if r < 0 else f'round {r}'} ({vc.select_metric} {score:.4f})")
    elif why:
        t.log(f"[sekd-train] {'starting model' if r < 0 else f'round {r}'} not eligible as best: {'; '.join(why)}")
    t.ctx.barrier()
