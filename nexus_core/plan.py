"""Validation and planning: nexusfile declarations -> a DAG of tasks -> phases -> hosts -> commands.

The :class:`Plan` is plain data: dry-run prints it, pre-flight checks it, the engine runs
it and ``--format json`` serialises it.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
import sys
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import field, replace
from typing import TYPE_CHECKING, Any, Protocol

from nexus_core import packages
from nexus_core.dsl import _RECORDER, Recorder
from nexus_core.hosts import HostParseError, assign_labels, parse_host
from nexus_core.loader import exception_problem, in_project
from nexus_core.model import (
    EMPTY,
    LOCAL,
    Command,
    FrozenMap,
    Host,
    HostKey,
    HostSpec,
    Location,
    Problem,
    Project,
    SourceSpec,
    TaskDef,
    source_specs,
)
from nexus_core.options import Option, safe_repr, suggest
from nexus_core.params import Param, bind, task_params
from nexus_core.records import frozen_dataclass
from nexus_core.registry import Registry

if TYPE_CHECKING:  # imported when a run has -H or handlers
    from nexus_core.handlers import HandlerPlan
    from nexus_core.limit import Limit

DEFAULT_TASK_TIMEOUT = 300.0


class ValidationFailed(Exception):
    """The nexusfile (or the request) has problems; nothing was run."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        unique: dict[tuple[str, Location | None, str], Problem] = {}
        for p in problems:
            unique.setdefault((p.message, p.location, p.hint), p)
        self.problems = list(unique.values())
        super().__init__(f"{len(self.problems)} problem(s)")


@frozen_dataclass
class HostPlan:
    """The commands one task will run on one host.

    ``handlers``: what the handlers its operations may notify would run there (in definition
    order, see :mod:`nexus_core.handlers`); ``artifacts``: the paths and globs whose files are
    collected from there after the task succeeded (see :mod:`nexus_core.artifacts`).
    """

    host: Host
    commands: tuple[Command, ...]
    handlers: tuple[HandlerPlan, ...] = ()
    artifacts: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (``handlers`` and ``artifacts`` only when there are some)."""
        out: dict[str, Any] = {"host": self.host.to_dict(), "commands": [c.to_dict() for c in self.commands]}
        if self.handlers:
            out["handlers"] = [h.to_dict() for h in self.handlers]
        if self.artifacts:
            out["artifacts"] = list(self.artifacts)
        return out


@frozen_dataclass
class TaskPlan:
    """One task of a plan: its hosts (in declaration order), their batches in strategy order, its options."""

    name: str
    deps: tuple[str, ...]
    hosts: tuple[HostPlan, ...]
    strategy: str
    options: Mapping[str, Any]
    timeout: float
    doc: str
    location: Location
    batches: tuple[tuple[str, ...], ...] = ()
    strategy_text: str = ""

    @property
    def remote(self) -> bool:
        """True when any target is not the local machine."""
        return any(not hp.host.is_local for hp in self.hosts)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        return {
            "name": self.name,
            "deps": list(self.deps),
            "strategy": self.strategy,
            "strategy_description": self.strategy_text,
            "batches": [list(b) for b in self.batches],
            "options": dict(self.options),
            "timeout": self.timeout,
            "doc": self.doc,
            "line": self.location.line,
            "hosts": [hp.to_dict() for hp in self.hosts],
        }


@frozen_dataclass
class Plan:
    """Everything a run will do, in order."""

    nexusfile: str
    root: str
    requested: tuple[str, ...]
    tasks: Mapping[str, TaskPlan]
    phases: tuple[tuple[str, ...], ...]
    #: The ``config(...)`` keys the user set (nexusfile, then CLI overrides); defaults are
    #: not filled in (see :func:`resolved_config`).
    config: Mapping[str, Any] = field(default_factory=dict)
    source_hash: str = ""
    #: Problems that do not stop this plan: a plugin missing for tasks it does not run.
    warnings: tuple[Problem, ...] = ()
    #: Tasks left out of the run, with why (``-H`` matched none of their hosts).
    skipped: Mapping[str, str] = field(default_factory=dict)
    #: Tasks of a dry run whose hosts are not there yet, with why (agents a declared cloud
    #: starts with the run): shown, not planned.
    waiting: Mapping[str, str] = field(default_factory=dict)
    #: ``-H`` as given ("" without one), and the task arguments (``key=value`` words).
    limit: str = ""
    params: Mapping[str, str] = field(default_factory=dict)
    #: What each ``discover(...)`` of the nexusfile found (see ``nexus_core.discovery``):
    #: saved with the run, so that resume targets the same hosts.
    discovery: Sequence[Mapping[str, Any]] = ()

    @property
    def hosts(self) -> list[Host]:
        """Every distinct host the plan touches, in first-use order."""
        seen: dict[HostKey, Host] = {}
        for name in self.order:
            for hp in self.tasks[name].hosts:
                seen.setdefault(hp.host.key, hp.host)
        return list(seen.values())

    @property
    def order(self) -> list[str]:
        """Task names phase by phase."""
        return [name for phase in self.phases for name in phase]

    def command_count(self) -> int:
        """Total commands over every task and host."""
        return sum(len(hp.commands) for t in self.tasks.values() for hp in t.hosts)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for ``--format json`` (``skipped``, ``limit``, ``params`` only when set)."""
        out = {
            "nexusfile": self.nexusfile,
            "requested": list(self.requested),
            "phases": [list(p) for p in self.phases],
            "tasks": {name: self.tasks[name].to_dict() for name in self.order},
            "hosts": [h.to_dict() for h in self.hosts],
            "commands": self.command_count(),
        }
        extra = {
            "skipped": dict(self.skipped),
            "waiting": dict(self.waiting),
            "limit": self.limit,
            "params": dict(self.params),
            "discovery": [dict(d) for d in self.discovery],
        }
        out.update({k: v for k, v in extra.items() if v})
        return out


# --- validation ----------------------------------------------------------------------------


HOST_HINT = 'write "host", "user@host", "user@host:port" or "[2001:db8::1]:port"'
#: The hint for a host a source discovered (its string is not the user's to rewrite).
DISCOVERED_HINT = (
    'a host source found it: have the source give another address (discover("tailscale", address="ipv4")), '
    "or leave it out with hosts(..., where=lambda h: ...)"
)


def _p(out: list[Problem], message: str, where: Location | None, hint: str = "", code: str = "invalid") -> None:
    out.append(Problem(message, where, hint, code))


def _inventory_failed(project: Project) -> bool:
    """True when an ``inventory(...)`` file of the nexusfile did not load: its groups are
    missing, so "undefined host group" would only repeat the inventory's own error."""
    return any(p.code == "bad-inventory" for p in project.problems)


def _did_you_mean(name: str, candidates: Iterable[str], kind: str) -> str:
    names = list(candidates)
    close = suggest(name, names)
    if close:
        return f"did you mean {close!r}?"
    if names:
        shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        return f"defined {kind}: {shown}"
    return f"no {kind} are defined"


def _other_strategy_options(registry: Registry, strategy: str, extra: Any) -> list[tuple[str, str]]:
    """The task options in ``extra`` that another strategy declares and ``strategy`` does not,
    with that strategy's name (``batch=`` on a parallel task, say)."""
    owners: dict[str, str] = {}
    own: set[str] = set()
    for name in registry.strategies:
        for opt in registry.strategies.entry(name).detail("task_options") or ():
            key = getattr(opt, "name", None)
            if isinstance(key, str):
                if name == strategy:
                    own.add(key)
                else:
                    owners.setdefault(key, name)
    return [(key, owners[key]) for key in dict(extra) if key in owners and key not in own]


def _dep_name(dep: Any) -> str | None:
    if isinstance(dep, str):
        return dep
    name = getattr(dep, "__nexus_task__", None)
    return name if isinstance(name, str) else None


