"""The homography benchmark of one checkpoint on DEV sequences, summarised: the trainer's
per-round DEV callback (the top-level train command, :mod:`sekd_plugin.training`, passes it in)."""

from __future__ import annotations

from .run import run


def dev_benchmark(weights: str, datasets: list[str], output, device: str | None = None, label: str = "model",
                  conf: str = "sekd") -> dict:
    """The package's HPatches benchmark (``--protocol sekd``) of a checkpoint on real sequences.

    ``weights`` is a checkpoint path (ours, or the official ``sekd.pth``), run with the
    extraction conf ``conf`` (e.g. ``sekd``, the paper's single scale, or ``sekd-best``; its own
    checkpoint is replaced by ``weights``) under ``label``. Returns ``{"mma@1", "mma@3",
    "homography_accuracy@1/3/5", "repeatability@3", "pairs"}`` over all pairs, or
    ``{"skipped": reason}``.
    """
    res = run(datasets, output, [f"{label}={conf}"], "sekd", overwrite=True, device=device, weights={label: weights})
    m = res["methods"].get(label)
    if not m:
        return {"skipped": str(res.get("skipped"))}
    a = m["all"]
    return {
        "mma@1": float(a["mma"][1]),
        "mma@3": float(a["mma"][3]),
        "homography_accuracy@1": float(a["homography_accuracy"][1]),
        "homography_accuracy@3": float(a["homography_accuracy"][3]),
        "homography_accuracy@5": float(a["homography_accuracy"][5]),
        "repeatability@3": float(a.get("repeatability@3", float("nan"))),
        "pairs": int(a["num_pairs"]),
    }
