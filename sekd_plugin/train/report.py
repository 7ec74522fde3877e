"""Run report: ``metrics.json`` (the full history), ``report.md`` and PNG curves."""

from __future__ import annotations

import math
from pathlib import Path

from ..common.files import pyplot, save_figure, write_atomic, write_json
from ..common.text import fmt

STEP_TITLES = {
    "detect": "1. keypoints from the detector",
    "descriptor": "2. descriptor update",
    "reliability": "3. keypoints from reliability",
    "detector": "4. detector update",
}


def _fmt(v, nd: int = 4) -> str:
    return fmt(v, f".{nd}f")


def _val_key(row: dict, name: str):
    if name in row:
        return row[name]
    for k, v in row.items():
        if k.startswith(name):
            return v
    return None


def _measured_conf(history: dict) -> str:
    rows = history.get("validation", [])
    return rows[-1].get("conf", "sekd (paper setting)") if rows else "?"


def _setting_names(history: dict) -> list[str]:
    """The reported extraction settings beside the measured one, in order of appearance."""
    return list(dict.fromkeys(n for row in history.get("validation", []) for n in row.get("settings", {})))


def write_metrics(out: Path, history: dict) -> None:
    write_json(out / "metrics.json", history, indent=2)


def render_markdown(history: dict) -> str:
    lines = ["# SEKD self-evolving training report", ""]
    d = history.get("data", {})
    lines += [
        f"- device: {history.get('device', '?')}, processes: {history.get('world_size', 1)}",
        f"- training images: {d.get('train_images', '?')}, validation images: {d.get('val_images', '?')}, "
        f"unreadable (skipped): {d.get('skipped_unreadable', 0)}, too small or thin (skipped): {d.get('skipped_too_small', 0)}",
        f"- status: {history.get('status', 'running')}",
        *(f"- resumed with {c['to']} process(es) (saved with {c['from']}) at round {c['at']['round']}, step {c['at']['step']}"
          for c in history.get("world_size_changes", [])),
        "",
        "## Validation (synthetic pairs of held-out images; mean over the groups, top-500 keypoints)",
        "",
        f"Extraction setting: `{_measured_conf(history)}` (the one that selects `best.pth`)."
        + (" The other settings are below." if _setting_names(history) else ""),
        "",
        "| after | MMA@3 | homography acc.@3 | repeatability@3 | keypoints | matches | keypoints > 0.55 (at most 500) "
        "| NMS peaks > 0.55 | median top-500 score |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    off = history.get("official")
    rows = list(history.get("validation", []))
    if off:
        rows = [{**off, "after": "official sekd.pth"}] + rows
    for row in rows:
        lines.append(
            f"| {row.get('after')} | {_fmt(_val_key(row, 'mma@3'))} | {_fmt(_val_key(row, 'homography_accuracy@'))} "
            f"| {_fmt(_val_key(row, 'repeatability@'))} | {_fmt(row.get('keypoints'), 1)} | {_fmt(row.get('matches'), 1)} "
            f"| {_fmt(row.get('deploy_keypoints'), 1)} | {_fmt(row.get('deploy_peaks'), 1)} | {_fmt(row.get('peak_height'), 3)} |"
        )
    if rows and rows[-1].get("groups"):
        groups = list(rows[-1]["groups"])
        lines += ["", "Per group, MMA@1 / MMA@3 / H@3 / rep@3 (top-500 | deployment settings 0.55, NMS 4, 500):", ""]
        lines += ["| after | " + " | ".join(groups) + " |", "|---|" + "---|" * len(groups)]
        for row in rows:
            cells = []
            for g in groups:
                v = row.get("groups", {}).get(g, {})
                t, d = v.get("top500", {}), v.get("deploy", {})
                cells.append(
                    "/".join(_fmt(t.get(k), 2) for k in ("mma@1", "mma@3", "homography_accuracy@3", "repeatability@3"))
                    + " \\| "
                    + "/".join(_fmt(d.get(k), 2) for k in ("mma@1", "mma@3", "homography_accuracy@3", "repeatability@3"))
                )
            lines.append(f"| {row.get('after')} | " + " | ".join(cells) + " |")
    for name in _setting_names(history):
        lines += ["", f"Setting `{name}` (reported, not used for selection):", "",
                  "| after | MMA@3 | homography acc.@3 | repeatability@3 | keypoints > 0.55 (at most 500) |", "|---|---|---|---|---|"]
        for row in rows:
            v = row.get("settings", {}).get(name)
            if v:
                lines.append(f"| {row.get('after')} | {_fmt(v.get('mma@3'))} | {_fmt(v.get('homography_accuracy@3'))} "
                             f"| {_fmt(v.get('repeatability@3'))} | {_fmt(v.get('deploy_keypoints'), 1)} |")
    best = history.get("best")
    if best:
        which = "the starting model (no round improved on it)" if best["round"] < 0 else f"round {best['round']}"
        lines += ["", f"Best checkpoint (`best.pth`): {which}, {best['metric']} {_fmt(best['score'])}."]
    vetoed = [v for v in history.get("validation", []) if v.get("not_eligible")]
    if vetoed:
        lines += ["", "Not eligible as best: " + "; ".join(f"round {v['round']}: {v['not_eligible']}" for v in vetoed) + "."]
    dev = history.get("dev", [])
    if dev or (off and off.get("dev")):
        lines += ["", "## Real DEV sequences (package HPatches benchmark, `--protocol sekd`)"]
        dev_rows = ([("official sekd.pth", off["dev"])] if off and off.get("dev") else []) + [(f"round {v['round']}", v) for v in dev]
        names = list(dict.fromkeys(n for _, v in dev_rows for n in v.get("settings", {})))
        for name in [None, *names]:
            title = f"`{dev_rows[-1][1].get('conf', 'sekd')}` (the DEV veto's setting)" if name is None else f"`{name}` (reported)"
            lines += ["", f"Setting {title}:", "", "| model | MMA@1 | MMA@3 | H@3 | rep@3 | pairs |", "|---|---|---|---|---|---|"]
            for label, v in dev_rows:
                v = v if name is None else v.get("settings", {}).get(name)
                if v:
                    lines.append(f"| {label} | {_fmt(v.get('mma@1'))} | {_fmt(v.get('mma@3'))} | {_fmt(v.get('homography_accuracy@3'))} "
                                 f"| {_fmt(v.get('repeatability@3'))} | {v.get('pairs', '-')} |")
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
            if s.get("nms_maxima_median") is not None:
                kp_txt += (
                    f"; NMS maxima {s['nms_maxima_per_image']:.0f}/image, p10/p50/p90 "
                    f"{_fmt(s['nms_maxima_p10'], 3)}/{_fmt(s['nms_maxima_median'], 3)}/{_fmt(s['nms_maxima_p90'], 3)}"
                )
            epochs = s.get("epochs", [])
            loss_txt = terms_txt = ""
            if epochs:
                loss_txt = f"{_fmt(epochs[0].get('loss'))} -> {_fmt(epochs[-1].get('loss'))}"
                skip = {"loss", "batches", "time_s", "lr", "epoch"}
                terms_txt = ", ".join(f"{k} {_fmt(v)}" for k, v in epochs[-1].items() if k not in skip)
            lines.append(f"| {title} | {kp_txt} | {loss_txt} | {terms_txt} | {_fmt(s.get('time_s'), 1)} |")
        lines.append("")
    lines += ["Curves: `losses.png`, `keypoints.png`, `validation.png` (and `dev.png` with DEV sequences).", ""]
    return "\n".join(lines)


def _legend(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if ax.get_legend_handles_labels()[0]:
        ax.legend()


def plot_curves(out: Path, history: dict) -> None:
    plt = pyplot()

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
    save_figure(fig, out / "losses.png", dpi=100)
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
    save_figure(fig, out / "keypoints.png", dpi=100)
    plt.close(fig)

    val = history.get("validation", [])
    off = history.get("official") or {}
    groups = list(val[-1].get("groups", {})) if val and val[-1].get("groups") else []
    panels = groups or ["all"]
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(4.5 * (len(panels) + 1), 4), squeeze=False)
    xs = [v["round"] for v in val]
    for ax, g in zip(axes[0], panels):
        for name, color in (("mma@3", "C0"), ("homography_accuracy@3", "C1"), ("repeatability@3", "C2")):
            get = ((lambda v, g=g, n=name: v.get("groups", {}).get(g, {}).get("top500", {}).get(n)) if groups
                   else (lambda v, n=name: _val_key(v, n)))
            ys = [get(v) for v in val]
            if xs:
                ax.plot(xs, [math.nan if y is None else y for y in ys], marker="o", color=color, label=name)
            o = get(off) if off else None
            if o is not None:
                ax.axhline(o, color=color, linestyle="--", linewidth=1)
        ax.set_title(f"{g} (dashed: official)" if off else g)
        ax.set_xlabel("round (-1 = before training)")
        ax.set_ylim(0, 1)
        _legend(ax)
    # the detector's confident peaks: what the extractor keeps at its 0.55 threshold
    ax = axes[0][-1]
    for name, color, label in (("deploy_keypoints", "C3", "keypoints > 0.55 (at most 500)"), ("deploy_peaks", "C4", "NMS peaks > 0.55")):
        ys = [v.get(name, math.nan) for v in val]
        if xs and not all(math.isnan(y) for y in ys):
            ax.plot(xs, ys, marker="o", color=color, label=label)
        if off.get(name) is not None:
            ax.axhline(off[name], color=color, linestyle="--", linewidth=1)
    ax.set_title("keypoints per image (dashed: official)" if off else "keypoints per image")
    ax.set_xlabel("round (-1 = before training)")
    ax.set_ylim(bottom=0)
    _legend(ax)
    fig.tight_layout()
    save_figure(fig, out / "validation.png", dpi=100)
    plt.close(fig)

    dev = history.get("dev", [])
    if dev:
        fig, ax = plt.subplots(figsize=(6, 4))
        dx = [v["round"] for v in dev]
        for name, color in (("mma@3", "C0"), ("homography_accuracy@3", "C1")):
            ax.plot(dx, [v.get(name, math.nan) for v in dev], marker="o", color=color, label=name)
            o = (off.get("dev") or {}).get(name) if off else None
            if o is not None:
                ax.axhline(o, color=color, linestyle="--", linewidth=1, label=f"official {name}")
        ax.set_xlabel("round")
        ax.set_ylim(0, 1)
        ax.set_title("real DEV sequences (--protocol sekd)")
        _legend(ax)
        fig.tight_layout()
        save_figure(fig, out / "dev.png", dpi=100)
        plt.close(fig)


def write_report(out: Path, history: dict, plots: bool = True) -> None:
    out = Path(out)
    write_metrics(out, history)
    write_atomic(out / "report.md", render_markdown(history))
    if plots:
        plot_curves(out, history)
