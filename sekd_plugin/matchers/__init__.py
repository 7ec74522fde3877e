"""Descriptor matchers: a registry keyed by ``conf["model"]["name"]`` and hloc-named confs."""

from .base import MATCHERS, BaseMatcher, get_matcher, load_matcher, register_matcher
from .confs import confs, get_conf
from .nearest_neighbor import match_nearest_neighbor, pairwise_distance

get_matcher_conf = get_conf

__all__ = [
    "MATCHERS", "BaseMatcher", "confs", "get_conf", "get_matcher", "get_matcher_conf", "load_matcher",
    "match_nearest_neighbor", "pairwise_distance", "register_matcher",
]
