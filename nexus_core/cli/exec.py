"""``nexus exec TARGET -- COMMAND...``: one ad-hoc shell command on a group, host pattern or ``local``.

The words after ``--`` are joined with spaces and given to each host's shell, as a remote
shell client does with the words after the host name. TARGET uses the pattern language of
``-H`` (:mod:`nexus_core.limit`): host names, addresses, groups, globs, ``!exclusion``,
``&intersection``, ``@file``, comma lists; ``all`` is every host of the nexusfile (unless
it declares a group of that name). A plain name or host string that matches nothing the
nexusfile declares is a host of its own (``nexus exec web-9.example.com -- uptime``), so
exec works without a nexusfile too.

The command runs as a plan with one synthetic task, through :mod:`nexus_core.session`: the
executors, events, redaction, run logs and connection errors are those of ``nexus run``.
The run is not recorded in the state store (nothing to resume; run it again instead), leaves
no status files on the hosts, and takes no project lock.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import rich_click as click

from nexus_core import events as ev
from nexus_core.cli.application import (
    ExitCode,
    Number,
    config_option,
    fail,
    format_option,
    load,
    log_options,
    main,
    make_plan,
    plugin_manager,
    setup_logs,
)
from nexus_core.cli.run import ask_sudo_pass_option
from nexus_core.complete import complete
from nexus_core.output.style import Style

if TYPE_CHECKING:
    from nexus_core.model import Host, HostSpec, Project
    from nexus_core.plan import Plan

#: The name of the synthetic task (seen in ``--format json`` events of other subscribers and in run logs).
TASK = "exec"
_GLOB = set("*?[")


class ExecCommand(click.RichCommand):
    """Remembers where ``--`` was, so that ``nexus exec`` can insist on it."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Record the words after the first ``--`` (None without one) before click parses."""
        ctx.meta["exec_after_dashes"] = args[args.index("--") + 1 :] if "--" in args else None
        return super().parse_args(ctx, args)


