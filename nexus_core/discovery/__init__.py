"""Host discovery: ``discover(source, **filters)`` members replaced by the hosts sources find.

A nexusfile names sources (:class:`~nexus_core.model.SourceSpec`) in ``hosts(...)`` and
``on=[...]``. Before the planner sees the project, :func:`resolve` asks each distinct
source once, every source concurrently (or reuses the state database's copy for
``config(discovery_ttl=...)`` seconds, or the hosts an interrupted run used when it is
resumed), and returns a copy of the project where each source is replaced by the hosts it
found, as :class:`~nexus_core.model.HostSpec` entries carrying their tags, variables and
facts. Offline hosts are left out (and reported). ``where=`` filters of groups are applied
here, once attributes are known. The planner then treats discovered hosts as hosts
written by hand: ``-H``, labels, resume and state work unchanged.

:func:`check` validates sources and filters without discovering (``nexus validate``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from nexus_core.api import DiscoveredHost, DiscoveryError, HostSource, HostSourceContext
from nexus_core.hosts import HostAttributeError, HostParseError, check_tags, check_vars, format_host, freeze
from nexus_core.model import (
    EMPTY,
    FrozenMap,
    Host,
    HostGroup,
    HostSpec,
    Location,
    Problem,
    Project,
    SourceSpec,
    TaskDef,
    has_sources,  # pure functions of the model, read at every run without this module
    source_specs,
)
from nexus_core.model import on_items as _on_items
from nexus_core.options import Option, safe_repr, suggest
from nexus_core.registry import PluginError, Registry

__all__ = [
    "BUILTIN_SOURCES",
    "DiscoveryFailed",
    "Resolution",
    "check",
    "has_sources",
    "resolve",
    "source_specs",
]

#: The transport of a host string without ``TRANSPORT://`` (the ``Host`` default).
DEFAULT_TRANSPORT: str = Host(name="-").transport

#: The built-in sources (name -> "module:Class"), looked up before any plugin's.
BUILTIN_SOURCES: dict[str, str] = {"file": "nexus_core.discovery.sources:FileSource"}


class DiscoveryFailed(Exception):
    """Discovery could not give the hosts of a run: what failed, the fix, the exit code."""

    def __init__(self, failures: Sequence[tuple[SourceSpec, DiscoveryError]], notes: Sequence[str] = ()) -> None:
        self.failures = list(failures)
        #: What the sources said while they were asked (each retry of a failing API): shown
        #: before the error, as a run that succeeds shows them.
        self.notes = list(notes)
        super().__init__("; ".join(str(err) for _, err in failures))

    @property
    def exit_code(self) -> int:
        """2 when every failure is a configuration mistake, else the first failure's code."""
        codes = [err.exit_code for _, err in self.failures]
        return 2 if all(c == 2 for c in codes) else next(c for c in codes if c != 2)

    def report(self) -> tuple[str, list[str], list[str]]:
        """Headline, context lines and suggestions of the failure, each said once (two groups
        that discover from the same source fail alike)."""
        first = self.failures[0][0]
        messages = list(dict.fromkeys(err.message for _, err in self.failures))
        hints = list(dict.fromkeys(err.hint for _, err in self.failures if err.hint))
        return f"Host discovery failed: {first.describe()}", messages, hints

    def problems(self) -> list[Problem]:
        """Each failure (and each finding of a failure, e.g. every mistake of an inventory) as a problem."""
        out: list[Problem] = []
        for spec, err in self.failures:
            if err.problems:
                out.extend(p if isinstance(p, Problem) else Problem(str(p), spec.location, err.hint, "discovery")
                           for p in err.problems)  # fmt: skip
            else:
                out.append(Problem(f"{spec.describe()}: {err.message}", spec.location, err.hint, "discovery"))
        return out


# --- the sources a nexusfile names -------------------------------------------------------------


