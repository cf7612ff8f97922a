"""Messages in Nexus's one error shape (headline, context, suggestions), summaries and plans."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from nexus_core.model import Problem
from nexus_core.output.style import Style, fmt_duration

if TYPE_CHECKING:
    from nexus_core.api import CheckResult
    from nexus_core.engine import Failure, RunResult
    from nexus_core.plan import Plan


def error_block(style: Style, headline: str, context: Sequence[str] = (), suggestions: Sequence[str] = ()) -> str:
    """``Error: headline``, indented context lines, then ``Suggestions:``."""
    lines = [style.paint(f"Error: {headline}", "red")]
    if context:
        lines.append("")
        lines.extend(f"  {line}" if line else "" for line in context)
    if suggestions:
        lines += ["", "  Suggestions:"]
        lines.extend(f"    - {s}" for s in suggestions)
    return "\n".join(lines)


def problems_block(style: Style, problems: Sequence[Problem], headline: str = "Validation failed") -> str:
    """Every validation problem with ``file:line`` and its hint."""
    count = len(problems)
    head = f"{headline} ({count} problem{'s' if count != 1 else ''})" if count > 1 else headline
    context: list[str] = []
    for p in problems:
        where = f"{p.location}: " if p.location else ""
        context.append(f"{where}{p.message}")
        if p.hint:
            context.append(" " * len(where) + "  " + style.paint(p.hint, "dim"))
        context.append("")
    return error_block(style, head, context[:-1])


_CONNECTION_HINTS = {
    "refused": [
        "Check that sshd runs on the host and listens on that port",
        "Verify firewall rules allow the SSH port",
    ],
    "timed out": ["Verify the host is reachable (ping, VPN)", "Raise ssh_connect_timeout for slow links"],
    "auth": ["Check the user and key: ssh -i KEY USER@HOST true", "Pass a key with -i or ssh_identity"],
    "host key": ["If the host was rebuilt, remove the old key from known_hosts (file and line above)"],
    "dns": ["Check the host name for typos", "Verify DNS resolution: getent hosts HOST"],
}


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


def failure_block(style: Style, f: Failure) -> str:
    """A command failure, timeout or connection error in the PRD's shape (REQ-0131/0132/0133)."""
    ctx: list[str] = [f"Host: {f.host}", f"Task: {f.task}"]
    reason, details, suggestions = _split_reason(f.reason, f.hint)
    if f.status == "unreachable":
        lowered = reason.lower()
        if "host key changed" in lowered:
            headline = "SSH host key changed - possible man-in-the-middle attack"
        elif f.transport == "ssh":
            headline = "SSH connection failed"
        else:
            headline = f"Connection to {f.host} failed"
        ctx.append(f"Reason: {reason}")
        ctx += [f"  {d}" for d in details]
        if f.succeeded_before:  # the connection was lost part-way: say which command was next
            ctx.append(f"Command: {f.command}")
        if not suggestions:
            for key, hints in _CONNECTION_HINTS.items():
                if key in lowered:
                    suggestions += hints
        if not suggestions:
            suggestions.append("Check the host with: nexus preflight " + f.task)
    elif f.status == "timeout":
        headline = "Command timed out"
        ctx.append(f"Command: {f.command}")
        if f.cwd:
            ctx.append(f"Working directory: {f.cwd}")
        ctx.append(f"Timeout: {f.timeout:g}s" if f.timeout else f"Reason: {reason}")
        if f.timeout and reason:
            ctx.append(f"Reason: {reason}")
        ctx += [f"  {d}" for d in details]
        suggestions.append("Raise the limit with run(..., timeout=SECONDS) or @task(timeout=SECONDS)")
    else:
        headline = "Command failed"
        ctx.append(f"Command: {f.command}")
        if f.cwd:
            ctx.append(f"Working directory: {f.cwd}")
        if f.exit_code is not None:
            ctx.append(f"Exit code: {f.exit_code}")
        if f.status == "error" or (reason and reason != f"exit code {f.exit_code}") or details:
            ctx.append(f"Reason: {reason}")
        ctx += [f"  {d}" for d in details]
    if f.tail:
        ctx += ["", "Output:" if f.status != "timeout" else "Partial output:"]
        ctx += [f"  {line}" for line in f.tail[-10:]]
    if f.succeeded_before:
        ctx += ["", "Previous commands in this task succeeded:"]
        ctx += [f"  {style.ok} {c}" for c in f.succeeded_before]
    if f.status == "failed":
        suggestions.append("Re-run with -v to see every output line as it happens")
    return error_block(style, headline, ctx, list(dict.fromkeys(suggestions)))


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


def plan_text(style: Style, plan: Plan, checks: Sequence[CheckResult] = ()) -> str:
    """The dry-run view (PRD REQ-0171): pre-flight, execution plan by phase, summary."""
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
            lines.extend(_task_plan_lines(s, plan, name))
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


def _task_plan_lines(s: Style, plan: Plan, name: str) -> list[str]:
    t = plan.tasks[name]
    labels = [hp.host.label for hp in t.hosts]
    where = "[local]" if labels == ["local"] else f"[{', '.join(labels)}]"
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
            lines.append(f"{indent}{s.branch(i == len(commands) - 1)} {c.cmd}" + (f"  {flags}" if flags else ""))
    return lines


def checks_lines(s: Style, checks: Sequence[CheckResult], hints: bool = True) -> list[str]:
    """Pre-flight results grouped by category (in first-seen order), with ``[ok/checked]`` counts
    for host checks (PRD REQ-0174); skipped checks do not count."""
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
            lines.append(f"    {mark} {who}{c.message}{took}")
            if hints and c.hint and c.status not in ("ok", "skipped"):
                lines.extend(f"        {s.paint(h.strip(), 'dim')}" for h in c.hint.splitlines() if h.strip())
    return lines


def preflight_failures(checks: Sequence[CheckResult]) -> list[CheckResult]:
    """The blocking failures among pre-flight results."""
    return [c for c in checks if c.status == "fail" and c.blocking]


def preflight_exit_code(failures: Sequence[CheckResult]) -> int:
    """3 for a connection failure, else 2 for configuration, else 1 (0 when nothing failed)."""
    codes = {c.exit_code if c.exit_code is not None else (3 if c.host else 2) for c in failures}
    for code in (3, 2, 1):
        if code in codes:
            return code
    return max(codes) if codes else 0


def preflight_text(
    style: Style,
    tasks: Sequence[str],
    checks: Sequence[CheckResult],
    duration: float,
    *,
    force: bool = False,
    unavailable: Sequence[str] = (),
) -> str:
    """``nexus preflight`` for people (PRD REQ-0174 / REQ-0175)."""
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
        lines += ["", "Errors:"]
        for i, c in enumerate(failures, 1):
            who = f"{c.host}: " if c.host else ""
            lines.append(f"  {i}. {who}{c.message}")
            for h in c.hint.splitlines():
                text = h.strip().removeprefix("- ").strip()
                if text:
                    lines.append(f"     {'→' if s.unicode else '->'} {text}")
            lines.append("")
        if lines[-1] == "":
            lines.pop()
    if warnings:
        lines += ["", "Warnings:"]
        for c in warnings:
            who = f"{c.host}: " if c.host else ""
            lines.append(f"  - {who}{c.message}")
            lines += [f"    {h.strip()}" for h in c.hint.splitlines() if h.strip()]
    if force and unavailable:
        lines += ["", f"Unavailable hosts (skipped by --force): {', '.join(unavailable)}"]
    elif failures and any(c.host for c in failures):
        lines += ["", "Run with --force to skip failed hosts and continue with available hosts."]
    return "\n".join(lines)