@main.command(name="exec", cls=ExecCommand)
@click.argument("target", shell_complete=lambda *a: complete("hosts", *a))
@click.argument("command", nargs=-1, metavar="-- COMMAND...")
@click.option("--sudo", is_flag=True, help="Run the command with sudo on each host.")
@ask_sudo_pass_option
@click.option("-p", "--parallel-limit", type=click.IntRange(min=1), help="Hosts running the command at once.")
@click.option("-u", "--user", metavar="NAME", help="SSH user (overrides ssh_user).")
@click.option("-i", "--identity", metavar="PATH", help="SSH private key (overrides ssh_identity).")
@click.option(
    "--timeout",
    type=Number(0, min_open=True),
    metavar="SECONDS",
    help="Stop the command on a host after SECONDS (exit 4). Default: the task timeout, 300 s.",
)
@click.option("-v", "--verbose", is_flag=True, help="Stream every output line as it comes, tagged with its host.")
@config_option
@format_option
@log_options
def exec_command(
    target: str,
    command: tuple[str, ...],
    sudo: bool,
    ask_sudo_pass: bool,
    parallel_limit: int | None,
    user: str | None,
    identity: str | None,
    timeout: float | None,
    verbose: bool,
    config_path: str | None,
    fmt: str,
    log_level: str | None,
    log_format: str,
) -> None:
    """Run one shell command on TARGET: a group, host pattern, host string or `local`.

    The words after -- are joined with spaces and run by each host's shell, so pipes work
    when quoted: nexus exec web -- 'journalctl -u app | tail'. TARGET takes what -H takes
    (names, groups, globs, !exclude, &intersect, @file, comma lists); `all` is every host
    of the nexusfile. Without a nexusfile TARGET names hosts: nexus exec deploy@10.0.0.5 -- uptime.

    Hosts with the same result are shown once ("web-1, web-2 (2 hosts) | rc=0 >>").
    --format json prints one object per host, then a summary object. Exit codes: 0 all ok,
    1 a command failed, 3 a host unreachable, 4 a timeout, 2 a usage or config error.
    -K asks for the sudo password once, as for nexus run (or set NEXUS_SUDO_PASSWORD).
    """
    from nexus_core.cli.run import ask_sudo_password, check_can_ask_sudo_pass

    setup_logs(log_level, log_format)
    from nexus_core.secrets.resolve import register_credentials

    register_credentials(os.environ)  # with or without a nexusfile: `env` must not print the store's key
    check_can_ask_sudo_pass(ask_sudo_pass)
    ctx = click.get_current_context()
    after = ctx.meta.get("exec_after_dashes") if ctx is not None else None  # set by ExecCommand.parse_args
    usage = ["Usage: nexus exec TARGET -- COMMAND...", "Example: nexus exec web -- uptime"]
    if after is None:
        fail(ExitCode.CONFIG, "nexus exec: put the command after --", [f"TARGET: {target}"], usage)
    if len(after) > len(command):  # `nexus exec -- id`: the TARGET was taken from the command
        fail(ExitCode.CONFIG, "nexus exec: no TARGET before --", [f"after --: {' '.join(after)}"], usage)
    if list(command) != list(after):
        extra = " ".join(command[: len(command) - len(after)])
        fail(ExitCode.CONFIG, f"nexus exec: one TARGET before --, got {target!r} and {extra!r}",
             [], ["Comma-separate several patterns: nexus exec web,db -- uptime", *usage[1:]])  # fmt: skip
    line = " ".join(command).strip()
    if not line:
        fail(ExitCode.CONFIG, "nexus exec: no command after --", [], usage)
    project = _project(config_path)
    from nexus_core.cli.application import discover_groups

    project = discover_groups(project, fmt)  # discover("...") groups name hosts too
    items = resolve_target(project, target)
    from nexus_core.options import config_overrides  # -u/-i: the keys their plugin declares

    known = plugin_manager().registry.config_options
    overrides = config_overrides(known, identity=identity, user=user)
    if parallel_limit is not None:  # hosts at once: forks (a task's hosts), not parallel_limit (tasks)
        overrides["forks" if "forks" in known else "parallel_limit"] = parallel_limit
    plan = _plan(project, items, line, sudo=sudo, timeout=timeout, fmt=fmt, overrides=overrides)
    if not log_level and plan.config.get("log_level"):
        setup_logs(str(plan.config["log_level"]), log_format)
    gate = _gate(project, plan, target, items, fmt)
    sudo_extra = ask_sudo_password() if ask_sudo_pass else {}
    style = Style.detect()
    collector = Collector(plan, style if verbose and fmt != "json" else None, warnings=style, fmt=fmt)
    from nexus_core.session import RunRefused, RunSession

    session = RunSession(plan, plugins=plugin_manager(), store=None, subscribers=[("exec", collector)], fmt=fmt,
                         extra=sudo_extra, mode="verbose" if verbose else "normal",
                         report=lambda m: click.echo(m, err=True), markers=False,
                         run_id=gate.run_id if gate is not None else None,
                         events=gate.events if gate is not None else ())  # fmt: skip
    try:
        result = session.run()
    except RunRefused as exc:
        fail(exc.code, exc.headline, exc.context, exc.suggestions)
    if fmt == "json":
        for obj in collector.json_lines(result.run_id, result.status, result.exit_code, result.duration):
            click.echo(json.dumps(obj))
    else:
        for text in collector.text(style, bodies=not verbose):
            click.echo(text)
        click.echo(style.paint(collector.summary(result.duration), "dim"), err=True)
    from nexus_core.cli.application import Exit

    raise Exit(result.exit_code)


# --- the target ----------------------------------------------------------------------------


#: The file name of the empty project ``nexus exec`` uses where there is no nexusfile.
NO_NEXUSFILE = "(nexus exec)"


