"""Moved to :mod:`sekd_plugin.datasets.strecha` and :mod:`sekd_plugin.benchmark.sfm.metrics`;
this path stays for one release."""
from .benchmark.sfm.metrics import *  # noqa: F401,F403
from .datasets.strecha import *  # noqa: F401,F403
