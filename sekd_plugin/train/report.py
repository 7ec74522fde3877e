"""Run report: ``metrics.json`` (the full history), ``report.md`` and PNG curves."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

STEP_TITLES = {
    "detect": "1. keypoints from the detector",
    "descriptor": "2. descriptor update",
    "reliability": "3. keypoints from reliability",
    "detector": "4. detector update",
}


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _fmt(v, nd: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return str(v)
        return f"{v:.{nd}f}"
    return str(v)


def _val_key(row: dict, name: str):
    for k, v in row.items():
        if k.startswith(name):
            return v
    return None


def write_metrics(out: Path, history: dict) -> None:
    atomic_write_text(out / "metrics.json", json.dumps(history, indent=2, default=str) + "\n")


def render_markdown(history: dict) -> str:
    lines = ["# SEKD self-evolving training report", ""]
    d = history.get("data", {})
    lines += [
        f"- device: {history.get('device', '?')}, processes: {history.get('world_size', 1)}",
        f"- training images: {d.get('train_images', '?')}, validation images: {d.get('val_images', '?')}, "
        f"unreadable (skipped): {d.get('skipped_unreadable', 0)}",
        f"- status: {history.get('status', 'running')}",
        "",
        "## Validation (synthetic homographies of held-out images)",
        "",
        "| after | MMA@3 | homography acc.@3 | repeatability@3 | keypoints | matches |",
        "|---|---|---|---|---|---|",
    ]
    for row in history.get("validation", []):
        lines.append(
            f"| {row.get('after')} | {_fmt(_val_key(row, 'mma@'))} | {_fmt(_val_key(row, 'homography_accuracy@'))} "
            f"| {_fmt(_val_key(row, 'repeatability@'))} | {_fmt(row.get('keypoints'), 1)} | {_fmt(row.get('matches'), 1)} |"
        )
    lines += ["", "## Rounds", ""]
    for rnd in history.get("rounds", []):
        if not rnd:
            continue
        lines += [f"### Round {rnd['round']} ({rnd.get('images', '?')} images, {_fmt(rnd.get('time_s'), 1)} s)", ""]
        lines += ["| step | keypoints / image | loss (first -> last epoch) | terms (last epoch) | time (s) |", "|---|---|---|---|---|"]
        for step, title in STEP_TITLES.items():
            s = rnd.get("steps", {}).get(step)
            if s is None:
                continue
            if s.get("skipped"):
                lines.append(f"| {title} | skipped | | | |")
                continue
            kp = s.get("keypoints_per_image")
            kp_txt = "" if kp is None else f"{kp:.1f} ({s.get('mode', '')})".replace(" ()", "")
            epochs = s.get("epochs", [])
            loss_txt = terms_txt = ""
            if epochs:
                loss_txt = f"{_fmt(epochs[0].get('loss'))} -> {_fmt(epochs[-1].get('loss'))}"
                skip = {"loss", "batches", "time_s", "lr", "epoch"}
                terms_txt = ", ".join(f"{k} {_fmt(v)}" for k, v in epochs[-1].items() if k not in skip)
            lines.append(f"| {title} | {kp_txt} | {loss_txt} | {terms_txt} | {_fmt(s.get('time_s'), 1)} |")
        lines.append("")
    lines += ["Curves: `losses.png`, `keypoints.png`, `validation.png`.", ""]
    return "\n".join(lines)


def _legend(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if ax.get_legend_handles_labels()[0]:
        ax.legend()


def plot_curves(out: Path, history: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = [r for r in history.get("rounds", []) if r]
    # losses per epoch, one panel per training step
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, step, keys in (
        (axes[0], "descriptor", ["loss", "triplet", "detector_preserve"]),
        (axes[1], "detector", ["loss", "focal", "repeatability", "descriptor_preserve"]),
    ):
        xs, series = [], {k: [] for k in keys}
        i = 0
        for r in rounds:
            for e in r.get("steps", {}).get(step, {}).get("epochs", []):
                xs.append(i)
                i += 1
                for k in keys:
                    series[k].append(e.get(k, math.nan))
        for k in keys:
            if xs:
                ax.plot(xs, series[k], marker="o", label=k)
        ax.set_title(STEP_TITLES[step])
        ax.set_xlabel("epoch (all rounds)")
        _legend(ax)
    fig.tight_layout()
    fig.savefig(out / "losses.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for step in ("detect", "reliability"):
        xs = [r["round"] for r in rounds if r.get("steps", {}).get(step, {}).get("keypoints_per_image") is not None]
        ys = [r["steps"][step]["keypoints_per_image"] for r in rounds if r["round"] in xs]
        if xs:
            ax.plot(xs, ys, marker="o", label=STEP_TITLES[step])
    ax.set_xlabel("round")
    ax.set_ylabel("keypoints / image")
    _legend(ax)
    fig.tight_layout()
    fig.savefig(out / "keypoints.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    val = history.get("validation", [])
    xs = [v["round"] for v in val]
    for name in ("mma@", "homography_accuracy@", "repeatability@"):
        ys = [_val_key(v, name) for v in val]
        if xs:
            ax.plot(xs, [math.nan if y is None else y for y in ys], marker="o", label=name.rstrip("@") + "@3")
    ax.set_xlabel("round (-1 = before training)")
    ax.set_ylim(0, 1)
    _legend(ax)
    fig.tight_layout()
    fig.savefig(out / "validation.png", dpi=100)
    plt.close(fig)


def write_report(out: Path, history: dict, plots: bool = True) -> None:
    out = Path(out)
    write_metrics(out, history)
    atomic_write_text(out / "report.md", render_markdown(history))
    if plots:
        plot_curves(out, history)