def _project(config_path: str | None) -> Project:
    """The nexusfile's project, or an empty one (config files and NEXUS_* still apply) without one."""
    from nexus_core.loader import NexusfileNotFound, find_nexusfile
    from nexus_core.model import Project

    try:
        find_nexusfile(config_path)
    except NexusfileNotFound:
        if config_path or os.environ.get("NEXUS_CONFIG"):
            return load(config_path)  # says what is wrong with the path given
        project = Project(path=os.path.join(os.getcwd(), NO_NEXUSFILE), root="")
        from nexus_core.settings import SettingsError, apply

        try:
            apply(project, plugin_manager().registry.config_options)
        except SettingsError as exc:
            fail(ExitCode.CONFIG, f"Configuration error: {exc.message}", [exc.where], [exc.hint] if exc.hint else [])
        project.root = os.getcwd()  # local commands run here (read no project config file from it)
        return project
    return load(config_path)


def _looks_like_host(text: str) -> bool:
    """A host string rather than a (mistyped) group name: has a dot, a user, a port or an IPv6 address."""
    return any(c in text for c in ".@:[") or text == "localhost"


def resolve_target(project: Project, target: str) -> list[str | HostSpec]:
    """The ``on=[...]`` items TARGET selects (host strings, ``HostSpec`` members, ``"local"``).

    Exits 2 with a did-you-mean when a pattern matches nothing and is not a host string, or
    when nothing is left.
    """
    from nexus_core.hosts import HostParseError, format_host, parse_host
    from nexus_core.limit import LimitError, Term, matches, parse_limit
    from nexus_core.model import LOCAL, HostSpec
    from nexus_core.plan import _group_members, _membership, to_host

    try:
        limit = parse_limit([target])
    except LimitError as exc:
        fail(ExitCode.CONFIG, f"nexus exec: {str(exc).replace('-H/--hosts', 'TARGET').replace('-H', 'TARGET')}",
             [], ["e.g. nexus exec web -- uptime, nexus exec 'web-*,!web-3' -- uptime"])  # fmt: skip
    # Every host the nexusfile names, with the item that declared it (so host(...) attributes stay).
    declared: dict[Any, tuple[Host, str | HostSpec]] = {}
    members = [m for name in project.groups for m in _group_members(project, name, set())]
    members += [m for t in project.tasks.values() if isinstance(t.on, (list, tuple)) for m in t.on]
    for member in members:
        try:
            host = to_host(member)
        except (HostParseError, TypeError, ValueError):
            continue  # nexus validate reports it
        if isinstance(member, HostSpec):  # its attributes count for TARGET (tag:NAME, a discovered name)
            host = replace(host, tags=member.tags, vars=member.vars, facts=member.facts)
        if not host.is_local:
            declared.setdefault(host.key, (host, member))
    groups = _membership(project)
    inventory = [h for h, _ in declared.values()]
    candidates = list(dict.fromkeys([*groups, *(h.label for h in inventory), *(h.name for h in inventory)]))
    chosen: dict[Any, tuple[Host, str | HostSpec]] = {}
    problems: list[str] = []
    hints: list[str] = []

    def named(term: Term) -> str:
        """A pattern as messages show it: a line of an @file by its place, never its text (the
        file may hold anything: `nexus exec @.env` by mistake must show no secret)."""
        return f"{term.where}: the pattern on this line" if term.where else repr(str(term))

    def nothing(term: Term, why: str = "") -> None:
        from nexus_core.options import suggest

        close = suggest(term.pattern, candidates)
        problems.append(f"{named(term)} matches no host or group{why}")
        if close:
            hints.append(f"Did you mean {close!r}?")

    if not any(term.kind == "+" for term in limit.terms):  # only ! and &: from every host, as -H does
        if not inventory:
            problems.append("exclusions (!) and intersections (&) alone need a nexusfile that declares hosts")
        for host, item in declared.values():
            chosen.setdefault(host.key, (host, item))
    for term in limit.terms:
        if term.kind != "+":
            continue
        if term.pattern == "local":
            chosen.setdefault(LOCAL.key, (LOCAL, "local"))
            continue
        if term.pattern == "all" and "all" not in groups:
            if not inventory:
                problems.append("'all' needs hosts: the nexusfile declares none" if project.tasks or project.groups
                                else "'all' needs a nexusfile that declares hosts")  # fmt: skip
            for host, item in declared.values():
                chosen.setdefault(host.key, (host, item))
            continue
        found = [(h, i) for h, i in declared.values() if matches(term.pattern, h, groups)]
        if found:
            for host, item in found:
                chosen.setdefault(host.key, (host, item))
            continue
        bracketed = term.pattern.startswith("[") or "@[" in term.pattern  # an IPv6 address, not a glob
        if not bracketed and (_GLOB & set(term.pattern) or (inventory and not _looks_like_host(term.pattern))):
            nothing(term, "" if inventory else " (without a nexusfile, TARGET names hosts: no globs or groups)")
            if inventory and not _GLOB & set(term.pattern) and not term.where:
                hints.append(f"A host by that name: add it to hosts(...) or write it as user@{term.pattern}")
            continue
        if (
            not inventory
            and not term.where
            and os.path.basename(project.path) != NO_NEXUSFILE
            and not (bracketed or _looks_like_host(term.pattern))
        ):  # a nexusfile without hosts: a bare word may have meant a group (README: `nexus exec web`)
            click.echo(f"Note: {term.pattern!r} is not a group of the nexusfile (it declares no hosts): "
                       "trying it as a host name", err=True)  # fmt: skip
        try:
            host = parse_host(term.pattern)
        except HostParseError as exc:
            if term.where:
                problems.append(f"{named(term)} is not a host string")
            else:
                problems.append(str(exc) if term.pattern == target else f"{term.pattern!r}: {exc}")
            hints.append('Write "host", "user@host", "user@host:port" or "[2001:db8::1]:port"')
            continue
        chosen.setdefault(host.key, (host, host.source or format_host(host)))
    for term in limit.terms:  # an exclusion or intersection that names nothing is a likely typo
        if term.kind != "+" and term.pattern not in ("local", "all"):
            known = [h for h, _ in chosen.values()] + inventory
            if not any(matches(term.pattern, h, groups) for h in known) and term.pattern not in groups:
                nothing(term)
    if problems:
        fail(ExitCode.CONFIG, f"nexus exec: TARGET {target!r}: {problems[0]}", problems[1:],
             list(dict.fromkeys(hints)) or ["Groups and hosts: nexus hosts list; patterns as for -H"])  # fmt: skip
    kept = []
    for host, item in chosen.values():
        if any(not matches(t.pattern, host, groups) for t in limit.terms if t.kind == "&"):
            continue
        if any(matches(t.pattern, host, groups) for t in limit.terms if t.kind == "!"):
            continue
        kept.append(item)
    if not kept:
        fail(ExitCode.CONFIG, f"nexus exec: TARGET {target!r} leaves no host", [],
             ["Its exclusions (!) or intersections (&) removed every host it named"])  # fmt: skip
    return kept


