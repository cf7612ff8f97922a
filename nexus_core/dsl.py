"""The nexusfile language: ``config``, ``hosts``, ``host``, ``task``, ``run``, ``env`` and context helpers.

Loading a nexusfile runs it with a fresh :class:`~nexus_core.model.Project` as the current
target of ``config``/``hosts``/``task`` (a context variable, so two loads never share
state). Task bodies run later, at plan time, once per target host, with a
:class:`Recorder` current: ``run()`` records a :class:`~nexus_core.model.Command`.
Mistakes are recorded as problems with the nexusfile's line; they never raise out of
Nexus, so every problem is reported at once.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any, TypedDict, TypeVar, Unpack, overload

# Import the ``nexus_core.hosts`` submodule *before* ``nexus_core/__init__`` binds the ``hosts()``
# function below: importing a submodule sets it as an attribute of its package, so a later first
# import of ``nexus_core.hosts`` (by the planner or a plugin) would replace the function and make
# ``from nexus_core import hosts`` in a nexusfile return the module ("'module' object is not callable").
import nexus_core.hosts  # noqa: F401
from nexus_core.model import Command, Host, HostSpec, Location, Problem, Project, SourceSpec, TaskDef
from nexus_core.options import RUN_OPTIONS, safe_repr, suggest

F = TypeVar("F", bound=Callable[..., Any])

_PROJECT: ContextVar[Project | None] = ContextVar("nexus_project", default=None)
_RECORDER: ContextVar[Recorder | None] = ContextVar("nexus_recorder", default=None)
_MISSING: Any = object()


class NexusfileError(Exception):
    """A mistake in how the nexusfile uses the DSL, raised where it cannot be recorded."""


class Recorder:
    """Collects the operations of one task body on one host at plan time."""

    __slots__ = ("project", "task", "host", "commands", "problems", "started")

    def __init__(self, project: Project, task: str, host: Host) -> None:
        self.project = project
        self.task = task
        self.host = host
        self.commands: list[Command] = []
        self.problems: list[Problem] = []
        self.started = time.time()


def current_project() -> Project | None:
    """The project being loaded or planned, if any."""
    rec = _RECORDER.get()
    return rec.project if rec else _PROJECT.get()


def _caller(project: Project | None) -> Location:
    """The nexusfile location of the innermost frame that belongs to the user's file."""
    path = project.path if project else ""
    frame = sys._getframe(1)
    fallback: Location | None = None
    depth = 0
    while frame is not None and depth < 200:
        filename = frame.f_code.co_filename
        if filename == path:
            return Location(path, frame.f_lineno)
        if fallback is None and not filename.startswith(_PKG_DIR):
            fallback = Location(filename, frame.f_lineno)
        frame = frame.f_back  # type: ignore[assignment]
        depth += 1
    return fallback or Location(path or "<unknown>", 0)


_PKG_DIR = os.path.dirname(os.path.abspath(__file__))


def _problem(message: str, hint: str = "", code: str = "invalid") -> None:
    rec = _RECORDER.get()
    project = current_project()
    problem = Problem(message, _caller(project), hint, code)
    if rec is not None:
        rec.problems.append(problem)
    elif project is not None:
        project.problems.append(problem)
    else:
        raise NexusfileError(message + (f" ({hint})" if hint else ""))


def _loading(what: str) -> Project:
    project = _PROJECT.get()
    if project is None:
        raise NexusfileError(
            f"{what}() can only be used in a nexusfile while Nexus loads it "
            "(run it with `nexus run`, `nexus validate` or `nexus list`)"
        )
    return project


def config(**options: Any) -> None:
    """Set project-wide settings, e.g. ``config(ssh_user="deploy", parallel_limit=10)``."""
    if _RECORDER.get() is not None:
        _problem("config() is called inside a task body", "call config() at the top level of the nexusfile")
        return
    project = _loading("config")
    where = _caller(project)
    for key, value in options.items():
        project.config[key] = value
        project.config_locations[key] = where


#: A host group's name: what ``-H`` can name without reading it as a pattern.
_GROUP_NAME = re.compile(r"^\w[\w.:-]*$")