class DagCache(Protocol):
    """Remembers the phases networkx computed for a graph shape (see :func:`dag_key`).

    Only acyclic graphs are stored, so a hit also means "no cycle". Importing networkx
    costs about 0.1 s, a third of a short run; a repeated run of an unchanged pipeline
    skips it.
    """

    def cached_phases(self, key: str) -> list[list[str]] | None:
        """The phases stored for ``key``, or None."""

    def cache_phases(self, key: str, phases: list[list[str]]) -> None:
        """Store the phases of an acyclic graph."""


def dag_key(graph: Mapping[str, Iterable[str]]) -> str:
    """A digest of a dependency graph: task names in order, each with its sorted deps."""
    import hashlib
    import json

    shape = [[name, sorted(set(deps))] for name, deps in graph.items()]
    return hashlib.sha256(json.dumps(shape, ensure_ascii=True).encode()).hexdigest()


def config_value_problems(project: Project, registry: Registry) -> list[Problem]:
    """The ``config(...)`` values of known keys that their option refuses (a ``cluster=123``):
    checked before host discovery, which would otherwise act on them (connect to ``123``)."""
    out: list[Problem] = []
    for key, value in project.config.items():
        spec = registry.config_options.get(key)
        if spec is not None:
            _bad_value(out, spec, value, project.config_locations.get(key))
    return out


def _bad_value(out: list[Problem], spec: Option, value: Any, where: Location | None) -> None:
    """Append the problem of a ``config(...)`` value its option refuses, if it does."""
    why = spec.problem(value)
    if why:
        _p(out, f"config(): {why}", where, spec.hint(), "bad-value")


def check_structure(
    project: Project,
    registry: Registry,
    cache: DagCache | None = None,
    *,
    running: Collection[str] | None = None,
    warnings: list[Problem] | None = None,
    waiting: Collection[str] = (),
) -> list[Problem]:
    """Every problem that can be found without running task bodies.

    ``running``: the tasks that will run (None: all). A task outside it whose executor is
    not installed is not a problem but a warning, appended to ``warnings``. ``waiting``:
    tasks whose hosts are not there yet (a dry run's cloud agents): their targets are not checked.

    A ``config(...)`` key that a well-known plugin declares (:mod:`nexus_core.packages`), set
    while that plugin is not loaded, names the package to install: a problem when every task
    is checked (``running`` None: ``nexus validate``), else a warning and the key is ignored
    (a run of local tasks needs no settings of a remote transport).
    """
    out = list(project.problems)
    cfg_where = project.config_locations
    for key, value in project.config.items():
        spec = registry.config_options.get(key)
        where = cfg_where.get(key)
        package = packages.for_config_key(key) if spec is None else None
        if package is not None and any(k.startswith(key.partition("_")[0] + "_") for k in registry.config_options):
            package = None  # the plugin is loaded: a misspelt key of its own, answered with "did you mean"
        if package is not None:
            blocked = registry.unavailable.get(re.sub(r"[-_.]+", "-", package).lower())
            if blocked is not None:  # installed, but not loaded: say why instead of "install it"
                message = f"config() key {key!r} needs the {package} plugin: {package} is installed but {blocked}"
                hint = f"see `nexus plugins`; allow {package} in NEXUS_LOAD_PLUGINS and the plugin policy"
            else:
                message = f"config() key {key!r} needs the {package} plugin, which is not loaded"
                hint = f"pip install {package} (then check `nexus plugins`), or remove the key"
            if running is None:
                _p(out, message, where, hint, "missing-plugin")
            elif warnings is not None:
                warnings.append(Problem(f"{message}, so it is ignored", where, hint, "missing-plugin"))
            continue
        if spec is None:
            _p(
                out,
                f"config() has no key {key!r}",
                where,
                _did_you_mean(key, registry.config_options, "keys"),
                "unknown-option",
            )
            continue
        _bad_value(out, spec, value, where)
    backend = project.config.get("secret_backend")
    if isinstance(backend, str) and backend and backend not in registry.secret_backends:
        # Said now, not at the first secret() of a run (which may be half-way through it).
        from nexus_core.secrets.resolve import missing_backend

        detail, hint = missing_backend(registry, backend) or ("", "")
        _p(out, f"config(secret_backend={backend!r}): no such secret backend is installed ({detail})",
           project.config_locations.get("secret_backend"), hint, "missing-plugin")  # fmt: skip
    _guarded(out, project.path, "while checking the host groups", _check_groups, project, out)
    _guarded(out, project.path, "while checking host sources", lambda: out.extend(_check_sources(project, registry)))
    if project.clouds:
        from nexus_core import clouds

        check_clouds = lambda: out.extend(clouds.check(project, registry))  # noqa: E731
        _guarded(out, project.path, "while checking cloud declarations", check_clouds)
    _guarded(out, project.path, "while checking host attributes", lambda: out.extend(declared_attributes(project)[1]))
    _guarded(out, project.path, "while checking the default task", lambda: out.extend(default_task(project)[1]))
    for t in project.tasks.values():
        _guarded(
            out,
            project.path,
            f"while checking task {t.name!r}",
            _check_task,
            project,
            registry,
            t,
            out if running is None or t.name in running else _Optional(out, warnings),
            running is None or t.name in running,
            t.name not in waiting,
            where=t.location,
        )
    _guarded(out, project.path, "while checking the dependencies", lambda: out.extend(find_cycles(project, cache)))
    return out


class _Optional(list[Problem]):
    """Where the checks of a task that will not run report: a missing plugin only warns."""

    def __init__(self, out: list[Problem], warnings: list[Problem] | None) -> None:
        super().__init__()
        self.out, self.warnings = out, warnings

    def append(self, problem: Problem) -> None:
        """A missing plugin goes to the warnings, anything else to the problems."""
        if problem.code == "missing-plugin":
            if self.warnings is not None:
                self.warnings.append(problem)
        else:
            self.out.append(problem)

    def extend(self, problems: Iterable[Problem]) -> None:
        """Each of ``problems`` as :meth:`append` does it."""
        for problem in problems:
            self.append(problem)


def default_task(project: Project) -> tuple[str | None, list[Problem]]:
    """The task ``nexus run`` runs without a name (``config(default=...)`` or ``@task(default=True)``)."""
    problems: list[Problem] = []
    marked = [t for t in project.tasks.values() if any(k == "default" and v is True for k, v in t.extra)]
    for extra in marked[1:]:
        _p(problems, f"tasks {marked[0].name!r} and {extra.name!r} are both marked default=True", extra.location,
           "keep default=True on one task", "bad-default")  # fmt: skip
    chosen = project.config.get("default")
    if isinstance(chosen, str) and chosen:
        where = project.config_locations.get("default")
        if chosen not in project.tasks:
            _p(problems, f"config(default=...) names undefined task {chosen!r}", where,
               _did_you_mean(chosen, project.tasks, "tasks"), "undefined-task")  # fmt: skip
            return None, problems
        if marked and marked[0].name != chosen:
            _p(problems, f"config(default={chosen!r}) and @task(default=True) on {marked[0].name!r} disagree",
               where, "keep one of them", "bad-default")  # fmt: skip
        return chosen, problems
    return (marked[0].name if marked else None), problems


def _guarded(out: list[Problem], path: str, when: str, fn: Any, *args: Any, where: Location | None = None) -> None:
    """Run a check; an exception from a user object (a broken ``__eq__``...) becomes a problem."""
    try:
        fn(*args)
    except Exception as exc:  # noqa: BLE001 - validation must report, never crash
        out.append(exception_problem(exc, path, when, where))