def _plan(
    project: Project,
    items: Sequence[str | HostSpec],
    line: str,
    *,
    sudo: bool,
    timeout: float | None,
    fmt: str,
    overrides: dict[str, Any],
) -> Plan:
    """The plan of one synthetic task that runs ``line`` on ``items`` (validated as ``nexus run`` does)."""
    from nexus_core.dsl import run
    from nexus_core.model import Location, TaskDef

    options: dict[str, Any] = {"sudo": sudo} if sudo else {}
    if timeout is not None:
        options["timeout"] = timeout

    def body() -> None:
        run(line, **options)

    on: Any = "local" if list(items) == ["local"] else list(items)
    # --timeout is the command's limit; the synthetic task only gets a margin over it, so that a
    # timeout is reported as the command's ("timed out after 1s"), not as a task's the user never set
    limit = None if timeout is None else timeout + 1
    task = TaskDef(TASK, body, Location(project.path, 0), on=on, timeout=limit, doc=f"nexus exec: {line}")
    synthetic = replace(project, tasks={TASK: task})
    return make_plan(synthetic, [TASK], fmt, config_override=overrides, cache=None)


def _gate(project: Project, plan: Plan, target: str, items: Sequence[str | HostSpec], fmt: str) -> Any:
    """The policy's gate (None without a policy): ``nexus exec`` is a ``run`` of a task named
    ``exec`` on what TARGET names (docs/compliance.md): exits 77 when the policy says no."""
    from nexus_core.cli.application import policy_applies

    if not policy_applies():
        return None
    from nexus_core.model import Location, TaskDef
    from nexus_core.policy.gate import gate_run

    on = policy_targets(project, target, items)
    checked = TaskDef(TASK, lambda: None, Location(project.path, 0), on=on)
    return gate_run(plan, replace(project, tasks={TASK: checked}), mode="run", fmt=fmt)


