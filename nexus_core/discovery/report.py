"""How discovery is shown: the dry run's "where each host came from" section."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from nexus_core.api import DiscoveredHost
from nexus_core.hosts import format_host

if TYPE_CHECKING:
    from nexus_core.output.style import Style
    from nexus_core.plan import Plan


def _age(record: Mapping[str, Any], now: float) -> str:
    origin = record.get("origin") or "discovered"
    at = float(record.get("at") or 0)
    if origin == "cache":
        return f"from the cache, {max(0, int(now - at))} s old"
    if origin == "resumed run":
        return "as the interrupted run found them"
    return "discovered now"


def discovery_lines(style: Style, plan: Plan) -> list[str]:
    """``HOST DISCOVERY``: each ``discover(...)`` with its hosts and whether the run targets them."""
    import time

    from nexus_core.discovery import host_text
    from nexus_core.targets import SHARD_POOL

    targeted = {("local" if h.is_local else format_host(h)): h.label for h in plan.hosts}
    # A sharded task's shards run on any host of their pool: those hosts are targeted too.
    pooled = {f"{h.transport}://{name}" for h in plan.hosts for name in (h.facts.get(SHARD_POOL) or ())}
    lines = ["HOST DISCOVERY"]
    now = time.time()
    for record in plan.discovery:
        hosts = [DiscoveredHost.from_dict(h) for h in record.get("hosts") or ()]
        line = record.get("line")
        where = f"line {line}, " if line else ""
        n = len(hosts)
        lines.append(f"  {record.get('call')}  ({where}{_age(record, now)}: {n} host{'s' if n != 1 else ''})")
        for h in hosts:
            text = host_text(h)
            label = targeted.get(text)
            shown = label or h.name or h.address
            extra = []
            if h.name and h.name != shown:
                extra.append(h.name)
            if text != shown and text != "local":
                extra.append(text)
            if h.tags:
                extra.append("tags: " + ", ".join(h.tags))
            if h.os:
                extra.append(f"os: {h.os}")
            state = ""
            if not h.target:
                state = style.paint("  offline: not targeted" if not h.online else "  not targeted", "yellow")
            elif not h.online:
                state = style.paint("  offline: targeted as asked", "yellow")
            elif label is None and text in pooled:
                state = style.paint("  takes this run's shards", "dim")
            elif label is None:
                state = style.paint("  not targeted by this run", "dim")
            detail = f"  ({'; '.join(extra)})" if extra else ""
            lines.append(f"    {style.bullet} {shown}{detail}{state}")
    return lines