def to_host(item: object) -> Host:
    """A member of ``hosts(...)`` or ``on=[...]`` as a :class:`Host`: a host string, ``"local"``
    or a :class:`HostSpec` (whose attributes are added by :func:`with_attributes`)."""
    text = item.text if isinstance(item, HostSpec) else item
    if isinstance(text, str):
        return LOCAL if text == "local" else _parse_cached(text)
    return parse_host(text)


# A plan reads each host string several times (groups, attributes, targets, -H): hosts are
# immutable, so each string is parsed once per process (1,000 discovered hosts: 0.3 s less).
_parse_cached = functools.lru_cache(maxsize=16384)(parse_host)


def _declarations(project: Project) -> list[HostSpec]:
    specs = [m for g in project.groups.values() for m in g.members if isinstance(m, HostSpec)]
    for t in project.tasks.values():
        on = t.on
        items = on if isinstance(on, (list, tuple)) else [on]
        specs.extend(item for item in items if isinstance(item, HostSpec))
    return specs


Attributes = tuple[tuple[str, ...], FrozenMap] | tuple[tuple[str, ...], FrozenMap, FrozenMap]


def declared_attributes(project: Project) -> tuple[dict[HostKey, Attributes], list[Problem]]:
    """The attributes of each host declared with ``host(...)``, merged over every declaration.

    Attributes belong to the host, wherever it is written: tags are joined, variables
    merged; one variable set to two different values is a problem.
    """
    tags: dict[HostKey, list[str]] = {}
    values: dict[HostKey, dict[str, tuple[Any, Location | None]]] = {}
    facts: dict[HostKey, dict[str, Any]] = {}
    out: list[Problem] = []
    by_key: dict[HostKey, list[HostSpec]] = {}
    for spec in _declarations(project):
        try:
            by_key.setdefault(to_host(spec).key, []).append(spec)
        except HostParseError:
            continue  # reported where the host is used
    single: dict[HostKey, Attributes] = {}
    for key, specs in by_key.items():
        if len(specs) == 1:  # the usual case (every discovered host): nothing to merge
            one = specs[0]
            single[key] = (one.tags, one.vars, one.facts) if one.facts else (one.tags, one.vars)
    for spec in (s for key, specs in by_key.items() if key not in single for s in specs):
        key = to_host(spec).key
        if spec.facts:  # a discovered host: what its first source found
            known_facts = facts.setdefault(key, {})
            for name, value in spec.facts.items():
                known_facts.setdefault(name, value)
        known = tags.setdefault(key, [])
        known.extend(tag for tag in spec.tags if tag not in known)
        seen = values.setdefault(key, {})
        for name, value in spec.vars.items():
            if name in seen and seen[name][0] != value:
                first = seen[name][1]
                at = f" at line {first.line}" if first is not None and first.line else ""
                _p(
                    out,
                    f"host {spec.text!r}: variable {name!r} is {safe_repr(seen[name][0])}{at} "
                    f"and {safe_repr(value)} here",
                    spec.location,
                    "give each variable one value per host",
                    "bad-value",
                )
                continue
            seen.setdefault(name, (value, spec.location))
    found: dict[HostKey, Attributes] = {
        key: (tuple(tags[key]), FrozenMap((n, v) for n, (v, _) in values.get(key, {}).items()), FrozenMap(facts[key]))
        if key in facts
        else (tuple(tags[key]), FrozenMap((n, v) for n, (v, _) in values.get(key, {}).items()))
        for key in tags
    }
    found.update(single)
    return found, out


def with_attributes(host: Host, attributes: Mapping[HostKey, Attributes]) -> Host:
    """``host`` carrying the attributes declared for it (itself when it has none)."""
    found = attributes.get(host.key)
    if found is None or not any(found):
        return host
    from dataclasses import replace

    facts = found[2] if len(found) > 2 else EMPTY
    return replace(host, tags=found[0], vars=found[1], facts=facts or host.facts)


def _check_sources(project: Project, registry: Registry) -> list[Problem]:
    """Problems with the ``discover(...)`` sources and their filters (see nexus_core.discovery)."""
    if not source_specs(project):
        return []
    from nexus_core.discovery import check

    return check(project, registry)


def _discovers(project: Project, name: str, seen: set[str] | None = None) -> bool:
    """True when group ``name`` (or a group it includes) has a source not discovered yet."""
    seen = set() if seen is None else seen
    if name in seen or name not in project.groups:
        return False
    seen.add(name)
    group = project.groups[name]
    return any(isinstance(m, SourceSpec) for m in group.members) or any(
        isinstance(sub, str) and _discovers(project, sub, seen) for sub in group.groups
    )


def _check_groups(project: Project, out: list[Problem]) -> None:
    for g in project.groups.values():
        for member in g.members:
            if isinstance(member, SourceSpec):
                continue  # checked by _check_sources, discovered when a run is planned
            try:
                to_host(member)
            except HostParseError as exc:
                where = member.location if isinstance(member, HostSpec) and member.location else g.location
                found = isinstance(member, HostSpec) and bool(member.facts)  # a host source gave it
                _p(out, f"host group {g.name!r}: {exc}", where, DISCOVERED_HINT if found else HOST_HINT, "bad-host")
        for sub in g.groups:
            if isinstance(sub, str) and sub not in project.groups and _inventory_failed(project):
                continue  # the group may be in the inventory that did not load: its error says why
            if not isinstance(sub, str) or sub not in project.groups:
                _p(
                    out,
                    f"host group {g.name!r} includes undefined group {safe_repr(sub)}",
                    g.location,
                    _did_you_mean(str(sub), project.groups, "groups"),
                    "undefined-group",
                )
    # group cycles
    for g in project.groups.values():
        path = _group_cycle(project, g.name, [])
        if path and path[0] == g.name and g.name == min(path[:-1]):
            _p(
                out,
                "host groups include each other: " + " -> ".join(path),
                g.location,
                "remove one of the groups= references",
                "cycle",
            )


def _no_host_left_hint(limit: Limit) -> str:
    """The fix for a ``-H`` limit that leaves none of the run's hosts: its exclusions (``!``,
    ``&``) when it has any, else that its patterns name hosts other tasks run on."""
    if any(t.kind != "+" for t in limit.terms):
        return (
            "the patterns together exclude every host (see them with --list-hosts without -H); "
            "drop an exclusion (!NAME, &NAME) or name a host to keep"
        )
    return (
        "the patterns name hosts, but none that the tasks asked for run on; see each task's hosts "
        "with --list-hosts without -H, and name one of them (or ask for a task that runs there)"
    )


def _group_cycle(project: Project, name: str, stack: list[str]) -> list[str] | None:
    if name in stack:
        return [*stack[stack.index(name) :], name]
    if len(stack) > 200:
        return None
    group = project.groups.get(name)
    if group is None:
        return None
    for sub in group.groups:
        if isinstance(sub, str):
            found = _group_cycle(project, sub, [*stack, name])
            if found:
                return found
    return None