def hosts(
    name: str,
    *members: str | HostSpec | SourceSpec | list[str | HostSpec | SourceSpec],
    groups: list[str] | tuple[str, ...] | None = None,
    where: Callable[[Host], Any] | None = None,
) -> None:
    """Define host group ``name`` from host strings, :func:`host` entries, :func:`discover`
    sources and/or other groups (``groups=[...]``).

    ``"local"`` as a member is the machine Nexus runs on, as in ``on=[...]``. ``where``
    keeps only the hosts it returns true for; it receives each host (a
    :class:`~nexus_core.model.Host`, attributes included) once the sources have answered:
    ``hosts("gpu", discover("tailscale"), where=lambda h: "tag:gpu" in h.tags)``.
    """
    from nexus_core.model import HostGroup

    if _RECORDER.get() is not None:
        _problem("hosts() is called inside a task body", "define host groups at the top level")
        return
    project = _loading("hosts")
    location = _caller(project)
    if not isinstance(name, str) or not name:
        _problem(
            f"hosts() needs a group name as its first argument, got {safe_repr(name)}",
            'write hosts("web", "web-1.example.com", ...)',
        )
        return
    if name == "local":
        _problem('"local" is reserved for the machine Nexus runs on', "give the group another name")
        return
    if not _GROUP_NAME.match(name) or name.startswith("tag:"):
        # "!web", "web,db", "a b", "web*", "tag:web", "@file" are -H syntax: such a group could never be chosen
        _problem(
            f"host group name {safe_repr(name)} is not usable: -H reads !, &, @, commas, spaces, * ? [ ]"
            " and tag: as patterns",
            "use letters, digits, '_', '-', '.' and ':', starting with a letter, a digit or '_'",
            code="bad-value",
        )
        return
    if name in project.groups:
        _problem(
            f"host group {name!r} is defined twice (first at line {project.groups[name].location.line})",
            "merge the two definitions or rename one",
        )
        return
    flat: list[Any] = []
    for m in members:
        if isinstance(m, (list, tuple)):
            flat.extend(m)
        else:
            flat.append(m)
    if groups is None:
        group_names: tuple[Any, ...] = ()
    elif isinstance(groups, str):
        group_names = (groups,)
    elif isinstance(groups, (list, tuple)):
        group_names = tuple(groups)
    else:
        _problem(
            f"groups= must be a list of group names, not {type(groups).__name__}",
            'write hosts("all", groups=["web", "db"])',
            code="bad-value",
        )
        group_names = ()
    if where is not None and not callable(where):
        _problem(
            f"hosts({name!r}): where= must be a function taking a host, not {type(where).__name__}",
            'write where=lambda h: "blue" in h.tags',
            code="bad-value",
        )
        where = None
    project.groups[name] = HostGroup(name, tuple(flat), group_names, location, where)


_HOST_OPTIONS = ("tags", "vars")


def host(address: str, tags: Any = None, vars: Any = None, **unknown: Any) -> HostSpec:
    """A host with attributes, usable wherever a host string is (``hosts(...)``, ``on=[...]``).

    ``host("web-1", tags=["blue"], vars={"port": 8080})``: ``tags`` is a list of strings,
    ``vars`` a dict of names to plain values (strings, numbers, booleans, None, lists and
    dicts of these). Task bodies read them with :func:`host_tags`, :func:`host_var` and
    :func:`current_host`. Attributes never change which host it is: ``deploy@web-1``
    and ``root@web-1`` are two hosts, ``web-1`` with or without tags is one.
    """
    from nexus_core.hosts import HostAttributeError, check_tags, check_vars
    from nexus_core.model import EMPTY

    project = current_project()
    where = _caller(project)
    for key in unknown:
        close = suggest(key, _HOST_OPTIONS)
        _problem(
            f"host() has no option {key!r}",
            f"did you mean {close!r}?" if close else "options: " + ", ".join(_HOST_OPTIONS),
            code="unknown-option",
        )
    try:
        tag_tuple = check_tags(tags)
    except HostAttributeError as exc:
        _problem(f"host({safe_repr(address)}): {exc}", 'write tags=["blue", "eu"]', code="bad-value")
        tag_tuple = ()
    try:
        var_map = check_vars(vars)
    except HostAttributeError as exc:
        _problem(f"host({safe_repr(address)}): {exc}", 'write vars={"port": 8080, "role": "primary"}', code="bad-value")
        var_map = EMPTY
    return HostSpec(address, tag_tuple, var_map, where)


