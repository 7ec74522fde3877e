"""``python -m sekd_plugin.weights {list,fetch,verify,where}``: the documented command, kept at
this name; the code lives in :mod:`sekd_plugin.infra.weights`."""

import sys

from .infra.weights import main

if __name__ == "__main__":
    sys.exit(main())
