"""Where the CLI enforces the policy: permission checks, change windows, dry runs, approvals.

:func:`policy_in_force` finds the system policy (``/etc/nexus/policy.toml``; ``NEXUS_POLICY``
points elsewhere only when that file is owned by root and writable by nobody else, so a user
cannot swap in a policy of their own). :func:`check` answers one permission for ``nexus
list``/``logs``/``pipelines``; :func:`gate_run` does everything ``nexus run`` needs before a
run starts. Each check is an audited event (:mod:`nexus_core.policy.events`).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import rich_click as click

from nexus_core.cli.application import Exit, ExitCode, fail, plugin_manager
from nexus_core.policy.events import (
    ApprovalRequested,
    ApprovalUsed,
    ChangeWindowOverride,
    DryRunRecorded,
    PolicyCheck,
)
from nexus_core.policy.local import groups_of, identity, trusted
from nexus_core.policy.local import policy_path as _policy_path
from nexus_core.policy.model import DEFAULT_TTL, Policy, PolicyError, load_policy
from nexus_core.policy.windows import ChangeWindow, WindowError, now

if TYPE_CHECKING:
    from nexus_core.events import Event
    from nexus_core.model import Project
    from nexus_core.plan import Plan
    from nexus_core.policy.store import ApprovalStore

#: Seconds between two looks at a pending approval request while ``nexus run`` waits.
POLL_SECONDS = 0.5


# --- who, which policy ---------------------------------------------------------------------


def policy_path(warn: bool = True) -> str | None:
    """The policy in force (see :func:`nexus_core.policy.local.policy_path`), warnings on stderr."""
    return _policy_path((lambda m: click.echo(m, err=True)) if warn else None)


def policy_in_force() -> Policy | None:
    """The loaded policy (None when there is none), or exit 2 saying what is wrong with it."""
    path = policy_path()
    if path is None:
        return None
    why = trusted(path)
    if why:
        fail(
            ExitCode.CONFIG,
            f"The system policy {path} cannot be trusted: {why}",
            [],
            [f"As root: chown root:root {path} && chmod 644 {path}"],
        )
    try:
        return load_policy(path)
    except PolicyError as exc:
        fail(ExitCode.CONFIG, f"Policy error: {exc.message}", [exc.where], [exc.hint] if exc.hint else [])


def clock(policy: Policy | None) -> float:
    """Now, in seconds since the epoch (the injected test clock only where allowed; exit 2 when it is no time)."""
    try:
        return now(policy is None or policy.clock_override).timestamp()
    except WindowError as exc:
        fail(ExitCode.CONFIG, f"Configuration error: {exc.message}", [], [exc.hint])


# --- audit ---------------------------------------------------------------------------------


def audit(
    events: Sequence[Event], config: Mapping[str, Any] | None = None, root: str | None = None, strict: bool = False
) -> None:
    """Deliver events outside a run (a refusal, ``nexus approve``) to the audit sinks declared
    for ``root``'s project (``nexus_core.audit``) and to the plugins' subscribers.

    ``strict``: a required sink that cannot write stops the command (exit 2: fail closed), as
    it stops a run; otherwise it is a warning (a refusal still says why it refused).
    """
    if not events:
        return
    from nexus_core.events import EventBus
    from nexus_core.settings import section_files

    def say(message: str) -> None:
        click.echo(message, err=True)

    root = root if root is not None else _ROOT or _project_root()
    bus = EventBus(events[0].run_id, report=say)
    sinks = open_sinks(root, events[0].run_id, strict) if section_files("audit", root) else None
    if sinks is not None:
        bus.subscribe("audit", sinks)
    for name, sub in plugin_manager().subscribers(dict(config or {}), {"format": "text", "mode": "normal"}):
        bus.subscribe(name, sub)
    try:
        for event in events:
            bus.emit(event)
    finally:
        for sub in {id(s): s for _, s in bus._subs}.values():  # sinks that buffer get their end of stream
            close = getattr(sub, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:  # noqa: BLE001 - one subscriber's failure is not the command's
                    pass
    if strict:
        refuse_incomplete(sinks)


def open_sinks(root: str | None, run_id: str, strict: bool) -> Any:
    """The audit sinks declared for ``root``'s project, open (a ``RunAudit``), for events
    outside a run; None when none could be opened. ``strict``: a required sink that cannot
    write stops the command (exit 2: fail closed); otherwise that is a warning."""
    from nexus_core.audit.delivery import AuditRefused, start

    try:
        return start(root, plugin_manager().registry, run_id, lambda m: click.echo(m, err=True))
    except AuditRefused as exc:
        if strict:
            fail(ExitCode.CONFIG, exc.headline, [f"declared in {exc.where}"] if exc.where else [],
                 [exc.hint] if exc.hint else [])  # fmt: skip
        click.echo(f"nexus: warning: not audited: {exc.headline}", err=True)
        return None


def refuse_incomplete(sinks: Any) -> None:
    """Exit 2 when a required sink of :func:`open_sinks` stopped writing (its records are lost)."""
    failure = getattr(sinks, "required_failure", None)
    if failure is not None:
        fail(
            ExitCode.CONFIG,
            f"The audit trail is incomplete: {failure.line()}",
            [],
            ["Fix the required audit sink, then run the command again"],
        )


def config_changed(change_type: str, target: str, diff: Mapping[str, Any], root: str | None = None) -> None:
    """Audit a change Nexus made to configuration for the user (``config.changed``): what made
    it (``change_type``, the command), the file (``target``) and ``diff`` (names, never a secret's
    value). Delivered to the sinks of ``root``'s project (default: the current folder's); a sink
    that cannot write is a warning, since the change is already made."""
    from nexus_core.audit.records import os_user
    from nexus_core.policy.events import ConfigChanged

    event = ConfigChanged(correlation_id(), user=os_user(), change_type=change_type, target=target, diff=dict(diff))
    audit([event], root=root)


#: The project folder of the run being gated (its audit declarations apply to its refusals).
_ROOT: str | None = None


def _project_root() -> str | None:
    """The folder of the nexusfile this command would use (None: none found)."""
    from nexus_core.loader import NexusfileNotFound, find_nexusfile

    try:
        return os.path.dirname(os.path.abspath(find_nexusfile(os.environ.get("NEXUS_CONFIG"))))
    except (NexusfileNotFound, OSError):
        return None


def correlation_id() -> str:
    """An id for events that belong to no run (the same form as a run id)."""
    from nexus_core.engine import new_run_id

    return new_run_id()


# --- single permissions --------------------------------------------------------------------


def check(action: str, target: str = "", config: Mapping[str, Any] | None = None, user: str | None = None) -> None:
    """Exit 77 unless the policy allows ``action`` (list, status, logs) for this user; audited."""
    policy = policy_in_force()
    if policy is None:
        return
    name, groups = identity() if user is None else (user, groups_of(user))
    decision = policy.decide(name, groups, action, target)
    event = PolicyCheck(
        correlation_id(), subject=name, action=action, target=target, allowed=decision.allowed, rule=decision.rule
    )
    audit([event], config)
    if not decision.allowed:
        deny(
            decision.explain(),
            [f"Rule: {decision.rule}"],
            [f"Ask an administrator for a role that can {action}", f"Explain: nexus policy check --action {action}"],
        )


def deny(headline: str, context: Sequence[str], hints: Sequence[str]) -> None:
    """Refuse with exit 77 (:attr:`ExitCode.DENIED`)."""
    fail(ExitCode.DENIED, f"Permission denied: {headline}", context, hints)


# --- the run -------------------------------------------------------------------------------


def plan_hash(plan: Plan) -> str:
    """SHA-256 of the plan as it would run (every command, host and option, secret values as
    ``***``), the nexusfile's hash and the contents of the local files it uploads (an approved
    plan whose upload's file was changed afterwards is another plan: its approval does not hold)."""
    from nexus_core.secrets.redact import redact_data

    # Secret values as the approver and a dry run see them (***): a dry run does not hold the
    # values a real run resolves, and a plan with secret() never matched its own dry run.
    whole: dict[str, Any] = {"source": plan.source_hash, "plan": redact_data(plan.to_dict())}
    uploads = upload_digests(plan)
    if uploads:  # plans without uploads keep the hash they had
        whole["uploads"] = uploads
    data = json.dumps(whole, sort_keys=True, default=str)
    return hashlib.sha256(data.encode()).hexdigest()


