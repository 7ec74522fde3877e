"""Moved to :mod:`sekd_plugin.integrations.hloc`; this forwarding module goes in the next release."""
from .integrations.hloc import *  # noqa: F401,F403
from .integrations.hloc import MODULE_NAME, is_registered, register, sekd_confs  # noqa: F401
