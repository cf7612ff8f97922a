"""Hook specifications: everything a plugin (or a built-in) can add to Nexus.

Plugins implement these with ``@hookimpl`` (``from nexus_core.plugin import hookimpl``) in
the module named by their ``nexus`` entry point. Registration hooks are called once when
the plugin manager starts, and never during a run's hot path. Every hook returns a list
(possibly empty); results of all plugins are collected, and a name registered twice is an
error that names both distributions.

Executors, strategies and pre-flight checks are registered by name: return a
``Registration("name", "package.module:Class")`` and the module is imported only when a
plan uses the name (or ``nexus plugins`` shows it), so that a plugin costs nothing at start
for runs that do not use it. Returning the class itself also works (it is then imported
with the entry module). A registration whose module or class is missing, or whose class
does not implement the kind's interface, is reported naming the plugin and its
distribution.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

from nexus_core.kinds import KINDS

if TYPE_CHECKING:
    import click

    from nexus_core.api import AuditSink, CloudProvider, Executor, HostSource, PreflightCheck, SecretBackend, Strategy
    from nexus_core.events import Event, Subscriber
    from nexus_core.kinds import Registration
    from nexus_core.options import Option
    from nexus_core.plugins import PluginManager

hookspec = pluggy.HookspecMarker("nexus")


# --- executors -----------------------------------------------------------------------------


@hookspec
def nexus_executors() -> Sequence[Registration | type[Executor]]:
    """Return executors (subclasses of :class:`nexus_core.plugin.Executor`), by registration.

    Each registration names the transport it serves (``"local"``, ``"ssh"``...); a host
    string ``NAME://host`` (or a host whose ``transport`` is ``NAME``) runs through it. A
    task being run whose hosts' transport has no executor is a validation error naming the
    package to install; for tasks not being run it is a warning (``nexus validate`` checks
    every task). One instance serves a whole run (``__init__`` receives an
    ``ExecutorContext``). A transport name registered twice is an error naming both
    distributions; the first one (the built-in, for ``local``) is kept.

    Added in plugin API 1.
    """
    raise NotImplementedError


# --- strategies ----------------------------------------------------------------------------


@hookspec
def nexus_strategies() -> Sequence[Registration | type[Strategy]]:
    """Return strategies (subclasses of :class:`nexus_core.plugin.Strategy`), by registration.

    The name is what ``@task(strategy=...)`` refers to. ``task_options`` (a class attribute,
    or the registration detail of that name) declares the ``@task`` options the strategy
    reads, as :class:`nexus_core.plugin.Option`; they are validated with every task.
    ``batches`` decides the order the dry run shows; ``execute`` runs it. The built-ins
    ``parallel``, ``serial``, ``rolling`` and ``canary`` come through this hook.

    Added in plugin API 1.
    """
    raise NotImplementedError


# --- pre-flight checks ---------------------------------------------------------------------


@hookspec
def nexus_preflight_checks() -> Sequence[Registration | type[PreflightCheck]]:
    """Return pre-flight checks (subclasses of :class:`nexus_core.plugin.PreflightCheck`).

    Registration details: ``category`` (the heading its results appear under) and
    ``order`` (configuration 0, host checks 10-40, local files 90; default 50).
    ``nexus preflight TASK`` and the first section of ``--dry-run`` run every check over the
    plan; a failing blocking check stops the run before anything executes. A check that
    raises, or whose class cannot be loaded, is reported as a failed check naming its
    distribution. The built-in ``configuration`` and ``local-files`` checks come through
    this hook.

    Added in plugin API 1.
    """
    raise NotImplementedError


# --- secret backends -----------------------------------------------------------------------


@hookspec
def nexus_secret_backends() -> Sequence[Registration | type[SecretBackend]]:
    """Return secret backends (subclasses of :class:`nexus_core.plugin.SecretBackend`), by registration.

    The name is the prefix of the references it resolves: ``secret("vault:kv/app#db_password")``
    asks the backend registered as ``vault`` for ``"kv/app#db_password"``; ``secret("NAME")``
    asks the default backend, ``config(secret_backend=...)`` (``"local"``, the built-in
    encrypted store, when unset). A reference to a backend nobody registers is a validation
    error naming the package to install (exit 2). The class is imported, and one instance
    created with a :class:`nexus_core.plugin.SecretContext`, only when a run resolves its
    first reference; ``close`` is called at the end of the run. Every value ``resolve``
    returns is redacted (``***``) from output, logs and state by the core. Declare the
    backend's ``config(...)`` keys (an address, an auth method) through
    ``nexus_config_options``. A name registered twice is an error naming both distributions;
    the built-in ``local`` is kept.

    Added in plugin API 1.
    """
    raise NotImplementedError


# --- host sources --------------------------------------------------------------------------


@hookspec
def nexus_host_sources() -> Sequence[Registration | type[HostSource]]:
    """Return host sources (subclasses of :class:`nexus_core.plugin.HostSource`), by registration.

    The name is what ``discover("NAME", **filters)`` refers to in a nexusfile
    (``hosts("web", discover("tailscale", tags=["tag:web"]))``). The ``filters`` detail (a
    class attribute, or the registration detail of that name) declares the filters the source
    accepts, as :class:`nexus_core.plugin.Option`: an unknown filter is a validation error
    with a "did you mean", without importing the source. A name nobody registers is a
    validation error naming the package to install (``nexus-tailscale`` for ``tailscale``).
    The built-in source ``file`` cannot be replaced.

    At plan time each source is created once (``__init__`` receives a
    :class:`nexus_core.plugin.HostSourceContext`) and ``discover(filters)`` is called once per
    distinct ``discover(...)`` call, every source concurrently; it returns
    :class:`nexus_core.plugin.DiscoveredHost` items or raises
    :class:`nexus_core.plugin.DiscoveryError` (a message and a fix), which stops the run
    before anything executes. Results are cached in the state database for
    ``config(discovery_ttl=SECONDS)`` (default 0: discover on every run).

    Added in plugin API 1.
    """
    raise NotImplementedError


# --- audit sinks ---------------------------------------------------------------------------


@hookspec
def nexus_audit_sinks() -> Sequence[Registration | type[AuditSink]]:
    """Return audit sinks (subclasses of :class:`nexus_core.plugin.AuditSink`), by registration.

    The name is what a sink's table refers to with ``type = "NAME"`` in a configuration file
    (``[audit.sinks.kafka]`` with ``type = "kafka"``; the core's own ``file``, ``syslog``,
    ``splunk`` and ``azure_log_analytics`` are looked up first and cannot be replaced). The
    class is imported, and one instance created with a
    :class:`nexus_core.plugin.AuditSinkContext`, only when a configured sink uses the name: a
    run without sinks imports nothing of the audit machinery. Each instance gets its own
    bounded queue and thread; ``open`` is called before anything runs, ``write`` with batches
    of records in order, ``close`` at the end of the run. The ``options`` class attribute
    declares the keys the sink's table accepts. A name registered twice is an error naming
    both distributions.

    Added in plugin API 1.
    """
    raise NotImplementedError


# --- cloud providers -----------------------------------------------------------------------


@hookspec
def nexus_cloud_providers() -> Sequence[Registration | type[CloudProvider]]:
    """Return cloud providers (subclasses of :class:`nexus_core.plugin.CloudProvider`), by registration.

    The name is what ``cloud("NAME", ...)`` in a nexusfile and ``nexus cloud scale NAME=N``
    refer to. The ``settings`` detail (a class attribute, or the registration detail of that
    name) declares the provider's own ``cloud(...)`` parameters beyond the common ones
    (``count``, ``idle_timeout``, ``max_runtime``, ``max_hourly_cost``, ``max_instances``,
    ``tags``...), as :class:`nexus_core.plugin.Option`: an unknown one is a validation error
    with a "did you mean", without importing the provider. A name nobody registers is a
    validation error naming the package to install (``nexus-aws`` for ``aws``).

    The class is imported, and one instance created with a
    :class:`nexus_core.plugin.CloudContext`, only when a command or a run needs the provider.
    The core calls ``provision``, ``list`` and ``terminate`` through its controller, which
    checks the hard cost limits before every ``provision``, puts the ``nexus:*`` ownership
    tags on every request, retries ``CloudError(retryable=True)``, rate-limits the calls and
    opens a circuit breaker when the provider keeps failing. ``close`` is called at the end.
    A family member's own hooks (regions, images) go through ``nexus_addhooks``.

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