def _check_task(
    project: Project, registry: Registry, t: TaskDef, out: list[Problem], runs: bool = True, targets: bool = True
) -> None:
    """Check one task's options, strategy, deps and targets.

    A plugin strategy is imported only for a task that ``runs`` (its options are still
    checked: their specifications come with the registration).
    """
    where = t.location
    opts = registry.task_options
    for key, value in t.extra:
        spec = opts.get(key)
        if spec is None:
            _p(
                out,
                f"task {t.name!r} has no option {key!r}",
                where,
                _did_you_mean(key, opts, "options"),
                "unknown-option",
            )
            continue
        why = spec.problem(value)
        if why:
            _p(out, f"task {t.name!r}: {why}", where, spec.hint(), "bad-value")
    for why in task_params(t.func)[1]:
        _p(out, f"task {t.name!r}: {why}", where, "task parameters take str, int, float or bool values", "bad-param")
    if t.timeout is not None:
        why = opts["timeout"].problem(t.timeout)
        if why:
            _p(out, f"task {t.name!r}: {why}", where, "use a number of seconds, e.g. timeout=300", "bad-value")
    if not isinstance(t.strategy, str):
        _p(
            out,
            f"task {t.name!r}: strategy must be a string, not {type(t.strategy).__name__}",
            where,
            "strategies: " + ", ".join(registry.strategies),
            "bad-value",
        )
    elif t.strategy not in registry.strategies:
        hint = _did_you_mean(t.strategy, registry.strategies, "strategies")
        why, install = registry.missing("strategy", t.strategy, f"the {t.strategy!r} strategy")
        if not suggest(t.strategy, registry.strategies) and (why or "pip install" in install):
            hint = f"{why}; {install}" if why else install
        _p(out, f"task {t.name!r}: unknown strategy {safe_repr(t.strategy)}", where, hint, "bad-value")
    elif not runs and registry.strategies.entry(t.strategy).cls is None:
        pass  # not imported for a task that does not run; `nexus validate` runs every check
    elif why := registry.strategies.problem(t.strategy):
        _p(
            out,
            f"task {t.name!r}: {why}",
            where,
            "reinstall or upgrade that plugin (see `nexus plugins`)",
            "plugin-error",
        )
    else:
        strategy = registry.strategy(t.strategy)
        for why in strategy.check(dict(t.extra)):
            _p(out, f"task {t.name!r}: {why}", where, code="bad-value")
        for key, owner in _other_strategy_options(registry, t.strategy, t.extra):
            unused = f"{key}= is an option of the {owner!r} strategy, which this task does not use"
            _p(out, f"task {t.name!r}: {unused} (its strategy is {t.strategy!r}): it would change nothing", where,
               f"add strategy={owner!r} to @task, or remove {key}=", "bad-value")  # fmt: skip
    for dep in t.deps:
        name = _dep_name(dep)
        if name is None:
            what = getattr(dep, "__name__", None)
            what = what if isinstance(what, str) else safe_repr(dep)
            hint = "decorate it with @task" if callable(dep) else "deps take task functions or task names"
            _p(out, f"task {t.name!r} depends on {what}, which is not a task", where, hint, "undefined-task")
        elif name not in project.tasks:
            _p(
                out,
                f"task {t.name!r} depends on undefined task {safe_repr(name)}",
                where,
                _did_you_mean(name, [n for n in project.tasks if n != t.name], "tasks")
                if len(project.tasks) > 1
                else f"no other task is defined: define a task {safe_repr(name)} or remove it from deps",
                "undefined-task",
            )
        elif name == t.name:
            pass  # reported as a cycle
    if targets:
        _targets(project, registry, t, out, None)


def _targets(
    project: Project,
    registry: Registry,
    t: TaskDef,
    out: list[Problem],
    override: Sequence[Host] | None,
    load: bool = False,
) -> list[Host]:
    """Resolve ``on=`` to hosts, reporting problems into ``out``.

    ``load``: import the executor of each transport (the task is about to run), so that a
    broken plugin is a validation problem that names it rather than a failure mid-run.
    """
    where = t.location
    on = t.on
    if on is None or (isinstance(on, str) and on == "local"):
        return [LOCAL]
    hosts: list[Host] = []
    if isinstance(on, str):
        if on not in project.groups:
            if not _inventory_failed(project):  # else the group may be in it: its error says why
                _p(
                    out,
                    f"task {t.name!r} runs on undefined host group {safe_repr(on)}",
                    where,
                    _did_you_mean(on, project.groups, "groups"),
                    "undefined-group",
                )
            return []
        unparsed = False
        for member in _group_members(project, on, set()):
            try:
                hosts.append(to_host(member))
            except HostParseError:
                unparsed = True  # reported with the group: "no hosts" would only repeat it
        if not hosts and not unparsed and not out_has_group_problem(out, on) and not _discovers(project, on):
            _p(
                out,
                f"task {t.name!r} runs on host group {on!r}, which has no hosts",
                project.groups[on].location,
                "add hosts to the group",
                "empty-group",
            )
    elif isinstance(on, (list, tuple, HostSpec, SourceSpec)):
        if isinstance(on, (HostSpec, SourceSpec)):
            on = [on]
        if not on:
            _p(
                out,
                f"task {t.name!r}: on= is an empty list",
                where,
                'give host strings, a group name, or "local"',
                "bad-value",
            )
        named = [i for i in on if isinstance(i, str) and i in project.groups]
        if named:  # a group's name in a list of hosts would be taken for a host of that name
            both = "', '".join(named)
            _p(
                out,
                f"task {t.name!r}: on=[...] lists host group{'s' if len(named) > 1 else ''} '{both}' among hosts",
                where,
                f'for one group write on={named[0]!r}; for several, define hosts("both", groups=[...]) '
                'and write on="both"',
                "group-in-list",
            )
            return []
        for item in on:
            if isinstance(item, SourceSpec):
                continue  # discovered when a run is planned
            try:
                hosts.append(to_host(item))
            except HostParseError as exc:
                at = item.location if isinstance(item, HostSpec) and item.location else where
                _p(out, f"task {t.name!r}: {exc}", at, HOST_HINT + " in on=[...]", "bad-host")
    else:
        _p(
            out,
            f'task {t.name!r}: on= must be "local", a group name or a list of hosts, not {type(on).__name__}',
            where,
            'write on="web" or on=["web-1", "deploy@web-2:2222"]',
            "bad-value",
        )
        return []
    if override is not None and any(not h.is_local for h in hosts):
        hosts = list(override)
    for transport in dict.fromkeys(h.transport for h in hosts):
        if transport not in registry.executors:
            why, hint = registry.missing("executor", transport, f"the {transport!r} transport")
            state = f"is loaded: {why}" if why else "is installed"
            _p(
                out,
                f"task {t.name!r} runs on remote hosts ({transport}), but no {transport} executor {state}",
                where,
                hint,
                "missing-plugin",
            )
        elif load and (why := registry.executors.problem(transport)):
            _p(out, f"task {t.name!r}: {why}", where, "reinstall or upgrade that plugin (see `nexus plugins`)",
               "plugin-error")  # fmt: skip
        elif load:
            for host in (h for h in hosts if h.transport == transport):
                wrong = _host_problem(registry.executors[transport], host)
                if wrong:
                    message, _, hint = wrong.partition("\n")
                    _p(out, f"task {t.name!r}: {message}", where, hint.removeprefix("- "), "bad-host")
    return _dedupe(hosts)


def _host_problem(executor: Any, host: Host) -> str:
    """What the executor class says is wrong with ``host`` ("" when nothing; a plugin's hook
    that raises is not the user's mistake, and surfaces when the host runs)."""
    try:
        return str(executor.host_problem(host) or "")  # registered executors subclass Executor
    except Exception:  # noqa: BLE001 - plugin code
        return ""


def out_has_group_problem(out: list[Problem], group: str) -> bool:
    """True when a problem about this group's host strings was already reported."""
    return any(p.code == "bad-host" and f"group {group!r}" in p.message for p in out)


def _group_members(project: Project, name: str, seen: set[str]) -> list[str | HostSpec]:
    if name in seen or name not in project.groups:
        return []
    seen.add(name)
    group = project.groups[name]
    members = [m for m in group.members if isinstance(m, (str, HostSpec))]
    for sub in group.groups:
        if isinstance(sub, str):
            members.extend(_group_members(project, sub, seen))
    return members


def _dedupe(hosts: Sequence[Host]) -> list[Host]:
    seen: dict[HostKey, Host] = {}
    for h in hosts:
        seen.setdefault(h.key, h)
    return list(seen.values())