def upload_digests(plan: Plan) -> dict[str, str]:
    """The sha256 of each local file ``upload(...)`` sends (for a folder, of its files' paths,
    modes and sha256 in order), by source path. Templates are in the plan already (their
    rendered bytes' sha256); a file a command reads by itself is not an input Nexus knows."""
    from nexus_core.model import Transfer
    from nexus_core.transfer import TransferError, source_digest

    ops = [c for tp in plan.tasks.values() for hp in tp.hosts
           for c in [*hp.commands, *(c for h in hp.handlers for c in h.commands)]]  # fmt: skip
    sources = {(c.src, c.recursive) for c in ops if isinstance(c, Transfer) and c.kind == "upload"}
    out: dict[str, str] = {}
    for src, recursive in sorted(sources):
        try:
            out[src] = source_digest(src, recursive)
        except (OSError, TransferError) as exc:  # validation reported it; the run will fail on it
            out[src] = f"unreadable: {getattr(exc, 'strerror', None) or exc}"
    return out


def task_targets(project: Project, task: str) -> tuple[str, ...]:
    """The host groups and host strings a task's ``on=`` names (``local`` for local tasks)."""
    from nexus_core.model import on_items

    t = project.tasks.get(task)
    if t is None:
        return ("local",)
    if isinstance(t.on, str):
        return (t.on,)
    items = [i if isinstance(i, str) else getattr(i, "key", str(i)) for i in on_items(t.on)]
    return tuple(items) or ("local",)