def discover(source: str, **filters: Any) -> SourceSpec:
    """Hosts a host source finds when Nexus plans a run, usable wherever hosts are.

    ``hosts("web", discover("tailscale", tags=["tag:web"]), "extra-host")``. ``source`` names a
    host source: the built-in ``file`` (``path=``, ``group=``), or one a plugin provides
    (``tailscale`` from nexus-tailscale, for one). ``filters`` are the
    ones the source declares (an unknown one is a validation error). Discovered hosts carry
    their attributes: ``tags``, ``vars`` and ``facts`` (``os``, ``online``, ``addresses``,
    ``source`` and whatever the source adds), read in task bodies with :func:`current_host`.
    """
    project = current_project()
    where = _caller(project)
    if _RECORDER.get() is not None:
        _problem("discover() is called inside a task body", "use it in hosts(...) or on=[...] at the top level")
    if not isinstance(source, str) or not source:
        _problem(
            f"discover() needs the name of a host source, got {safe_repr(source)}",
            'write discover("tailscale", tags=["tag:web"]) or discover("file", path="inventory.toml")',
            code="bad-value",
        )
        source = ""  # said here once: the sources' own check passes over it
    return SourceSpec(source, dict(filters), where)


def cloud(provider: str, **settings: Any) -> None:
    """Machines Nexus may start for this project: ``cloud("aws", instance_type="c6i.large", count=(0, 10))``.

    ``provider`` names a cloud provider: ``local`` (agents as processes on this machine, from
    nexus-agent), ``aws`` (nexus-aws), ``hetzner`` (nexus-hetzner). Common settings:
    ``count=(MIN, MAX)``, ``idle_timeout`` and ``max_runtime`` (seconds), ``max_hourly_cost``
    (US dollars per hour, a hard limit) and ``max_instances`` (a hard limit), ``tags`` (the
    agent tags the machines join with, default ``["burst"]``); the provider declares its own
    (``region``, ``instance_type``, ``spot_fallback``...). Started machines join the agent
    cluster: tasks reach them with ``tagged("burst")``. See the "Burst to the cloud" guide.
    """
    from nexus_core.model import CloudSpec

    if _RECORDER.get() is not None:
        _problem("cloud() is called inside a task body", "call cloud() at the top level of the nexusfile")
        return
    project = _loading("cloud")
    location = _caller(project)
    if not isinstance(provider, str) or not provider:
        _problem(
            f"cloud() needs the name of a cloud provider, got {safe_repr(provider)}",
            'write cloud("aws", instance_type="t3.micro", count=(0, 10))',
            code="bad-value",
        )
        return
    if provider in project.clouds:
        first = project.clouds[provider].location
        _problem(
            f"cloud({provider!r}) is declared twice" + (f" (first at line {first.line})" if first else ""),
            "merge the two declarations into one",
            code="duplicate-cloud",
        )
        return
    project.clouds[provider] = CloudSpec(provider, dict(settings), location)


def inventory(path: str) -> None:
    """Declare every group of an inventory file as a host group of the same name.

    ``inventory("inventory.toml")`` (Nexus's TOML format) or an Ansible inventory
    (``hosts.ini``, ``hosts.yml``); the path is relative to the nexusfile's folder. Each group
    is ``hosts(NAME, discover("file", path=path, group=NAME))``: its hosts are read when a run
    is planned, with their variables (``user``, ``port``, ``tags``...).
    """
    from nexus_core.model import HostGroup

    if _RECORDER.get() is not None:
        _problem("inventory() is called inside a task body", "call inventory() at the top level of the nexusfile")
        return
    project = _loading("inventory")
    location = _caller(project)
    if not isinstance(path, str) or not path:
        _problem(
            f"inventory() needs the path of an inventory file, got {safe_repr(path)}",
            'write inventory("inventory.toml")',
            code="bad-value",
        )
        return
    from nexus_core.discovery.inventory import InventoryError, read_inventory

    full = path if os.path.isabs(path) else os.path.join(project.root, path)
    try:
        found = read_inventory(full)
    except InventoryError as exc:
        for problem in exc.problems:
            project.problems.append(Problem(problem.message, problem.location, problem.hint, "bad-inventory"))
        if not exc.problems:
            _problem(exc.message, exc.hint, code="bad-inventory")
        return
    for group in found.groups:
        if group in project.groups or group == "local":
            earlier = project.groups.get(group)
            first = earlier.location.line if earlier is not None else 0
            specs = [m for m in earlier.members if isinstance(m, SourceSpec)] if earlier is not None else []
            read = [str(m.filters.get("path")) for m in specs if m.source == "file" and m.filters.get("group") == group]
            if read == [path]:  # the same file again: said once, not once per group
                _problem(f"inventory {path!r} is read twice (line {first} and here)", "read each inventory once",
                         code="duplicate-group")  # fmt: skip
                return
            where = f"inventory {read[0]!r}" if read else "the nexusfile"
            _problem(
                f"inventory {path!r} declares group {group!r}, which {where} already defines"
                + (f" (line {first})" if first else ""),
                'rename one of them, or use discover("file", path=..., group=...) in your own hosts(...)',
                code="duplicate-group",
            )
            continue
        spec = SourceSpec("file", {"path": path, "group": group}, location)
        project.groups[group] = HostGroup(group, (spec,), (), location)