def find_cycles(project: Project, cache: DagCache | None = None) -> list[Problem]:
    """One problem per dependency cycle, printed as ``a -> b -> c -> a``."""
    key = ""
    if cache is not None:
        deps = {
            t.name: [n for n in (_dep_name(d) for d in t.deps) if n in project.tasks] for t in project.tasks.values()
        }
        key = dag_key(deps)
        if cache.cached_phases(key) is not None:
            return []
    import networkx as nx

    graph = nx.DiGraph()
    order = {name: i for i, name in enumerate(project.tasks)}
    for t in project.tasks.values():
        graph.add_node(t.name)
        for dep in t.deps:
            name = _dep_name(dep)
            if name in project.tasks:
                graph.add_edge(t.name, name)
    out: list[Problem] = []
    components = [
        c for c in nx.strongly_connected_components(graph) if len(c) > 1 or any(graph.has_edge(n, n) for n in c)
    ]
    for comp in sorted(components, key=lambda c: min(order[n] for n in c)):
        start = min(comp, key=lambda n: order[n])
        sub = graph.subgraph(comp)
        cycle = _cycle_from(sub, start)
        where = project.tasks[start].location
        _p(
            out,
            "dependency cycle: " + " -> ".join(cycle),
            where,
            "remove one of these deps so that the tasks form a DAG",
            "cycle",
        )
    if not out and cache is not None:
        generations = nx.topological_generations(graph.reverse())
        cache.cache_phases(key, [sorted(gen, key=order.__getitem__) for gen in generations])
    return out


def _cycle_from(graph: Any, start: str) -> list[str]:
    """A simple cycle through ``start`` (breadth-first, so the shortest)."""
    parents: dict[str, str] = {}
    queue = [start]
    seen = {start}
    for node in queue:
        for nxt in sorted(graph.successors(node)):
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(parents[path[-1]])
                return [*reversed(path), start]
            if nxt not in seen:
                seen.add(nxt)
                parents[nxt] = node
                queue.append(nxt)
    return [start, start]  # pragma: no cover - start is always on a cycle here


# --- planning ------------------------------------------------------------------------------


def closure(project: Project, requested: Sequence[str]) -> list[str]:
    """The requested tasks and everything they depend on, in definition order."""
    wanted: set[str] = set()
    stack = list(requested)
    while stack:
        name = stack.pop()
        if name in wanted or name not in project.tasks:
            continue
        wanted.add(name)
        stack.extend(n for n in (_dep_name(d) for d in project.tasks[name].deps) if n)
    return [n for n in project.tasks if n in wanted]


def build_plan(
    project: Project,
    registry: Registry,
    requested: Sequence[str] | None = None,
    *,
    host_override: Sequence[str] | None = None,
    config_override: Mapping[str, Any] | None = None,
    cache: DagCache | None = None,
    every_plugin: bool = False,
    limit: Sequence[str] | None = None,
    params: Mapping[str, str] | None = None,
    waiting: Mapping[str, str] | None = None,
    untargeted: Sequence[tuple[str, Sequence[str]]] = (),
) -> Plan:
    """Validate ``project`` and plan ``requested`` tasks (all tasks when None or empty).

    ``waiting``: tasks whose hosts are not there yet, with why (a dry run's cloud agents,
    which start with the run): not planned but kept in ``Plan.waiting``, their bodies not evaluated.

    Raises :class:`ValidationFailed` with every problem found. ``cache`` remembers the
    phases of graph shapes already planned (see :class:`DagCache`). A task that will not
    run may target a transport whose plugin is not installed: that is a warning in
    ``Plan.warnings``, unless ``every_plugin`` (``nexus validate``) makes it an error.
    ``limit`` holds the
    ``-H`` values: each task keeps only its hosts that match (see :mod:`nexus_core.limit`);
    a task left with none is not run (``Plan.skipped``). ``host_override`` (API only)
    replaces the hosts of remote tasks instead. ``config_override``: values given on the
    command line (see :func:`nexus_core.options.config_overrides`), checked by their
    option's ``cli_check``. ``untargeted``: hosts a source found but does not target (offline,
    or left out by it), each as its shown name and its spellings: a ``-H`` pattern naming only
    them is said to, instead of "matches no host".
    """
    requested = list(requested or [])
    names = closure(project, requested) if requested else list(project.tasks)
    warnings: list[Problem] = []
    waiting = dict(waiting or {})
    problems = check_structure(
        project, registry, cache, running=None if every_plugin else names, warnings=warnings, waiting=waiting
    )
    problems += _check_overrides(registry, config_override or {})
    problems += _unknown_windows(project, names)
    problems += _unmatched_dry_run_rules(project)
    # A nexusfile that stopped loading half-way (a syntax error, an exception at its top level)
    # may define the requested tasks after the line that failed: that line is the problem.
    loaded = not any(p.code in ("syntax", "exception") for p in project.problems)
    for name in requested:
        if loaded and name not in project.tasks:
            problems.append(
                Problem(
                    f"no task named {safe_repr(name)}",
                    Location(project.path),
                    _did_you_mean(name, project.tasks, "tasks"),
                    "undefined-task",
                )
            )
    if not project.tasks and not problems:
        problems.append(
            Problem(
                "the nexusfile defines no tasks",
                Location(project.path),
                'add a function decorated with @task that calls run("..."), or start from `nexus init`',
                "no-tasks",
            )
        )
    override: list[Host] | None = None
    if host_override:
        override = []
        for text in host_override:
            try:
                override.append(parse_host(text))
            except HostParseError as exc:
                problems.append(Problem(f"--hosts: {exc}", None, "pass comma-separated host strings", "bad-host"))
    host_limit = _parse_limit(project, registry, limit, names, problems, untargeted)
    signatures = {n: task_params(project.tasks[n].func)[0] for n in names}
    if params:
        _check_args(params, signatures, problems)
    skipped: dict[str, str] = {}
    load_failed = any(p.code in ("syntax", "exception") for p in project.problems)
    if load_failed:
        # The file stopped half-way: its bodies would only add errors caused by the first one.
        raise ValidationFailed(problems)
    structural = bool(problems)
    from nexus_core.templates import planning as templates_see

    # Only what the user set (nexusfile + CLI overrides): an executor must be able to tell
    # "not set" from "set to the default", e.g. so that a transport's own client config
    # applies when its port key was not given. Consumers read ``config.get(key, default)``;
    # see resolved_config().
    config = dict(project.config)
    config.update({k: v for k, v in (config_override or {}).items() if v is not None})
    tasks: dict[str, TaskPlan] = {}
    with in_project(project):
        targets: dict[str, list[Host]] = {}
        for name in names:
            t = project.tasks[name]
            if name in waiting:
                continue
            try:
                targets[name] = _targets(project, registry, t, problems, override, load=True)
            except Exception as exc:  # noqa: BLE001 - reported by check_structure already
                problems.append(exception_problem(exc, project.path, f"while checking task {name!r}", t.location))
        try:
            attributes = declared_attributes(project)[0]
        except Exception:  # noqa: BLE001 - reported by check_structure already
            attributes = {}
        labels = assign_labels(h for hosts in targets.values() for h in hosts)
        templates_see(config)
        for name, targeted in targets.items():
            t = project.tasks[name]
            hosts = [_finished(h, attributes, labels) for h in targeted]
            if host_limit is not None and any(not h.is_local for h in hosts):
                hosts = host_limit.select(hosts, _membership(project))
                if not hosts:
                    skipped[name] = f"no host of the task matches -H {host_limit.text}"
                    continue
            if dict(t.extra).get("parallel") == "sharded":
                hosts = shard_hosts(t, hosts, problems)
            kwargs, missing = bind(name, signatures[name], params or {})
            if missing and params is None:  # not a run (validate, list): bodies needing arguments wait
                if not (structural or problems):
                    tasks[name] = _task_plan(registry, t, [HostPlan(h, ()) for h in hosts])
                continue
            if missing:
                problems.extend(Problem(m, t.location, _param_hint(p), "bad-param") for p, m in missing)
                continue
            # Bodies run even when the structure has problems, so that every problem
            # (a bad run() option, an unset env(), an empty task...) is reported at once.
            host_plans: list[HostPlan] = []
            body_problems = 0
            for host in hosts:
                commands, found = evaluate_body(project, t, host, kwargs)
                commands, kept = split_artifacts(commands)
                handlers, more = plan_handlers(project, t, host, commands)
                found = found + more + _check_operations(registry, t, host, commands, handlers)
                found += _file_problems(registry, t, host, commands)
                problems.extend(found)
                body_problems += len(found)
                host_plans.append(HostPlan(host, tuple(commands), handlers, kept))
            if host_plans and not body_problems and not t.deps and all(not hp.commands for hp in host_plans):
                problems.append(
                    Problem(
                        f"task {name!r} runs no commands",
                        t.location,
                        "add run(...) calls to its body, give it deps=[...] (a task that only groups others), "
                        "or remove the task",
                        "empty-task",
                    )
                )
            sharded = dict(t.extra).get("parallel") == "sharded"
            problems.extend(_shared_downloads(name, project.path, host_plans, sharded))
            if structural or problems:
                continue
            try:
                tasks[name] = _task_plan(registry, t, host_plans)
            except Exception as exc:  # noqa: BLE001 - a plugin strategy failed: report it by name
                owner = registry.owners.get(f"strategy:{t.strategy}", "?")
                problems.append(
                    Problem(
                        f"task {name!r}: strategy {t.strategy!r} ({owner}) failed to plan: {type(exc).__name__}: {exc}",
                        t.location,
                        "this is a bug in the plugin that provides the strategy; try another strategy",
                        "strategy-error",
                    )
                )
    problems.extend(_shared_artifacts(project, tasks))
    if host_limit is not None and skipped and not tasks and not waiting and not problems:
        problems.append(
            Problem(
                f"-H/--hosts {host_limit.text}: no host of this run's tasks is left, so nothing would run",
                None,
                _no_host_left_hint(host_limit),
                "bad-limit",
            )
        )
    if problems:
        raise ValidationFailed(problems)
    left = {*skipped, *waiting}
    if left:  # dependents of a task left out by -H run without waiting for it (as Ansible's --limit)
        tasks = {n: replace(tp, deps=tuple(d for d in tp.deps if d not in left)) for n, tp in tasks.items()}
    return Plan(
        nexusfile=project.path,
        root=project.root,
        requested=tuple(requested),
        tasks=tasks,
        phases=phases(tasks, cache),
        config=config,
        source_hash=project.source_hash,
        warnings=tuple(warnings),
        skipped=skipped,
        waiting={n: why for n, why in waiting.items() if n in names},
        limit=host_limit.text if host_limit is not None else "",
        params=dict(params or {}),
    )