def _host_names(plan: Plan, task: str) -> tuple[str, ...]:
    """Every name of the hosts ``task`` runs on in ``plan`` (after ``-H``): label, name, the host
    string as written, and a discovered host's own name; ``cannot`` rules look at each."""
    found: dict[str, None] = {}
    tp = plan.tasks.get(task)
    for hp in tp.hosts if tp is not None else ():
        host = hp.host
        own = host.facts.get("name") if host.facts else None
        for name in (host.label, host.short_label, host.name, host.source, own):
            if isinstance(name, str) and name:
                found[name] = None
    return tuple(found)


def _matches(task: str, patterns: Sequence[str]) -> bool:
    import fnmatch

    return any(fnmatch.fnmatchcase(task, p) for p in patterns)


@dataclass
class RunGate:
    """What the gate decided for a run: the run id to use and the events the run emits first."""

    run_id: str
    events: list[Event] = field(default_factory=list)


def needs_gate(project: Project) -> bool:
    """True when the nexusfile uses an approval, a change window or a dry-run requirement."""
    if project.compliance:
        return True
    return any(k in ("approval", "change_window") for t in project.tasks.values() for k, _ in t.extra)


def gate_run(
    plan: Plan,
    project: Project,
    *,
    mode: str,
    override_window: bool = False,
    reason: str = "",
    no_wait: bool = False,
    fmt: str = "text",
    resumes: str = "",
) -> RunGate:
    """Everything before ``nexus run`` starts: RBAC, change windows, dry runs, approvals.

    ``mode``: ``run`` (a real run), ``dry-run``, ``list-hosts``, or ``resume`` (``nexus
    resume`` of the run ``resumes``: the run permission, change windows and dry-run
    requirements again, since the resumed commands are changes made now; the approval of the
    run it continues holds for the plan it approved, and a plan changed since (``--force``,
    another nexusfile) needs one of its own). Refusals exit 77 (2 for a bad value), a pending
    approval under ``no_wait`` exits 75.
    """
    global _ROOT
    _ROOT = os.path.dirname(os.path.abspath(plan.nexusfile)) if plan.nexusfile else None
    policy = policy_in_force()
    user, groups = identity()
    run_id = correlation_id()
    gate = RunGate(run_id)
    config = dict(plan.config)
    tasks = [t for t in plan.order if t not in plan.skipped]
    if policy is not None:
        action = "run" if mode in ("run", "resume") else "list"
        for task in tasks if action == "run" else [", ".join(plan.requested)]:
            targets = task_targets(project, task) if action == "run" else ()
            # Where the task really runs, for cannot rules: its hosts after -H, and the groups
            # its on= names (a group's name is what a rule may forbid).
            places = (*(t for t in targets if t in project.groups), *_host_names(plan, task)) if targets else ()
            decision = policy.decide(user, groups, action, task if action == "run" else "", targets, places)
            gate.events.append(
                PolicyCheck(
                    run_id, subject=user, action=action, target=task, allowed=decision.allowed, rule=decision.rule
                )
            )
            if not decision.allowed:
                audit(gate.events, config)
                where = f" on {', '.join(targets)}" if targets else ""
                deny(
                    f"{user} may not {action} {task}{where}",
                    [f"Rule: {decision.rule}", f"Roles of {user}: {', '.join(decision.roles) or 'none'}"],
                    [f"Explain: nexus policy check {task}", "Ask an administrator for a role that allows it"],
                )
    if mode == "list-hosts":
        audit(gate.events, config)
        return gate
    if mode == "dry-run":
        audit(gate.events, config)
        return gate
    moment = clock(policy)
    _windows(plan, project, policy, user, tasks, moment, override_window, reason, gate)
    digest = plan_hash(plan)
    store = _open(policy)
    try:
        _dry_runs(project, policy, user, tasks, digest, moment, store, gate, config, plan)
        # A resumed run continues the approved run: its approval holds for the plan approved.
        if mode != "resume" or not store.used_for(resumes, digest):
            _approval(plan, project, policy, user, tasks, digest, store, gate, config, no_wait, fmt)
    finally:
        store.close()
    return gate  # its events are emitted by the run (or the resumed run)


