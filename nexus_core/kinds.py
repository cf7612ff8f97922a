"""The plugin kinds, as data: one row per hook family.

Each :class:`Kind` says which hook registers it, what every item must be, which
registration details the core reads before the item's module is imported, and which
distributions are known to provide which names (for "pip install ..." hints). The plugin
manager, the registry, the hook reference (``docs/gen_hooks.py``), the hook meta-tests
and the fake plugins of the tests are all derived from :data:`KINDS`; adding a hook family
is one row here, one base class in ``nexus_core.api`` and one hook specification in
``nexus_core.hookspecs`` (see ``docs/plugins/add-a-hook-family.md``).

This module imports nothing heavy: the manager reads it at every start.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from nexus_core.records import Record

#: ``package.module:Class`` (the class may be nested: ``module:Outer.Inner``).
TARGET = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def _frozen(data: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    return MappingProxyType(dict(data or {}))


class Registration(Record):
    """A class registered by name and imported only when first needed.

    ``target`` is ``"package.module:Class"``; nothing is imported until a plan uses the
    name (or ``nexus plugins``/validation needs the class). ``details`` carries what the
    core reads before the import: the keys the kind declares (a pre-flight check's
    ``category`` and ``order``, a strategy's ``task_options``). On import, the class gets
    ``name`` and these details as class attributes unless it defines them itself; a class
    that defines a different value is reported as a broken registration.

    Example (in a plugin's entry module)::

        @hookimpl
        def nexus_executors() -> Sequence[Registration]:
            return [Registration("ssh", "nexus_ssh.executor:SshExecutor")]
    """

    __slots__ = ("name", "target", "details")
    name: str
    target: str
    details: Mapping[str, Any]

    def __init__(self, name: str, target: str, details: Mapping[str, Any] | None = None) -> None:
        self._init(name, target, _frozen() if details is None else details)

    @property
    def module(self) -> str:
        """The module ``target`` names."""
        return self.target.partition(":")[0]

    @property
    def attribute(self) -> str:
        """The (possibly dotted) class name ``target`` names in its module."""
        return self.target.partition(":")[2]


class Kind(Record):
    """One plugin kind: its hook, what each item must be, and what the core reads up front.

    ``base`` is ``"module:Class"`` of the interface every item implements (imported only to
    check an item); ``registry`` names the :class:`nexus_core.registry.Registry` table of
    classes looked up by name, or is empty for hooks whose items are not named classes
    (commands, subscribers, options). ``details`` maps each registration detail the core
    reads before import to its default. ``packages`` maps names that known distributions
    provide to the distribution, for install hints when the name is missing.
    """

    __slots__ = ("name", "hook", "family", "base", "summary", "registry", "details", "packages")
    name: str
    hook: str
    family: str
    base: str
    summary: str
    registry: str
    details: Mapping[str, Any]
    packages: Mapping[str, str]

    def __init__(
        self,
        name: str,
        hook: str,
        family: str,
        base: str,
        summary: str,
        registry: str = "",
        details: Mapping[str, Any] | None = None,
        packages: Mapping[str, str] | None = None,
    ) -> None:
        self._init(
            name,
            hook,
            family,
            base,
            summary,
            registry,
            _frozen() if details is None else details,
            _frozen() if packages is None else packages,
        )

    @property
    def by_name(self) -> bool:
        """True when items are classes registered by name (lazily if they wish)."""
        return bool(self.registry)

    @property
    def base_name(self) -> str:
        """The interface's class name, for messages (``Executor``)."""
        return self.base.rpartition(":")[2] or self.base

    def package_for(self, name: str) -> str | None:
        """The known distribution that provides ``name`` of this kind, if any."""
        return self.packages.get(name)


KINDS: tuple[Kind, ...] = (
    Kind(
        "executor",
        "nexus_executors",
        "executors",
        "nexus_core.api:Executor",
        "transports that run commands on hosts (local, ssh, ...)",
        registry="executors",
        packages=_frozen({"ssh": "nexus-ssh", "agent": "nexus-agent", "azure": "nexus-azure"}),
    ),
    Kind(
        "strategy",
        "nexus_strategies",
        "strategies",
        "nexus_core.api:Strategy",
        "how a task's hosts are scheduled (parallel, serial, rolling, canary, ...)",
        registry="strategies",
        details=_frozen({"task_options": ()}),
    ),
    Kind(
        "pre-flight check",
        "nexus_preflight_checks",
        "pre-flight checks",
        "nexus_core.api:PreflightCheck",
        "checks over a plan before anything runs",
        registry="checks",
        details=_frozen({"category": "Checks", "order": 50}),
    ),
    Kind(
        "secret backend",
        "nexus_secret_backends",
        "secret backends",
        "nexus_core.api:SecretBackend",
        'where `secret(...)` values come from (the local encrypted store, "vault:...", ...)',
        registry="secret_backends",
        packages=_frozen({"vault": "nexus-vault", "sops": "nexus-sops"}),
    ),
    Kind(
        "host source",
        "nexus_host_sources",
        "host discovery",
        "nexus_core.api:HostSource",
        "where hosts come from: `discover(NAME, **filters)` (mesh VPNs, clouds, CMDBs, inventory files)",
        registry="host_sources",
        details=_frozen({"filters": ()}),
        packages=_frozen(
            {
                "tailscale": "nexus-tailscale",
                "ssh_config": "nexus-ssh",
                # no "aws" or "hetzner": nexus-aws and nexus-hetzner are cloud providers only
                "agent": "nexus-agent",
                "azure": "nexus-azure",
            }
        ),
    ),
    Kind(
        "audit sink",
        "nexus_audit_sinks",
        "audit sinks",
        "nexus_core.api:AuditSink",
        'where audit records go: `[audit.sinks.NAME]` with `type = "file"`, "syslog", "splunk"...',
        registry="audit_sinks",
    ),
    Kind(
        "cloud provider",
        "nexus_cloud_providers",
        "cloud providers",
        "nexus_core.api:CloudProvider",
        "machines started on demand that join the agent cluster: `cloud(NAME, ...)` (aws, hetzner, local, ...)",
        registry="cloud_providers",
        details=_frozen({"settings": ()}),
        packages=_frozen(
            {
                "aws": "nexus-aws",
                "hetzner": "nexus-hetzner",
                "local": "nexus-agent",
                "azure": "nexus-azure",
                "azure-vmss": "nexus-azure",
            }
        ),
    ),
    Kind("command", "nexus_commands", "CLI commands", "click:Command", "subcommands of `nexus`"),
    Kind(
        "subscriber",
        "nexus_subscribers",
        "events",
        "nexus_core.api:Subscriber",
        "callables that receive every event of a run",
    ),
    Kind(
        "event type",
        "nexus_event_types",
        "events",
        "nexus_core.events:Event",
        "event classes a plugin emits (they join the catalogue and the JSON output)",
    ),
    Kind(
        "config option",
        "nexus_config_options",
        "options",
        "nexus_core.options:Option",
        "keys `config(...)` accepts",
    ),
    Kind(
        "task option",
        "nexus_task_options",
        "options",
        "nexus_core.options:Option",
        "options `@task(...)` accepts",
    ),
    Kind(
        "hook specification",
        "nexus_addhooks",
        "hook specifications",
        "",
        "hooks a family of plugins shares that the core does not define",
    ),
)

#: The kinds by hook name.
BY_HOOK: Mapping[str, Kind] = MappingProxyType({k.hook: k for k in KINDS})

#: The kinds whose items are classes looked up by name.
NAMED: tuple[Kind, ...] = tuple(k for k in KINDS if k.by_name)


def kind(name: str) -> Kind:
    """The kind called ``name`` (``"executor"``, ``"pre-flight check"``...)."""
    for k in KINDS:
        if k.name == name:
            return k
    raise KeyError(name)
