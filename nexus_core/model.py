"""The data model shared by the loader, validator, planner and engine: frozen dataclasses,
and records (:class:`nexus_core.records.Record`) for the pure records every start builds."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nexus_core.records import Record, frozen_dataclass

if TYPE_CHECKING:
    from nexus_core.markers import Marker


class Location(Record):
    """A place in a user's file: path and 1-based line (0 when unknown)."""

    __slots__ = ("path", "line")
    path: str
    line: int

    def __init__(self, path: str, line: int = 0) -> None:
        self._init(path, line)

    def __str__(self) -> str:
        import os

        name = os.path.basename(self.path)
        return f"{name}:{self.line}" if self.line else name


class FrozenMap(Mapping[str, Any]):
    """A read-only mapping (hashable when its values are): the form of host attributes in a plan.

    Built by :func:`nexus_core.hosts.freeze`, whose values are frozen too (lists become
    tuples, dicts become ``FrozenMap``), so a plan stays plain frozen data.
    """

    __slots__ = ("_data",)

    def __init__(self, items: Mapping[str, Any] | Iterable[tuple[str, Any]] = ()) -> None:
        self._data: dict[str, Any] = dict(items)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"


EMPTY = FrozenMap()

#: What makes two hosts the same host: (transport, user, name, port) as written.
HostKey = tuple[str, str | None, str, int | None]


