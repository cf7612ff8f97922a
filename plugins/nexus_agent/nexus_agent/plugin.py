"""Entry module of the ``nexus-agent`` plugin (entry point ``nexus: agent``).

Cheap to import: the executor and the host source are registered as ``"module:Class"`` and
imported (with Dask) only when a plan uses ``agent://`` hosts or a selector; the ``agent``
command group imports Dask inside its callbacks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from nexus_core.plugin import Option, Registration, hookimpl

if TYPE_CHECKING:
    import click

#: The core plugin API version this plugin was built for.
NEXUS_API_VERSION = 1


#: The filters of the ``agent`` host source (here, not in nexus_agent.source: registering
#: them at every start must not import the cluster and certificate modules).
FILTERS: tuple[Option, ...] = (
    Option("select", (str,), "all", "which agents: all, any_of, tagged or prefer"),
    Option("count", (int,), None, "how many agents any_of picks", minimum=1),
    Option("tag", (str,), None, "only agents with this tag (prefer: agents with it first)"),
    Option("name", (str,), None, "one agent by name"),
)


#: The ``local`` cloud provider's own settings (here for the same reason as FILTERS).
CLOUD_SETTINGS: tuple[Option, ...] = (
    Option("max_concurrent_tasks", (int,), 1, "commands each local instance runs at once", minimum=1),
)


@hookimpl
def nexus_executors() -> Sequence[Registration]:
    """``agent://NAME`` hosts (and the hosts selectors pick) run through the agent executor."""
    return [Registration("agent", "nexus_agent.executor:AgentExecutor")]


@hookimpl
def nexus_host_sources() -> Sequence[Registration]:
    """``discover("agent", ...)``: what ``all_agents()``, ``any_of()``, ``tagged()``, ``prefer()`` ask."""
    return [Registration("agent", "nexus_agent.source:AgentSource", {"filters": FILTERS})]


@hookimpl
def nexus_cloud_providers() -> Sequence[Registration]:
    """``cloud("local", ...)``: agents as processes on this machine (tests, laptops)."""
    return [Registration("local", "nexus_agent.burst:LocalProvider", {"settings": CLOUD_SETTINGS})]


@hookimpl
def nexus_config_options() -> Sequence[Option]:
    """``cluster``: the coordinator's address (``tls://HOST:7400``; ``NEXUS_CLUSTER`` when unset)."""
    return [
        Option(
            "cluster",
            (str,),
            None,
            "the agent cluster's coordinator, tls://HOST:7400 (default: NEXUS_CLUSTER, else a local coordinator)",
        )
    ]


@hookimpl
def nexus_commands() -> Sequence[click.Command]:
    """``nexus agent init|cert|start|stop|status|drain|systemd-unit``."""
    from nexus_agent.cli import agent

    return [agent]
