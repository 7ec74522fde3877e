"""``python -m sekd_plugin.train``: see :func:`sekd_plugin.train.loop.main`."""

import sys

from .loop import main

if __name__ == "__main__":
    sys.exit(main())