def policy_targets(project: Project, target: str, items: Sequence[str | HostSpec]) -> list[str]:
    """What the policy's ``on`` patterns are matched with for ``nexus exec TARGET``: a group
    TARGET names for its hosts (``nexus exec staging`` as a task with ``on="staging"``), the
    host string for any other host (a pattern, an address, ``all``), ``local`` for the local
    machine. Naming a prod host by its address is checked as that address, which a rule for
    ``on=["staging"]`` does not allow."""
    from nexus_core.hosts import format_host
    from nexus_core.limit import LimitError, parse_limit
    from nexus_core.plan import _membership, to_host

    groups = _membership(project)
    try:
        named = [t.pattern for t in parse_limit([target]).terms if t.kind == "+" and t.pattern in groups]
    except LimitError:
        named = []
    out: list[str] = []
    for item in items:
        if item == "local":
            out.append("local")
            continue
        host = to_host(item)
        group = next((g for g in named if host.key in groups[g]), None)
        out.append(group or host.source or format_host(host))
    return list(dict.fromkeys(out))


# --- output --------------------------------------------------------------------------------


@dataclass
class HostResult:
    """What one host did: status (ok, failed, timeout, unreachable, interrupted), exit code, output."""

    host: Host
    status: str = "interrupted"
    exit_code: int | None = None
    reason: str = ""
    duration: float = 0.0
    lines: list[tuple[str, str]] = field(default_factory=list)

    def names(self) -> tuple[str, ...]:
        """The forms of this host's identity its reason may name (label, address)."""
        from nexus_core.output.alike import names_of

        return names_of(self.host.label, self.host.name)

    def fold_key(self) -> tuple[Any, ...]:
        """Hosts with equal keys are shown once: the same status, exit code and output, and
        a reason that is the same but for the host's own name and volatile values such as the
        remote process group id (:mod:`nexus_core.output.alike`)."""
        from nexus_core.output.alike import shape

        reason = shape(self.reason, self.names()).key if self.status != "ok" else ""
        return (self.status, self.exit_code, reason, tuple(self.lines))


