"""Messages in Nexus's one error shape (headline, context, suggestions), summaries and plans."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from nexus_core.exitcodes import ExitCode
from nexus_core.model import Problem
from nexus_core.output.safe import clean, command_lines, terminal_safe
from nexus_core.output.style import Style, fmt_duration

if TYPE_CHECKING:
    from nexus_core.api import CheckResult
    from nexus_core.engine import Failure, RunResult
    from nexus_core.plan import Plan


def error_block(style: Style, headline: str, context: Sequence[str] = (), suggestions: Sequence[str] = ()) -> str:
    """``Error: headline``, indented context lines, then ``Suggestions:``; every control
    character but Nexus's colours made visible (a nexusfile's exception text may hold any)."""
    lines = [style.paint(f"Error: {headline}", "red")]
    if context:
        lines.append("")
        for line in context:  # a line of several (a server's own words) stays indented
            lines.extend(f"  {part}" if part else "" for part in line.split("\n"))
    if suggestions:
        lines += ["", "  Suggestions:"]
        for s in suggestions:
            first, *rest = s.split("\n")
            lines += [f"    - {first}", *(f"      {part}" for part in rest)]
    return terminal_safe("\n".join(lines))


#: Problems of one shape at one line shown in full before the rest are counted (a variable
#: missing on every host of a 100,000-host inventory was 300,000 lines).
ALIKE_SHOWN = 3
_NUMBERED = re.compile(r"\S*\d\S*")


_QUOTED_OR_NUMBERED = re.compile(r"'[^']*'|\S*\d\S*")


def _shape(p: Problem) -> tuple[str, str, str] | None:
    """What makes problems alike: their line, their kind and their message with every word
    holding a digit blanked out (``host web-7 has no variable 'env'``); None without a line.
    A template's problems keep their quoted names (``'v1'`` and ``'v2'`` are two variables a
    template misses, not the same one for another host)."""
    if p.location is None:
        return None
    if p.code.startswith("template-"):
        message = _QUOTED_OR_NUMBERED.sub(lambda m: m[0] if m[0].startswith("'") else "#", p.message)
        return str(p.location), p.code, message
    return str(p.location), p.code, _NUMBERED.sub("#", p.message)


def problems_block(style: Style, problems: Sequence[Problem], headline: str = "Validation failed") -> str:
    """Every validation problem with ``file:line`` and its hint; past :data:`ALIKE_SHOWN`
    problems of one shape at one line (the same message for another host), the others are
    counted, not shown (``--format json`` keeps them all)."""
    count = len(problems)
    head = f"{headline} ({count} problem{'s' if count != 1 else ''})" if count > 1 else headline
    context: list[str] = []
    alike: dict[tuple[str, str, str], int] = {}
    for p in problems:
        shape = _shape(p)
        if shape is not None:
            alike[shape] = alike.get(shape, 0) + 1
    shown: dict[tuple[str, str, str], int] = {}
    for p in problems:
        shape = _shape(p)
        if shape is not None:
            seen = shown[shape] = shown.get(shape, 0) + 1
            if seen > ALIKE_SHOWN:
                if seen == ALIKE_SHOWN + 1:
                    more = alike[shape] - ALIKE_SHOWN
                    context += [f"{p.location}: ... and {more} more problem{'s' if more != 1 else ''} like these "
                                "(--format json lists them all)", ""]  # fmt: skip
                continue
        where = f"{p.location}: " if p.location else ""
        context.append(f"{where}{p.message}".replace("\n", "\n" + " " * len(where)))
        if p.hint:
            pad = " " * len(where) + "  "
            context.append(pad + style.paint(p.hint.replace("\n", "\n" + pad), "dim"))
        context.append("")
    return error_block(style, head, context[:-1])


def _split_reason(reason: str, hint: str) -> tuple[str, list[str], list[str]]:
    """(first line of the reason, detail lines, suggestions) from a reason and a hint.

    Lines after the first and the hint's lines that start with ``- `` are suggestions;
    other non-empty lines are details shown under the reason.
    """
    lines = reason.splitlines() or [""]
    head, rest = lines[0], [*lines[1:], *hint.splitlines()]
    details: list[str] = []
    suggestions: list[str] = []
    for line in rest:
        text = line.strip()
        if text.startswith("- "):
            suggestions.append(text[2:].strip())
        elif text:
            details.append(text)
    return head, details, suggestions


def failure_block(style: Style, f: Failure, logs: str = "", verbose: bool = False, alike: Sequence[str] = ()) -> str:
    """A command failure, timeout or connection error in Nexus's one error shape (docs/output.md).

    ``logs`` is the ``nexus logs ...`` command that shows the full output; ``verbose`` (the
    output was streamed already) leaves the advice out. ``alike``: other hosts where the
    same error happened; they share this block. A failed command of a handler is named as
    such (``in handler 'restart'``), and the handlers notified on the host and left pending
    are listed with how to run them (see :func:`_handler_of`).
    """
    hosts = [f.host, *alike]
    ctx: list[str] = [f"Hosts: {', '.join(hosts)}" if alike else f"Host: {f.host}", f"Task: {f.task}"]
    reason, details, suggestions = _split_reason(clean(f.reason, multiline=True), clean(f.hint, multiline=True))
    handler = _handler_of(f)
    in_handler = f" (in handler {clean(handler)!r})" if handler else ""
    command = command_lines(f.command, in_handler)
    if f.status == "unreachable":
        headline = f"Connection to {f.host} failed"
        ctx.append(f"Reason: {reason}")
        ctx += [f"  {d}" for d in details]
        if f.succeeded_before:  # the connection was lost part-way: say which command was next
            ctx += command
        if not suggestions:
            suggestions.append("Check the host with: nexus preflight " + f.task)
    elif f.status == "timeout":
        headline = "Command timed out"
        ctx += command
        if f.cwd:
            ctx.append(f"Working directory: {f.cwd}")
        ctx.append(f"Timeout: {f.timeout:g}s" if f.timeout else f"Reason: {reason}")
        if f.timeout and reason:
            ctx.append(f"Reason: {reason}")
        ctx += [f"  {d}" for d in details]
        if "timeout=" not in f.hint:  # a wait_for's own advice names its limit already
            suggestions.append("Raise the limit with run(..., timeout=SECONDS) or @task(timeout=SECONDS)")
    else:
        headline = "Command failed"
        ctx += command
        if f.cwd:
            ctx.append(f"Working directory: {f.cwd}")
        if f.exit_code is not None:
            ctx.append(f"Exit code: {f.exit_code}")
        if f.status == "error" or (reason and reason != f"exit code {f.exit_code}") or details:
            ctx.append(f"Reason: {reason}")
        ctx += [f"  {d}" for d in details]
    ctx_pending, advice = _pending_lines(f, handler)
    ctx += ctx_pending
    suggestions += advice
    if f.tail:
        ctx += ["", "Output:" if f.status != "timeout" else "Partial output:"]
        ctx += [f"  {clean(line)}" for line in f.tail[-10:]]
    if f.succeeded_before:
        ctx += ["", "Previous commands in this task succeeded:" if all(map(_plain_ok, f.succeeded_before))
                else "Previous commands in this task:"]  # fmt: skip
        ctx += [f"  {_before_mark(style, c)} {clean(c)}" for c in f.succeeded_before]
    if f.status == "failed" and not verbose:
        suggestions.append(
            f"See every output line: {logs}" if logs else "Re-run with -v to see every output line as it happens"
        )
    headline = f.headline or headline
    if alike:
        more = [f"+{len(hosts) - HEADLINE_HOSTS} more"] if len(hosts) > HEADLINE_HOSTS else []
        named = hosts[:HEADLINE_HOSTS] + more
        headline += f" (same error on {len(hosts)} hosts: {', '.join(named)})"
    return terminal_safe(error_block(style, headline, ctx, list(dict.fromkeys(suggestions))))


#: Hosts named in the headline of an error shared by many (all are on its ``Hosts:`` line).
HEADLINE_HOSTS = 10


def _handler_of(f: Failure) -> str:
    """The handler whose command failed (``f.handler``), or "" for a command of the task itself.

    Read with ``getattr``, as is :func:`_pending_of`: a failure put together from events (the
    dashboard's, while the run goes on) or by an engine that does not fill them has neither.
    """
    name = getattr(f, "handler", "")
    return name if isinstance(name, str) else ""


def _pending_of(f: Failure) -> list[str]:
    """The handlers notified on the failure's host in its task and not run to success
    (``f.pending_handlers``, in definition order): what ``nexus resume`` runs there."""
    names = getattr(f, "pending_handlers", ())
    if not isinstance(names, (list, tuple)):
        return []
    return [n for n in names if isinstance(n, str)]


def _pending_lines(f: Failure, handler: str) -> tuple[list[str], list[str]]:
    """Context lines and suggestions about the handlers a failure leaves pending on its host.

    Those not run are listed; ``nexus resume`` runs them (a failed handler again, too), and
    ``--force-handlers`` runs them on a re-run even when a command fails there again (only
    after a failure or a timeout: that is when the option applies).
    """
    waiting = [clean(n) for n in _pending_of(f) if n != handler]
    ctx = [f"Handlers notified and not run: {', '.join(waiting)}"] if waiting else []
    if handler:
        then = " and the handlers notified and not run" if waiting else ""
        return ctx, [f"Once it is fixed, `nexus resume` runs handler {clean(handler)!r} again{then}"]
    if not waiting:
        return ctx, []
    force = ", or re-run with --force-handlers" if f.status in ("failed", "timeout") else ""
    return ctx, [f"`nexus resume` runs the handlers notified and not run{force}"]


def _before_kind(command: str) -> str:
    """How an earlier command in a failure report ended, read from the note the engine adds:
    ``"ok"``, ``"skip"`` (skipped by its guard) or ``"fail"`` (a failure let through)."""
    from nexus_core.engine import ALLOWED_NOTE, SKIPPED_NOTE

    if command.endswith(SKIPPED_NOTE):
        return "skip"
    return "fail" if command.endswith(ALLOWED_NOTE) else "ok"


def _plain_ok(command: str) -> bool:
    """An earlier command that ran and succeeded (not skipped, not a failure let through)."""
    return _before_kind(command) == "ok"


def _before_mark(style: Style, command: str) -> str:
    """The mark of an earlier command in a failure report: ok, skipped, or failed (let through)."""
    return {"skip": style.skip, "fail": style.fail}.get(_before_kind(command), style.ok)


def failures_text(
    style: Style,
    failures: Sequence[Failure],
    logs: Callable[[Failure], str] | None = None,
    verbose: bool = False,
    order: Sequence[str] = (),
) -> str:
    """Every failure's block, one per distinct error: hosts that failed alike share one block.

    Two failures are alike when their blocks are identical once each one's own host identity
    (its label and address, also in ``user@address`` and ``[address]:port``) and volatile values
    (a remote process group id, a key fingerprint) are set aside (:mod:`nexus_core.output.alike`):
    the same task, command, exit code, reason, port, output and advice. The shared block says
    ``same error on 3 hosts: a, b, c`` in its headline and lists them on its ``Hosts:`` line, in
    the plan's host order when ``order`` (host labels) is given, else in the order of
    ``failures``; the details shown are the first host's. Blocks end with a blank line.
    ``logs`` gives each failure's ``nexus logs ...`` command; ``verbose`` as for :func:`failure_block`.
    """
    from nexus_core.output.alike import host_rank, names_of, shape

    groups: dict[str, list[Failure]] = {}
    for f in failures:
        see = logs(f) if logs else ""
        groups.setdefault(shape(failure_block(style, f, see, verbose), names_of(f.host)).key, []).append(f)
    rank = host_rank(order)
    blocks = []
    for alike in groups.values():
        if order:
            alike = sorted(alike, key=lambda f: rank(f.host))
        first = alike[0]
        blocks.append(failure_block(style, first, logs(first) if logs else "", verbose, [f.host for f in alike[1:]]))
    return "\n".join(block + "\n" for block in blocks)


def summary_line(style: Style, result: RunResult) -> str:
    """The last line of a run: what succeeded, failed, was skipped or not done."""
    took = fmt_duration(result.duration)
    ok, failed, skipped = result.names("ok"), result.names("failed"), result.names("skipped")
    interrupted = result.names("interrupted")
    if result.status == "ok":
        n = len(ok)
        return style.paint(f"{style.ok} Completed in {took} ({n} task{'s' if n != 1 else ''})", "green")
    parts = [f"{len(ok)} succeeded" + (f" ({', '.join(ok)})" if ok else "")]
    if failed:
        parts.append(f"{len(failed)} failed ({', '.join(failed)})")
    if interrupted:
        parts.append(f"{len(interrupted)} interrupted ({', '.join(interrupted)})")
    if skipped:
        parts.append(f"{len(skipped)} skipped ({', '.join(skipped)})")
    if result.status == "interrupted":
        return style.paint(f"{style.warn} Interrupted after {took}: " + ", ".join(parts), "yellow")
    return style.paint(f"{style.fail} Failed after {took}: " + ", ".join(parts), "red")


def plan_text(
    style: Style,
    plan: Plan,
    checks: Sequence[CheckResult] = (),
    files: Mapping[tuple[str, str, int], Any] | None = None,
    held: tuple[str, Mapping[str, Mapping[str, Sequence[str]]]] = ("", {}),
) -> str:
    """The dry-run view: pre-flight, execution plan by phase, summary. ``held``: the handlers
    an earlier run left pending, which the run takes over (its id, {task: {handler: hosts}})."""
    s = style
    rule = "═" if s.unicode else "="
    lines = [rule * 66, "DRY RUN MODE: no commands will be executed".center(66), rule * 66, ""]
    if checks:
        lines.append("PRE-FLIGHT CHECKS")
        lines.extend(checks_lines(s, checks))
        lines.append("")
    lines.append("EXECUTION PLAN")
    for i, phase in enumerate(plan.phases, 1):
        kinds = {plan.tasks[n].strategy for n in phase}
        mode = "parallel" if len(phase) > 1 else next(iter(kinds))
        lines.append(f"  Phase {i} ({mode}):" if len(phase) > 1 else f"  Phase {i}:")
        for name in phase:
            lines.extend(_task_plan_lines(s, plan, name, files or {}, held))
    for name, why in plan.waiting.items():  # hosts that start with the run: nothing to show yet
        lines.append(f"  {s.paint('●', 'dim') if s.unicode else '*'} {name}: {why}")
    for name, why in plan.skipped.items():
        lines.append(f"  {name}: skipped ({why})")
    if plan.discovery:  # where each discovered host came from
        from nexus_core.discovery.report import discovery_lines

        lines += ["", *discovery_lines(s, plan)]
    hosts = plan.hosts
    n_tasks, n_phases, n_cmds = len(plan.tasks), len(plan.phases), plan.command_count()
    lines += [
        "",
        "SUMMARY",
        f"  Tasks:     {n_tasks} task{'s' if n_tasks != 1 else ''}, {n_phases} phase{'s' if n_phases != 1 else ''}",
        f"  Hosts:     {len(hosts)} unique host{'s' if len(hosts) != 1 else ''}",
        f"  Commands:  {n_cmds} command{'s' if n_cmds != 1 else ''} total",
    ]
    for name in plan.order:
        t = plan.tasks[name]
        if t.strategy != "parallel" or len(t.hosts) > 1:
            lines.append(f"  Strategy:  {name} uses {t.strategy_text}")
    lines += ["", "Run without --dry-run to execute."]
    return "\n".join(lines)


def _task_plan_lines(
    s: Style,
    plan: Plan,
    name: str,
    files: Mapping[tuple[str, str, int], Any],
    held: tuple[str, Mapping[str, Mapping[str, Sequence[str]]]] = ("", {}),
) -> list[str]:
    from nexus_core.guards import dry_run_note

    t = plan.tasks[name]
    labels = [hp.host.label for hp in t.hosts]
    if labels == ["local"]:
        where = "[local]"
    elif len(labels) > 10:  # a fleet: its size and the first few (--list-hosts has them all)
        where = f"[{len(labels)} hosts: {', '.join(labels[:3])}, +{len(labels) - 3} more]"
    else:
        where = f"[{', '.join(labels)}]"
    strategy = f" ({t.strategy_text})" if len(t.hosts) > 1 or t.strategy != "parallel" else ""
    deps = f" after {', '.join(t.deps)}" if t.deps else ""
    lines = [f"    {s.bullet} {name} {where}{strategy}{deps}"]
    if len(t.batches) > 1 or [label for b in t.batches for label in b] != labels:
        order = " -> ".join("[" + ", ".join(b) + "]" for b in t.batches)
        lines.append(f"      order: {order}")
    distinct = {hp.commands for hp in t.hosts}
    groups = [(None, t.hosts[0].commands)] if len(distinct) == 1 else [(hp.host.label, hp.commands) for hp in t.hosts]
    for label, commands in groups:
        indent = "      "
        if label is not None:
            lines.append(f"      {label}:")
            indent = "        "
        for i, c in enumerate(commands):
            flags = " ".join(f"[{f}]" for f in c.flags())
            note = dry_run_note(c, t.hosts[0].host, plan.root)
            note = "  " + s.paint(f"({note})", "dim") if note else ""
            shown = _shown(c, indent + ("   " if i == len(commands) - 1 else (" │ " if s.unicode else " | ")))
            lines.append(f"{indent}{s.branch(i == len(commands) - 1)} {shown}" + (f"  {flags}" if flags else "") + note)
            labels_here = [label] if label is not None else [hp.host.label for hp in t.hosts]
            for host_label in labels_here:
                found = files.get((name, host_label, i))
                if found is not None:
                    bar = ("│" if s.unicode else "|") if i < len(commands) - 1 else " "
                    named = label is None and len(labels_here) > 1
                    lines.extend(_file_check_lines(s, f"{indent}{bar}    ", found, named))
    lines.extend(_handler_and_artifact_lines(s, plan, name, held))
    return lines


def _shown(c: Any, indent: str) -> str:
    """A command as the plan shows it: the user's text exactly, a line of several under the
    one before (``indent``); a ``secret(..., to=PATH)`` write by what it does, not by the
    script Nexus runs for it."""
    text = c.shown
    if getattr(c, "input_secret", None):
        return clean(text)
    return "\n".join(clean(line) for line in text.split("\n")).replace("\n", "\n" + indent + " ")


def _handler_and_artifact_lines(
    s: Style, plan: Plan, name: str, held: tuple[str, Mapping[str, Mapping[str, Sequence[str]]]] = ("", {})
) -> list[str]:
    """The handlers a task may run at its end (when notified, or left pending by an earlier
    run: ``held``) and the artifacts it hands on."""
    t = plan.tasks[name]
    out: list[str] = []
    handlers = list(dict.fromkeys(h.name for hp in t.hosts for h in hp.handlers))
    run_id, pending = held[0], held[1].get(name, {})
    here = {hp.host.label for hp in t.hosts}
    for handler in handlers:
        bodies = [h.commands for hp in t.hosts for h in hp.handlers if h.name == handler]
        cmds = bodies[0]
        when = "if notified"
        waiting = [host for host in pending.get(handler, ()) if host in here]
        if waiting:
            on = waiting[0] if len(waiting) == 1 else f"{len(waiting)} hosts"
            when = f"if notified; pending from run {run_id} on {on}: it runs"
        if len(set(bodies)) > 1:  # hostname() and the like: each host runs its own
            when += f"; as on {t.hosts[0].host.label}"
        out.append("      " + s.paint(f"handler {handler} ({when}):", "dim"))
        for i, c in enumerate(cmds):
            flags = " ".join(f"[{f}]" for f in c.flags())
            last = i == len(cmds) - 1
            shown = _shown(c, "        " + ("   " if last else (" │ " if s.unicode else " | ")))
            out.append(f"        {s.branch(last)} {shown}" + (f"  {flags}" if flags else ""))
    paths = list(dict.fromkeys(p for hp in t.hosts for p in hp.artifacts))
    if paths:
        out.append("      " + s.paint("artifacts: " + ", ".join(paths), "dim"))
    return out


def _file_check_lines(s: Style, indent: str, found: Any, named: bool) -> list[str]:
    """A dry run's verdict on one file operation for one host, and its diff."""
    who = f"{found.host}: " if named else ""
    if found.problem:
        return [indent + s.paint(f"{who}{found.problem}", "red")]
    if found.secrets_unknown:
        # an approver must not read "unchanged" when a secret's value may be what changes
        text = "unchanged but for its secret values, which a dry run does not decrypt: the run may rewrite them"
        return [indent + s.paint(f"{who}{text}", "yellow")]
    if not found.changed:
        text = "unchanged" if found.files <= 1 else f"unchanged ({found.files} files)"
        return [indent + s.paint(f"{who}{text}", "dim"), *(indent + "  " + s.paint(line, "dim") for line in found.diff)]
    text = "would change" if found.files <= 1 else f"would change {found.changed_files} of {found.files} files"
    out = [indent + s.paint(f"{who}{text}", "yellow")]
    for line in found.diff:
        color = "green" if line.startswith("+") and not line.startswith("+++") else (
            "red" if line.startswith("-") and not line.startswith("---") else "dim")  # fmt: skip
        out.append(indent + "  " + s.paint(line, color))
    return out


def checks_lines(s: Style, checks: Sequence[CheckResult], hints: bool = True) -> list[str]:
    """Pre-flight results grouped by category (in first-seen order), with ``[ok/checked]`` counts
    for host checks; skipped checks do not count."""
    groups: dict[str, list[CheckResult]] = {}
    for c in checks:
        groups.setdefault(c.category, []).append(c)
    lines: list[str] = []
    for category, items in groups.items():
        count = ""
        if any(c.host for c in items):
            checked = [c for c in items if c.status != "skipped"]
            count = f" [{sum(1 for c in checked if c.status == 'ok')}/{len(checked)}]"
        lines.append(f"  {category}{count}")
        for c in items:
            mark = s.paint(s.warn, "yellow") if c.status == "warn" else s.mark(c.status)
            who = f"{c.host} - " if c.host else ""
            took = f" ({c.duration * 1000:.0f}ms)" if c.duration is not None else ""
            lines.append(f"    {mark} {who}{clean(c.message)}{took}")
            if hints and c.hint and c.status not in ("ok", "skipped"):
                hint = clean(c.hint, multiline=True)
                lines.extend(f"        {s.paint(h.strip(), 'dim')}" for h in hint.splitlines() if h.strip())
    return lines


def preflight_failures(checks: Sequence[CheckResult]) -> list[CheckResult]:
    """The blocking failures among pre-flight results."""
    return [c for c in checks if c.status == "fail" and c.blocking]


def preflight_exit_code(failures: Sequence[CheckResult]) -> int:
    """3 for a connection failure, else 2 for configuration, else 1 (0 when nothing failed)."""
    codes = {
        c.exit_code if c.exit_code is not None else (ExitCode.CONNECTION if c.host else ExitCode.CONFIG)
        for c in failures
    }
    for code in (ExitCode.CONNECTION, ExitCode.CONFIG, ExitCode.FAILED):
        if code in codes:
            return int(code)
    return max(codes) if codes else int(ExitCode.OK)


#: Hosts named in a pre-flight error shared by several; the others are counted.
PREFLIGHT_HOSTS_NAMED = 5


def _alike_checks(checks: Sequence[CheckResult]) -> list[tuple[str, str, CheckResult]]:
    """``(who, message, first)`` per distinct finding: the same one on several hosts (it differs
    only by the host, :mod:`nexus_core.output.alike`) once, naming them (``who`` ends with ": ")."""
    from nexus_core.output.alike import listed, merged, names_of, shape

    groups: dict[tuple[str, str, str], list[CheckResult]] = {}
    for c in checks:
        names = names_of(c.host) if c.host else ()
        groups.setdefault((c.category, shape(c.message, names).key, shape(c.hint, names).key), []).append(c)
    found = []
    for alike in groups.values():
        c = alike[0]
        hosts = [a.host for a in alike if a.host]
        if len(alike) > 1 and hosts:
            who = f"{len(hosts)} hosts ({listed(hosts, PREFLIGHT_HOSTS_NAMED)}): "
            found.append((who, merged([shape(a.message, names_of(a.host or "")) for a in alike]), c))
        else:
            found.append((f"{c.host}: " if c.host else "", c.message, c))
    return found


def _error_lines(s: Style, failures: Sequence[CheckResult]) -> list[str]:
    """The numbered errors with their fixes (alike ones on several hosts once)."""
    lines: list[str] = []
    for i, (who, message, c) in enumerate(_alike_checks(failures), 1):
        lines.append(f"  {i}. {who}{clean(message)}")
        for h in clean(c.hint, multiline=True).splitlines():
            text = h.strip().removeprefix("- ").strip()
            if text:
                lines.append(f"     {'→' if s.unicode else '->'} {text}")
        lines.append("")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def preflight_errors(style: Style, failures: Sequence[CheckResult]) -> str:
    """``nexus preflight --format quiet``: the failed checks only, numbered (alike ones on
    several hosts once), with their fixes."""
    n = len(failures)
    return "\n".join([f"Pre-flight checks failed ({n} error{'s' if n != 1 else ''}):", *_error_lines(style, failures)])


def preflight_text(
    style: Style,
    tasks: Sequence[str],
    checks: Sequence[CheckResult],
    duration: float,
    *,
    force: bool = False,
    unavailable: Sequence[str] = (),
) -> str:
    """``nexus preflight`` for people."""
    s = style
    lines = [f"Pre-flight checks for: {', '.join(tasks)}", ""]
    for line in checks_lines(s, checks, hints=False):
        if not line.startswith("    ") and len(lines) > 2:
            lines.append("")
        lines.append(line[2:])
    failures = preflight_failures(checks)
    warnings = [c for c in checks if c.status == "warn"]
    counted = [c for c in checks if c.status != "skipped"]
    lines.append("")
    if not failures:
        extra = f", {len(warnings)} warning{'s' if len(warnings) != 1 else ''}" if warnings else ""
        lines.append(
            s.paint(
                f"{s.ok} All pre-flight checks passed ({len(counted)} checks in {fmt_duration(duration)}{extra})",
                "green",
            )
        )
    elif force and unavailable:
        lines.append(
            s.paint(f"{s.warn} Pre-flight checks failed on {len(unavailable)} host(s); --force given", "yellow")
        )
    else:
        n = len(failures)
        lines.append(s.paint(f"{s.fail} Pre-flight checks failed ({n} error{'s' if n != 1 else ''})", "red"))
    if failures:
        lines += ["", "Errors:", *_error_lines(s, failures)]
    if warnings:
        lines += ["", "Warnings:"]
        for who, message, c in _alike_checks(warnings):
            lines.append(f"  - {who}{clean(message)}")
            lines += [f"    {h.strip()}" for h in clean(c.hint, multiline=True).splitlines() if h.strip()]
    if force and unavailable:
        lines += ["", f"Unavailable hosts (skipped by --force): {', '.join(unavailable)}"]
    elif failures and any(c.host for c in failures):
        lines += ["", "Run with --force to skip failed hosts and continue with available hosts."]
    return "\n".join(lines)
