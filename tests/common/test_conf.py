"""sekd_plugin.common.conf: the one unknown-key check, its message naming every valid key."""

from __future__ import annotations

import pytest

from sekd_plugin.common.conf import check_keys
from sekd_plugin.common.errors import ConfigError, InputError
from sekd_plugin.io.images import check_preprocessing


def test_check_keys_names_the_unknown_and_the_valid_keys():
    check_keys({"a": 1}, ["a", "b"])
    with pytest.raises(ConfigError, match=r"^X: unknown conf key\(s\) \['c'\]; valid keys: \['a', 'b'\]$"):
        check_keys({"a": 1, "c": 2}, {"b": 0, "a": 0}, prefix="X: ")
    with pytest.raises(InputError, match=r"unknown config key\(s\) \['z'\] in f.yaml; valid keys"):
        check_keys(["z"], ["a"], "config", where="f.yaml", error=InputError)


def test_the_callers_keep_their_messages():
    with pytest.raises(ConfigError, match=r"^unknown preprocessing key\(s\) \['size'\]; valid keys: \["):
        check_preprocessing({"size": 3})
    from sekd_plugin.extractors.base import load_extractor

    with pytest.raises(ConfigError, match=r"^SIFT: unknown conf key\(s\) \['nope'\]; valid keys"):
        load_extractor({"name": "sift", "nope": 1})
