"""What the scene benchmarks (SfM, pose, triangulation, localization) share: every scene config
x method planned and validated before any work, and one loop that runs each method over its
scenes through :func:`.core.run_methods`.

A method's entry in ``results["methods"]`` is ``{"scenes": {scene: summary}}`` (a benchmark may
add keys, e.g. the pose benchmark's ``all_scenes``); its per-item rows name their ``scene``.
A scene that fails does not lose the method's other scenes: the method is in ``failed`` with
the scene named, and what it finished is kept.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable, Sequence

from ..common.errors import ConfigError
from ..common.locks import FolderLockedError
from . import core
from .methods import COLMAP, method_entry, parse_method
from .sfm.config import load_config
from .sfm.confs import extraction_conf, matcher_conf
from .sfm.pipelines import PIPELINES, pipeline_of

logger = logging.getLogger(__name__)

Plan = tuple[str, str, dict[str, Any]]  # (scene, method label, validated config)
# what a method's label leaves to its own entry: never set by the command's overrides
PER_METHOD_KEYS = ("extractor=", "output=", "pipeline=")


def settings(configs: Sequence[str | Path], methods: Sequence[str], overrides: Sequence[str],
             **more: Any) -> dict[str, Any]:
    """The ``settings`` of a scene benchmark: configs, methods, overrides and its own options."""
    return {"configs": [str(c) for c in configs], "methods": list(methods),
            "overrides": [o for o in overrides if not o.startswith(PER_METHOD_KEYS)], **more}


def split_method_overrides(overrides: Sequence[str], labels: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(scene config overrides, method overrides)``: ``[LABEL.]model.KEY=VALUE`` (extractor
    options) and ``[LABEL.]matcher.KEY=VALUE`` (matcher options) are a method's, the rest the scene's."""
    prefixes = tuple(f"{p}{s}." for p in ("", *(f"{label}." for label in labels)) for s in ("model", "matcher"))
    method = [o for o in overrides if o.startswith(prefixes)]
    return [o for o in overrides if o not in method], method


def as_scene_overrides(label: str, entry: dict[str, Any], options: dict[str, Any]) -> list[str]:
    """A method's ``{"model": {...}, "matcher": {...}}`` as scene config keys
    (``extractor_options.<conf>.KEY``, ``matcher_options.KEY``); values as JSON (YAML-readable)."""
    from ..common.conf import check_keys

    check_keys(options, ("model", "matcher"), "method override", where=f"method {label}")
    if not options:
        return []
    if entry["pipeline"] == COLMAP:
        raise ConfigError(f"method {label}: COLMAP's own pipeline has no model / matcher options here "
                          "(set colmap_extraction.* / colmap_matching.*)")
    out = []
    for section, key in (("model", f"extractor_options.{entry['extractor']}"), ("matcher", "matcher_options")):
        values = options.get(section) or {}
        if not isinstance(values, dict):
            raise ConfigError(f"method {label}: {section}={values!r}: write {section}.KEY=VALUE")
        out += [f"{key}.{k}={json.dumps(v)}" for k, v in values.items()]
    return out


def plan(configs: Sequence[str | Path], methods: Sequence[str], work: Path, overrides: Sequence[str]) -> list[Plan]:
    """``(scene, method, config)`` of every run, each validated (before any work starts); the
    features, matches and models of a run go to ``work/<scene>/<method>``. ``overrides`` are scene
    config keys and method options (``[LABEL.]model.KEY=VALUE``, ``[LABEL.]matcher.KEY=VALUE``;
    the ones without a label apply to every method of our pipeline)."""
    from ..common.conf_layers import parse_dotlist, split_by_label

    overrides = [o for o in overrides if not o.startswith(PER_METHOD_KEYS)]
    labels = {method: parse_method(method)[0] for method in methods}
    overrides, method_items = split_method_overrides(overrides, list(labels.values()))
    by_label = split_by_label(parse_dotlist(method_items, "the method overrides"), list(labels.values()))
    user_matcher = any(o.startswith("matcher=") for o in overrides)
    plans = []
    for config in configs:
        base = load_config(config, overrides)
        scene = base["scene"] or Path(base["images"]).parent.name
        for method in methods:
            entry = method_entry(method)
            pipeline = PIPELINES[entry["pipeline"]]
            mine = by_label[labels[method]]
            if entry["pipeline"] == COLMAP and not any(o.startswith(f"{labels[method]}.") for o in method_items):
                mine = {}  # options given for every method apply to our pipeline's methods
            extra = [f"output={work / scene / method}", *pipeline.method_overrides(entry, user_matcher),
                     *as_scene_overrides(labels[method], entry, mine)]
            plans.append((scene, method, load_config(config, [*overrides, *extra])))
    return plans