@overload
def task(func: F, /) -> F: ...
@overload
def task(func: None = None, /, **options: Any) -> Callable[[F], F]: ...


def task(func: Any = None, /, **options: Any) -> Any:
    """Declare a task: ``@task`` or ``@task(deps=[...], on="web", strategy="rolling", timeout=300)``."""

    def register(fn: Any) -> Any:
        if _RECORDER.get() is not None:
            _problem(
                "@task is used inside a task body",
                "define every task at the top level of the nexusfile",
                code="task-in-body",
            )
            return fn
        project = _PROJECT.get()
        if project is None:
            return fn  # imported outside a load (e.g. by a test): keep the function usable
        name = getattr(fn, "__name__", None)
        if not callable(fn) or not isinstance(name, str):
            _problem(
                f"@task must decorate a function, not {type(fn).__name__}",
                "write @task on a line of its own above `def NAME():`",
                code="bad-task",
            )
            return fn
        code = getattr(fn, "__code__", None)
        line = getattr(code, "co_firstlineno", 0)
        code_file = getattr(code, "co_filename", project.path)
        if code_file == project.path and isinstance(line, int):
            where = Location(project.path, line)
        else:  # defined elsewhere (a helper module, a callable object): point at the @task call
            where = _caller(project)
        if not name.isidentifier():
            shown = "a lambda" if name == "<lambda>" else f"{name!r}"
            _problem(
                f"a task needs a name that is a Python identifier, not {shown}",
                "decorate a `def NAME():` function; its name becomes the task name",
                code="bad-task",
            )
            return fn
        if name in project.tasks:
            _problem(
                f"task {name!r} is defined twice (first at line {project.tasks[name].location.line})",
                "rename one of them",
                code="duplicate-task",
            )
            return fn
        opts = dict(options)
        deps = opts.pop("deps", ())
        if isinstance(deps, (list, tuple)):
            deps = tuple(deps)
        elif deps is None:
            deps = ()
        else:
            deps = (deps,)
        on = opts.pop("on", "local")
        strategy = opts.pop("strategy", "parallel")
        timeout = opts.pop("timeout", None)
        project.tasks[name] = TaskDef(
            name=name,
            func=fn,
            location=where,
            deps=deps,
            on=on,
            strategy=strategy,
            timeout=timeout,
            doc=_doc(fn),
            extra=tuple(opts.items()),
        )
        try:
            fn.__nexus_task__ = name
        except (AttributeError, TypeError):
            pass
        return fn

    if func is not None:
        if isinstance(func, str):
            _problem(
                f"@task got a string {safe_repr(func)}; options are keywords",
                "write @task(deps=[...])",
                code="bad-task",
            )
            return lambda fn: fn
        if options:
            _problem(
                "task() got both a function and options",
                "write @task(deps=[...]) above the function, or task(deps=[...])(function)",
                code="bad-task",
            )
            return func
        return register(func)
    return register


def _doc(fn: Any) -> str:
    try:
        doc = getattr(fn, "__doc__", None)
    except Exception:  # noqa: BLE001 - a user object's property can raise
        return ""
    return doc if isinstance(doc, str) else ""


class RunOptions(TypedDict, total=False):
    """The options of :func:`run`, typed so that editors complete and check them (the
    defaults: ``sudo=False, user=None, timeout=60, retries=0, retry_delay=1,
    continue_on_error=False, env=None, cwd=None``; the guards and ``notify`` none)."""

    sudo: bool
    user: str | None
    timeout: float
    retries: int
    retry_delay: float
    continue_on_error: bool
    env: Mapping[str, str | int | float] | None
    cwd: str | None
    creates: str | None
    only_if: str | None
    unless: str | None
    notify: Any


