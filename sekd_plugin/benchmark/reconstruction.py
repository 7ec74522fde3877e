"""Moved to :mod:`sekd_plugin.benchmark.sfm.suite`; this path stays for one release."""
from .sfm.suite import *  # noqa: F401,F403
from .sfm.suite import main, markdown_report, plot, run, table_rows  # noqa: F401
