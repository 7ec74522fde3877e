"""The one reader of a features file and the matches made from it, checked against each other.

Every consumer of matches (triangulation, localization, reconstruction, visualization, the SfM
benchmarks) reads them through :class:`MatchedFeatures`:

* the matches file must have been made from *these* features: the fingerprint of the features'
  provenance it recorded (:func:`sekd_plugin.match_features.provenance`) must equal that of the
  features file given (ORB features with SIFT matches otherwise localize 100 m off, silently);
* keypoints are checked (:func:`~sekd_plugin.io.checks.check_keypoints`) and every match index must
  address a keypoint of its image (:func:`~sekd_plugin.io.checks.check_matches0`): an out-of-range
  index otherwise crashes COLMAP (SIGSEGV) or wraps around silently in numpy.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .features import get_keypoints, list_names
from .h5_open import H5FileError
from .matches import get_matches
from .provenance import features_fingerprint, read_conf


class MatchesMismatchError(H5FileError):
    """The matches file was made from other features than the features file given."""


def check_matches_of(matches: str | os.PathLike, features: str | os.PathLike,
                     features_ref: str | os.PathLike | None = None) -> None:
    """Raise :class:`MatchesMismatchError` when ``matches`` recorded the fingerprint of other
    features than ``features`` (and ``features_ref``). Files without a record (made by hloc)
    pass: their indices are still checked entry by entry."""
    recorded = read_conf(matches, "matches")
    if not isinstance(recorded, dict) or "features" not in recorded:
        return
    allowed = {recorded.get("features")} | ({recorded["features_ref"]} if "features_ref" in recorded else set())
    for path in (features, features_ref):
        if path is None:
            continue
        found = features_fingerprint(path)
        if found not in allowed:
            raise MatchesMismatchError(
                f"{matches} was made from other features than {path} (features fingerprint recorded "
                f"{sorted(map(str, allowed))}, {path} has {found}); match these features again")


class MatchedFeatures:
    """Checked keypoints and matches of one features file (and optionally a reference features
    file for the second image of each pair) and one matches file.

    ``keypoints(name)`` -> ``N x 2`` float64 (our pixel origin), cached;
    ``matches(name0, name1)`` -> ``(M x 2`` int64 ``(idx0, idx1)``, ``M`` scores); both raise
    :class:`~sekd_plugin.io.h5_open.H5FileError` naming the file and the entry.
    """

    def __init__(self, features: str | os.PathLike, matches: str | os.PathLike,
                 features_ref: str | os.PathLike | None = None):
        self.features, self.matches = Path(features), Path(matches)
        self.features_ref = Path(features_ref) if features_ref is not None else None
        for path, what in ((self.features, "features file"), (self.matches, "matches file"),
                           (self.features_ref, "reference features file")):
            if path is not None and not path.exists():
                raise FileNotFoundError(2, f"{what} not found", str(path))
        check_matches_of(self.matches, self.features, self.features_ref)
        self._keypoints: dict[tuple[bool, str], np.ndarray] = {}

    def names(self, ref: bool = False) -> list[str]:
        return list_names(self.features_ref if ref and self.features_ref is not None else self.features)

    def keypoints(self, name: str, ref: bool = False) -> np.ndarray:
        key = (bool(ref and self.features_ref is not None), name)
        if key not in self._keypoints:
            self._keypoints[key] = get_keypoints(self.features_ref if key[0] else self.features, name)
        return self._keypoints[key]

    def has_pair(self, name0: str, name1: str) -> bool:
        from .matches import has_matches

        return has_matches(self.matches, name0, name1)

    def matches_of(self, name0: str, name1: str, counts: tuple[int, int] | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
        """Matches of a pair checked against ``counts`` (default: the keypoint counts of the two
        images in the features file(s); ``name1`` from the reference file when there is one)."""
        if counts is None:
            counts = (len(self.keypoints(name0)), len(self.keypoints(name1, ref=True)))
        return get_matches(self.matches, name0, name1, counts)