def _walk_group(project: Project, name: str, found: dict[str, SourceSpec], seen: set[str]) -> None:
    if name in seen or name not in project.groups:
        return
    seen.add(name)
    g = project.groups[name]
    for m in g.members:
        if isinstance(m, SourceSpec):
            found.setdefault(m.key, m)
    for sub in g.groups:
        if isinstance(sub, str):
            _walk_group(project, sub, found, seen)


def group_specs(project: Project, groups: Sequence[str]) -> list[SourceSpec]:
    """The ``discover(...)`` calls of these host groups (and the groups they include)."""
    found: dict[str, SourceSpec] = {}
    seen: set[str] = set()
    for name in groups:
        _walk_group(project, name, found, seen)
    return list(found.values())


def needed_specs(project: Project, tasks: Sequence[str]) -> list[SourceSpec]:
    """The ``discover(...)`` calls the hosts of ``tasks`` depend on (their groups, sub-groups, ``on=`` lists)."""
    found: dict[str, SourceSpec] = {}
    seen: set[str] = set()
    for name in tasks:
        t = project.tasks.get(name)
        if t is None:
            continue
        if isinstance(t.on, str):
            _walk_group(project, t.on, found, seen)
        for item in _on_items(t.on):
            if isinstance(item, SourceSpec):
                found.setdefault(item.key, item)
    return list(found.values())


def source_names(registry: Registry) -> list[str]:
    """Every source name a nexusfile can use: built-ins first, then plugins'."""
    return list(dict.fromkeys([*BUILTIN_SOURCES, *registry.host_sources]))


def source_class(registry: Registry, name: str) -> type[HostSource]:
    """The class of source ``name`` (importing it); KeyError when unknown, PluginError when broken."""
    target = BUILTIN_SOURCES.get(name)
    if target is not None:
        import importlib

        module, _, attr = target.partition(":")
        cls: type[HostSource] = getattr(importlib.import_module(module), attr)
        return cls
    return registry.host_sources[name]


def declared_filters(registry: Registry, name: str) -> tuple[Option, ...]:
    """The filters source ``name`` declares, read without importing a plugin's module."""
    if name in BUILTIN_SOURCES:
        return tuple(source_class(registry, name).filters)
    filters = registry.host_sources.entry(name).detail("filters") or ()
    return tuple(f for f in filters if isinstance(f, Option))


# --- validation ----------------------------------------------------------------------------------


def check(project: Project, registry: Registry, context: HostSourceContext | None = None) -> list[Problem]:
    """Problems with the project's sources and filters (no discovery, no network).

    An unknown source names the package to install; an unknown filter gets a "did you
    mean"; a filter value of the wrong type says what the filter takes; the source's own
    :meth:`~nexus_core.api.HostSource.check` runs last (a missing inventory file...).
    """
    out: list[Problem] = []
    context = context or HostSourceContext(config=dict(project.config), root=project.root)
    instances: dict[str, HostSource | None] = {}
    for spec in source_specs(project):
        out.extend(_check_spec(spec, registry, context, instances))
    for g in project.groups.values():
        if g.where is not None and not callable(g.where):
            out.append(Problem(f"hosts({g.name!r}): where= must be a function", g.location, "", "bad-value"))
    return out


def static_where_problems(project: Project) -> list[Problem]:
    """For ``nexus validate``, which discovers nothing: a ``where=`` of a group whose members
    are all written out (no source) runs on them as a run would, so a function that raises is
    reported (validate said valid, the run then refused it)."""
    out: list[Problem] = []
    for g in project.groups.values():
        if callable(g.where) and g.members and not any(isinstance(m, SourceSpec) for m in g.members):
            _where(g, g.members, out)
    return out


