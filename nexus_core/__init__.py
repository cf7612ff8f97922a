"""Nexus: tasks with dependencies, run in parallel locally and on many hosts.

A nexusfile imports its language from here::

    from nexus_core import config, hosts, task, run, env
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nexus_core._version import API_VERSION, __version__
from nexus_core.dsl import (
    config,
    current_host,
    env,
    git_branch,
    git_sha,
    host,
    host_tags,
    host_var,
    hostname,
    hosts,
    run,
    task,
    timestamp,
)

if TYPE_CHECKING:
    import pluggy

    #: The marker for hook implementations: ``@hookimpl`` on ``nexus_*`` functions.
    hookimpl: pluggy.HookimplMarker

__all__ = [
    "API_VERSION",
    "__version__",
    "config",
    "current_host",
    "env",
    "git_branch",
    "git_sha",
    "hookimpl",
    "host",
    "host_tags",
    "host_var",
    "hostname",
    "hosts",
    "run",
    "task",
    "timestamp",
]


def __getattr__(name: str) -> Any:
    """Import the plugin marker lazily so that a nexusfile's import stays cheap."""
    if name == "hookimpl":
        import pluggy

        return pluggy.HookimplMarker("nexus")
    raise AttributeError(f"module 'nexus_core' has no attribute {name!r}")