def _unmatched_dry_run_rules(project: Project) -> list[Problem]:
    """``require_dry_run(tasks=[...])`` names or patterns that match no task: a misspelt name
    left the task it meant without the rule, and nothing said so."""
    import fnmatch

    rule = project.compliance.get("dry_run")
    if not rule:
        return []
    names, _ttl = rule
    where = project.compliance.get("dry_run_at")
    return [
        Problem(
            f"require_dry_run: {name!r} matches no task",
            where if isinstance(where, Location) else None,
            _did_you_mean(name, project.tasks, "tasks"),
            "undefined-task",
        )
        for name in names
        if not any(fnmatch.fnmatchcase(t, name) for t in project.tasks)
    ]


def _unknown_windows(project: Project, names: Iterable[str]) -> list[Problem]:
    """``@task(change_window=NAME)`` naming no window of the nexusfile nor of the system policy
    (a validation error, as any undefined name; a dry run used to pass and the real run fail).
    A policy that cannot be read is left to the run's gate, which says why."""
    wanted: dict[str, str] = {}
    for n in names:
        window = dict(project.tasks[n].extra).get("change_window") if n in project.tasks else None
        if isinstance(window, str):
            wanted[n] = window
    if not wanted:
        return []
    known = set(project.compliance.get("windows", {}))
    if any(w not in known for w in wanted.values()):
        try:
            from nexus_core.policy.local import policy_path, trusted
            from nexus_core.policy.model import load_policy

            path = policy_path(None)
            if path is not None and not trusted(path):
                known |= set(load_policy(path).windows)
            elif path is not None:
                return []  # an untrusted policy: the gate refuses the run and says why
        except Exception:  # noqa: BLE001 - a policy that cannot be read: the gate says why
            return []
    return [
        Problem(
            f"task {n!r}: unknown change window {w!r}",
            project.tasks[n].location,
            _did_you_mean(w, known, "windows")
            if known
            else f'declare it: change_window({w!r}, days=[...], hours="10-16", timezone="UTC")',
            "undefined-window",
        )
        for n, w in wanted.items()
        if w not in known
    ]


def _shared_artifacts(project: Project, tasks: Mapping[str, TaskPlan]) -> list[Problem]:
    """The same ``artifact(path)`` (a path, not a pattern) declared by two tasks that one task
    depends on: which file it would get would depend on which finished last. One problem per
    path and dependent task (pattern matches are checked when delivered)."""
    if "nexus_core.artifacts" not in sys.modules:  # artifact() imports it: none was declared
        return []
    from nexus_core.artifacts import upstream

    declared = {
        name: {p for hp in tp.hosts for p in hp.artifacts if not any(c in p for c in "*?[")}
        for name, tp in tasks.items()
    }
    if sum(1 for paths in declared.values() if paths) < 2:
        return []
    out: list[Problem] = []
    said: set[tuple[str, ...]] = set()
    for name in tasks:
        by_path: dict[str, list[str]] = {}
        for dep in upstream(tasks, name):
            for path in declared.get(dep, ()):
                by_path.setdefault(path, []).append(dep)
        for path, producers in sorted(by_path.items()):
            key = (path, *sorted(producers))
            if len(producers) < 2 or key in said:
                continue
            said.add(key)
            first, second = sorted(producers)[:2]
            out.append(
                Problem(
                    f"tasks {first!r} and {second!r} both declare artifact({path!r}), and task {name!r} depends "
                    "on both: it would get the file of whichever finished last",
                    project.tasks[second].location if second in project.tasks else None,
                    "give each task's artifact a path of its own (e.g. dist/a/app.txt and dist/b/app.txt)",
                    "bad-value",
                )
            )
    return out


def _shared_downloads(task: str, path: str, host_plans: Sequence[HostPlan], sharded: bool) -> list[Problem]:
    """A ``download()`` that several hosts of a task would write to the same local path: each
    would replace the last one's file, silently. One problem per such operation."""
    from nexus_core.model import Transfer

    seen: dict[tuple[int, str], list[str]] = {}
    lines: dict[tuple[int, str], int] = {}
    for hp in host_plans:
        for i, cmd in enumerate(hp.commands):
            if isinstance(cmd, Transfer) and cmd.kind == "download":
                key = (i, os.path.normpath(cmd.dest))
                seen.setdefault(key, []).append(hp.host.label)
                lines[key] = cmd.line
    out = []
    for key, hosts in seen.items():
        dest = key[1]
        if len(hosts) > 1:
            out.append(
                Problem(
                    f"task {task!r}: download() writes {dest} from {len(hosts)} hosts ({', '.join(hosts[:3])}"
                    f"{', ...' if len(hosts) > 3 else ''}): each host's file would replace the last one's",
                    Location(path, lines[key]),
                    'put the shard in the local path, e.g. download(src, f"logs/shard-{shard_id()}/app.log")'
                    if sharded  # every local shard's hostname() is this machine's
                    else 'put the host in the local path, e.g. download(src, f"logs/{hostname()}/app.log")',
                    "shared-download",
                )
            )
    return out