def run(cmd: str, **options: Unpack[RunOptions]) -> None:
    """Record a shell command for the current host: ``run("make", sudo=False, timeout=60, ...)``.

    Options: ``sudo``, ``user``, ``timeout``, ``retries``, ``retry_delay``,
    ``continue_on_error``, ``env``, ``cwd``, and the idempotence guards ``creates=PATH``,
    ``only_if=CMD``, ``unless=CMD`` (checked on the host right before the command);
    ``notify=`` a handler (see :class:`RunOptions`). An option it does not have is a
    validation error naming the closest one.
    """
    rec = _RECORDER.get()
    if rec is None:
        if _PROJECT.get() is not None:
            _problem("run() is called outside a task body", "put it inside a function decorated with @task")
            return
        raise NexusfileError("run() can only be called inside a task body, while Nexus plans a run")
    line = _caller(rec.project).line
    notify = notify_names("run", options.pop("notify", None))
    if not isinstance(cmd, str) or not cmd.strip():
        _problem(
            f"run() needs a non-empty command string, got {safe_repr(cmd)}",
            'write run("the shell command")',
            code="bad-value",
        )
        return
    if "\0" in cmd:
        _problem("run(): the command holds a NUL byte, which no shell command can carry",
                 "remove it (a file's bytes go through upload(), not the command line)", code="bad-value")  # fmt: skip
        return
    values: dict[str, Any] = {}
    bad = False
    for key, value in options.items():
        spec = RUN_OPTIONS.get(key)
        if spec is None:
            close = suggest(key, [*RUN_OPTIONS, "notify"])
            _problem(
                f"run() has no option {key!r}",
                f"did you mean {close!r}?" if close else "options: " + ", ".join([*RUN_OPTIONS, "notify"]),
                code="unknown-option",
            )
            bad = True
            continue
        why = spec.problem(value)
        if why:
            _problem(f"run(): {why}", spec.hint(), code="bad-value")
            bad = True
            continue
        values[key] = value
    if bad or notify is None:
        return
    env_map = values.pop("env", None) or {}
    rec.commands.append(
        Command(
            cmd=cmd,
            env=tuple((str(k), str(v)) for k, v in env_map.items()),
            line=line,
            notify=notify,
            **{k: v for k, v in values.items() if v is not None},
        )
    )


def notify_names(what: str, value: Any) -> tuple[str, ...] | None:
    """The handler names of a ``notify=`` value (a handler function, its name, or a list of
    these); None after recording a problem. A function gives its ``__nexus_handler__``
    (set by ``@handler``) or its ``__name__``; whether the handler exists is checked later."""
    if value is None:
        return ()
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    names: list[str] = []
    for item in items:
        name = item if isinstance(item, str) else getattr(item, "__nexus_handler__", None)
        if name is None and callable(item):
            name = getattr(item, "__name__", None)
        if not isinstance(name, str) or not name.isidentifier():
            _problem(
                f"{what}(notify=...) takes a handler function, its name or a list of these, not {safe_repr(item)}",
                f"write {what}(..., notify=restart_app) with restart_app decorated by @handler",
                code="bad-value",
            )
            return None
        if name not in names:
            names.append(name)
    return tuple(names)


def env(name: str, default: Any = _MISSING) -> str:
    """The environment variable ``name``; without a default an unset variable is a validation error."""
    if not isinstance(name, str) or not name or "=" in name or "\0" in name:
        _problem(
            f"env() needs the name of an environment variable, got {safe_repr(name)}",
            'write env("NAME") or env("NAME", "default")',
            code="bad-value",
        )
        return "" if default is _MISSING else default
    value = os.environ.get(name)
    if value is not None:
        return value
    if default is not _MISSING:
        return default  # type: ignore[no-any-return]
    _problem(
        f"environment variable {name} is not set",
        f'export {name}=... before running, or give a default: env("{name}", "default")',
        code="env-unset",
    )
    return ""


def hostname() -> str:
    """Name of the host the task body is being planned for (this machine's name outside a body)."""
    rec = _RECORDER.get()
    if rec is None or rec.host.is_local:
        import socket

        return socket.gethostname()
    return rec.host.name