@frozen_dataclass
class Host:
    """One target machine. ``transport`` picks the executor (``local``, ``ssh``, ...).

    Its identity (:attr:`key`) is transport, user, name and port: ``deploy@web-1`` and
    ``root@web-1`` are two hosts. Attributes (``tags``, ``vars``, ``facts``,
    ``resource_ids``) describe the machine and never change its identity; they are frozen
    (tuples and :class:`FrozenMap`).
    """

    name: str
    user: str | None = None
    port: int | None = None
    transport: str = "ssh"
    source: str = ""
    #: Free-form labels for grouping and selection, in declaration order (``("blue", "eu")``).
    tags: tuple[str, ...] = field(default=(), compare=False)
    #: Per-host variables set in the nexusfile (``host("web-1", vars={"port": 8080})``).
    vars: Mapping[str, Any] = field(default=EMPTY, compare=False)
    #: What a host source found out about the machine (OS, online, addresses...).
    facts: Mapping[str, Any] = field(default=EMPTY, compare=False)
    #: The machine's IDs in other systems, by system (``{"aws": "i-0abc"}``).
    resource_ids: Mapping[str, str] = field(default=EMPTY, compare=False)
    #: The label the planner chose when two hosts of a plan share a short label ("" = :attr:`short_label`).
    display: str = field(default="", compare=False, repr=False)

    @property
    def is_local(self) -> bool:
        """True for the machine Nexus runs on."""
        return self.transport == "local"

    @property
    def key(self) -> HostKey:
        """The host's identity: hosts with equal keys are one host (state, resume, status files)."""
        return (self.transport, self.user, self.name, self.port)

    @property
    def short_label(self) -> str:
        """The host name, with the port when one was given (the label unless two hosts share it)."""
        if self.port is None:
            return self.name
        return f"[{self.name}]:{self.port}" if ":" in self.name else f"{self.name}:{self.port}"

    @property
    def label(self) -> str:
        """Name shown in output and keying events and state: unique among the hosts of a plan.

        Usually :attr:`short_label`; when two hosts of a plan differ only in user or
        transport, the planner gives each its full host string (``deploy@web-1``).
        """
        return self.display or self.short_label

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON output."""
        return {
            "name": self.name,
            "user": self.user,
            "port": self.port,
            "transport": self.transport,
            "label": self.label,
            "tags": list(self.tags),
            "vars": thaw(self.vars),
            "facts": thaw(self.facts),
            "resource_ids": thaw(self.resource_ids),
        }


def thaw(value: Any) -> Any:
    """Frozen attribute data back to JSON-ready lists and dicts."""
    if isinstance(value, Mapping):
        return {str(k): thaw(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [thaw(v) for v in value]
    return value


LOCAL = Host(name="local", transport="local", source="local")


@frozen_dataclass
class Command:
    """One recorded ``run(...)`` operation, with every option resolved."""

    cmd: str
    sudo: bool = False
    user: str | None = None
    timeout: float = 60
    retries: int = 0
    retry_delay: float = 1
    continue_on_error: bool = False
    env: tuple[tuple[str, str], ...] = ()
    cwd: str | None = None
    line: int = 0
    #: Idempotence guards (see nexus_core.guards): skip when PATH exists / unless CMD succeeds...
    creates: str | None = None
    only_if: str | None = None
    unless: str | None = None
    #: Handlers this operation notifies (by name) when it changes something (``notify=``).
    notify: tuple[str, ...] = ()
    #: Set by the engine at execution time: where the host records pid and exit code.
    marker: Marker | None = field(default=None, compare=False)
    #: A secret reference whose value the command reads on its standard input
    #: (``secret("NAME", to=PATH)``); the value itself is fetched only when the command runs.
    input_secret: str | None = None
    #: Set by the engine at execution time from ``input_secret``: what the executor writes on the
    #: command's standard input, after :func:`nexus_core.secrets.files.marker`'s line. Never
    #: shown, recorded or compared.
    input: str | None = field(default=None, compare=False, repr=False)
    #: Set by the engine at execution time: False when the command's task is declared
    #: ``idempotent=False``. A transport that can move a host's work to another machine when
    #: the first one is lost mid-task moves the work of idempotent tasks only.
    idempotent: bool = field(default=True, compare=False, repr=False)
    #: Set by the engine at execution time: True when more commands of its task follow on its
    #: host. A hint: a shell transport's spool keeper then stays for them instead of leaving
    #: when this one is over (see :func:`nexus_core.shell.keeper_script`).
    more: bool = field(default=False, compare=False, repr=False)

    @property
    def shown(self) -> str:
        """The command as output, events and records name it: the user's text; for a
        ``secret(..., to=PATH)`` write, what it does (``write secret NAME to PATH``), not the
        script Nexus runs for it."""
        if self.input_secret is not None and self.cmd.startswith("# "):
            return self.cmd.split("\n", 1)[0][2:]
        return self.cmd

    def flags(self) -> list[str]:
        """The dry-run flags of this command, e.g. ``[sudo]``, ``[retries:5]``."""
        out: list[str] = []
        if self.sudo or self.user:
            out.append(f"sudo:{self.user}" if self.user else "sudo")
        if self.retries:
            out.append(f"retries:{self.retries}")
        if self.timeout != 60:
            out.append(f"timeout:{_fmt_seconds(self.timeout)}")
        if self.continue_on_error:
            out.append("continue-on-error")
        if self.cwd:
            out.append(f"cwd:{self.cwd}")
        if self.env:
            out.append("env:" + ",".join(k for k, _ in self.env))
        if self.creates:
            out.append(f"creates:{self.creates}")
        if self.only_if:
            out.append(f"only_if:{self.only_if}")
        if self.unless:
            out.append(f"unless:{self.unless}")
        if self.notify:
            out.append("notify:" + ",".join(self.notify))
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON output."""
        return {
            "cmd": self.cmd,
            "sudo": self.sudo,
            "user": self.user,
            "timeout": self.timeout,
            "retries": self.retries,
            "retry_delay": self.retry_delay,
            "continue_on_error": self.continue_on_error,
            "env": dict(self.env),
            "cwd": self.cwd,
            "line": self.line,
            # guards only when set, so that plans without them keep their exact shape
            **{k: v for k, v in (("creates", self.creates), ("only_if", self.only_if), ("unless", self.unless)) if v},
            **({"notify": list(self.notify)} if self.notify else {}),
            **({"input_secret": self.input_secret} if self.input_secret else {}),
        }


#: The kinds of :class:`Transfer`: a local file or folder to the host, a host's file to this
#: machine, a Jinja2 template rendered at plan time to the host.
TRANSFER_KINDS = ("upload", "download", "template")