def shard_hosts(t: TaskDef, hosts: Sequence[Host], out: list[Problem]) -> list[Host]:
    """The shards of a ``parallel="sharded"`` task, as hosts of the plan (see nexus_core.targets).

    On agents every shard may run on any target agent (``nexus_pool``: the scheduler picks
    one that is free); on the local machine shards are ``shard-N`` runs of it; on other
    transports shard ``i`` runs on host ``i`` (so at most one shard per host).
    """
    from nexus_core.model import FrozenMap
    from nexus_core.targets import SHARD_COUNT, SHARD_ID, SHARD_POOL

    if not hosts:
        return []
    count = dict(t.extra).get("shards") or len(hosts)
    from nexus_core.options import MAX_SHARDS

    if not isinstance(count, int) or count > MAX_SHARDS:  # the option's check says so: no billion hosts
        return []
    if all(h.transport == "agent" for h in hosts):
        pool = tuple(h.name for h in hosts)
        facts: dict[str, Any] = {SHARD_COUNT: count, SHARD_POOL: pool}
        tags = {h.facts.get("selector_tag") for h in hosts}
        if len(tags) == 1 and None not in tags:  # tagged("burst"): agents joining later may take shards too
            facts["nexus_pool_tag"] = tags.pop()
        return [Host(f"shard-{i}", transport="agent", facts=FrozenMap({SHARD_ID: i, **facts})) for i in range(count)]
    if all(h.is_local for h in hosts):
        base = hosts[0]
        return [
            replace(
                base, name=f"shard-{i}", display="", facts=FrozenMap({**base.facts, SHARD_ID: i, SHARD_COUNT: count})
            )
            for i in range(count)
        ]
    if count > len(hosts):
        _p(
            out,
            f"task {t.name!r}: shards={count} is more than its {len(hosts)} host(s)",
            t.location,
            "on agents (or the local machine) shards queue; on other hosts give at most one shard per host",
            "bad-value",
        )
        return []
    return [
        replace(h, facts=FrozenMap({**h.facts, SHARD_ID: i, SHARD_COUNT: count})) for i, h in enumerate(hosts[:count])
    ]


def _finished(host: Host, attributes: Mapping[HostKey, Attributes], labels: Mapping[HostKey, str]) -> Host:
    """A target with its declared attributes and its label in the plan."""
    from dataclasses import replace

    host = with_attributes(host, attributes)
    label = labels.get(host.key, host.short_label)
    return host if label == host.label else replace(host, display=label)


def _param_hint(p: Param) -> str:
    """The fix for a problem with parameter ``p``: ``pass NAME=VALUE``, with an example value."""
    example = {bool: "true", int: "3", float: "1.5"}.get(p.type)
    return f"pass {p.name}=VALUE" + (f", e.g. {p.name}={example}" if example else "")


def _check_args(args: Mapping[str, str], signatures: Mapping[str, Sequence[Param]], out: list[Problem]) -> None:
    """Every ``key=value`` word must name a parameter of some task of the run."""
    known = list(dict.fromkeys(p.name for ps in signatures.values() for p in ps))
    for key in args:
        if not key.isidentifier():
            out.append(Problem(f"argument {key + '=' + str(args[key])!r}: {key!r} is not a parameter name", None,
                               "write NAME=VALUE, e.g. version=1.2", "bad-param"))  # fmt: skip
        elif key not in known:
            takers = ", ".join(f"{n}({', '.join(p.name for p in ps)})" for n, ps in signatures.items() if ps)
            close = suggest(key, known)
            hint = (
                f"did you mean {close!r}?"
                if close
                else (f"parameters of this run's tasks: {takers}" if takers else "no task of this run takes parameters")
            )
            out.append(Problem(f"no task of this run takes a parameter {key!r}", None, hint, "bad-param"))


def _membership(project: Project) -> dict[str, set[HostKey]]:
    """Each host group's hosts, as keys (groups included through ``groups=`` count)."""
    out: dict[str, set[HostKey]] = {}
    for name in project.groups:
        keys: set[HostKey] = set()
        for member in _group_members(project, name, set()):
            try:
                keys.add(to_host(member).key)
            except (HostParseError, TypeError, ValueError):
                pass  # reported with the group
        out[name] = keys
    return out


def _inventory(project: Project) -> list[Host]:
    """Every host the nexusfile names (groups and ``on=[...]`` lists), for ``-H`` typo checks."""
    texts: list[Any] = [m for g in project.groups.values() for m in g.members]
    texts += [item for t in project.tasks.values() if isinstance(t.on, (list, tuple)) for item in t.on]
    hosts: list[Host] = []
    try:
        attributes = declared_attributes(project)[0]  # tags count for -H tag:NAME
    except Exception:  # noqa: BLE001 - reported by check_structure
        attributes = {}
    for text in texts:
        raw = text.text if isinstance(text, HostSpec) else text
        if raw == "local":
            hosts.append(with_attributes(LOCAL, attributes))
            continue
        try:
            hosts.append(with_attributes(parse_host(raw), attributes))
        except HostParseError:
            pass
    return _dedupe(hosts)


def _parse_limit(
    project: Project,
    registry: Registry,
    limit: Sequence[str] | None,
    names: Sequence[str],
    out: list[Problem],
    untargeted: Sequence[tuple[str, Sequence[str]]] = (),
) -> Limit | None:
    """The parsed ``-H`` limit, or None; its problems (bad pattern, no match, local-only run) go to ``out``.
    ``untargeted``: as in :func:`build_plan`."""
    if limit is None:
        return None
    from nexus_core.limit import LimitError, parse_limit

    try:
        parsed = parse_limit(limit)
    except LimitError as exc:
        out.append(Problem(str(exc), None, "e.g. -H web (a group), -H 'web-*,!web-3' or -H @hosts.txt", "bad-limit"))
        return None
    scratch: list[Problem] = []
    remote = [n for n in names if n in project.tasks and _is_remote(project, registry, project.tasks[n], scratch)]
    if not remote and not any(p.code in ("undefined-group", "bad-host") for p in scratch):
        shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
        out.append(
            Problem(
                f"-H/--hosts {parsed.text}: the tasks of this run ({shown}) all run on the local machine",
                None,
                "-H narrows the hosts of remote tasks; drop it, or run a task declared with on=...",
                "bad-limit",
            )
        )
        return None
    inventory = _inventory(project)
    groups = _membership(project)
    candidates = list(dict.fromkeys([*groups, *(h.label for h in inventory), *(h.name for h in inventory)]))
    from_files: list[str] = []
    for term in parsed.unmatched_terms(inventory, groups):
        close = suggest(term.pattern, candidates)
        if term.where:  # a line of an @file: named, not repeated (the file may hold anything)
            from_files.append(term.where)
            if len(from_files) <= _FILE_LINES_SHOWN:
                hint = f"did you mean {close!r}?" if close else "write one host, group or pattern a line"
                message = f"-H @{term.where}: the pattern on this line matches no host or group"
                out.append(Problem(message, None, hint, "bad-limit"))
            continue
        left = [name for name, forms in untargeted if any(fnmatch.fnmatchcase(f, term.pattern) for f in forms)]
        if left:
            from nexus_core.output.alike import listed

            shown = listed(left)
            message = (f"-H/--hosts: {term.pattern!r} names discovered hosts this run does not target "
                       f"({shown}: offline or left out by their source)")  # fmt: skip
            out.append(Problem(message, None, "`nexus hosts list` shows them and why", "bad-limit"))
            continue
        hint = f"did you mean {close!r}?" if close else _did_you_mean(term.pattern, candidates, "hosts and groups")
        out.append(Problem(f"-H/--hosts: {str(term)!r} matches no host or group", None, hint, "bad-limit"))
    if len(from_files) > _FILE_LINES_SHOWN:
        rest = from_files[_FILE_LINES_SHOWN:]
        lines = ", ".join(rest[:3]) + (", ..." if len(rest) > 3 else "")
        out.append(
            Problem(
                f"-H @: {len(rest)} more lines match no host or group ({lines})",
                None,
                "is it the file of hosts you meant? It holds one host, group or pattern a line",
                "bad-limit",
            )
        )
    return parsed


