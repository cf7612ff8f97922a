"""The ``agent`` host source: the cluster's agents, and the selectors that pick among them.

``all_agents()``, ``any_of(n, tag=...)``, ``tagged(tag)`` and ``prefer(tag)`` (from
``nexus_core``) are ``discover("agent", select=..., ...)`` under the hood: this source asks
the scheduler which agents exist (names, tags, load), keeps those a selector allows and
returns them as ``agent://NAME`` hosts carrying their tags and load as facts. Among the
agents a selector allows, the least loaded come first (running tasks per slot, then CPU,
then memory, as the scheduler reports them). No agent matching is a
:class:`~nexus_core.plugin.DiscoveryError` naming the selector and the agents that exist
with their tags: the run stops before anything is submitted, instead of waiting for an
agent that will never come (dask/distributed#8256).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from nexus_core.plugin import DiscoveredHost, DiscoveryError, HostSource, Option

from nexus_agent import cluster
from nexus_agent.plugin import FILTERS

SELECTS = ("all", "any_of", "tagged", "prefer")


def describe(filters: Mapping[str, Any]) -> str:
    """The selector as the nexusfile wrote it: ``any_of(2, tag='linux')``."""
    select = filters.get("select") or "all"
    tag = filters.get("tag")
    if select == "any_of":
        return f"any_of({filters.get('count')}" + (f", tag={tag!r})" if tag else ")")
    if select == "tagged":
        return f"tagged({tag!r})"
    if select == "prefer":
        return f"prefer({tag!r})"
    if filters.get("name"):
        return f"agent://{filters['name']}"
    return "all_agents(" + (f"tag={tag!r})" if tag else ")")


def pick(found: Sequence[cluster.Agent], filters: Mapping[str, Any]) -> list[cluster.Agent]:
    """The agents ``filters`` select from ``found``, least loaded first; DiscoveryError when none."""
    select = filters.get("select") or "all"
    tag = filters.get("tag")
    name = filters.get("name")
    usable = [a for a in found if not a.draining]
    if name:
        usable = [a for a in usable if a.name == name]
    ranked = sorted(usable, key=lambda a: (a.load, a.name))
    if select == "prefer":
        chosen = [a for a in ranked if tag in a.tags] or ranked
        chosen = chosen[:1]
    else:
        chosen = [a for a in ranked if tag is None or tag in a.tags]
        if select == "any_of":
            count = int(filters.get("count") or 1)
            if len(chosen) < count:
                raise DiscoveryError(
                    f"{describe(filters)} needs {count} agent(s), {len(chosen)} match; "
                    f"the agents: {cluster.describe(list(found))}",
                    "start more agents with that tag (`nexus agent start --tags ...`), or ask for fewer",
                )
            chosen = chosen[:count]
        elif select == "all":
            chosen = sorted(chosen, key=lambda a: a.name)
    if not chosen:
        drained = [a.name for a in found if a.draining]
        extra = f" (draining: {', '.join(drained)})" if drained else ""
        raise DiscoveryError(
            f"no agent matches {describe(filters)}; the agents: {cluster.describe(list(found))}{extra}",
            "start an agent with that tag (`nexus agent start --tags TAG --join HOST:PORT`), or change the selector",
        )
    return chosen


def replacement(found: Sequence[cluster.Agent], facts: Mapping[str, Any], exclude: str) -> cluster.Agent | None:
    """Another agent the selector of a discovered host allows (its ``selector_*`` facts), least
    loaded first, for work whose agent ``exclude`` was lost; None when there is none.

    ``tagged``, ``all_agents`` and ``any_of`` keep their tag; ``prefer`` takes any agent, one
    with its tag first; a selector of one agent by name never moves.
    """
    if facts.get("selector_name"):
        return None
    tag = facts.get("selector_filter_tag")
    usable = sorted((a for a in found if not a.draining and a.name != exclude), key=lambda a: (a.load, a.name))
    if facts.get("selector_select") == "prefer":
        return next((a for a in usable if tag in a.tags), usable[0] if usable else None)
    return next((a for a in usable if tag is None or tag in a.tags), None)


class AgentSource(HostSource):
    """Hosts from the agent cluster: ``discover("agent", select=..., count=..., tag=...)``."""

    name: ClassVar[str] = "agent"
    filters: ClassVar[tuple[Option, ...]] = FILTERS

    def check(self, filters: Mapping[str, Any]) -> list[str]:
        """The selector must be one of the known ones, with what it needs."""
        select = filters.get("select") or "all"
        if select not in SELECTS:
            return [f"select={select!r} is not a selector; selectors: {', '.join(SELECTS)}"]
        if select in ("tagged", "prefer") and not filters.get("tag"):
            return [f"{select}() needs a tag"]
        return []

    def discover(self, filters: Mapping[str, Any]) -> Sequence[DiscoveredHost]:
        """The agents the selector allows, as ``agent://NAME`` hosts (tags and load as facts)."""
        try:
            client = cluster.client(cluster.address(self.context.config))
            found = cluster.fresh_agents(client)
        except cluster.ClusterError as exc:
            raise DiscoveryError(exc.message, exc.hint, exit_code=exc.exit_code) from None
        return [
            DiscoveredHost(
                address=a.name,
                name=a.name,
                transport="agent",
                tags=a.tags,
                facts={
                    "agent_address": a.address,
                    "running": a.running,
                    "slots": a.slots,
                    "cpu": a.cpu,
                    "memory": a.memory,
                    "selector": describe(filters),
                    "selector_tag": filters.get("tag") if (filters.get("select") or "all") == "tagged" else None,
                    # What the executor needs to pick another agent when this one is lost mid-task.
                    "selector_select": filters.get("select") or "all",
                    "selector_filter_tag": filters.get("tag"),
                    "selector_name": filters.get("name"),
                },
            )
            for a in pick(found, filters)
        ]
