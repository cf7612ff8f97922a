"""``nexus policy check|approvals``, ``nexus approve`` and ``nexus reject``: the compliance commands."""

from __future__ import annotations

import json
from typing import Any, NoReturn

import rich_click as click

from nexus_core.cli.application import ExitCode, config_option, fail, format_option, log_options, main, setup_logs


@main.group()
def policy() -> None:
    """Explain the RBAC policy's decisions and list approval requests (see docs/compliance.md)."""


@policy.command(name="check")
@click.argument("task", required=False)
@click.option("--user", "user", metavar="NAME", help="Check for this user (default: you); their Unix groups count.")
@click.option(
    "--action",
    type=click.Choice(["run", "list", "status", "logs", "approve", "admin"]),
    default="run",
    show_default=True,
    help="The permission to check.",
)
@click.option(
    "--on", "targets", metavar="GROUP", multiple=True, help="Host groups the task runs on (default: the nexusfile's)."
)
@config_option
@format_option
@log_options
def check_command(
    task: str | None,
    user: str | None,
    action: str,
    targets: tuple[str, ...],
    config_path: str | None,
    fmt: str,
    log_level: str | None = None,
    log_format: str = "text",
) -> None:
    """Say whether USER may do ACTION (run TASK by default), and which rule decided it.

    Exits 0 when allowed, 77 when denied, 2 when the policy file is wrong. The check is audited.
    """
    from nexus_core.policy.events import PolicyCheck
    from nexus_core.policy.gate import audit, correlation_id, policy_in_force, task_targets
    from nexus_core.policy.local import groups_of, identity

    setup_logs(log_level, log_format)
    if action == "run" and not task:
        fail(
            ExitCode.CONFIG,
            "nexus policy check needs a TASK for --action run",
            [],
            ["nexus policy check deploy", "nexus policy check --action logs"],
        )
    pol = policy_in_force()
    if pol is None:
        from nexus_core.policy import SYSTEM_POLICY
        from nexus_core.policy.local import POLICY_VARIABLE

        fail(
            ExitCode.CONFIG,
            "No policy is in force",
            [f"{SYSTEM_POLICY} does not exist ({POLICY_VARIABLE} not set or not trusted)"],
            ["Without a policy every user may do everything; see docs/compliance.md"],
        )
    name, groups = identity() if not user else (user, groups_of(user))
    if user and not _known_user(user):  # a certificate's name, or a typo: say which rules count
        click.echo(f"Note: {user!r} is not a user of this machine: only rules and assignments naming "
                   "that user count, no Unix group", err=True)  # fmt: skip
    where = list(targets)
    if action == "run" and task and not where:
        found, where = _targets(config_path, task, task_targets)
        if found is not None and task not in found:
            from nexus_core.options import suggest

            close = suggest(task, found)
            click.echo(f"Note: the nexusfile has no task {task!r}" + (f" (did you mean {close!r}?)" if close else "")
                       + ": checked as named, with no host groups", err=True)  # fmt: skip
    decision = pol.decide(name, groups, action, task or "", where)
    audit(
        [
            PolicyCheck(
                correlation_id(),
                subject=name,
                action=action,
                target=task or "",
                allowed=decision.allowed,
                rule=decision.rule,
                reason="nexus policy check",
            )
        ]
    )
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    "event": "policy.check",
                    "user": name,
                    "groups": list(groups),
                    "action": action,
                    "task": task or "",
                    "on": where,
                    "allowed": decision.allowed,
                    "rule": decision.rule,
                    "roles": list(decision.roles),
                    "assigned_by": list(decision.via),
                }
            )
        )
    else:
        verdict = "ALLOWED" if decision.allowed else "DENIED"
        what = f"{action} {task}" if task else action
        click.echo(
            f"{verdict}: {name} may{'' if decision.allowed else ' not'} {what}"
            + (f" on {', '.join(where)}" if where else "")
        )
        click.echo(f"  rule:   {decision.rule}")
        click.echo(f"  roles:  {', '.join(decision.roles) or 'none'}")
        click.echo(f"  via:    {'; '.join(decision.via) or 'no assignment matches'}")
        click.echo(f"  groups: {', '.join(groups) or 'none'}")
        click.echo(f"  policy: {pol.path}")
    raise SystemExit(0 if decision.allowed else int(ExitCode.DENIED))


def _targets(config_path: str | None, task: str, task_targets: Any) -> tuple[list[str] | None, list[str]]:
    """The nexusfile's task names (None without a nexusfile that loads) and the task's ``on=``
    (empty when the nexusfile does not define it)."""
    from nexus_core.loader import NexusfileNotFound, find_nexusfile, load_project

    try:
        project = load_project(find_nexusfile(config_path))
    except (NexusfileNotFound, Exception):  # noqa: BLE001 - explaining needs no valid nexusfile
        return None, []
    return list(project.tasks), list(task_targets(project, task)) if task in project.tasks else []