def _check_spec(
    spec: SourceSpec, registry: Registry, context: HostSourceContext, instances: dict[str, HostSource | None]
) -> list[Problem]:
    out: list[Problem] = []
    where = spec.location
    name = spec.source
    if not name:  # discover() without a source name: reported where it was called
        return out
    if name not in BUILTIN_SOURCES and name not in registry.host_sources:
        why, hint = registry.missing("host source", name, f"the {name!r} host source")
        close = suggest(name, source_names(registry))
        if close and "pip install" not in hint:
            hint = f"did you mean {close!r}? ({hint})"
        state = f"is loaded: {why}" if why else "is installed"
        out.append(Problem(f"{spec.describe()}: no {name!r} host source {state}", where, hint, "missing-plugin"))
        return out
    try:
        filters = declared_filters(registry, name)
    except Exception as exc:  # noqa: BLE001 - a broken built-in or registration: report
        out.append(Problem(f"{spec.describe()}: {exc}", where, "", "plugin-error"))
        return out
    known = {f.name: f for f in filters}
    bad = False
    for key, value in spec.filters.items():
        option = known.get(key)
        if option is None:
            close = suggest(key, known)
            hint = (
                f"did you mean {close!r}?"
                if close
                else (f"filters of {name!r}: " + ", ".join(known) if known else f"the {name!r} source takes no filters")
            )
            out.append(Problem(f"{spec.describe()}: the {name!r} source has no filter {key!r}", where, hint,
                               "unknown-option"))  # fmt: skip
            bad = True
            continue
        wrong = option.problem(value)
        if wrong:
            out.append(Problem(f"{spec.describe()}: {wrong}", where, option.hint(), "bad-value"))
            bad = True
    if bad:
        return out
    source = _instance(name, registry, context, instances, out, spec)
    if source is None:
        return out
    try:
        found = source.check(dict(spec.filters))
    except DiscoveryError as exc:
        return out + DiscoveryFailed([(spec, exc)]).problems()
    except Exception as exc:  # noqa: BLE001 - plugin code: report, never a traceback
        found = [f"the source's check failed: {type(exc).__name__}: {exc}"]
    for message in found:
        out.append(Problem(f"{spec.describe()}: {message}", where, "", "bad-value"))
    return out


def _instance(
    name: str,
    registry: Registry,
    context: HostSourceContext,
    instances: dict[str, HostSource | None],
    out: list[Problem],
    spec: SourceSpec,
) -> HostSource | None:
    if name in instances:
        return instances[name]
    try:
        instances[name] = source_class(registry, name)(context)
    except PluginError as exc:
        out.append(Problem(f"{spec.describe()}: {exc}", spec.location, "reinstall or upgrade that plugin "
                           "(see `nexus plugins`)", "plugin-error"))  # fmt: skip
        instances[name] = None
    except Exception as exc:  # noqa: BLE001 - plugin code: report, never a traceback
        owner = registry.owners.get(f"host source:{name}", "nexus-core")
        out.append(Problem(f"{spec.describe()}: the {name!r} source ({owner}) failed to start: "
                           f"{type(exc).__name__}: {exc}", spec.location, "", "plugin-error"))  # fmt: skip
        instances[name] = None
    return instances[name]


# --- discovery --------------------------------------------------------------------------------


@dataclass
class Found:
    """What one ``discover(...)`` gave: its hosts, when, and whether from the cache or a saved run."""

    spec: SourceSpec
    hosts: list[DiscoveredHost]
    at: float
    origin: str = "discovered"  # or "cache", "resumed run"
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain data, saved with the run's plan (resume reads it back)."""
        return {
            "key": self.spec.key,
            "source": self.spec.source,
            "filters": _plain(self.spec.filters),
            "call": self.spec.describe(),
            "line": self.spec.location.line if self.spec.location else None,
            "at": self.at,
            "origin": self.origin,
            "hosts": [h.to_dict() for h in self.hosts],
        }


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=repr))


@dataclass
class Resolution:
    """A project with its sources replaced by hosts, and what discovery found."""

    project: Project
    found: list[Found] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: Host string of each discovered host -> the ``discover(...)`` calls it came from.
    origins: dict[str, list[str]] = field(default_factory=dict)
    #: Every host each source found, by ``SourceSpec.key``: (entry, targeted), hosts not targeted
    #: included (the machine's own online state is the entry's ``online`` fact).
    entries: dict[str, list[tuple[HostSpec, bool]]] = field(default_factory=dict)
    #: Sources that could not answer, as expected (see :func:`resolve`'s ``waiting``): key -> why.
    waiting: dict[str, str] = field(default_factory=dict)

    def records(self) -> Records:
        """Plain data of every discovery, for the plan (``Plan.discovery``), built when first read."""
        return Records(self.found)


