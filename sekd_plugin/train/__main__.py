"""``python -m sekd_plugin.train``: see :func:`sekd_plugin.train.loop.cli`."""

import sys

from .loop import cli

if __name__ == "__main__":
    sys.exit(cli())
