"""Benchmark output: results.json, results.md tables, papers'-style plots, match drawings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...common.files import disk_full_names, save_figure, write_image
from .. import core

COLUMNS = ("MMA@1", "MMA@3", "MMA@5", "MMA@10", "H@1", "H@3", "H@5", "AUC@1", "AUC@3", "AUC@5", "rep@3", "#kp",
           "#matches", "ms/img")
SPLITS = (("i", "Illumination"), ("v", "Viewpoint"), ("all", "Overall"))


def table_rows(results: dict[str, Any], split: str) -> list[list[str]]:
    rows = []
    for method, r in results["methods"].items():
        a = r[split]
        if not a.get("num_pairs"):
            continue
        ms = r.get("ms_per_image")
        rows.append([
            method,
            *(f"{a['mma'][t]:.3f}" for t in (1, 3, 5, 10)),
            *(f"{a['homography_accuracy'][t]:.3f}" for t in (1, 3, 5)),
            *(f"{a['homography_auc'][t]:.3f}" if "homography_auc" in a else "-" for t in (1, 3, 5)),
            f"{a['repeatability@3']:.3f}", f"{a['num_keypoints']:.0f}", f"{a['num_matches']:.0f}",
            f"{ms:.0f}" if ms is not None else "-",
        ])
    return rows


def markdown_table(results: dict[str, Any], split: str) -> str:
    return core.markdown_table(("method", *COLUMNS), table_rows(results, split))


def licence_lines(results: dict[str, Any]) -> list[str]:
    """One line per method whose weights carry a licence users must be told (e.g. R2D2: non-commercial)."""
    from ...extractors.base import get_extractor

    out = []
    for method, r in results["methods"].items():
        name = ((r.get("conf") or {}).get("model") or {}).get("name")
        note = get_extractor(name).licence_note if name else None
        if note:
            out.append(f"- {method}: {note}")
    return out


def markdown_report(results: dict[str, Any]) -> str:
    st, env = results["settings"], results["environment"]
    seqs = st["sequences"]
    n_i = sum(k == "i" for k in seqs.values())
    out = [
        "# HPatches-style benchmark",
        "",
        f"Protocol `{results['protocol']}`; {len(seqs)} sequences ({n_i} illumination, {len(seqs) - n_i} viewpoint)"
        + (" of the embedded demo set (not HPatches)" if st.get("demo") else "")
        + f"; matcher {st['matcher']}; homographies by {st['ransac']['method']}, "
        f"threshold {st['ransac']['threshold_px']} px, seed {st['ransac']['seed']}; device {env.get('device')}.",
        "MMA@t: mean over pairs of the fraction of mutual-NN matches with reprojection error <= t px. "
        "H@t: fraction of pairs whose estimated homography has mean corner error <= t px. "
        "AUC@t: area under the cumulative corner-error curve up to t px, divided by t (glue-factory). "
        "rep@3: repeatability at 3 px in the common region. #kp: keypoints per image; #matches: per pair; "
        "ms/img: median extraction time per image.",
        "",
    ]
    note = (st.get("protocol_settings") or {}).get("note")
    if note:  # e.g. gluefactory: what differs from published numbers on part of HPatches
        pairs = 5 * len(seqs)
        out += [f"Protocol note: {pairs} pair(s) here. {note[0].upper()}{note[1:]}.", ""]
    for split, title in SPLITS:
        out += [f"## {title} ({split})", "", markdown_table(results, split), ""]
    out += core.outcome_lines(results)
    out += licence_lines(results)
    empty = st.get("empty_common_region") or {}
    if empty.get("count"):
        out.append(f"- {empty['count']} pair(s) without a common region (the homography maps image 1 entirely "
                   f"outside image k; every metric 0, counted in the means): {', '.join(empty['pairs'][:10])}"
                   + (", ..." if empty["count"] > 10 else ""))
    return "\n".join(out) + "\n"


def plot_curves(results: dict[str, Any], path: Path) -> None:
    """MMA vs threshold and homography accuracy vs threshold, panels Illumination / Viewpoint / Overall."""
    plt = core.pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5), sharex=True, sharey="row")
    for col, (split, title) in enumerate(SPLITS):
        for method, r in results["methods"].items():
            a = r[split]
            if not a.get("num_pairs"):
                continue
            ts = sorted(int(t) for t in a["mma"])
            axes[0, col].plot(ts, [a["mma"][t] for t in ts], marker="o", ms=3, label=method)
            axes[1, col].plot(ts, [a["homography_accuracy"][t] for t in ts], marker="o", ms=3, label=method)
        axes[0, col].set_title(title)
        axes[1, col].set_xlabel("threshold [px]")
        for ax in axes[:, col]:
            ax.grid(alpha=0.3)
            ax.set_ylim(0, 1)
            ax.set_xlim(1, 10)
    axes[0, 0].set_ylabel("MMA")
    axes[1, 0].set_ylabel("homography accuracy")
    axes[0, 2].legend(loc="lower right")
    fig.suptitle(f"protocol: {results['protocol']}" + (" (demo data)" if results["settings"].get("demo") else ""))
    fig.tight_layout()
    try:
        with disk_full_names(path):  # a full disk names the figure
            save_figure(fig, path, dpi=120)
    finally:
        plt.close(fig)


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
