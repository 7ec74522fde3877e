"""Benchmark output as text: the results.md tables (best value of every column in bold), the
verdict, and the lines that say where the pictures went. The pictures: :mod:`.plots`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import core

COLUMNS = ("MMA@1", "MMA@3", "MMA@5", "MMA@10", "H@1", "H@3", "H@5", "AUC@1", "AUC@3", "AUC@5", "rep@3", "#kp",
           "#matches", "ms/img")
SPLITS = (("i", "Illumination"), ("v", "Viewpoint"), ("all", "Overall"))
# which way is better, per column; the counts (#kp, #matches) describe a method and are not ranked
BETTER = {c: "higher" for c in COLUMNS[:11]} | {"ms/img": "lower"}
# the verdict's headline metrics: (column, what it measures)
HEADLINE = (("MMA@3", "matching accuracy"), ("H@3", "homographies within 3 px"),
            ("AUC@3", "homography corner-error AUC"), ("rep@3", "repeatability"), ("ms/img", "extraction time"))
PICTURES = (("curves.png", "MMA and homography accuracy against the threshold"),
            ("pareto.png", "accuracy against time, the Pareto front drawn"))


def column_values(a: dict[str, Any], ms: float | None) -> dict[str, float | None]:
    """The numbers of one row of the table, by column (an aggregate of :func:`.run.aggregate`)."""
    auc = a.get("homography_auc", {})
    return {
        **{f"MMA@{t}": a["mma"][t] for t in (1, 3, 5, 10)},
        **{f"H@{t}": a["homography_accuracy"][t] for t in (1, 3, 5)},
        **{f"AUC@{t}": auc.get(t) for t in (1, 3, 5)},
        "rep@3": a["repeatability@3"], "#kp": a["num_keypoints"], "#matches": a["num_matches"], "ms/img": ms,
    }


def _cell(column: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if column in ("#kp", "#matches", "ms/img") else f"{value:.3f}"


def table_values(results: dict[str, Any], split: str) -> dict[str, dict[str, float | None]]:
    """``{method: {column: value}}`` of the methods with pairs in ``split``."""
    return {method: column_values(r[split], r.get("ms_per_image"))
            for method, r in results["methods"].items() if r[split].get("num_pairs")}


def best_cells(values: dict[str, dict[str, float | None]]) -> dict[str, set[str]]:
    """``{column: methods holding its best value}``, compared as printed (a tie shown is a tie)."""
    best = {}
    for column, direction in BETTER.items():
        cells = {m: _cell(column, v[column]) for m, v in values.items() if v[column] is not None}
        if len(cells) < 2:  # one method alone wins nothing
            continue
        pick = max if direction == "higher" else min
        top = pick(float(c) for c in cells.values())
        best[column] = {m for m, c in cells.items() if float(c) == top}
    return best


def table_rows(results: dict[str, Any], split: str) -> list[list[str]]:
    values = table_values(results, split)
    best = best_cells(values)
    return [[method, *(f"**{_cell(c, v[c])}**" if method in best.get(c, ()) else _cell(c, v[c]) for c in COLUMNS)]
            for method, v in values.items()]


def markdown_table(results: dict[str, Any], split: str) -> str:
    return core.markdown_table(("method", *COLUMNS), table_rows(results, split))


def describe_matcher(conf: dict[str, Any]) -> str:
    """The matcher conf in words, e.g. "mutual nearest neighbour, ratio test 0.8"."""
    if conf.get("name") != "nearest_neighbor":
        return str(conf.get("name"))
    words = ["mutual nearest neighbour" if conf.get("do_mutual_check", True) else "nearest neighbour"]
    if conf.get("ratio_threshold") is not None:
        words.append(f"ratio test {conf['ratio_threshold']:g}")
    if conf.get("distance_threshold") is not None:
        words.append(f"descriptor distance <= {conf['distance_threshold']:g}")
    return ", ".join(words) + " (Hamming distance for binary descriptors)"


def verdict_lines(results: dict[str, Any], split: str = "all") -> list[str]:
    """The short ranking: the winner of each headline metric with its value and the runner-up."""
    values = table_values(results, split)
    if not values:
        return ["No method produced results, so there is no verdict."]
    n = max(results["methods"][m][split]["num_pairs"] for m in values)
    lines = [f"Verdict ({n} image pairs, {dict(SPLITS)[split].lower()}):"]
    for column, what in HEADLINE:
        ranked = sorted(((v[column], m) for m, v in values.items() if v[column] is not None),
                        key=lambda t: t[0], reverse=BETTER[column] == "higher")
        if not ranked:
            continue
        top = _cell(column, ranked[0][0])
        winners = [m for v, m in ranked if _cell(column, v) == top]
        rest = [(v, m) for v, m in ranked if m not in winners]
        unit = " ms" if column == "ms/img" else ""
        line = f"- {column} ({what}, {BETTER[column]} is better): **{' = '.join(winners)}** {top}{unit}"
        if rest:
            line += f"; next {rest[0][1]} {_cell(column, rest[0][0])}{unit}"
        lines.append(line)
    return lines


def where_lines(output: Path, pictures: tuple[tuple[str, str], ...] = PICTURES) -> list[str]:
    """The last lines: where the results and pictures are (paths as the user gave ``output``)."""
    return [f"Results: {output / 'results.md'} (all numbers: {output / 'results.json'})",
            *(f"Picture: {output / name} ({what})" for name, what in pictures)]


def demo_lines() -> list[str]:
    return ["This was the embedded demo: it checks that everything runs and is not for ranking methods. "
            "For the real benchmark: `python -m sekd_plugin.datasets fetch hpatches`, then "
            "`python -m sekd_plugin.benchmark hpatches --dataset <the folder it prints>`."]


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


def markdown_report(results: dict[str, Any], output: Path | None = None) -> str:
    st, env = results["settings"], results["environment"]
    seqs = st["sequences"]
    n_i = sum(k == "i" for k in seqs.values())
    budget = st.get("max_keypoints")
    out = [
        "# HPatches-style benchmark",
        "",
        f"Protocol `{results['protocol']}`; {len(seqs)} sequences ({n_i} illumination, {len(seqs) - n_i} viewpoint)"
        + (" of the embedded demo set (not HPatches)" if st.get("demo") else "")
        + (f"; every method keeps at most {budget} keypoints" if budget else "")
        + f"; matching: {describe_matcher(st['matcher'])}; homographies by {st['ransac']['method']}, "
        f"threshold {st['ransac']['threshold_px']} px, seed {st['ransac']['seed']}; device {env.get('device')}.",
        "MMA@t: mean over pairs of the fraction of matches with reprojection error <= t px. "
        "H@t: fraction of pairs whose estimated homography has mean corner error <= t px. "
        "AUC@t: area under the cumulative corner-error curve up to t px, divided by t (glue-factory). "
        "rep@3: repeatability at 3 px in the common region. #kp: keypoints per image; #matches: per pair; "
        "ms/img: median extraction time per image on this machine. Higher is better except ms/img; "
        "the best value of each column is in bold (#kp and #matches are counts, not ranked).",
        "",
    ]
    note = (st.get("protocol_settings") or {}).get("note")
    if note:  # e.g. gluefactory: what differs from published numbers on part of HPatches
        pairs = 5 * len(seqs)
        out += [f"Protocol note: {pairs} pair(s) here. {note[0].upper()}{note[1:]}.", ""]
    for split, title in SPLITS:
        out += [f"## {title} ({split})", "", markdown_table(results, split), ""]
    out += core.outcome_lines(results)
    licences = licence_lines(results)
    if licences:
        out += ["", "Licences to know:", *licences]
    empty = st.get("empty_common_region") or {}
    if empty.get("count"):
        out.append(f"- {empty['count']} pair(s) without a common region (the homography maps image 1 entirely "
                   f"outside image k; every metric 0, counted in the means): {', '.join(empty['pairs'][:10])}"
                   + (", ..." if empty["count"] > 10 else ""))
    out += ["", "## Verdict", "", *verdict_lines(results)]
    if st.get("demo"):
        out += ["", *demo_lines()]
    if output is not None:
        out += ["", *where_lines(Path(output))]
    return "\n".join(out) + "\n"
