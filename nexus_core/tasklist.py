"""The task list of ``nexus list`` (and of ``nexus run`` without a task): rows and their text."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nexus_core.model import Project
from nexus_core.params import task_params


def task_rows(project: Project, default: str | None = None) -> list[dict[str, Any]]:
    """One row per task in definition order: name, deps, target, strategy, summary, parameters."""
    from nexus_core.plan import _dep_name

    rows: list[dict[str, Any]] = []
    for t in project.tasks.values():
        params = task_params(t.func)[0]
        row: dict[str, Any] = {
            "name": t.name,
            "deps": [n for n in (_dep_name(d) for d in t.deps) if n],
            "on": t.on
            if isinstance(t.on, str)
            else ", ".join(map(str, t.on if isinstance(t.on, (list, tuple)) else [t.on])),
            "strategy": t.strategy,
            "description": t.summary,
            "line": t.location.line,
        }
        # Keys a task without them does not need stay out, so older rows keep their exact shape.
        if params:
            row["params"] = [p.to_dict() for p in params]
        if t.name == default:
            row["default"] = True
        rows.append(row)
    return rows


def rows_text(rows: Sequence[dict[str, Any]]) -> str:
    """Aligned columns: signature, target, summary, ``(after deps)``; the default task is marked."""
    names = [_signature(r) + ("  [default]" if r.get("default") else "") for r in rows]
    width = max(len(n) for n in names)
    twidth = max(len(r["on"]) for r in rows)
    lines = []
    for name, r in zip(names, rows, strict=True):
        after = f"  (after {', '.join(r['deps'])})" if r["deps"] else ""
        lines.append(f"{name:<{width}}  {r['on']:<{twidth}}  {r['description']}{after}".rstrip())
    return "\n".join(lines)


def _signature(row: dict[str, Any]) -> str:
    params = row.get("params") or []
    shown = [f"{p['name']}: {p['type']}" + ("" if p["required"] else f" = {p['default']!r}") for p in params]
    return f"{row['name']}({', '.join(shown)})" if shown else str(row["name"])
