"""Shell completion of what the nexusfile and the state define: task names, task parameters
(``version=``), host groups and hosts (for ``-H``), and run ids.

Each function is a click ``shell_complete`` callback. They never raise and never print:
a nexusfile that cannot be loaded simply completes nothing.
"""

from __future__ import annotations

import contextlib
import io
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # click imports its completion module only when completing; so do we
    from click.shell_completion import CompletionItem


def _project(ctx: Any) -> Any:
    from nexus_core.loader import find_nexusfile, load_project

    explicit = ctx.params.get("config_path")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return load_project(find_nexusfile(explicit if isinstance(explicit, str) else None))


def tasks_and_params(ctx: Any, _param: Any, incomplete: str) -> list[CompletionItem]:
    """Task names, and ``NAME=`` for the parameters of the tasks already on the line."""
    from click.shell_completion import CompletionItem

    from nexus_core.params import task_params

    try:
        project = _project(ctx)
        typed = [w for w in (ctx.params.get("tasks") or ()) if isinstance(w, str) and "=" not in w]
        words = [n for n in project.tasks if n not in typed]
        for name in typed:
            if name in project.tasks:
                words += [p.name + "=" for p in task_params(project.tasks[name].func)[0]]
    except Exception:  # noqa: BLE001 - completion must never fail the shell
        return []
    return [CompletionItem(w) for w in dict.fromkeys(words) if w.startswith(incomplete)]


def hosts(ctx: Any, _param: Any, incomplete: str) -> list[CompletionItem]:
    """Group names and host labels for ``-H`` (after the last comma of the word)."""
    from click.shell_completion import CompletionItem

    from nexus_core.plan import _inventory

    head, _, last = incomplete.rpartition(",")
    prefix = head + "," if head else ""
    sign = last[:1] if last[:1] in "!&" else ""
    last = last[len(sign) :]
    try:
        project = _project(ctx)
        words = [*project.groups, *(h.label for h in _inventory(project))]
    except Exception:  # noqa: BLE001 - completion must never fail the shell
        return []
    return [CompletionItem(prefix + sign + w) for w in dict.fromkeys(words) if w.startswith(last)]


def run_ids(_ctx: Any, _param: Any, incomplete: str) -> list[CompletionItem]:
    """Ids of recorded runs, newest first."""
    from click.shell_completion import CompletionItem

    try:
        from nexus_core.state.paths import state_db
        from nexus_core.state.store import StateStore

        ids = [r.id for r in StateStore(state_db()).runs(limit=50)]
    except Exception:  # noqa: BLE001 - completion must never fail the shell
        return []
    return [CompletionItem(i) for i in ids if i.startswith(incomplete)]


def complete(kind: str, *args: Any) -> list[CompletionItem]:
    """Dispatch for ``shell_complete=lambda *a: complete("hosts", *a)`` in the CLI modules."""
    found: list[CompletionItem] = globals()[kind](*args)
    return found