@frozen_dataclass
class Transfer(Command):
    """One recorded file operation: ``upload(...)``, ``download(...)`` or ``template(...)``.

    A :class:`Command` for everything that schedules, retries, times out and reports
    operations (so a plan holds one ordered sequence of operations per host); its ``cmd`` is
    the line shown in trees and events (``upload app.tar.gz -> /srv/app/``), never run by a
    shell. The engine gives it to the executor's file methods (see
    :mod:`nexus_core.transfer`). ``src`` is a local absolute path (upload, template) or a
    path on the host (download); ``dest`` the other side. A template's rendered bytes travel
    in ``content`` (never serialised: the plan shows their sha256 only).
    """

    kind: str = "upload"
    src: str = ""
    dest: str = ""
    recursive: bool = False
    preserve: bool = True
    mode: int | None = None
    owner: str | None = None
    group: str | None = None
    validate: str | None = None
    content: bytes | None = field(default=None, compare=False, repr=False)
    content_sha256: str = ""

    def flags(self) -> list[str]:
        """The dry-run flags: ``[sudo]``, ``[mode:0644]``, ``[owner:root]``, ``[validate]``..."""
        out: list[str] = ["sudo"] if self.sudo else []
        if self.recursive:
            out.append("recursive")
        if self.mode is not None:
            out.append(f"mode:{self.mode:04o}")
        if self.owner:
            out.append(f"owner:{self.owner}")
        if self.group:
            out.append(f"group:{self.group}")
        if self.validate:
            out.append(f"validate:{self.validate}")
        if self.retries:
            out.append(f"retries:{self.retries}")
        if self.continue_on_error:
            out.append("continue-on-error")
        if self.notify:
            out.append("notify:" + ",".join(self.notify))
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON output (``op`` tells it from a command)."""
        data = super().to_dict()
        data.update(
            {
                "op": self.kind,
                "src": self.src,
                "to": self.dest,
                "recursive": self.recursive,
                "preserve": self.preserve,
                "mode": None if self.mode is None else f"{self.mode:04o}",
                "owner": self.owner,
                "group": self.group,
                "validate": self.validate,
            }
        )
        if self.content_sha256:
            data["content_sha256"] = self.content_sha256
        return data


def _fmt_seconds(value: float) -> str:
    return f"{int(value)}s" if float(value).is_integer() else f"{value}s"


@frozen_dataclass
class TaskDef:
    """A task as declared by ``@task``: its options as given, not yet resolved."""

    name: str
    func: Any
    location: Location
    deps: tuple[Any, ...] = ()
    on: Any = "local"
    strategy: str = "parallel"
    timeout: float | None = None
    doc: str = ""
    extra: tuple[tuple[str, Any], ...] = ()

    @property
    def summary(self) -> str:
        """First line of the docstring."""
        return self.doc.strip().splitlines()[0].strip() if self.doc.strip() else ""


class HandlerDef(Record):
    """A handler as declared by ``@handler``: its name, body and place in the nexusfile."""

    __slots__ = ("name", "func", "location", "doc", "needs")
    name: str
    func: Any
    location: Location
    doc: str
    #: Parameters the body cannot be called without (a mistake: handlers are called with none).
    needs: tuple[str, ...]

    def __init__(self, name: str, func: Any, location: Location, doc: str = "", needs: tuple[str, ...] = ()) -> None:
        self._init(name, func, location, doc, needs)


class HostSpec(Record):
    """A host with attributes, from ``host("web-1", tags=[...], vars={...})`` in a nexusfile.

    Usable wherever a host string is (``hosts(...)`` members, ``on=[...]``). ``tags`` and
    ``vars`` are already checked and frozen; ``text`` is checked by the planner.
    ``facts``: what a host source found out about the machine (set for discovered hosts only).
    """

    __slots__ = ("text", "tags", "vars", "location", "facts")
    text: str
    tags: tuple[str, ...]
    vars: FrozenMap
    location: Location | None
    facts: FrozenMap

    def __init__(
        self,
        text: str,
        tags: tuple[str, ...] = (),
        vars: FrozenMap = EMPTY,
        location: Location | None = None,
        facts: FrozenMap = EMPTY,
    ) -> None:
        # Field by field, without _init's loop: one HostSpec per discovered host.
        put = object.__setattr__
        put(self, "text", text)
        put(self, "tags", tags)
        put(self, "vars", vars)
        put(self, "location", location)
        put(self, "facts", facts)


class CloudSpec(Record):
    """A ``cloud(provider, **settings)`` in a nexusfile: machines Nexus may start for the run.

    ``settings`` are the values the user wrote (defaults are filled in by
    :mod:`nexus_core.clouds`); ``location`` is the line of the declaration.
    """

    __slots__ = ("provider", "settings", "location")
    provider: str
    settings: Mapping[str, Any]
    location: Location | None

    def __init__(
        self, provider: str, settings: Mapping[str, Any] | None = None, location: Location | None = None
    ) -> None:
        self._init(provider, {} if settings is None else settings, location)


class SourceSpec(Record):
    """A ``discover(source, **filters)`` in a nexusfile: hosts a host source finds at plan time.

    Usable wherever hosts are (``hosts(...)`` members, ``on=[...]``); the planner replaces it
    with the discovered hosts (see :mod:`nexus_core.discovery`). Two specs with the same
    source and filters are one discovery (:attr:`key`).
    """

    __slots__ = ("source", "filters", "location", "_key")
    source: str
    filters: Mapping[str, Any]
    location: Location | None
    _key: str | None

    def __init__(self, source: str, filters: Mapping[str, Any] | None = None, location: Location | None = None) -> None:
        self._init(source, {} if filters is None else filters, location, None)

    @property
    def key(self) -> str:
        """Source and filters as canonical JSON: equal keys are discovered once."""
        cached = self._key
        if cached is None:
            import json

            cached = json.dumps([self.source, self.filters], sort_keys=True, default=repr, separators=(",", ":"))
            object.__setattr__(self, "_key", cached)  # computed once, kept out of eq/hash
        return str(cached)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SourceSpec) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return f"SourceSpec(source={self.source!r}, filters={self.filters!r}, location={self.location!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (SourceSpec, (self.source, self.filters, self.location))

    def __str__(self) -> str:
        return self.describe()

    def describe(self) -> str:
        """``discover("tailscale", tags=['tag:web'])`` as the nexusfile wrote it."""
        args = [repr(self.source), *(f"{k}={v!r}" for k, v in self.filters.items())]
        return f"discover({', '.join(args)})"


@frozen_dataclass
class HostGroup:
    """A named group from ``hosts(name, ...)``: host strings, :class:`HostSpec` and
    :class:`SourceSpec` members; ``where`` (a callable taking a :class:`Host`) keeps only
    the hosts it returns true for."""

    name: str
    members: tuple[str | HostSpec | SourceSpec, ...]
    groups: tuple[str, ...]
    location: Location
    where: Any = None


class Problem(Record):
    """One validation problem: where, what, and how to fix it."""

    __slots__ = ("message", "location", "hint", "code")
    message: str
    location: Location | None
    hint: str
    code: str

    def __init__(self, message: str, location: Location | None = None, hint: str = "", code: str = "invalid") -> None:
        self._init(message, location, hint, code)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON output."""
        return {
            "message": self.message,
            "file": self.location.path if self.location else None,
            "line": self.location.line if self.location and self.location.line else None,  # 0: no line
            "hint": self.hint,
            "code": self.code,
        }


