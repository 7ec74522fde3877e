"""``python -m sekd_plugin.train``: see :func:`sekd_plugin.train.command.cli`."""

import sys

from .command import cli

if __name__ == "__main__":
    sys.exit(cli())
