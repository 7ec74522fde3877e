"""``python -m sekd_plugin.train``: the program entry, which runs the top-level train command
(:mod:`sekd_plugin.training`, where the DEV benchmark is wired in). No module imports this
file; the library modules of ``train/`` never import the benchmarks."""

import sys

from ..training import cli

if __name__ == "__main__":
    sys.exit(cli())