def _body_host(what: str) -> Host | None:
    rec = _RECORDER.get()
    if rec is not None:
        return rec.host
    if _PROJECT.get() is not None:
        _problem(f"{what}() is called outside a task body", "call it inside a function decorated with @task")
        return None
    raise NexusfileError(f"{what}() can only be called inside a task body, while Nexus plans a run")


def current_host() -> Host:
    """The host the task body is being planned for, read-only: ``current_host().tags``, ``.vars``, ``.facts``.

    On the local machine this is the host ``local`` (``hostname()`` gives the machine's name).
    """
    from nexus_core.model import LOCAL

    return _body_host("current_host") or LOCAL


def host_tags() -> tuple[str, ...]:
    """The tags of the host the task body is being planned for (``()`` when it has none)."""
    found = _body_host("host_tags")
    return found.tags if found is not None else ()


def host_var(name: str, default: Any = _MISSING) -> Any:
    """The variable ``name`` of the host the body is planned for; unset without a default is a validation error."""
    found = _body_host("host_var")
    if found is None:
        return None if default is _MISSING else default
    if not isinstance(name, str) or not name:
        _problem(
            f"host_var() needs the name of a host variable, got {safe_repr(name)}",
            'write host_var("port") or host_var("port", 8080)',
            code="bad-value",
        )
        return None if default is _MISSING else default
    if name in found.vars:
        return found.vars[name]
    if default is not _MISSING:
        return default
    _problem(
        f"host {found.label} has no variable {name!r}",
        f'set it with host("{found.source or found.name}", vars={{"{name}": ...}}) or give a default: '
        f'host_var("{name}", default)',
        code="host-var-unset",
    )
    return None


def timestamp() -> str:
    """ISO 8601 UTC time at which planning started (the same for every host of a run)."""
    rec = _RECORDER.get()
    moment = rec.started if rec else time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))


_GIT_CACHE: dict[tuple[str, str], str] = {}


def _git(*args: str) -> str:
    project = current_project()
    root = project.root if project else os.getcwd()
    key = (root, " ".join(args))
    if key not in _GIT_CACHE:
        import subprocess

        try:
            out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            out = None
        if out is None or out.returncode != 0:
            _problem(f"git {' '.join(args)} failed in {root}", "is the nexusfile inside a git repository?")
            return ""
        _GIT_CACHE[key] = out.stdout.strip()
    return _GIT_CACHE[key]


def git_sha() -> str:
    """The current git commit SHA of the nexusfile's repository."""
    return _git("rev-parse", "HEAD")


def git_branch() -> str:
    """The current git branch of the nexusfile's repository."""
    return _git("rev-parse", "--abbrev-ref", "HEAD")


_SECRET_OPTIONS = ("to", "sudo", "mode", "owner", "group", "remote_only")


def secret(
    reference: str,
    *,
    to: str | None = None,
    sudo: bool = False,
    mode: int = 0o600,
    owner: str | None = None,
    group: str | None = None,
    remote_only: bool = False,
    **unknown: Any,
) -> Any:
    """A secret's value: ``secret("DB_PASSWORD")``, or from another backend: ``secret("vault:kv/app#pw")``.

    The value is usable anywhere a string is (``run(...)``, ``env=``, templates, upload
    contents) and shown as ``***`` in every output, log and record. Planning without running
    (``--dry-run``, ``nexus validate``, ``nexus list``) decrypts nothing: the name is checked
    and the value stands for ``***``.

    With ``to=PATH`` (inside a task body) nothing is returned: the value is written to that
    file on each host of the task, atomically, with ``mode`` (default ``0o600``) and
    optionally ``owner``/``group`` (``sudo=True`` to write where the login user cannot). The
    value goes to the host on the command's standard input, never in a command line, and is
    fetched only when the command runs. ``remote_only=True`` (with ``to=``, on remote hosts
    only) promises that the value is never written on this machine, not even in the run state.
    """
    from nexus_core.secrets.resolve import PLACEHOLDER, UnknownBackend, for_project

    project = current_project()
    for key in unknown:
        close = suggest(key, _SECRET_OPTIONS)
        _problem(
            f"secret() has no option {key!r}",
            f"did you mean {close!r}?" if close else "options: " + ", ".join(_SECRET_OPTIONS),
            code="unknown-option",
        )
    if not isinstance(reference, str) or not reference.strip():
        _problem(
            f"secret() needs the name of a secret, got {safe_repr(reference)}",
            'write secret("DB_PASSWORD") or secret("vault:kv/app#db_password")',
            code="bad-value",
        )
        return None if to is not None else PLACEHOLDER
    if to is not None or remote_only:
        return _secret_to_file(reference, to, sudo, mode, owner, group, remote_only)
    if project is None:
        raise NexusfileError("secret() can only be used in a nexusfile while Nexus loads or plans it")
    from nexus_core.api import SecretError

    secrets = for_project(project)
    try:
        return secrets.value(reference)
    except UnknownBackend as exc:
        _problem(f"secret({reference!r}): {exc}", exc.hint, code="secret-backend")
    except SecretError as exc:
        _problem(f"secret({reference!r}): {exc}", exc.hint or _secret_hint(reference, secrets, exc), code="secret")
    return PLACEHOLDER