@hookspec
def nexus_event_types() -> Sequence[type[Event] | Registration]:
    """Return the event classes this plugin emits (frozen dataclasses subclassing
    :class:`nexus_core.events.Event`, each with a unique dotted ``name``), or
    ``Registration(NAME, "module:Class")`` for each, so that their module is imported only
    when an event class is first asked for (not at every start).

    They join the core's events in the catalogue (``Registry.event_types``), in the
    ``--format json`` stream (one object per event: ``event``, ``run_id``, ``ts`` and the
    dataclass's fields, in order) and in the documented event list. A name the core or
    another plugin already declares is an error naming both distributions. Emit them through
    ``ExecutorContext.emit`` (or ``StrategyContext.emit``). Called once at start-up: keep the
    module that defines them cheap to import.

    Added in plugin API 1.
    """
    raise NotImplementedError


# --- options -------------------------------------------------------------------------------


@hookspec
def nexus_config_options() -> Sequence[Option]:
    """Return extra ``config(...)`` keys this plugin understands (``nexus_core.options.Option``).

    Keys nobody declares are validation errors with a "did you mean" suggestion. A plugin
    may redeclare a key another part documents. Executors read the values the user set from
    ``ExecutorContext.config`` (``config.get(key, default)``: defaults are not filled in, so
    that "not set" can be told from "set to the default"). An option whose ``cli_override``
    names a CLI option (``user`` for ``-u/--user``, ``identity`` for ``-i/--identity``)
    receives that option's value.

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


# --- hooks that plugins add ------------------------------------------------------------------


@hookspec
def nexus_addhooks(pluginmanager: PluginManager) -> None:
    """Add hook specifications of your own: ``pluginmanager.add_hookspecs(module)``.

    Called once at start-up, after every plugin is registered and before any other hook
    is called. A family of plugins (cloud providers, say) shares hooks the core does not
    define: one distribution adds the specifications (functions marked with
    ``nexus_core.plugin.hookspec``, named ``nexus_...``), the others implement them, and the
    first calls them with ``pluginmanager.call("nexus_...", **kwargs)``, which returns
    ``(distribution, item)`` pairs and reports an implementation that raises by name.
    Implementing a hook that no installed plugin adds is reported like any unknown hook.

    :param pluginmanager: the :class:`nexus_core.plugin.PluginManager`.

    Added in plugin API 1.
    """
    raise NotImplementedError


#: The hook families and what they are for (used by ``nexus plugins`` and the docs),
#: derived from the kinds table (:data:`nexus_core.kinds.KINDS`).
FAMILIES: dict[str, str] = {k.hook: k.family for k in KINDS}
