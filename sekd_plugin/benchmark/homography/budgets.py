"""The keypoint-budget sweep: the HPatches benchmark once per budget, every method with the same
budget, one table per budget and MMA@3 against the budget.

    python -m sekd_plugin.benchmark hpatches --budgets 500,1000,2000 [--dataset ...]

Each budget is a full run of :func:`.run.run` in ``<output>/n<budget>/`` (its own features cache,
results and pictures); ``<output>/results.{json,md}`` and ``budgets.png`` gather them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import core
from .report import markdown_table, verdict_lines, where_lines
from .run import run


def run_budgets(budgets: list[int], output: str | Path, **kwargs: Any) -> dict[str, Any]:
    """``run(..., max_keypoints=b)`` for each budget ``b``; returns the gathered envelope whose
    ``methods`` are ``{label: {"<b>": overall summary}}``."""
    from .plots import plot_budgets

    output = Path(output)
    sweep = {b: run(output=output / f"n{b}", max_keypoints=b, **kwargs) for b in budgets}
    first = sweep[budgets[0]]
    gathered = core.new_results(first["protocol"], {**first["settings"], "max_keypoints": None, "budgets": budgets},
                                device=first["environment"].get("device"))
    for b, res in sweep.items():
        for label, summary in res["methods"].items():
            gathered["methods"].setdefault(label, {})[str(b)] = {
                k: summary[k] for k in ("ms_per_image", "all", "i", "v")}
        for key in ("skipped", "failed"):
            for label, reason in res[key].items():
                gathered[key].setdefault(label, reason if key == "skipped" else f"n{b}: {reason}")
    plot_budgets(sweep, output / "budgets.png")
    core.save(output, gathered, markdown_report(sweep, output))
    return gathered


def markdown_report(sweep: dict[int, dict[str, Any]], output: Path) -> str:
    first = next(iter(sweep.values()))
    out = ["# HPatches-style benchmark: keypoint budgets", "",
           f"Protocol `{first['protocol']}`, every method capped at the same number of keypoints per image; "
           "overall split (all pairs). Each budget's full report (illumination / viewpoint, pictures) is in "
           f"`{output}/n<budget>/results.md`. Higher is better except ms/img; best values in bold.", ""]
    for b, res in sweep.items():
        out += [f"## At most {b} keypoints per image", "", markdown_table(res, "all"), "", *verdict_lines(res), ""]
    out += core.outcome_lines(first)
    out += ["", *where_lines(output, (("budgets.png", "MMA@3 against the keypoint budget"),))]
    return "\n".join(out) + "\n"
