"""The benchmark's pictures: curves over the threshold, accuracy against time (Pareto front),
accuracy against the keypoint budget, and match drawings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...common.files import disk_full_names, save_figure, write_image
from .. import core
from .report import SPLITS


def _save(fig, plt, path: Path) -> None:
    try:
        with disk_full_names(path):  # a full disk names the figure
            save_figure(fig, path, dpi=120)
    finally:
        plt.close(fig)


def fitted_limits(values, pad: float = 0.05, lo: float = 0.0, hi: float = 1.0) -> tuple[float, float]:
    """Axis limits around ``values`` with a margin, kept inside ``[lo, hi]``."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], float)
    if v.size == 0:
        return lo, hi
    span = max(v.max() - v.min(), 0.05 * (hi - lo))
    return max(lo, v.min() - pad * span - 0.01), min(hi, v.max() + pad * span + 0.01)


def plot_curves(results: dict[str, Any], path: Path) -> None:
    """MMA vs threshold and homography accuracy vs threshold, panels Illumination / Viewpoint / Overall."""
    plt = core.pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(15, 7.5), sharex=True, sharey="row")
    seen = {0: [], 1: []}
    for col, (split, title) in enumerate(SPLITS):
        for method, r in results["methods"].items():
            a = r[split]
            if not a.get("num_pairs"):
                continue
            ts = sorted(int(t) for t in a["mma"])
            for row, key in enumerate(("mma", "homography_accuracy")):
                ys = [a[key][t] for t in ts]
                axes[row, col].plot(ts, ys, marker="o", ms=3, label=method)
                seen[row] += ys
        axes[0, col].set_title(f"{title}: MMA (higher is better)")
        axes[1, col].set_title(f"{title}: homography accuracy (higher is better)", fontsize=10)
        axes[1, col].set_xlabel("threshold [px]")
        for ax in axes[:, col]:
            ax.grid(alpha=0.3)
            ax.set_xlim(1, 10)
    for row in (0, 1):
        axes[row, 0].set_ylim(*fitted_limits(seen[row]))
    axes[0, 0].set_ylabel("MMA")
    axes[1, 0].set_ylabel("homography accuracy")
    fig.suptitle(f"protocol: {results['protocol']}" + (" (demo data: checks that everything runs, not a ranking)"
                                                        if results["settings"].get("demo") else ""))
    fig.tight_layout(rect=(0, 0, 0.86, 1))
    if any(seen.values()):  # beside the panels, never over a curve
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(0.865, 0.5), fontsize=8)
    _save(fig, plt, path)


def pareto_front(times, scores) -> list[int]:
    """Indices of the points no other point beats on both (time lower or equal, score higher or
    equal, one strictly), ordered by time."""
    t, s = np.asarray(times, float), np.asarray(scores, float)
    keep = [i for i in range(len(t))
            if not np.any((t <= t[i]) & (s >= s[i]) & ((t < t[i]) | (s > s[i])))]
    return sorted(keep, key=lambda i: (t[i], -s[i]))


def _labels(ax, points) -> None:
    """Name every point, each label moved up or down (in steps of its height) until it overprints no
    other label: a greedy placement in display pixels, with a character width estimated for 8 pt."""
    fig = ax.figure
    fig.canvas.draw()  # fixes the axes' transform
    taken: list[tuple[float, float, float, float]] = []
    for name, t, y in sorted(points, key=lambda p: (p[1], p[2])):
        px, py = ax.transData.transform((t, y))
        w, h = 5.2 * len(name), 10.0
        for dy in (3, 13, -13, 23, -23, 33, -33, 43, -43):
            box = (px + 4, py + dy, px + 4 + w, py + dy + h)
            if not any(box[0] < o[2] and o[0] < box[2] and box[1] < o[3] and o[1] < box[3] for o in taken):
                break
        taken.append(box)
        ax.annotate(name, (t, y), textcoords="offset points", xytext=(4, dy * 72 / fig.dpi), fontsize=8)