def effective_confs(cfg: dict[str, Any]) -> dict[str, Any]:
    """What a run's results record of its method: the extractor and matcher confs in effect
    (named conf + options), or COLMAP's own option overrides."""
    if cfg["pipeline"] == COLMAP:
        return {"colmap_extraction": cfg["colmap_extraction"], "colmap_matching": cfg["colmap_matching"]}
    return {"extractor": extraction_conf(cfg), "matcher": matcher_conf(cfg)}


def skip_reason(method: str, cfg: dict[str, Any]) -> str | None:
    """Why a method cannot run (its weights are absent), or None."""
    return pipeline_of(cfg).skip_reason(cfg, method)


def run(
    results: dict[str, Any],
    plans: Sequence[Plan],
    evaluate_scene: Callable[[str, str, dict[str, Any]], tuple[dict[str, Any], list[dict[str, Any]]]],
    save: Callable[[dict[str, Any]], None],
    finish: Callable[[dict[str, Any], list[dict[str, Any]]], None] | None = None,
) -> dict[str, Any]:
    """Every method of ``plans`` over its scenes: ``evaluate_scene(scene, method, cfg) ->
    (summary, rows)``; ``finish(entry, rows)`` may add the method's aggregates to its entry."""
    by_method: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for scene, method, cfg in plans:
        by_method.setdefault(method, []).append((scene, cfg))

    def evaluate(method: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        entry: dict[str, Any] = {"scenes": {}, "confs": {}}
        rows: list[dict[str, Any]] = []
        errors = []
        for scene, cfg in by_method[method]:
            logger.warning("%s benchmark: %s / %s", results["protocol"], scene, method)
            try:
                summary, scene_rows = evaluate_scene(scene, method, cfg)
            except (KeyboardInterrupt, FolderLockedError):
                raise
            except Exception as error:  # noqa: BLE001 - one failing scene must not lose the others
                errors.append(f"{scene}: {type(error).__name__}: {core.first_line(error)}")
                logger.error("%s / %s failed: %s", scene, method, errors[-1])
                continue
            entry["scenes"][scene] = summary
            entry["confs"][scene] = effective_confs(cfg)  # what ran: the confs with the command's options
            rows += [{"scene": scene, **r} for r in scene_rows]
        if entry["scenes"] and finish:
            finish(entry, rows)
        if errors:
            raise core.MethodFailed("; ".join(errors), entry if entry["scenes"] else None, rows)
        return entry, rows

    def skip(method: str) -> str | None:
        return next(filter(None, (skip_reason(method, cfg) for _, cfg in by_method[method])), None)

    return core.run_methods(results, list(by_method), evaluate, skip, save)


def scene_order(results: dict[str, Any]) -> list[str]:
    """The scenes of the results in the order they were planned (rows first, then summaries)."""
    names = [s for m in results["methods"].values() for s in m.get("scenes", {})]
    return list(dict.fromkeys(names))


def by_scene(results: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """``(scene, method, summary)`` of every finished run, scene by scene (the tables' order)."""
    return [(scene, method, entry["scenes"][scene]) for scene in scene_order(results)
            for method, entry in results["methods"].items() if scene in entry.get("scenes", {})]


def failed_images_lines(results: dict[str, Any], what: str = "left out") -> list[str]:
    """One line per scene / method with images that could not be read, and the pairs they removed."""
    out = []
    for scene, method, r in by_scene(results):
        failed, removed = r.get("failed_images") or {}, r.get("removed_pairs") or []
        if failed:
            pairs = ", ".join(f"{a}-{b}" for a, b in removed[:10]) + (", ..." if len(removed) > 10 else "")
            out.append(f"- {scene}/{method}: {len(failed)} image(s) failed ("
                       + "; ".join(f"{n}: {e}" for n, e in failed.items())
                       + f"); {len(removed)} pair(s) {what}" + (f": {pairs}" if pairs else ""))
    return out
