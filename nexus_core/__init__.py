"""Nexus: tasks with dependencies, run in parallel locally and on many hosts.

A nexusfile imports its language from here::

    from nexus_core import config, hosts, task, run, env
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nexus_core._version import API_VERSION, __version__
from nexus_core.dsl import (
    cloud,
    config,
    current_host,
    discover,
    env,
    git_branch,
    git_sha,
    host,
    host_tags,
    host_var,
    hostname,
    hosts,
    inventory,
    run,
    secret,
    task,
    timestamp,
)
from nexus_core.lazy import lazy_getattr

if TYPE_CHECKING:
    from nexus_core.artifacts import artifact
    from nexus_core.calls import call, wait_for
    from nexus_core.files import download, template, upload
    from nexus_core.handlers import handler
    from nexus_core.plugin import hookimpl
    from nexus_core.policy.dsl import change_window, require_dry_run
    from nexus_core.targets import (
        all_agents,
        any_of,
        prefer,
        shard_count,
        shard_end,
        shard_id,
        shard_items,
        shard_start,
        tagged,
    )

#: Names imported on first use, so that a nexusfile that does not use them does not pay for
#: their modules (hashing, globbing, the executor API, handlers): name -> module.
_LAZY = {
    "artifact": "nexus_core.artifacts",
    "call": "nexus_core.calls",
    "wait_for": "nexus_core.calls",
    "hookimpl": "nexus_core.plugin",
    "download": "nexus_core.files",
    "template": "nexus_core.files",
    "upload": "nexus_core.files",
    "handler": "nexus_core.handlers",
    "change_window": "nexus_core.policy.dsl",
    "require_dry_run": "nexus_core.policy.dsl",
    **dict.fromkeys(
        (
            "all_agents",
            "any_of",
            "prefer",
            "tagged",
            "shard_id",
            "shard_count",
            "shard_items",
            "shard_start",
            "shard_end",
        ),
        "nexus_core.targets",
    ),
}

__all__ = [
    "API_VERSION",
    "__version__",
    "all_agents",
    "any_of",
    "artifact",
    "call",
    "change_window",
    "cloud",
    "config",
    "current_host",
    "discover",
    "download",
    "env",
    "git_branch",
    "git_sha",
    "handler",
    "hookimpl",
    "host",
    "host_tags",
    "host_var",
    "hostname",
    "hosts",
    "inventory",
    "prefer",
    "require_dry_run",
    "run",
    "secret",
    "shard_count",
    "shard_end",
    "shard_id",
    "shard_items",
    "shard_start",
    "tagged",
    "task",
    "template",
    "timestamp",
    "upload",
    "wait_for",
]


# ``artifact``, ``call``, ``upload``, ``handler``... and the plugin marker (``nexus_core.hookimpl`` is
# ``nexus_core.plugin.hookimpl``, the typed marker), imported on first use.
__getattr__ = lazy_getattr("nexus_core", _LAZY, globals())