class Records(Sequence[Mapping[str, Any]]):
    """The plain data of discoveries (:meth:`Found.to_dict` each), built on first read.

    A run saves it with its plan and the dry run shows it, but ``--list-hosts`` and
    ``nexus hosts list --format text`` never read it: 1,000 discovered hosts made 1,000 dicts
    (and their facts) for nothing. Its length and truth are known without building it.
    """

    __slots__ = ("_built", "_found")

    def __init__(self, found: Iterable[Found]) -> None:
        self._found = tuple(found)
        self._built: tuple[dict[str, Any], ...] | None = None

    def _items(self) -> tuple[dict[str, Any], ...]:
        if self._built is None:
            self._built = tuple(f.to_dict() for f in self._found)
        return self._built

    def __len__(self) -> int:
        return len(self._found)

    def __bool__(self) -> bool:
        return bool(self._found)

    def __getitem__(self, index: Any) -> Any:
        return self._items()[index]

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        return iter(self._items())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Records):
            other = other._items()
        return isinstance(other, Sequence) and self._items() == tuple(other)

    __hash__ = None  # type: ignore[assignment]  # mutable dicts inside, like the tuple it replaces

    def __repr__(self) -> str:
        return f"Records({len(self._found)} discoveries)"


def resolve(
    project: Project,
    registry: Registry,
    *,
    store: Any = None,
    refresh: bool = False,
    saved: Iterable[Mapping[str, Any]] = (),
    warn: Callable[[str], None] | None = None,
    tasks: Sequence[str] | None = None,
    groups: Sequence[str] | None = None,
    waiting: Callable[[SourceSpec], str | None] | None = None,
) -> Resolution:
    """Discover every source of ``project`` (concurrently) and replace it by the hosts found.

    ``waiting``: for a source that cannot answer, why that is expected (a dry run's agents
    that a declared cloud starts only when the run does); such a source counts as having
    found no host, and the reason is kept in :attr:`Resolution.waiting`.

    ``store``: the state database (a :class:`~nexus_core.state.store.StateStore`), the cache
    for ``config(discovery_ttl=...)``; ``refresh`` ignores the cache. ``saved``: the
    discoveries of an interrupted run (``Plan.discovery``), reused as they were. ``tasks``:
    discover only what the hosts of these tasks need (None: every source of the project);
    ``groups``: only what these host groups need (with ``tasks``: what both need).
    Sources with problems (unknown, bad filters) are left in place for validation to report.
    Raises :class:`DiscoveryFailed` when a source cannot answer.
    """
    if not has_sources(project):
        return Resolution(project)
    messages: list[str] = []
    say = warn or messages.append
    context = HostSourceContext(config=dict(project.config), root=project.root, warn=say)
    if groups is not None and tasks is None:
        wanted = group_specs(project, groups)
    else:
        wanted = source_specs(project) if tasks is None else needed_specs(project, tasks)
        if groups:  # the groups a run's -H names: their members decide which hosts it keeps
            wanted = list({s.key: s for s in [*wanted, *group_specs(project, groups)]}.values())
    specs = [s for s in wanted if not _check_spec(s, registry, context, {})]
    reused = {str(r.get("key")): r for r in saved if isinstance(r, Mapping)}
    ttl = _ttl(project.config.get("discovery_ttl"))
    found: dict[str, Found] = {}
    todo: list[SourceSpec] = []
    instances: dict[str, HostSource] = {}
    scopes: dict[str, str | None] = {}
    for spec in specs:
        record = reused.get(spec.key)
        if record is not None:
            found[spec.key] = Found(spec, _hosts(record.get("hosts")), float(record.get("at") or 0), "resumed run")
            continue
        cached = None
        if not refresh and ttl > 0 and spec.source not in BUILTIN_SOURCES:
            scope = _scope(spec, registry, context, instances, scopes)
            cached = None if scope is None else _cached(store, project, spec, ttl, scope)
        if cached is not None:
            found[spec.key] = cached
            continue
        todo.append(spec)
    expected: dict[str, str] = {}
    if todo:
        fresh, failures = _discover_all(todo, registry, context, instances)
        for spec, _err in failures:
            why = waiting(spec) if waiting is not None else None
            if why:
                expected[spec.key] = why
        if len(expected) < len(failures):
            raise DiscoveryFailed([(spec, err) for spec, err in failures if spec.key not in expected], messages)
        fresh += [Found(spec, [], time.time(), "waiting") for spec, _ in failures]
        for item in fresh:
            found[item.spec.key] = item
            if ttl > 0 and item.spec.source not in BUILTIN_SOURCES and item.origin != "waiting":
                scope = _scope(item.spec, registry, context, instances, scopes)
                if scope is not None:
                    _store(store, project, item, scope)
    resolution = _expand(project, [found[s.key] for s in specs if s.key in found], specs)
    resolution.notes[:0] = messages
    resolution.waiting = expected
    return resolution


