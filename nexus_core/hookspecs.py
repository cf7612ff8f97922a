"""Hook specifications: everything a plugin (or a built-in) can add to Nexus.

Plugins implement these with ``@nexus_core.hookimpl`` in the module named by their
``nexus`` entry point. Registration hooks return classes or objects; they are called once
when the plugin manager starts, and never during a run's hot path. Every hook returns a
list (possibly empty); results of all plugins are collected, and a name registered twice
is an error that names both distributions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from nexus_core.api import Executor, PreflightCheck, Strategy
    from nexus_core.events import Subscriber
    from nexus_core.options import Option

hookspec = pluggy.HookspecMarker("nexus")


# --- executors -----------------------------------------------------------------------------


@hookspec
def nexus_executors() -> Sequence[type[Executor]]:
    """Return executor classes (subclasses of :class:`nexus_core.api.Executor`).

    Each class names the transport it serves in ``name`` (``"local"``, ``"ssh"``...). A host
    whose ``transport`` has no executor is a validation error naming the package to install.
    Called once at start-up; import heavy SDKs inside the executor, not at module level.
    """
    raise NotImplementedError


# --- strategies ----------------------------------------------------------------------------


@hookspec
def nexus_strategies() -> Sequence[type[Strategy]]:
    """Return strategy classes (subclasses of :class:`nexus_core.api.Strategy`).

    ``name`` is what ``@task(strategy=...)`` refers to; ``option_names`` lists the task
    options the strategy reads. Built-ins ``parallel`` and ``serial`` come through this hook.
    """
    raise NotImplementedError


# --- pre-flight checks ---------------------------------------------------------------------


@hookspec
def nexus_preflight_checks() -> Sequence[type[PreflightCheck]]:
    """Return pre-flight check classes (subclasses of :class:`nexus_core.api.PreflightCheck`).

    ``nexus preflight TASK`` and the first section of ``--dry-run`` run every check over the
    plan; a failing blocking check stops the run before anything executes.
    """
    raise NotImplementedError


# --- CLI commands --------------------------------------------------------------------------


@hookspec
def nexus_commands() -> Sequence[click.Command]:
    """Return click commands or groups to add as ``nexus`` subcommands.

    A name that clashes with a built-in or another plugin's command is an error naming
    both distributions.
    """
    raise NotImplementedError


# --- events --------------------------------------------------------------------------------


@hookspec
def nexus_subscribers(config: Mapping[str, Any], options: Mapping[str, Any]) -> Sequence[Subscriber]:
    """Return callables that receive every event of a run (``nexus_core.events``).

    Called at the start of each run with the nexusfile's ``config`` and the CLI ``options``.
    Each subscriber is called from one thread at a time; one that raises is reported by the
    plugin's name and receives no more events, and the run goes on.
    """
    raise NotImplementedError


# --- options -------------------------------------------------------------------------------


@hookspec
def nexus_config_options() -> Sequence[Option]:
    """Return extra ``config(...)`` keys this plugin understands (``nexus_core.options.Option``).

    Keys nobody declares are validation errors with a "did you mean" suggestion.
    """
    raise NotImplementedError


@hookspec
def nexus_task_options() -> Sequence[Option]:
    """Return extra ``@task(...)`` options this plugin understands (``nexus_core.options.Option``)."""
    raise NotImplementedError


#: The hook families and what they are for (used by ``nexus plugins`` and the docs).
FAMILIES: dict[str, str] = {
    "nexus_executors": "executors",
    "nexus_strategies": "strategies",
    "nexus_preflight_checks": "pre-flight checks",
    "nexus_commands": "CLI commands",
    "nexus_subscribers": "events",
    "nexus_config_options": "options",
    "nexus_task_options": "options",
}
