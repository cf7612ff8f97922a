"""The contract of host sources (``nexus_host_sources``): re-exported by ``nexus_core.api``.

Imported on first use, so that a run that does not use this kind of plugin does not build
its classes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from nexus_core.model import EMPTY, Problem
from nexus_core.options import Option

if TYPE_CHECKING:
    pass


class DiscoveryError(Exception):
    """A host source could not discover: the message says what failed, ``hint`` how to fix it.

    ``discover(...)`` raises it for every failure the user can act on (not on the tailnet,
    an expired API key, a missing inventory file...). The run stops before anything
    executes, with exit code 3 (a host source that cannot be reached) unless ``exit_code``
    says otherwise (2 for a configuration mistake such as a bad inventory file).
    ``problems`` carries several findings at once (every mistake of an inventory file), as
    strings or, with their file and line, as :class:`nexus_core.model.Problem`.
    """

    def __init__(
        self, message: str, hint: str = "", *, exit_code: int = 3, problems: Sequence[str | Problem] = ()
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code
        self.problems = tuple(problems)


@dataclass(frozen=True, init=False)
class DiscoveredHost:
    """One host a source found: where to connect, and what is known about the machine.

    ``address`` is what Nexus connects to (a DNS name or an IP address); ``user``,
    ``port`` and ``transport`` (empty: the default transport of host strings) complete the
    connection.
    ``tags`` are labels for grouping and ``-H tag:NAME``; ``os``, ``online`` and
    ``addresses`` (every address of the machine) are common facts; ``facts`` holds anything
    source-specific (plain data: strings, numbers, booleans, None, lists and dicts of
    these); ``vars`` holds per-host variables (what an inventory file sets, read in task
    bodies with ``host_var``). ``name`` is the source's own name for the machine (its
    hostname, when the address is a DNS name or an IP), shown by ``nexus hosts list``.

    A host that is not ``online`` is listed by ``nexus hosts list`` but not targeted.
    ``targeted`` overrides that when a source decides itself (None: target exactly the
    online hosts): ``False`` for an online machine that cannot be reached (no usable
    address, an expired login), ``True`` for an offline one the user asked for anyway.
    ``online`` always states the machine's own state, as the source reported it.
    """

    address: str
    user: str | None = None
    port: int | None = None
    tags: tuple[str, ...] = ()
    os: str = ""
    online: bool = True
    addresses: tuple[str, ...] = ()
    facts: Mapping[str, Any] = field(default=EMPTY)
    vars: Mapping[str, Any] = field(default=EMPTY)
    name: str = ""
    transport: str = ""
    targeted: bool | None = None

    def __init__(
        self,
        address: str,
        user: str | None = None,
        port: int | None = None,
        tags: tuple[str, ...] = (),
        os: str = "",
        online: bool = True,
        addresses: tuple[str, ...] = (),
        facts: Mapping[str, Any] = EMPTY,
        vars: Mapping[str, Any] = EMPTY,
        name: str = "",
        transport: str = "",
        targeted: bool | None = None,
    ) -> None:
        # The generated __init__ of a frozen dataclass, in one step: it would call
        # object.__setattr__ once per field (~23 M instructions for 1,000 discovered hosts).
        self.__dict__.update(
            {"address": address, "user": user, "port": port, "tags": tags, "os": os, "online": online,
             "addresses": addresses, "facts": facts, "vars": vars, "name": name, "transport": transport,
             "targeted": targeted}
        )  # fmt: skip

    @property
    def target(self) -> bool:
        """Whether a run targets this host: ``targeted`` when the source set it, else ``online``."""
        return self.online if self.targeted is None else self.targeted

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON output, the discovery cache)."""
        from nexus_core.model import thaw

        return {
            "address": self.address,
            "user": self.user,
            "port": self.port,
            "tags": list(self.tags),
            "os": self.os,
            "online": self.online,
            "addresses": list(self.addresses),
            "facts": thaw(self.facts),
            "vars": thaw(self.vars),
            "name": self.name,
            "transport": self.transport,
            "targeted": self.targeted,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DiscoveredHost:
        """The inverse of :meth:`to_dict`."""
        return cls(
            address=str(data["address"]),
            user=data.get("user"),
            port=data.get("port"),
            tags=tuple(data.get("tags") or ()),
            os=str(data.get("os") or ""),
            online=bool(data.get("online", True)),
            addresses=tuple(data.get("addresses") or ()),
            facts=dict(data.get("facts") or {}),
            vars=dict(data.get("vars") or {}),
            name=str(data.get("name") or ""),
            transport=str(data.get("transport") or ""),
            targeted=None if data.get("targeted") is None else bool(data["targeted"]),
        )


@dataclass(frozen=True)
class HostSourceContext:
    """What a host source gets when it is created, once per run (or ``nexus hosts`` command).

    ``config``: the nexusfile's ``config(...)`` values as the user set them (defaults not
    filled in: ``config.get(key, default)``; keys the source reads are declared with
    ``nexus_config_options``). ``root``: the project folder (relative paths are relative to
    it). ``warn``: report something the user should know that does not stop discovery (a
    rate limit waited out, a peer skipped), one line, shown before the run.
    """

    config: Mapping[str, Any]
    root: str = "."
    warn: Callable[[str], None] = field(default=lambda _message: None)


class HostSource(ABC):
    """Discovers hosts: ``discover("NAME", **filters)`` in a nexusfile (a mesh VPN, a cloud, a CMDB).

    One instance is created per run with a :class:`HostSourceContext`; ``discover`` is called
    once for each distinct ``discover(...)`` of the nexusfile, at plan time, from a worker
    thread (sources run concurrently with each other). Keep it about *what* hosts exist:
    the core turns each :class:`DiscoveredHost` into a target host, applies ``online``,
    caches results (``config(discovery_ttl=...)``) and shows where each host came from.
    """

    #: What ``discover("NAME")`` refers to; set from the registration.
    name: ClassVar[str]
    #: The filters ``discover(NAME, **filters)`` accepts, as :class:`Option` (name, types,
    #: default, help): an unknown filter is a validation error with a "did you mean", a value
    #: of the wrong type is reported with the option's help. A registration gives them as its
    #: ``filters`` detail, so that validation does not import the source's module.
    filters: ClassVar[tuple[Option, ...]] = ()

    def __init__(self, context: HostSourceContext) -> None:
        self.context = context

    def check(self, filters: Mapping[str, Any]) -> list[str]:
        """Problems with these filter values beyond their types (a bad regex...); no network.

        Called when the nexusfile is validated; each string is one problem. Default: none.
        """
        return []

    def cache_scope(self) -> str:
        """What, beyond the nexusfile's ``config(...)`` and the filters, decides which hosts this
        source finds: where it asks and as whom, from the environment too (an API's URL, an
        account, a digest of the credential: never a secret itself). Discoveries cached by
        ``config(discovery_ttl=...)`` are reused only under the same scope, so that another
        account's hosts are never targeted from the cache. No network; default: ``""``.
        Raising :class:`DiscoveryError` skips the cache (``discover`` then says what is wrong)."""
        return ""

    @abstractmethod
    def discover(self, filters: Mapping[str, Any]) -> Sequence[DiscoveredHost]:
        """The hosts matching ``filters`` (only the filters the user gave; defaults are the
        source's to apply). Raise :class:`DiscoveryError` with a message and a fix when the
        source cannot answer."""
