"""Handlers: operations that run once per host at the end of a task, when something notified them.

A nexusfile declares one with ``@handler``; its body records operations like a task body
(``run``, ``upload``, ``template``, ``wait_for``...). An operation given ``notify=`` (a
handler function, its name, or a list of these) notifies it: a command when it succeeds, a
file operation when it changed something. At the end of the notifying task, on each host,
the notified handlers run once each, in the order the nexusfile defines them; a handler may
notify another one (which then runs after it, once).

Planning evaluates, for each task and host, the bodies of the handlers its operations could
notify (a :class:`HandlerPlan` each, on the :class:`~nexus_core.plan.HostPlan`), so a dry run
shows them and every mistake (a handler that does not exist, ``notify=`` on something that
cannot notify) is a validation problem with the nexusfile's line, reported with the others.

Notifications are checkpointed in the run state (``handler.notify`` and ``handler.stop``
events, written by the state recorder): after a failure or a kill, ``nexus resume`` runs
what is still pending, and a fresh run of the same tasks takes over what the previous one
left pending (where Ansible forgets them: ansible/ansible#10498).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar, overload

from nexus_core.model import Command, HandlerDef, Host, Location, Problem, Project, TaskDef
from nexus_core.records import Record

F = TypeVar("F", bound=Callable[..., Any])


class HandlerPlan(Record):
    """What one handler would run on one host at the end of one task, if notified.

    ``first_index`` is the command index of its first operation in the host's events and
    state rows: a task's handlers number their operations after the task's own commands.
    """

    __slots__ = ("name", "commands", "first_index", "line")
    name: str
    commands: tuple[Command, ...]
    first_index: int
    line: int

    def __init__(self, name: str, commands: tuple[Command, ...], first_index: int = 0, line: int = 0) -> None:
        self._init(name, commands, first_index, line)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        return {"name": self.name, "line": self.line, "commands": [c.to_dict() for c in self.commands]}


def handlers_of(project: Project) -> Mapping[str, HandlerDef]:
    """The handlers the nexusfile defines, in definition order."""
    return project.handlers


@overload
def handler(func: F, /) -> F: ...
@overload
def handler(func: None = None, /) -> Callable[[F], F]: ...


def handler(func: Any = None, /) -> Any:
    """Declare a handler: ``@handler`` above ``def restart_app(): run("systemctl restart app", sudo=True)``.

    Operations notify it with ``notify=restart_app`` (or ``notify="restart_app"``); it then runs
    once per host at the end of the notifying task, on that host. It is called with no
    arguments: one it cannot be called without is a validation problem at its line.
    """
    from nexus_core import dsl

    def register(fn: Any) -> Any:
        if dsl._RECORDER.get() is not None:
            dsl._problem(
                "@handler is used inside a task body",
                "define every handler at the top level of the nexusfile",
                code="bad-handler",
            )
            return fn
        project = dsl._PROJECT.get()
        name = getattr(fn, "__name__", None)
        if not callable(fn) or not isinstance(name, str) or not name.isidentifier():
            if project is not None:
                dsl._problem(
                    f"@handler must decorate a function with a name, not {type(fn).__name__}",
                    "write @handler on a line of its own above `def NAME():`",
                    code="bad-handler",
                )
            return fn
        try:
            fn.__nexus_handler__ = name
        except (AttributeError, TypeError):
            pass
        if project is None:
            return fn  # imported outside a load (e.g. by a test): keep the function usable
        code = getattr(fn, "__code__", None)
        line = getattr(code, "co_firstlineno", 0)
        if getattr(code, "co_filename", None) == project.path and isinstance(line, int):
            where = Location(project.path, line)
        else:
            where = dsl._caller(project)
        found = project.handlers
        if name in found:
            dsl._problem(
                f"handler {name!r} is defined twice (first at line {found[name].location.line})",
                "rename one of them",
                code="duplicate-handler",
            )
            return fn
        needs = required_arguments(fn)
        if needs:  # kept as a handler all the same: notify= naming it is not a second mistake
            listed = ", ".join(needs)
            project.problems.append(
                Problem(
                    f"handler {name!r} must take no arguments (it is called once per host with none)",
                    where,
                    f"remove the parameter{'s' if len(needs) > 1 else ''} {listed}; read what differs by host "
                    "with hostname() or host_var() in its body",
                    "bad-handler",
                )
            )
        found[name] = HandlerDef(name, fn, where, dsl._doc(fn), needs)
        return fn

    if func is None:
        return register
    if isinstance(func, str):
        dsl._problem(
            f"@handler got a string {func!r}; it takes no arguments",
            "write @handler above `def NAME():` (the function's name is the handler's name)",
            code="bad-handler",
        )
        return lambda fn: fn
    return register(func)


def cannot_notify(what: str, why: str = "") -> None:
    """Record that ``what(..., notify=...)`` cannot notify (e.g. ``download``, ``wait_for``)."""
    from nexus_core import dsl

    dsl._problem(
        f"{what}() cannot notify handlers" + (f": {why}" if why else ""),
        "notify from run(), upload() or template() (they say when they changed something), "
        f"or drop notify= from {what}()",
        code="cannot-notify",
    )


def required_arguments(fn: Any) -> tuple[str, ...]:
    """The parameters ``fn`` cannot be called without (a handler is called with none); ``()``
    when it takes none, or only ones with defaults, ``*args`` or ``**kwargs``, or when its
    signature cannot be read."""
    import inspect

    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return ()
    return tuple(
        p.name
        for p in sig.parameters.values()
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    )


# --- planning ------------------------------------------------------------------------------


def check_notify(project: Project, names: Iterable[str], where: Location | None, what: str = "") -> list[Problem]:
    """Problems with handler ``names`` given to ``notify=``: each must be a handler of the nexusfile."""
    known = handlers_of(project)
    out: list[Problem] = []
    for name in names:
        if name in known:
            continue
        from nexus_core.options import suggest

        close = suggest(name, known)
        if name in project.tasks:
            hint = f"{name!r} is a task; declare a handler with @handler above `def {name}():`"
        elif close:
            hint = f"did you mean {close!r}?"
        elif known:
            hint = "defined handlers: " + ", ".join(list(known)[:12])
        else:
            hint = "define it with @handler above `def NAME():`; the nexusfile defines no handlers"
        prefix = f"{what}: " if what else ""
        out.append(Problem(f"{prefix}notify= names no handler {name!r}", where, hint, "unknown-handler"))
    return out


def plan_handlers(
    project: Project, t: TaskDef, host: Host, commands: Sequence[Command]
) -> tuple[tuple[HandlerPlan, ...], list[Problem]]:
    """The handlers ``commands`` (one task's, on one host) could notify, transitively, each with
    its body evaluated for ``host``; and the problems found (unknown handlers, bad bodies)."""
    known = handlers_of(project)
    problems: list[Problem] = []
    wanted: list[str] = []
    bodies: dict[str, list[Command]] = {}
    faulty: set[str] = set()  # their problems are reported: "runs no commands" would only repeat them

    def want(cmds: Sequence[Command], what: str) -> None:
        for c in cmds:
            names = tuple(getattr(c, "notify", ()) or ())
            problems.extend(check_notify(project, names, Location(project.path, c.line) if c.line else None, what))
            for name in names:
                if name in known and name not in wanted:
                    wanted.append(name)

    want(commands, f"task {t.name!r}")
    done = 0
    while done < len(wanted):  # bounded: each handler is evaluated once
        name = wanted[done]
        done += 1
        found, more = evaluate_handler(project, known[name], t, host)
        problems.extend(more)
        bodies[name] = found
        if more or known[name].needs:
            faulty.add(name)
        want(found, f"handler {name!r}")
    order = list(known)
    plans: list[HandlerPlan] = []
    index = len(commands)
    for name in sorted(wanted, key=order.index):
        cmds = tuple(bodies.get(name, ()))
        plans.append(HandlerPlan(name, cmds, index, known[name].location.line))
        index += len(cmds)
    for name in wanted:
        if not bodies.get(name) and name not in faulty:
            problems.append(
                Problem(
                    f"handler {name!r} runs no commands",
                    known[name].location,
                    "add run(...) (or another operation) to its body",
                    "empty-handler",
                )
            )
    return tuple(plans), problems


def evaluate_handler(project: Project, h: HandlerDef, t: TaskDef, host: Host) -> tuple[list[Command], list[Problem]]:
    """Run a handler's body for one host of task ``t``; return what it recorded and its problems.

    A handler that needs arguments is not called (@handler reported it, once, at its line).
    """
    from nexus_core.dsl import _RECORDER, Recorder
    from nexus_core.loader import exception_problem, user_output

    if h.needs:
        return [], []
    rec = Recorder(project=project, task=t.name, host=host)
    token = _RECORDER.set(rec)
    try:
        with user_output():  # its print() goes to stderr, as a task body's
            h.func()
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - user code
        rec.problems.append(
            exception_problem(exc, project.path, f"in handler {h.name!r} (host {host.label})", h.location)
        )
    finally:
        _RECORDER.reset(token)
    from nexus_core.artifacts import Artifact

    root = project.root
    cmds: list[Command] = []
    for c in rec.commands:
        if isinstance(c, Artifact):
            rec.problems.append(
                Problem(
                    f"artifact() is called in handler {h.name!r}",
                    Location(project.path, c.line),
                    "declare artifacts in the task body that produces the files",
                    "bad-handler",
                )
            )
            continue
        if c.cwd is not None and not os.path.isabs(c.cwd) and host.is_local:
            c = _with_cwd(c, os.path.normpath(os.path.join(root, c.cwd)))
        cmds.append(c)
    return cmds, rec.problems


def _with_cwd(c: Command, cwd: str) -> Command:
    from dataclasses import replace

    return replace(c, cwd=cwd)


# --- running -------------------------------------------------------------------------------


def notifies(cmd: Command, changed: bool) -> tuple[str, ...]:
    """The handlers an operation that finished notifies: its ``notify=`` when it ``changed`` something."""
    names: tuple[str, ...] = tuple(getattr(cmd, "notify", ()) or ())
    return names if changed else ()


class Pending:
    """The handlers notified on one host during one task, those that already ran there, and
    those of them that ran to success (``succeeded``)."""

    __slots__ = ("notified", "ran", "succeeded")

    def __init__(
        self, notified: list[str] | None = None, ran: set[str] | None = None, succeeded: set[str] | None = None
    ) -> None:
        self.notified: list[str] = [] if notified is None else notified
        self.ran: set[str] = set() if ran is None else ran
        self.succeeded: set[str] = set() if succeeded is None else succeeded

    def __repr__(self) -> str:
        return f"Pending(notified={self.notified!r}, ran={self.ran!r}, succeeded={self.succeeded!r})"

    def add(self, names: Iterable[str]) -> list[str]:
        """Record notifications; return the names that are new (not notified before)."""
        new = [n for n in names if n not in self.notified]
        self.notified.extend(new)
        return new

    def next(self, plans: Sequence[HandlerPlan]) -> HandlerPlan | None:
        """The first handler in definition order that was notified and has not run yet, and
        that no other such handler notifies: a handler notified by another runs after it (a
        resume finding both pending, or a task notifying both), once. In a cycle, definition
        order decides."""
        waiting = [hp for hp in plans if hp.name in self.notified and hp.name not in self.ran]
        if len(waiting) < 2:
            return waiting[0] if waiting else None
        later = {name for hp in waiting for cmd in hp.commands for name in (getattr(cmd, "notify", ()) or ())
                 if name != hp.name}  # fmt: skip
        return next((hp for hp in waiting if hp.name not in later), waiting[0])

    def left(self, plans: Sequence[HandlerPlan]) -> tuple[str, ...]:
        """The notified handlers that did not run to success (not run, or failed), in definition
        order: what the run's state keeps pending for ``nexus resume``, and what a failure
        report lists (``Failure.pending_handlers``)."""
        return tuple(hp.name for hp in plans if hp.name in self.notified and hp.name not in self.succeeded)
