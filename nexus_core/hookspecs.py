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

    Each class names the transport it serves in ``name`` (``"local"``, ``"ssh"``...); a host
    string ``NAME://host`` (or a host whose ``transport`` is ``NAME``) runs through it. A host
    whose transport has no executor is a validation error naming the package to install.
    One instance serves a whole run (``__init__`` receives an ``ExecutorContext``).
    Called once at start-up; import heavy SDKs inside the executor, not at module level.
    A transport name registered twice is an error naming both distributions; the first one
    (the built-in, for ``local``) is kept.

    Added in plugin API 1.
    """
    raise NotImplementedError


# --- strategies ----------------------------------------------------------------------------


@hookspec
def nexus_strategies() -> Sequence[type[Strategy]]:
    """Return strategy classes (subclasses of :class:`nexus_core.api.Strategy`).

    ``name`` is what ``@task(strategy=...)`` refers to; ``option_names`` lists the task
    options the strategy reads (declare new ones with :func:`nexus_task_options`).
    ``batches`` decides the order the dry run shows; ``execute`` runs it. Built-ins
    ``parallel`` and ``serial`` come through this hook.

    Added in plugin API 1.
    """
    raise NotImplementedError


# --- pre-flight checks ---------------------------------------------------------------------


@hookspec
def nexus_preflight_checks() -> Sequence[type[PreflightCheck]]:
    """Return pre-flight check classes (subclasses of :class:`nexus_core.api.PreflightCheck`).

    ``nexus preflight TASK`` and the first section of ``--dry-run`` run every check over the
    plan; a failing blocking check stops the run before anything executes. A check that
    raises is reported as a failed check naming its distribution. The built-in
    ``configuration`` check comes through this hook.

    Added in plugin API 1.
    """
    raise NotImplementedError


# --- CLI commands --------------------------------------------------------------------------


@hookspec
def nexus_commands() -> Sequence[click.Command]:
    """Return click commands or groups to add as ``nexus`` subcommands.

    Called once, the first time the CLI needs the list of commands (``nexus --help``, or a
    name that is not built in). A name another plugin already added is an error naming both
    distributions; a built-in command of the same name always wins. Import what the command
    needs inside its callback, so that ``nexus --help`` stays fast.

    Added in plugin API 1.
    """
    raise NotImplementedError


# --- events --------------------------------------------------------------------------------


@hookspec
def nexus_subscribers(config: Mapping[str, Any], options: Mapping[str, Any]) -> Sequence[Subscriber]:
    """Return callables that receive every event of a run (``nexus_core.events``).

    Called at the start of each run.

    :param config: the nexusfile's resolved ``config(...)`` values (defaults included).
    :param options: the run's CLI options (``format``, ``mode``).

    Each subscriber is called with one :class:`nexus_core.events.Event` at a time, in order.
    One that raises is reported on stderr by the plugin's name and receives no more events;
    the run and the other subscribers go on.

    Added in plugin API 1.
    """
    raise NotImplementedError


# --- options -------------------------------------------------------------------------------


@hookspec
def nexus_config_options() -> Sequence[Option]:
    """Return extra ``config(...)`` keys this plugin understands (``nexus_core.options.Option``).

    Keys nobody declares are validation errors with a "did you mean" suggestion. A plugin
    may redeclare a key the core documents (``nexus-ssh`` refines the ``ssh_*`` keys); the
    resolved values reach executors as ``ExecutorContext.config``.

    Added in plugin API 1.
    """
    raise NotImplementedError


@hookspec
def nexus_task_options() -> Sequence[Option]:
    """Return extra ``@task(...)`` options this plugin understands (``nexus_core.options.Option``).

    Options nobody declares are validation errors. A task's options reach its strategy
    (``Strategy.batches(hosts, options)``) and the plan (``TaskPlan.options``).

    Added in plugin API 1.
    """
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