def record_dry_run(plan: Plan, project: Project) -> None:
    """Remember a passed dry run of this plan by this user (for ``require_dry_run``); audited."""
    policy = policy_in_force()
    user, _ = identity()
    digest = plan_hash(plan)
    store = _open(policy)
    try:
        store.record_dry_run(user, digest, list(plan.order), clock(policy))
    finally:
        store.close()
    audit([DryRunRecorded(correlation_id(), user=user, tasks=tuple(plan.order), plan_hash=digest)], plan.config)


def approvals_db(policy: Policy | None) -> str:
    """The approvals database: the policy's, else ``NEXUS_APPROVALS_DB``, else the run-state database."""
    from nexus_core.state.paths import state_db

    return (policy.approvals_db if policy else "") or os.environ.get("NEXUS_APPROVALS_DB") or state_db()


def _open(policy: Policy | None) -> ApprovalStore:
    import sqlite3

    from nexus_core.policy.store import ApprovalStore

    path = approvals_db(policy)
    try:
        return ApprovalStore(path)
    except (OSError, sqlite3.Error) as exc:
        fail(
            ExitCode.CONFIG,
            "Cannot open the approvals database",
            [f"{path}: {exc}"],
            ["Check its permissions, or set [approvals] database in the policy"],
        )


def windows_of(project: Project, policy: Policy | None) -> dict[str, ChangeWindow]:
    """Every change window by name: the nexusfile's, then the policy's (the policy wins a name)."""
    found: dict[str, ChangeWindow] = dict(project.compliance.get("windows", {}))
    if policy is not None:
        found.update(policy.windows)
    return found