#: Lines of an ``-H @file`` that match nothing, reported one by one before the rest are counted.
_FILE_LINES_SHOWN = 5


def _is_remote(project: Project, registry: Registry, t: TaskDef, scratch: list[Problem]) -> bool:
    try:
        return any(not h.is_local for h in _targets(project, registry, t, scratch, None))
    except Exception:  # noqa: BLE001 - reported by check_structure
        return False


def _check_overrides(registry: Registry, overrides: Mapping[str, Any]) -> list[Problem]:
    """Problems with values given on the command line (``-i`` naming a missing key file...)."""
    out: list[Problem] = []
    for key, value in overrides.items():
        spec = registry.config_options.get(key)
        if value is None or spec is None or spec.cli_check is None:
            continue
        why = spec.cli_check(value)
        if why:
            message, _, hint = why.partition("\n")
            flag = f"--{spec.cli_override.replace('_', '-')}" if spec.cli_override else key
            _p(out, f"{flag}: {message}", None, hint.strip(), "bad-value")
    return out


def resolved_config(plan: Plan, registry: Registry) -> dict[str, Any]:
    """The plan's config with every known key's default filled in (for display and subscribers)."""
    config = {name: opt.default for name, opt in registry.config_options.items()}
    config.update(plan.config)
    return config


def _task_plan(registry: Registry, t: TaskDef, host_plans: list[HostPlan]) -> TaskPlan:
    """The plan of one task. ``hosts`` stay in declaration order: the strategy orders them when
    it runs (``Strategy.execute``); ``batches`` records that order for the dry run."""
    strategy = registry.strategy(t.strategy)
    opts = dict(t.extra)
    hosts = [hp.host for hp in host_plans]
    order = strategy.batches(list(hosts), opts)
    timeout = DEFAULT_TASK_TIMEOUT if t.timeout is None else float(t.timeout)
    return TaskPlan(
        name=t.name,
        deps=tuple(n for n in (_dep_name(d) for d in t.deps) if n),
        hosts=tuple(host_plans),
        strategy=t.strategy,
        options=opts,
        timeout=timeout,
        doc=t.summary,
        location=t.location,
        batches=tuple(tuple(h.label for h in b) for b in order),
        strategy_text=strategy.describe(list(hosts), opts),
    )


def evaluate_body(
    project: Project, t: TaskDef, host: Host, kwargs: Mapping[str, Any] | None = None
) -> tuple[list[Command], list[Problem]]:
    """Run a task body for one host (with its arguments) and return the commands it recorded and its problems."""
    from nexus_core.loader import stopped_by, user_code

    rec = Recorder(project=project, task=t.name, host=host)
    token = _RECORDER.set(rec)
    seen = {"sigint": False}
    try:
        with user_code() as seen:  # a body's print() goes to stderr: stdout holds results only
            t.func(**(kwargs or {}))
    except KeyboardInterrupt as exc:
        if seen["sigint"] or stopped_by():
            raise  # Ctrl+C (or SIGTERM...) while planning: the user stops Nexus
        rec.problems.append(exception_problem(exc, project.path, f"in task {t.name!r} (host {host.label})", t.location))
    except BaseException as exc:  # noqa: BLE001 - user code
        rec.problems.append(exception_problem(exc, project.path, f"in task {t.name!r} (host {host.label})", t.location))
    finally:
        _RECORDER.reset(token)
    root = project.root
    commands = [
        c
        if c.cwd is None or os.path.isabs(c.cwd) or not host.is_local
        else _with_cwd(c, os.path.normpath(os.path.join(root, c.cwd)))
        for c in rec.commands
    ]
    return commands, rec.problems


def _file_problems(registry: Registry, t: TaskDef, host: Host, commands: Sequence[Command]) -> list[Problem]:
    """A file operation on a host whose executor cannot move files, as a problem (once per task)."""
    from nexus_core.api import unsupported_files
    from nexus_core.model import Transfer

    if not any(isinstance(c, Transfer) for c in commands) or host.transport not in registry.executors:
        return []
    try:
        why = unsupported_files(registry.executors[host.transport])
    except Exception:  # noqa: BLE001 - a plugin that fails to load is reported elsewhere
        return []
    return [Problem(f"task {t.name!r}: {why}", t.location, "", "no-file-transfer")] if why else []


def _with_cwd(c: Command, cwd: str) -> Command:
    return replace(c, cwd=cwd)


def plan_handlers(
    project: Project, t: TaskDef, host: Host, commands: Sequence[Command]
) -> tuple[tuple[HandlerPlan, ...], list[Problem]]:
    """The handlers one task's operations may notify on one host (see :mod:`nexus_core.handlers`)."""
    if not project.handlers and not any(getattr(c, "notify", ()) for c in commands):
        return (), []  # nothing to notify, nothing to check: the handlers module stays unloaded
    from nexus_core import handlers

    return handlers.plan_handlers(project, t, host, commands)


def split_artifacts(recorded: Sequence[Command]) -> tuple[list[Command], tuple[str, ...]]:
    """A body's operations without its ``artifact(...)`` declarations, and those paths (see
    :mod:`nexus_core.artifacts`): they are collected after the task, not run in its order."""
    if "nexus_core.artifacts" not in sys.modules:  # artifact() imports it: no module, no artifact
        return list(recorded), ()
    from nexus_core.artifacts import Artifact

    paths = tuple(dict.fromkeys(c.cmd for c in recorded if isinstance(c, Artifact)))
    return [c for c in recorded if not isinstance(c, Artifact)], paths


def _check_operations(
    registry: Registry, t: TaskDef, host: Host, commands: Sequence[Command], handlers: Sequence[HandlerPlan]
) -> list[Problem]:
    """Operations the host's executor cannot run (``call()`` on a transport without a connection)."""
    if "nexus_core.calls" not in sys.modules:  # call() and wait_for() import it: none was used
        return []
    from nexus_core.calls import Call, check_executor

    ops = [*commands, *(c for h in handlers for c in h.commands)]
    calls = [c for c in ops if isinstance(c, Call)]
    if not calls or host.transport not in registry.executors:
        return []
    try:
        why = check_executor(calls, registry.executors[host.transport])
    except Exception:  # noqa: BLE001 - a plugin that cannot load is reported with the task's transport
        return []
    if not why:
        return []
    return [
        Problem(f"task {t.name!r} on {host.label}: {why}", Location(t.location.path, calls[0].line), "", "cannot-call")
    ]


def phases(tasks: Mapping[str, TaskPlan], cache: DagCache | None = None) -> tuple[tuple[str, ...], ...]:
    """Topological generations: each phase holds tasks whose deps are all in earlier phases."""
    key = ""
    if cache is not None:
        key = dag_key({t.name: [d for d in t.deps if d in tasks] for t in tasks.values()})
        found = cache.cached_phases(key)
        if found is not None and sorted(n for p in found for n in p) == sorted(tasks):
            return tuple(tuple(p) for p in found)
    import networkx as nx

    graph = nx.DiGraph()
    graph.add_nodes_from(tasks)
    for t in tasks.values():
        graph.add_edges_from((dep, t.name) for dep in t.deps if dep in tasks)
    order = {name: i for i, name in enumerate(tasks)}
    result = tuple(tuple(sorted(gen, key=order.__getitem__)) for gen in nx.topological_generations(graph))
    if cache is not None:
        cache.cache_phases(key, [list(p) for p in result])
    return result
