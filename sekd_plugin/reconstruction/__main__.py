"""``python -m sekd_plugin.reconstruction``: see :func:`sekd_plugin.reconstruction.cli`."""

import sys

from . import cli

sys.exit(cli())
