"""Named matching configurations, in hloc's shape and with hloc's names.

Each entry is ``{"output": <matches file stem>, "model": {"name": <matcher>, ...options}}``;
unset options take the matcher's ``default_conf``. The lower-case names of earlier releases
(``mutual_nn``, ``nn-ratio``, ``nn-distance``) stay as entries of their own, the same models
with their old output stems, so existing file layouts keep their names.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any

from ..common.errors import ConfigError

confs: dict[str, dict[str, Any]] = {
    # mutual nearest neighbours (learned descriptors)
    "NN-mutual": {
        "output": "matches-NN-mutual",
        "model": {"name": "nearest_neighbor", "do_mutual_check": True},
    },
    # mutual + Lowe's ratio test 0.8 (SIFT, as hloc and COLMAP)
    "NN-ratio": {
        "output": "matches-NN-mutual-ratio.8",
        "model": {"name": "nearest_neighbor", "do_mutual_check": True, "ratio_threshold": 0.8},
    },
    # mutual + descriptor distance below 0.7 (hloc's SuperPoint setting)
    "NN-superpoint": {
        "output": "matches-NN-mutual-dist.7",
        "model": {"name": "nearest_neighbor", "do_mutual_check": True, "distance_threshold": 0.7},
    },
}
# names of earlier releases: the same models, their old output stems
for _old, _new, _output in (("mutual_nn", "NN-mutual", "matches-mutual-nn"),
                            ("nn-ratio", "NN-ratio", "matches-nn-ratio"),
                            ("nn-distance", "NN-superpoint", "matches-nn-distance")):
    confs[_old] = {**deepcopy(confs[_new]), "output": _output}


def get_conf(name: str) -> dict[str, Any]:
    """A deep copy of ``confs[name]``; an unknown name raises ConfigError listing the valid ones."""
    if name not in confs:
        raise ConfigError(f"unknown matcher conf '{name}'; available: {sorted(confs)}")
    return deepcopy(confs[name])
