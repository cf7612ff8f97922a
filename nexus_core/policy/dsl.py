"""The nexusfile's compliance functions: ``change_window(...)`` and ``require_dry_run(...)``.

Both are importable from ``nexus_core`` (lazily: a nexusfile that uses neither does not load
this package)::

    from nexus_core import change_window, require_dry_run, task

    change_window("production", days=["tue", "thu"], hours="10-16", timezone="America/New_York")
    require_dry_run(tasks=["deploy"], ttl=3600)

    @task(change_window="production", approval="required")
    def deploy(): ...
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nexus_core.policy.model import DEFAULT_TTL
from nexus_core.policy.windows import ChangeWindow, WindowError


def change_window(name: str, days: Any = None, hours: Any = None, timezone: str = "UTC") -> str:
    """Declare a weekly change window; ``@task(change_window=name)`` runs only inside it.

    ``days``: day names (``"monday"`` or ``"mon"``; default every day); ``hours``: ``"10-16"``,
    ``(10, 16)`` or ``range(10, 16)`` (from 10:00 to 16:00, default the whole day);
    ``timezone``: an IANA name (default UTC). Returns ``name``.
    """
    from nexus_core.dsl import _loading, _problem

    project = _loading("change_window")
    try:
        window = ChangeWindow.parse(name, days, hours, timezone)
    except WindowError as exc:
        _problem(exc.message, exc.hint, code="bad-value")
        return str(name)
    windows = project.compliance.setdefault("windows", {})
    if name in windows:
        _problem(
            f"change window {name!r} is declared twice", "give each change_window(...) its own name", code="bad-value"
        )
    windows[name] = window
    return name


def require_dry_run(tasks: Sequence[Any] = (), ttl: float = DEFAULT_TTL) -> None:
    """A real run of these tasks (names, glob patterns or task functions) needs a dry run
    (``nexus run --dry-run``) of the same plan by the same user within ``ttl`` seconds."""
    from nexus_core.dsl import _loading, _problem

    project = _loading("require_dry_run")
    items = [tasks] if isinstance(tasks, str) or callable(tasks) else tasks
    names: list[str] = []
    for item in items if isinstance(items, (list, tuple)) else [items]:
        name = getattr(item, "__nexus_task__", None) or (item if isinstance(item, str) else None)
        if not name:
            _problem(
                f"require_dry_run: tasks must be task names or functions, not {item!r}",
                'require_dry_run(tasks=["deploy"], ttl=3600)',
                code="bad-value",
            )
            return
        names.append(name)
    if not names:
        _problem("require_dry_run: no tasks given", 'require_dry_run(tasks=["deploy"], ttl=3600)', code="bad-value")
        return
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl <= 0:
        _problem(f"require_dry_run: ttl must be a number of seconds > 0, not {ttl!r}", "ttl=3600", code="bad-value")
        return
    project.compliance["dry_run"] = (tuple(names), float(ttl))
    from nexus_core.dsl import _caller

    project.compliance["dry_run_at"] = _caller(project)  # where a name matching no task is reported