def _windows(
    plan: Plan,
    project: Project,
    policy: Policy | None,
    user: str,
    tasks: Sequence[str],
    moment: float,
    override: bool,
    reason: str,
    gate: RunGate,
) -> None:
    import datetime as dt

    windows = windows_of(project, policy)
    when = dt.datetime.fromtimestamp(moment, dt.UTC)
    for task in tasks:
        names: list[str] = []
        own = plan.tasks[task].options.get("change_window")
        if isinstance(own, str):
            if own not in windows:
                loc = plan.tasks[task].location
                fail(
                    ExitCode.CONFIG,
                    f"task {task!r}: unknown change window {own!r}",
                    [f"{loc.path}:{loc.line}"],
                    [
                        f'Declare it: change_window({own!r}, days=[...], hours="10-16", timezone="UTC")',
                        "Windows declared: " + (", ".join(windows) or "none"),
                    ],
                )
            names.append(own)
        if policy is not None:
            names += [n for n, pats in policy.window_tasks.items() if _matches(task, pats) and n not in names]
        for name in names:
            window = windows[name]
            is_open = window.is_open(when)
            rule = f"change window {name} ({window.describe()})"
            gate.events.append(
                PolicyCheck(
                    gate.run_id,
                    subject=user,
                    action="change_window",
                    target=task,
                    allowed=is_open or override,
                    rule=rule,
                    reason="" if is_open else ("override: " + reason if override else "closed"),
                )
            )
            if is_open:
                continue
            if override:
                if not reason.strip():
                    fail(
                        ExitCode.CONFIG,
                        "--override-window needs --reason TEXT",
                        [f"Task {task}: {rule} is closed"],
                        ['nexus run TASK --override-window --reason "incident INC-123: hotfix"'],
                    )
                gate.events.append(
                    ChangeWindowOverride(gate.run_id, user=user, task=task, window=name, reason=reason.strip())
                )
                click.echo(f"nexus: change window {name} is closed; overridden by {user}: {reason.strip()}", err=True)
                continue
            opens = window.next_start(when)
            utc = opens.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%MZ")
            audit(gate.events, plan.config)
            deny(
                f"task {task} is outside its change window {name}",
                [
                    f"Window: {window.describe()}",
                    f"Now: {when.astimezone(window.zone()).strftime('%a %Y-%m-%d %H:%M %Z')}",
                    f"Next window opens: {opens.strftime('%a %Y-%m-%d %H:%M %Z')} ({utc})",
                ],
                ["Run it then", 'In an emergency: --override-window --reason "why" (audited)'],
            )


def _dry_runs(
    project: Project,
    policy: Policy | None,
    user: str,
    tasks: Sequence[str],
    digest: str,
    moment: float,
    store: ApprovalStore,
    gate: RunGate,
    config: Mapping[str, Any],
    plan: Plan,
) -> None:
    rules: list[tuple[tuple[str, ...], float, str]] = []
    own = project.compliance.get("dry_run")
    if own:
        rules.append((own[0], own[1], "require_dry_run(...) in the nexusfile"))
    if policy is not None and policy.dry_run_tasks:
        rules.append((policy.dry_run_tasks, policy.dry_run_ttl, f"[require_dry_run] in {policy.path}"))
    needing = [(t, ttl, why) for t in tasks for pats, ttl, why in rules if _matches(t, pats)]
    if not needing:
        return
    ttl = min(n[1] for n in needing)
    last = store.last_dry_run(user, digest)
    ok = last is not None and moment - last <= ttl
    names = sorted({n[0] for n in needing})
    gate.events.append(
        PolicyCheck(
            gate.run_id,
            subject=user,
            action="dry_run",
            target=",".join(names),
            allowed=ok,
            rule=needing[0][2],
            reason="" if ok else "no recent dry run",
        )
    )
    if ok:
        return
    audit(gate.events, config)
    seen = "never dry-ran this plan" if last is None else f"last dry-ran this plan {moment - last:.0f} s ago"
    words = " ".join(plan.requested)
    deny(
        f"{', '.join(names)} need{'s' if len(names) == 1 else ''} a dry run of this exact plan by {user} "
        f"within {ttl:.0f} s",
        [f"Rule: {needing[0][2]}", f"{user} {seen}", f"Plan hash: {digest[:16]}"],
        [f"Run first: nexus run --dry-run {words}", "A changed nexusfile, task argument or -H needs a new dry run"],
    )