class Collector:
    """An event subscriber that gathers each host's output and result (and streams it with ``-v``)."""

    def __init__(
        self, plan: Plan, stream: Style | None = None, *, warnings: Style | None = None, fmt: str = "text"
    ) -> None:
        task = plan.tasks[TASK]
        self.results = {hp.host.label: HostResult(hp.host) for hp in task.hosts}
        self.stream = stream
        #: With a style: warnings and errors the executors publish (a connection attempt retried,
        #: say) are shown as ``nexus run`` shows them: on stderr, or as ``log`` objects with JSON.
        self.warnings = warnings
        self.fmt = fmt
        self._lock = threading.Lock()

    def __call__(self, event: ev.Event, /) -> None:
        """Take one event of the run."""
        if isinstance(event, ev.Log):
            self._log(event)
            return
        host = getattr(event, "host", None)
        res = self.results.get(host) if isinstance(host, str) else None
        if res is None or getattr(event, "task", TASK) != TASK:
            return
        with self._lock:
            if isinstance(event, ev.CommandOutput):
                res.lines.append((event.stream, event.line))
                if self.stream is not None:
                    from nexus_core.output.safe import clean

                    tag = self.stream.paint(f"{clean(res.host.label)} |", "dim")
                    line = clean(event.line)  # a host's escapes shown, never obeyed (docs/when-things-go-wrong.md)
                    text = line if event.stream == "stdout" else self.stream.paint(line, "yellow")
                    click.echo(f"{tag} {text}")
            elif isinstance(event, ev.CommandStop):
                res.exit_code = event.exit_code
                res.reason = event.reason or res.reason
            elif isinstance(event, ev.HostStop):
                res.status, res.duration = event.status, event.duration
                res.reason = event.reason or res.reason

    def _log(self, event: ev.Log) -> None:
        """A warning or error of the run, as ``nexus run`` shows it (output.render's ``on_log``)."""
        if self.warnings is None or event.level not in ("warning", "error"):
            return
        from nexus_core.output.render import event_json, log_text

        with self._lock:
            if self.fmt == "json":
                click.echo(event_json(event))
            else:
                click.echo(log_text(self.warnings, event), err=True)

    def folds(self) -> list[list[HostResult]]:
        """Hosts grouped by identical result and output, in the order of their first host."""
        groups: dict[tuple[Any, ...], list[HostResult]] = {}
        for res in self.results.values():
            groups.setdefault(res.fold_key(), []).append(res)
        return list(groups.values())

    def text(self, style: Style, bodies: bool = True) -> list[str]:
        """The folded report: a header per group of hosts, then (``bodies``) their output once.

        A group's reason is the first host's, with ``<host>`` (``<pgid>``...) where the hosts'
        own values differ. Text from hosts (labels, output, reasons) is shown, never obeyed.
        """
        from nexus_core.output.alike import merged_texts
        from nexus_core.output.safe import clean, terminal_safe

        out: list[str] = []
        for group in self.folds():
            first = group[0]
            names = ", ".join(clean(r.host.label) for r in group)
            names += f" ({len(group)} hosts)" if len(group) > 1 else ""
            header, color = _header(first)
            out.append(style.paint(f"{names} | {header}" + (" >>" if bodies else ""), color))
            if bodies:
                out.extend(clean(line) for _, line in first.lines)
                if first.status in ("unreachable", "timeout", "interrupted", "skipped") and first.reason:
                    reason = merged_texts([(r.reason, r.names()) for r in group])
                    out.append(clean(reason))
        return [terminal_safe(text) for text in out]

    def summary(self, duration: float) -> str:
        """One line for stderr: how many hosts ended how."""
        counts: dict[str, int] = {}
        for res in self.results.values():
            counts[res.status] = counts.get(res.status, 0) + 1
        parts = ", ".join(f"{n} {s}" for s, n in counts.items())
        total = len(self.results)
        return f"nexus exec: {total} host{'s' if total != 1 else ''}: {parts} in {duration:.1f}s"

    def json_lines(self, run_id: str, status: str, exit_code: int, duration: float) -> list[dict[str, Any]]:
        """``--format json``: one ``exec.host`` object per host (plan order), then ``exec.summary``."""
        out: list[dict[str, Any]] = []
        counts: dict[str, int] = {}
        for res in self.results.values():
            counts[res.status] = counts.get(res.status, 0) + 1
            out.append({
                "event": "exec.host", "run_id": run_id, "host": res.host.label, "name": res.host.name,
                "user": res.host.user, "port": res.host.port, "transport": res.host.transport,
                "status": res.status, "exit_code": res.exit_code, "reason": res.reason,
                "duration": round(res.duration, 3),
                "stdout": "".join(line + "\n" for s, line in res.lines if s == "stdout"),
                "stderr": "".join(line + "\n" for s, line in res.lines if s == "stderr"),
            })  # fmt: skip
        out.append({"event": "exec.summary", "run_id": run_id, "status": status, "exit_code": exit_code,
                    "hosts": len(self.results), "counts": counts, "duration": round(duration, 3)})  # fmt: skip
        return out


def _header(res: HostResult) -> tuple[str, str]:
    """The status part of a group's header, and its colour."""
    if res.status == "ok":
        return f"rc={res.exit_code if res.exit_code is not None else 0}", "green"
    if res.status == "failed" and res.exit_code is not None:
        return f"FAILED | rc={res.exit_code}", "red"
    return res.status.upper(), "red" if res.status != "skipped" else "yellow"
