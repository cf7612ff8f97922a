"""Moved to :mod:`nexus_core.testing.sshbed` (the testing kit for plugin authors); kept importable."""

from nexus_core.testing.sshbed import *  # noqa: F403
from nexus_core.testing.sshbed import __all__  # noqa: F401
