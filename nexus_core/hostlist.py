"""``nexus run --list-hosts``: the hosts each task of a plan would run on, without connecting."""

from __future__ import annotations

from typing import Any

from nexus_core.hosts import format_host
from nexus_core.plan import Plan


def hosts_listing(plan: Plan) -> dict[str, Any]:
    """Plain data: per task (plan order, then tasks left out by ``-H``) its host labels."""
    tasks: list[dict[str, Any]] = []
    for name in plan.order:
        hosts = [hp.host for hp in plan.tasks[name].hosts]
        tasks.append(
            {
                "task": name,
                "hosts": [h.label for h in hosts],
                "addresses": ["local" if h.is_local else format_host(h) for h in hosts],
                "skipped": None,
            }
        )
    for name, why in plan.skipped.items():
        tasks.append({"task": name, "hosts": [], "addresses": [], "skipped": why})
    for name, why in plan.waiting.items():
        tasks.append({"task": name, "hosts": [], "addresses": [], "skipped": None, "waiting": why})
    return {
        "event": "hosts",
        "limit": plan.limit or None,
        "tasks": tasks,
        "hosts": [h.label for h in plan.hosts],
    }


def hosts_text(plan: Plan) -> str:
    """The listing for people: one block per task, its hosts indented below it."""
    data = hosts_listing(plan)
    lines: list[str] = []
    for t in data["tasks"]:
        if t["skipped"]:
            lines.append(f"{t['task']}: skipped ({t['skipped']})")
            continue
        if t.get("waiting"):
            lines.append(f"{t['task']}: {t['waiting']}")
            continue
        n = len(t["hosts"])
        lines.append(f"{t['task']} ({n} host{'s' if n != 1 else ''}):")
        lines.extend(f"  {label}" for label in t["hosts"])
    total = len(data["hosts"])
    lines.append(f"{total} unique host{'s' if total != 1 else ''}")
    return "\n".join(lines)