def _ttl(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else 0.0


def _hosts(items: Any) -> list[DiscoveredHost]:
    return [DiscoveredHost.from_dict(h) for h in items or () if isinstance(h, Mapping) and h.get("address")]


def _scope(
    spec: SourceSpec,
    registry: Registry,
    context: HostSourceContext,
    instances: dict[str, HostSource],
    scopes: dict[str, str | None],
) -> str | None:
    """The source's :meth:`~HostSource.cache_scope` (made once per source name, the instance
    kept for the discovery), or None when the cache must not be used: the source cannot be
    made, or cannot tell its scope (its discovery then reports why)."""
    if spec.source in scopes:
        return scopes[spec.source]
    scope: str | None = None
    made = instances.get(spec.source)
    if made is None:
        made = _instance(spec.source, registry, context, {}, [], spec)
        if made is not None:
            instances[spec.source] = made
    if made is not None:
        try:
            got = made.cache_scope()
            scope = got if isinstance(got, str) else None
        except Exception:  # noqa: BLE001 - plugin code: no cache, the discovery says what is wrong
            scope = None
    scopes[spec.source] = scope
    return scope


def _discover_all(
    specs: Sequence[SourceSpec],
    registry: Registry,
    context: HostSourceContext,
    instances: dict[str, HostSource] | None = None,
) -> tuple[list[Found], list[tuple[SourceSpec, DiscoveryError]]]:
    """Ask every source at once (a thread each); the failures, each as a DiscoveryError.
    ``instances``: sources already made (by :func:`_scope`), by name."""
    instances = {} if instances is None else instances
    failures: list[tuple[SourceSpec, DiscoveryError]] = []
    for spec in specs:
        if spec.source not in instances:
            problems: list[Problem] = []
            made = _instance(spec.source, registry, context, {}, problems, spec)
            if made is None:
                why = problems[0].message if problems else "cannot start"
                failures.append((spec, DiscoveryError(why, exit_code=2)))
                continue
            instances[spec.source] = made
    runnable = [s for s in specs if s.source in instances]

    def one(spec: SourceSpec) -> Found | DiscoveryError:
        start = time.monotonic()
        try:
            hosts = instances[spec.source].discover(dict(spec.filters))
        except DiscoveryError as exc:
            return exc
        except Exception as exc:  # noqa: BLE001 - plugin code: report by name, never a traceback
            owner = registry.owners.get(f"host source:{spec.source}", "nexus-core")
            return DiscoveryError(
                f"the {spec.source!r} host source ({owner}) failed: {type(exc).__name__}: {exc}",
                "this is a bug in the plugin that provides the source; report it to its authors",
            )
        if not isinstance(hosts, (list, tuple)) or not all(isinstance(h, DiscoveredHost) for h in hosts):
            return DiscoveryError(
                f"the {spec.source!r} host source returned {safe_repr(hosts)}, not a list of DiscoveredHost",
                "this is a bug in the plugin that provides the source",
            )
        return Found(spec, list(hosts), time.time(), seconds=time.monotonic() - start)

    # Plugin sources (network) each in a thread; built-in ones (local files) in this thread
    # meanwhile: threads would only add their start-up to work the GIL serialises anyway.
    remote = [s for s in runnable if s.source not in BUILTIN_SOURCES]
    answers: dict[str, Found | DiscoveryError] = {}
    pool = None
    if len(remote) > 1:  # imported here: one source (the usual case) needs no pool, nor its imports
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(max_workers=min(8, len(remote)))
    try:
        futures = {s.key: pool.submit(one, s) for s in remote} if pool is not None else {}
        for spec in runnable:
            if spec.key not in futures:
                answers[spec.key] = one(spec)
        for key, future in futures.items():
            answers[key] = future.result()
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    results = [answers[s.key] for s in runnable]
    fresh: list[Found] = []
    for spec, result in zip(runnable, results, strict=True):
        if isinstance(result, DiscoveryError):
            failures.append((spec, result))
        else:
            fresh.append(result)
    return fresh, failures


# --- the cache ---------------------------------------------------------------------------------

_CACHE_TABLE = (
    "CREATE TABLE IF NOT EXISTS discovery_cache (key TEXT PRIMARY KEY, hosts TEXT NOT NULL, at REAL NOT NULL)"
)


def _cache_key(project: Project, spec: SourceSpec, scope: str = "") -> str:
    """Project, source, filters, a digest of ``config(...)`` and of the source's scope
    (:meth:`HostSource.cache_scope`: the API, account and credential the environment gives):
    another API URL, tailnet or key is another entry."""
    import hashlib

    config = json.dumps(project.config, sort_keys=True, default=repr)
    digest = hashlib.sha256(config.encode() + b"\0" + scope.encode()).hexdigest()[:32]
    return json.dumps([project.root, spec.key, digest])


def _cached(store: Any, project: Project, spec: SourceSpec, ttl: float, scope: str = "") -> Found | None:
    db = getattr(store, "db", None)
    if db is None:
        return None
    try:
        db.execute(_CACHE_TABLE)
        key = _cache_key(project, spec, scope)
        row = db.execute("SELECT hosts, at FROM discovery_cache WHERE key = ?", (key,)).fetchone()
    except Exception:  # noqa: BLE001 - a busy or damaged cache only costs a discovery
        return None
    # an entry from the future (the clock went back: a Raspberry Pi without its time yet) is
    # as stale as an old one: it would otherwise be reused for as long as the clock is behind
    if row is None or not 0 <= time.time() - float(row[1]) <= ttl:
        return None
    try:
        return Found(spec, _hosts(json.loads(row[0])), float(row[1]), "cache")
    except (ValueError, TypeError, KeyError):
        return None


def _store(store: Any, project: Project, item: Found, scope: str = "") -> None:
    db = getattr(store, "db", None)
    if db is None:
        return
    try:
        db.execute(_CACHE_TABLE)
        db.execute(
            "INSERT OR REPLACE INTO discovery_cache (key, hosts, at) VALUES (?, ?, ?)",
            (_cache_key(project, item.spec, scope), json.dumps([h.to_dict() for h in item.hosts]), item.at),
        )
        db.execute("DELETE FROM discovery_cache WHERE at < ?", (time.time() - 30 * 86400,))
    except Exception:  # noqa: BLE001 - a busy database only means no cache this time
        pass


# --- expansion ------------------------------------------------------------------------------------


def host_text(found: DiscoveredHost) -> str:
    """The host string Nexus connects to for a discovered host (``deploy@10.0.0.1:2222``, ``local``)."""
    if found.transport == "local" or (found.address == "local" and not found.transport):
        return "local"
    port = found.port
    if (
        found.transport not in ("", DEFAULT_TRANSPORT)
        or not isinstance(found.address, str)
        or not (port is None or type(port) is int)
    ):
        host = Host(name=found.address, user=found.user, port=port, transport=found.transport or DEFAULT_TRANSPORT)
        return format_host(host)
    # format_host's answer for the common case, without building a Host per host of a large fleet
    text = f"{found.user}@{found.address}" if found.user else found.address
    if port is None:
        return text
    name = f"[{found.address}]" if ":" in found.address else found.address
    return f"{found.user}@{name}:{port}" if found.user else f"{name}:{port}"


def host_spec(found: DiscoveredHost, spec: SourceSpec) -> HostSpec:
    """A discovered host as a nexusfile entry: its host string, tags, variables and facts.

    Raises :class:`~nexus_core.api.DiscoveryError` when the source gave an unusable
    address or attribute (naming the source).
    """
    try:
        # The host string is checked by the planner like any other (a bad one is reported at
        # the discover(...) line); parsing it here too would double the cost of 1,000 hosts.
        text = host_text(found)
    except (TypeError, ValueError) as exc:
        who = f"{spec.describe()} found host {safe_repr(found.address)}"
        raise DiscoveryError(f"{who}, which is not a usable host: {exc}", exit_code=2) from None
    try:
        tags = check_tags(list(found.tags)) if found.tags else ()
        variables = _frozen(found.vars, "vars") if found.vars else EMPTY
        facts = dict(found.facts)
        facts["source"] = spec.source
        facts["name"] = found.name or found.address
        facts["online"] = found.online
        if found.os:
            facts["os"] = found.os
        addresses = tuple(found.addresses)
        if addresses and not set(map(type, addresses)) <= _SCALAR_TYPES:
            facts["addresses"] = list(addresses)  # not plain strings: freeze() says what is wrong
            addresses = ()
        frozen = _frozen(facts, "facts", addresses)
    except HostAttributeError as exc:
        who = f"{spec.describe()} found host {safe_repr(found.address)}"
        raise DiscoveryError(f"{who}, which Nexus cannot use: {exc}", exit_code=2) from None
    return HostSpec(text, tags, variables, spec.location, frozen)


_SCALARS = (str, int, float, bool, type(None))
_SCALAR_TYPES = frozenset(_SCALARS)
_STR = frozenset((str,))


def _frozen(values: Mapping[str, Any], what: str, addresses: tuple[str, ...] = ()) -> FrozenMap:
    """``values`` (and ``addresses``, checked already, when given) as a FrozenMap: scalars and
    lists of scalars directly, anything else through ``freeze``.

    The usual case (string keys, scalar values: the facts of a discovered host) is checked
    with set operations over ``map(type, ...)``, loops in C: the Python loop below cost
    ~28 M instructions for the facts of 1,000 discovered hosts.
    """
    if set(map(type, values.values())) <= _SCALAR_TYPES and set(map(type, values)) <= _STR and "" not in values:
        return FrozenMap(dict(values, addresses=addresses) if addresses else values)
    if addresses:
        values = dict(values, addresses=addresses)
    items: dict[str, Any] = {}
    for key, value in values.items():
        kind = type(value)
        if kind in _SCALARS:
            items[key] = value
        elif (kind is list or kind is tuple) and all(type(v) in _SCALARS for v in value):
            items[key] = tuple(value)
        else:
            break
        if type(key) is not str or not key:
            break
    else:
        return FrozenMap(items)
    frozen = check_vars(values, what) if what == "vars" else freeze(values, what)
    assert isinstance(frozen, FrozenMap)
    return frozen


def _expand(project: Project, found: list[Found], specs: list[SourceSpec]) -> Resolution:
    """The project with each resolved source replaced by its online hosts, ``where=`` applied."""
    hosts_of: dict[str, list[HostSpec]] = {}
    every: dict[str, list[tuple[HostSpec, bool]]] = {}
    notes: list[str] = []
    origins: dict[str, list[str]] = {}
    failures: list[tuple[SourceSpec, DiscoveryError]] = []
    for item in found:
        entries: list[HostSpec] = []
        offline: list[str] = []  # offline, not targeted
        skipped: list[str] = []  # online, but the source says not to target it
        forced: list[str] = []  # offline, targeted because the source was asked to
        call = item.spec.describe()
        key = item.spec.key
        for d in item.hosts:
            try:
                entry = host_spec(d, item.spec)
            except DiscoveryError as exc:
                failures.append((item.spec, exc))
                continue
            origins.setdefault(entry.text, []).append(call)
            target = d.target
            every.setdefault(key, []).append((entry, target))
            if target:
                entries.append(entry)
                if not d.online:
                    forced.append(d.name or d.address)
            elif d.online:
                skipped.append(d.name or d.address)
            else:
                offline.append(d.name or d.address)
        for names, what in ((offline, "offline host{s} not targeted"), (skipped, "host{s} not targeted"),
                            (forced, "offline host{s} targeted as asked")):  # fmt: skip
            if names:
                from nexus_core.output.alike import listed

                shown = listed(names, 8)
                label = what.format(s="s" if len(names) != 1 else "")
                notes.append(f"{call}: {len(names)} {label} ({shown}); `nexus hosts list` shows them")
        hosts_of[item.spec.key] = entries
    if failures:
        raise DiscoveryFailed(failures)
    problems: list[Problem] = []

    def members(items: Iterable[Any]) -> tuple[Any, ...]:
        out: list[Any] = []
        for m in items:
            if isinstance(m, SourceSpec) and m.key in hosts_of:
                out.extend(hosts_of[m.key])
            else:
                out.append(m)
        return tuple(out)

    groups: dict[str, HostGroup] = {}
    for name, g in project.groups.items():
        kept = members(g.members)
        if g.where is not None and callable(g.where):
            kept = _where(g, kept, problems)
        groups[name] = replace(g, members=kept)
    tasks: dict[str, TaskDef] = {}
    for name, t in project.tasks.items():
        if any(isinstance(i, SourceSpec) for i in _on_items(t.on)):
            tasks[name] = replace(t, on=list(members(_on_items(t.on))))
        else:
            tasks[name] = t
    expanded = replace(project, groups=groups, tasks=tasks, problems=[*project.problems, *problems])
    return Resolution(expanded, found, notes, origins, every)


def _where(group: HostGroup, members: tuple[Any, ...], problems: list[Problem]) -> tuple[Any, ...]:
    """The members ``group.where`` keeps (sources not resolved stay, for validation to report)."""
    from nexus_core.hosts import parse_host
    from nexus_core.model import LOCAL

    def to_host(member: str | HostSpec) -> Host:  # as the planner reads a member
        text = member.text if isinstance(member, HostSpec) else member
        return LOCAL if text == "local" else parse_host(text)

    kept: list[Any] = []
    for m in members:
        if isinstance(m, SourceSpec):
            kept.append(m)
            continue
        try:
            host = to_host(m)
        except HostParseError:
            kept.append(m)  # reported with the group
            continue
        if isinstance(m, HostSpec):
            host = replace(host, tags=m.tags, vars=m.vars, facts=m.facts)
        try:
            keep = bool(group.where(host))
        except Exception as exc:  # noqa: BLE001 - user code: a problem, never a traceback
            problems.append(
                Problem(
                    f"hosts({group.name!r}): where= raised {type(exc).__name__}: {exc} for host {host.label}",
                    group.location,
                    "make the function return True or False for every host (h.tags, h.vars, h.facts)",
                    "bad-where",
                )
            )
            return members
        if keep:
            kept.append(m)
    return tuple(kept)


def describe_location(location: Location | None) -> str:
    """``nexusfile.py:12`` or ''."""
    return str(location) if location is not None else ""