def plot_pareto(results: dict[str, Any], path: Path, split: str = "all") -> None:
    """Accuracy against extraction time, one point per method, the Pareto front drawn: MMA@3 and AUC@3."""
    plt = core.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    pts = [(m, r["ms_per_image"], r[split]) for m, r in results["methods"].items()
           if r[split].get("num_pairs") and r.get("ms_per_image")]
    for ax, (key, name) in zip(axes, (("mma", "MMA@3"), ("homography_auc", "AUC@3"))):
        ys = [a.get(key, {}).get(3) for _, _, a in pts]
        shown = [(m, t, y) for (m, t, _), y in zip(pts, ys) if y is not None]
        if shown:
            names, ts, vals = zip(*shown)
            ax.scatter(ts, vals, s=30, zorder=3)
            front = pareto_front(ts, vals)
            ax.step([ts[i] for i in front], [vals[i] for i in front], where="post", color="tab:red", lw=1.2,
                    label="Pareto front", zorder=2)
            ax.set_xscale("log")
            ax.set_ylim(*fitted_limits(vals, pad=0.15))
            _labels(ax, shown)
            ax.legend(loc="lower right", fontsize=8)
        else:
            ax.text(0.5, 0.5, "no method with a time", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel("extraction time per image [ms, log scale] (left is faster)")
        ax.set_ylabel(name)
        ax.set_title(f"{name} against time (higher is better)")
        ax.grid(alpha=0.3, which="both")
    fig.suptitle(f"protocol: {results['protocol']}, {dict(SPLITS)[split].lower()}; times on this machine"
                 + (" (demo data: not a ranking)" if results["settings"].get("demo") else ""))
    fig.tight_layout()
    _save(fig, plt, path)


def plot_budgets(sweep: dict[int, dict[str, Any]], path: Path, split: str = "all") -> None:
    """MMA@3 against the keypoint budget, one line per method (``sweep``: {budget: results})."""
    plt = core.pyplot()
    fig, ax = plt.subplots(figsize=(7, 5))
    budgets = sorted(sweep)
    methods = list(dict.fromkeys(m for b in budgets for m in sweep[b]["methods"]))
    seen = []
    for m in methods:
        pts = [(b, sweep[b]["methods"][m][split]["mma"][3]) for b in budgets
               if m in sweep[b]["methods"] and sweep[b]["methods"][m][split].get("num_pairs")]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=m)
            seen += [y for _, y in pts]
    ax.set_xscale("log")
    ax.set_xticks(budgets, [str(b) for b in budgets])
    ax.set_xlabel("keypoint budget per image (max_keypoints)")
    ax.set_ylabel("MMA@3")
    ax.set_ylim(*fitted_limits(seen))
    ax.set_title("MMA@3 against the keypoint budget (higher is better)")
    ax.grid(alpha=0.3, which="both")
    if seen:
        ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, plt, path)


def plot_matches(results, prepared, match_records, image_root: Path, out_dir: Path, threshold: float = 3.0) -> None:
    """Side-by-side match images per pair: green = correct (error <= threshold), red = wrong."""
    import cv2

    from ...io.images import read_image

    for method, records in match_records.items():
        d = out_dir / method
        d.mkdir(parents=True, exist_ok=True)
        for seq in prepared:
            for k in range(2, 7):
                if (seq.key, k) not in records:
                    continue
                kp0, kpk, matches, err = records[(seq.key, k)]
                im0, im1 = read_image(image_root / seq.names[0]), read_image(image_root / seq.names[k - 1])
                im0 = im0 if im0.ndim == 3 else np.stack([im0] * 3, -1)
                im1 = im1 if im1.ndim == 3 else np.stack([im1] * 3, -1)
                h = max(im0.shape[0], im1.shape[0])
                canvas = np.zeros((h, im0.shape[1] + im1.shape[1], 3), np.uint8)
                canvas[: im0.shape[0], : im0.shape[1]] = im0
                canvas[: im1.shape[0], im0.shape[1]:] = im1
                canvas = cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR)
                for (i, j), e in zip(matches, err):
                    p0 = tuple(int(round(v)) for v in kp0[i])
                    p1 = (int(round(kpk[j][0])) + im0.shape[1], int(round(kpk[j][1])))
                    cv2.line(canvas, p0, p1, (0, 200, 0) if e <= threshold else (0, 0, 230), 1, cv2.LINE_AA)
                write_image(d / f"{seq.key.replace('/', '_')}_1-{k}.png", canvas)
