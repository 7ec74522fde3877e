"""Moved to :mod:`sekd_plugin.benchmark.sfm.runner`; this path stays for one release."""
from .benchmark.sfm.runner import *  # noqa: F401,F403
from .benchmark.sfm.runner import cli, load_config, run  # noqa: F401

if __name__ == "__main__":
    raise SystemExit(cli())
