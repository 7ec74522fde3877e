"""sekd_plugin.io.h5 stays the public face: every name it documented is importable from it,
and is the one defined in the module that does that job."""

from __future__ import annotations

import pytest

from sekd_plugin.io import features, h5, h5_merge, h5_open, h5_parts, matches, provenance


@pytest.mark.parametrize("module, names", [
    (h5_open, ["H5FileError", "open_h5", "check_name", "entry_name", "FORMAT_ATTR", "COMPLETE_ATTR",
               "LOCK_TIMEOUT_ENV", "DEFAULT_LOCK_TIMEOUT", "LIBVER"]),
    (provenance, ["read_conf", "conf_differences", "CONF_ATTR", "file_sha256", "features_fingerprint"]),
    (h5_parts, ["record_conf", "publish", "PartWriter"]),  # record_conf writes: it lives with publish
    (h5_merge, ["merge_files"]),
    (features, ["write_features", "list_names", "read_features", "get_keypoints"]),
    (matches, ["names_to_pair", "names_to_pair_old", "write_matches", "has_matches", "get_matches"]),
])
def test_moved_names_are_importable_from_h5(module, names):
    for name in names:
        assert getattr(h5, name) is getattr(module, name), name
        assert name in h5.__all__


def test_h5_docstring_describes_the_layout_without_a_missing_file():
    assert "HLOC_CONTRACT" not in h5.__doc__
    assert "matching_scores0" in h5.__doc__ and "keypoints" in h5.__doc__