def _approval(
    plan: Plan,
    project: Project,
    policy: Policy | None,
    user: str,
    tasks: Sequence[str],
    digest: str,
    store: ApprovalStore,
    gate: RunGate,
    config: Mapping[str, Any],
    no_wait: bool,
    fmt: str,
) -> None:
    needing = [
        t
        for t in tasks
        if plan.tasks[t].options.get("approval") == "required"
        or (policy is not None and _matches(t, policy.approval_tasks))
    ]
    if not needing:
        return
    ttl = policy.approval_ttl if policy is not None else DEFAULT_TTL
    found = store.find(user, digest, clock(policy))
    if found is None:
        from nexus_core.output.report import plan_text
        from nexus_core.output.style import Style
        from nexus_core.secrets.redact import redact

        # The plan of a real run holds the secret values it resolved: never in the request,
        # which the approvers (and the approvals database) see.
        dry = redact(plan_text(Style(color=False, live=False, unicode=False, interactive=False), plan))
        found = store.create(user, tasks, digest, plan.nexusfile, dry, clock(policy), ttl)
        audit(
            [ApprovalRequested(gate.run_id, request_id=found.id, user=user, tasks=tuple(tasks), plan_hash=digest)],
            config,
        )
        click.echo(f"Task(s) {', '.join(needing)} require approval.", err=True)
        click.echo(f"Approval request {found.id} recorded (plan {digest[:16]}, expires in {ttl:.0f} s).", err=True)
        click.echo(f"An approver runs: nexus approve {found.id} [--comment TEXT]", err=True)
    elif found.status == "pending":
        click.echo(f"Approval request {found.id} for this plan is still pending.", err=True)
    if found.status == "pending":
        if no_wait:
            audit(gate.events, config)  # the checks made: the run that would emit them stops here
            raise Exit(
                ExitCode.APPROVAL_PENDING,
                f"Waiting for approval of {found.id}; run again once it is approved (exit 75).\n",
            )
        found = _wait(store, found.id, policy, ttl)
    state = found.state(clock(policy))
    if state != "approved":
        audit(gate.events, config)
        by = f" by {found.decided_by}" if found.decided_by else ""
        note = [f"Comment: {found.comment}"] if found.comment else []
        deny(
            f"approval request {found.id} was {state}{by}",
            note,
            ["Change what the approver objected to, then run again (a new request is made)"],
        )
    if not store.use(found.id, gate.run_id):
        deny(f"approval request {found.id} was already used by another run", [], ["Run again to request a new one"])
    comment = f" ({found.comment})" if found.comment else ""
    click.echo(f"Approved by {found.decided_by}{comment}", err=True)
    gate.events.append(
        ApprovalUsed(
            gate.run_id,
            request_id=found.id,
            user=user,
            approver=found.decided_by,
            plan_hash=digest,
            comment=found.comment,
        )
    )


def _wait(store: ApprovalStore, rid: str, policy: Policy | None, ttl: float) -> Any:
    """Poll the request until it is decided or expires; Ctrl+C cancels it (exit 130)."""
    click.echo("Waiting for approval... (Ctrl+C to cancel)", err=True)
    deadline = time.monotonic() + ttl
    try:
        while True:
            found = store.get(rid)
            if found is None:
                fail(ExitCode.CONFIG, f"Approval request {rid} disappeared from {store.path}")
            if found.state(clock(policy)) != "pending" or time.monotonic() >= deadline:
                return found
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        store.cancel(rid)
        click.echo(f"\nCancelled approval request {rid}.", err=True)
        sys.stderr.flush()
        raise Exit(ExitCode.INTERRUPTED) from None