@dataclass
class Project:
    """A loaded nexusfile: tasks, groups and config in definition order (mutable while loading)."""

    path: str
    root: str
    tasks: dict[str, TaskDef] = field(default_factory=dict)
    #: Handlers from ``@handler``, in definition order (see nexus_core.handlers).
    handlers: dict[str, HandlerDef] = field(default_factory=dict)
    groups: dict[str, HostGroup] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    config_locations: dict[str, Location] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    source_hash: str = ""
    #: ``change_window(...)`` and ``require_dry_run(...)`` of the nexusfile (nexus_core.policy).
    compliance: dict[str, Any] = field(default_factory=dict)
    #: ``cloud(provider, ...)`` declarations by provider name (see nexus_core.clouds).
    clouds: dict[str, CloudSpec] = field(default_factory=dict)


# --- discovery, as far as every run needs it (nexus_core.discovery does the rest) ------------


def source_specs(project: Project) -> list[SourceSpec]:
    """Every distinct ``discover(...)`` of the project (groups, then ``on=`` of tasks), in order."""
    found: dict[str, SourceSpec] = {}
    for g in project.groups.values():
        for m in g.members:
            if isinstance(m, SourceSpec):
                found.setdefault(m.key, m)
    for t in project.tasks.values():
        for item in on_items(t.on):
            if isinstance(item, SourceSpec):
                found.setdefault(item.key, item)
    return list(found.values())


def has_sources(project: Project) -> bool:
    """True when the project discovers hosts or filters a group with ``where=``."""
    return bool(source_specs(project)) or any(g.where is not None for g in project.groups.values())


def on_items(on: Any) -> list[Any]:
    """The items of a task's ``on=`` (one source, or a list of them and host strings)."""
    if isinstance(on, SourceSpec):
        return [on]
    return list(on) if isinstance(on, (list, tuple)) else []