def _secret_hint(reference: str, secrets: Any, exc: Exception) -> str:
    from nexus_core.api import SecretNotFound

    backend, rest = secrets.route(reference)
    if backend == "local":
        return "`nexus secret list` shows the names that exist" if isinstance(exc, SecretNotFound) else ""
    return f"check the {backend!r} backend's configuration and that {rest!r} exists there"


def _secret_to_file(
    reference: str,
    to: str | None,
    sudo: Any,
    mode: Any,
    owner: Any,
    group: Any,
    remote_only: Any,
) -> None:
    """Record the command that writes ``reference`` to ``to`` on the host (see :func:`secret`)."""
    from nexus_core.api import SecretError
    from nexus_core.secrets.files import write_script
    from nexus_core.secrets.resolve import UnknownBackend, for_project

    rec = _RECORDER.get()
    if rec is None:
        _problem(
            "secret(..., to=...) is called outside a task body",
            "write secrets to files inside a function decorated with @task",
        )
        return None
    if to is None:
        _problem(
            "secret(..., remote_only=True) needs to=PATH",
            'a remote-only secret is only written to a file on the hosts: secret("NAME", to="/etc/app/token", '
            "remote_only=True)",
            code="bad-value",
        )
        return None
    bad = False
    checks = (
        ("to", to, isinstance(to, str) and to.startswith("/") and "\0" not in to and not to.endswith("/"),
         'an absolute file path, e.g. to="/etc/app/token"'),
        ("sudo", sudo, isinstance(sudo, bool), "True or False"),
        ("owner", owner, owner is None or (isinstance(owner, str) and bool(owner)), "a user name"),
        ("group", group, group is None or (isinstance(group, str) and bool(group)), "a group name"),
        ("remote_only", remote_only, isinstance(remote_only, bool), "True or False"),
    )  # fmt: skip
    for key, value, ok, what in checks:
        if not ok:
            _problem(f"secret(): {key}={safe_repr(value)} is not valid", f"{key}= takes {what}", code="bad-value")
            bad = True
    from nexus_core.modes import check_mode

    # as upload()'s: 0o600 or "600"; mode=600 (decimal: 0o1130, the owner cannot read) is refused
    bits, wrong = check_mode("secret", mode)
    if mode is None:
        wrong = ("secret(): mode=None is not valid", "mode= takes file permissions, e.g. mode=0o600")
    if wrong is not None:
        _problem(wrong[0], wrong[1], code="bad-value")
        bad = True
    mode = bits
    if remote_only and rec.host.is_local:
        _problem(
            f"secret({reference!r}, remote_only=True) is used in task {rec.task!r}, which runs on this machine",
            "remote-only secrets are written on remote hosts only: run the task on hosts (on=...), "
            "or drop remote_only=True",
            code="bad-value",
        )
        bad = True
    if bad:
        return None
    secrets = for_project(rec.project)
    try:
        secrets.check(reference)  # the value itself is fetched when the command runs
    except UnknownBackend as exc:
        _problem(f"secret({reference!r}): {exc}", exc.hint, code="secret-backend")
        return None
    except SecretError as exc:
        _problem(f"secret({reference!r}): {exc}", exc.hint or _secret_hint(reference, secrets, exc), code="secret")
        return None
    try:
        script = write_script(reference, to, mode=mode, owner=owner, group=group)
    except ValueError as exc:
        _problem(f"secret(): {exc}", "use plain user and group names", code="bad-value")
        return None
    rec.commands.append(Command(cmd=script, sudo=sudo, line=_caller(rec.project).line, input_secret=reference))
    return None