def _known_user(name: str) -> bool:
    """True when ``name`` is a user of this machine."""
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@policy.command(name="approvals")
@click.argument("request_id", required=False)
@click.option("--all", "everything", is_flag=True, help="Every request, not only pending ones.")
@format_option
def approvals(request_id: str | None, everything: bool, fmt: str) -> None:
    """List pending approval requests, or show one (REQUEST_ID) with its dry-run output.

    Under a policy, for users who may approve (every request) or list (their own requests,
    and any request by its id); no role at all is refused (exit 77)."""
    from nexus_core.policy.gate import _open, check, clock, policy_in_force
    from nexus_core.policy.local import identity

    pol = policy_in_force()
    user, groups = identity()
    approver = pol is None or pol.decide(user, groups, "approve").allowed
    if not approver:
        check("list")  # the plans and requesters of others' requests are no one's business
    store = _open(pol)
    try:
        now = clock(pol)
        if request_id:
            found = store.get(request_id)
            if found is None:
                _unknown(request_id, store.path)
            if fmt == "json":
                click.echo(json.dumps({**found.to_dict(now), "dry_run": found.dry_run}))
                return
            for line in _describe(found, now):
                click.echo(line)
            click.echo("")
            click.echo(found.dry_run)
            return
        rows = store.listing(now, everything=everything)
        if not approver:
            rows = [a for a in rows if a.requester == user]
    finally:
        store.close()
    if fmt == "json":
        click.echo(json.dumps({"approvals": [a.to_dict(now) for a in rows]}))
        return
    if not rows:
        click.echo("No pending approval requests." if not everything else "No approval requests.")
    for a in rows:
        click.echo(f"{a.id}  {a.state(now):9}  {a.requester:12}  {', '.join(a.tasks)}")


def _describe(found: Any, now: float) -> list[str]:
    import datetime as dt

    def stamp(t: float) -> str:
        return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")

    lines = [
        f"Request:   {found.id} ({found.state(now)})",
        f"Requester: {found.requester}",
        f"Tasks:     {', '.join(found.tasks)}",
        f"Nexusfile: {found.nexusfile}",
        f"Plan hash: {found.plan_hash}",
        f"Requested: {stamp(found.created)}; expires {stamp(found.expires)}",
    ]
    if found.decided_by:
        lines.append(f"Decided:   by {found.decided_by}" + (f": {found.comment}" if found.comment else ""))
    return lines


def _unknown(request_id: str, path: str) -> NoReturn:
    fail(
        ExitCode.CONFIG,
        f"No approval request {request_id}",
        [f"Approvals database: {path}"],
        ["List them: nexus policy approvals"],
    )


def _decide(request_id: str, comment: str, approve: bool, fmt: str) -> None:
    from nexus_core.policy.events import ApprovalGranted, ApprovalRejected, PolicyCheck
    from nexus_core.policy.gate import _open, audit, clock, correlation_id, deny, policy_in_force
    from nexus_core.policy.local import identity

    pol = policy_in_force()
    user, groups = identity()
    store = _open(pol)
    verb = "approve" if approve else "reject"
    try:
        found = store.get(request_id)
        if found is None:
            _unknown(request_id, store.path)
        rid = correlation_id()
        if pol is not None:
            # Each task of the request on its own: matched against the tasks joined by commas,
            # an approver of migrate* could approve "migrate_db, deploy_prod".
            decisions = [pol.decide(user, groups, "approve", task) for task in found.tasks or ("",)]
            decision = next((d for d in decisions if not d.allowed), decisions[0])
            allowed, rule = decision.allowed, decision.rule
            if not allowed and decision.target:
                rule = f"{rule} (task {decision.target!r})"
        else:
            allowed, rule = True, "no policy in force: any other user may approve"
        if allowed and user == found.requester:
            allowed, rule = False, "separation of duties: the requester cannot decide their own request"
        audit([PolicyCheck(rid, subject=user, action="approve", target=request_id, allowed=allowed, rule=rule)])
        if not allowed:
            deny(
                f"{user} may not {verb} request {request_id}",
                [f"Rule: {rule}", f"Requested by {found.requester}"],
                ["Another user holding the approve permission must decide it"],
            )
        now = clock(pol)
        state = found.state(now)
        # The decision and its audit record stand or fall together: written in a transaction
        # that is committed only once a required audit sink took the record (fail closed: an
        # approval that was never audited can never be used).
        store.db.execute("BEGIN IMMEDIATE")
        try:
            if state != "pending" or not store.decide(
                request_id, "approved" if approve else "rejected", user, comment, now
            ):
                latest = store.get(request_id) or found
                fail(
                    ExitCode.CONFIG,
                    f"Approval request {request_id} is {latest.state(now)}, not pending",
                    [f"Requested by {found.requester} for {', '.join(found.tasks)}"],
                    ["Only a pending, unexpired request can be approved or rejected"],
                )
            kind = ApprovalGranted if approve else ApprovalRejected
            audit(  # a required audit sink that cannot write makes this exit 2
                [
                    kind(
                        rid,
                        request_id=request_id,
                        user=user,
                        requester=found.requester,
                        plan_hash=found.plan_hash,
                        comment=comment,
                    )
                ],
                strict=True,
            )
        except BaseException:
            store.db.execute("ROLLBACK")
            raise
        store.db.execute("COMMIT")
    finally:
        store.close()
    done = "Approved" if approve else "Rejected"
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    "event": f"approval.{'granted' if approve else 'rejected'}",
                    "id": request_id,
                    "by": user,
                    "requester": found.requester,
                    "comment": comment,
                }
            )
        )
    else:
        click.echo(f"{done} request {request_id} of {found.requester} ({', '.join(found.tasks)}) as {user}.")


@main.command()
@click.argument("request_id")
@click.option("--comment", default="", help="Why; recorded with the approval and shown to the requester.")
@format_option
def approve(request_id: str, comment: str, fmt: str) -> None:
    """Approve the pending request REQUEST_ID (not your own; needs the approve permission).

    See what it would do first: nexus policy approvals REQUEST_ID.
    """
    _decide(request_id, comment, True, fmt)


@main.command()
@click.argument("request_id")
@click.option("--comment", default="", help="Why; recorded with the rejection and shown to the requester.")
@format_option
def reject(request_id: str, comment: str, fmt: str) -> None:
    """Reject the pending request REQUEST_ID (not your own; needs the approve permission)."""
    _decide(request_id, comment, False, fmt)
