"""``nexus resume`` and ``nexus pipelines``: the runs recorded in the state database."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Any

import rich_click as click

from nexus_core.cli.application import (
    Exit,
    ExitCode,
    Number,
    closing,
    config_option,
    fail,
    format_option,
    load,
    lock_options,
    log_options,
    main,
    make_plan,
    no_run,
    open_store,
    plugin_manager,
    policy_applies,
    setup_logs,
)
from nexus_core.cli.running import check_resumable, lock_project, run_recorded
from nexus_core.complete import complete
from nexus_core.output.style import Style

if TYPE_CHECKING:
    from nexus_core.state.store import RunRecord, StateStore


# --- nexus resume --------------------------------------------------------------------------


@main.command()
@click.argument("run_id", required=False, shell_complete=lambda *a: complete("run_ids", *a))
@click.option("--force", is_flag=True, help="Resume even if the nexusfile changed the remaining work.")
@click.option("-v", "--verbose", is_flag=True, help="Stream every output line.")
@click.option("-q", "--quiet", is_flag=True, help="One line per task.")
@click.option("--continue-on-error", is_flag=True, help="Run everything that does not depend on a failure.")
@click.option(
    "--force-handlers",
    is_flag=True,
    help="Run notified handlers on a host even when a later command of the task failed there.",
)
@click.option(
    "--override-window",
    is_flag=True,
    help="Emergency: resume a task outside its change window (needs --reason; audited).",
)
@click.option("--reason", metavar="TEXT", default="", help="Why the change window is overridden (recorded).")
@config_option
@format_option
@log_options
@lock_options
def resume(
    run_id: str | None,
    force: bool,
    verbose: bool,
    quiet: bool,
    continue_on_error: bool,
    config_path: str | None,
    fmt: str,
    log_level: str | None = None,
    log_format: str = "text",
    no_wait: bool = False,
    lock_timeout: float | None = None,
    force_handlers: bool = False,
    override_window: bool = False,
    reason: str = "",
) -> None:
    """Resume an interrupted or failed run (default: the newest if it failed, else the newest interrupted).

    Nothing that finished is run again; tasks that were in progress continue on each host
    from the first command that did not finish.
    """
    setup_logs(log_level, log_format)
    if run_id is not None and not run_id.strip():  # "" quietly meant the newest run
        fail(ExitCode.CONFIG, "An empty RUN_ID", [], ["Leave it out for the newest run, or list runs: nexus pipelines"])
    store = open_store(required=True)
    assert store is not None
    with closing(store):
        record = _record_to_resume(store, run_id, config_path)
        from nexus_core.cli.run import _can_prompt
        from nexus_core.cli.running import run_secrets

        run_secrets(interactive=_can_prompt())  # the resumed commands need the secrets' values again
        project = load(record.nexusfile if config_path is None else config_path)  # with the config files
        from nexus_core.cli.run import _burst

        burst = _burst(
            project, False, tasks=record.requested
        )  # the run's clouds again: its shards wait for tagged agents
        try:
            _resume(store, record, project, burst, fmt, force, verbose, quiet, continue_on_error,
                    no_wait, lock_timeout, force_handlers, override_window, reason)  # fmt: skip
        finally:
            if burst is not None:
                burst.finish()  # before the store closes: the costs go into the run's record


def _resume(
    store: StateStore,
    record: RunRecord,
    project: Any,
    burst: Any,
    fmt: str,
    force: bool,
    verbose: bool,
    quiet: bool,
    continue_on_error: bool,
    no_wait: bool,
    lock_timeout: float | None,
    force_handlers: bool,
    override_window: bool,
    reason: str,
) -> None:
    """``nexus resume`` once the run and its nexusfile are known: plan, gate, lock, run."""
    from nexus_core.state.resume import resume_point

    saved = record.options  # the task arguments and -H of the interrupted run apply again
    plan = make_plan(
        project,
        record.requested,
        fmt,
        cache=store,
        params=saved.get("params") or {},
        limit=[saved["limit"]] if saved.get("limit") else None,
        saved_discovery=record.plan.get("discovery") or (),
    )  # the hosts that run found
    gate = None
    from nexus_core.cli.run import _uses_compliance

    if policy_applies() or _uses_compliance(project):  # permission, windows, dry runs again
        from nexus_core.policy.gate import gate_run

        gate = gate_run(
            plan,
            project,
            mode="resume",
            fmt=fmt,
            override_window=override_window,
            reason=reason,
            no_wait=no_wait,
            resumes=record.id,
        )
    lock_project(store, plan.nexusfile, list(plan.requested), no_wait, lock_timeout)
    fresh = store.get(record.id)  # what the run reached, now that no other run of the project is going
    if fresh is not None and fresh.status != record.status and not fresh.interrupted:
        fail(ExitCode.CONFIG, f"Run {record.id} cannot be resumed: it is {fresh.display_status}")
    record = fresh or record
    point = resume_point(record, plan)
    check_resumable(record, plan, point, force, Style.detect(sys.stderr).interactive)
    extra: dict[str, Any] = {}
    if burst is not None:
        extra["cloud_burst"] = True  # shards on tagged agents wait where the autoscaler sees them
        burst.start()
    run_recorded(plan, store=store, record=record, point=point, fmt=fmt,
                 mode="verbose" if verbose else "quiet" if quiet else "normal",
                 continue_on_error=continue_on_error or bool(saved.get("continue_on_error")),
                 force_handlers=force_handlers, extra=extra,
                 on_session=burst.attach if burst is not None else None,
                 **({"events": gate.events} if gate else {}))  # fmt: skip


def _record_to_resume(store: StateStore, run_id: str | None, config_path: str | None) -> RunRecord:
    """The run ``nexus resume`` continues: RUN_ID, else the newest run of the nexusfile when it
    failed, else its newest interrupted one."""
    from nexus_core.loader import NexusfileNotFound, find_nexusfile

    if run_id:
        record = store.get(run_id)
        if record is None:
            no_run(store, run_id)
    else:
        try:
            path = find_nexusfile(config_path)
        except NexusfileNotFound as exc:
            fail(ExitCode.CONFIG, "No nexusfile found", [str(exc)], ["Pass a run id: nexus resume RUN_ID"])
        recent = store.runs(limit=200, nexusfile=path)
        newest = recent[0] if recent else None
        if newest is not None and newest.status == "failed":
            # the newest run failed: its summary said "Resume with: nexus resume ID" (pending
            # handlers, kept artifacts and commands cut off with their connection included);
            # an older interrupted run is not taken over it
            candidates = [newest]
        else:
            candidates = [r for r in recent if r.interrupted]
        if not candidates:
            fail(
                ExitCode.CONFIG,
                "Nothing to resume",
                [f"No interrupted run of {path}"],
                ["List runs with: nexus pipelines --interrupted"],
            )
        record = candidates[0]
    if record.status in ("ok", "discarded") or (record.status == "running" and record.alive):
        state = "still running" if record.status == "running" else record.status
        fail(ExitCode.CONFIG, f"Run {record.id} cannot be resumed: it is {state}")
    return record


# --- nexus pipelines -----------------------------------------------------------------------


@main.group(invoke_without_command=True)
@click.option("--interrupted", is_flag=True, help="Only runs that were interrupted or crashed.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="How many runs.")
@format_option
@log_options
@click.pass_context
def pipelines(
    ctx: click.Context, interrupted: bool, limit: int, fmt: str, log_level: str | None = None, log_format: str = "text"
) -> None:
    """List recent runs (newest first) with their status; `discard RUN_ID` forgets one, `prune` cleans hosts."""
    from nexus_core.state.recover import describe_recovery, recovery_note

    setup_logs(log_level, log_format)
    if ctx.invoked_subcommand is not None:
        return
    if policy_applies():
        from nexus_core.policy.gate import check

        check("status")
    store = open_store(required=True)
    assert store is not None
    with closing(store):
        records = store.runs(limit=1000 if interrupted else limit)
        note = recovery_note(store)
    if interrupted:
        records = [r for r in records if r.interrupted][:limit]
    if fmt == "json":
        click.echo(json.dumps({"runs": [r.to_dict() for r in records], **({"recovered": note} if note else {})}))
        return
    if note:
        click.echo(describe_recovery(note))
    if not records:
        click.echo("No runs recorded yet." if not interrupted else "No interrupted runs.")
        return
    s = Style.detect()
    for r in records:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.started))
        status = r.display_status
        color = {"ok": "green", "failed": "red", "interrupted": "yellow", "crashed": "yellow"}.get(status, "dim")
        done = sum(1 for t in r.tasks.values() if t["status"] == "ok")
        click.echo(
            f"{r.id}  {s.paint(f'{status:<11}', color)}  {when}  {r.pipeline:<20}  "
            f"{done}/{len(r.tasks)} tasks  {r.nexusfile}"
        )


@pipelines.command()
@click.argument("run_id", shell_complete=lambda *a: complete("run_ids", *a))
@log_options
def discard(run_id: str, log_level: str | None = None, log_format: str = "text") -> None:
    """Forget an interrupted run: it will not be offered for resume again."""
    setup_logs(log_level, log_format)
    if not run_id.strip():
        fail(ExitCode.CONFIG, "No run id given", [], ["List runs with: nexus pipelines"])
    store = open_store(required=True)
    assert store is not None
    with closing(store):
        record = store.get(run_id)
        if record is None:
            no_run(store, run_id)
        if record.status == "running" and record.alive:
            # its status files on the hosts are in use: `nexus pipelines prune` would remove them
            fail(ExitCode.CONFIG, f"Run {record.id} is still running (pid {record.pid} on {record.machine})", [],
                 [f"Stop it first (Ctrl+C where it runs, or kill {record.pid}), then discard it"])  # fmt: skip
        if record.status == "ok":
            fail(ExitCode.CONFIG, f"Run {record.id} succeeded: there is nothing to discard", [],
                 ["Discard interrupted or failed runs (nexus pipelines --interrupted lists them)"])  # fmt: skip
        if record.status == "discarded":
            click.echo(f"Run {record.id} was discarded already.")
            return
        store.discard(record.id)
        # Crashed mid-command: the commands may still run on their hosts; nobody waits for them now.
        busy = [f"{task} on {host}" for (task, host), row in record.hosts.items()
                if row.get("status") == "running"] if record.status == "running" else []  # fmt: skip
    click.echo(f"Discarded run {record.id}.")
    if busy:
        from nexus_core.cli.running import may_still_run

        click.echo(may_still_run(busy, "the run", ": discarding the run does not stop it"), err=True)


@pipelines.command()
@click.option(
    "--older-than",
    type=Number(0, min_open=True, unit="days"),
    metavar="DAYS",
    help="Remove entries of runs idle for DAYS (default: config state_retention_days, else 7).",
)
@config_option
@format_option
@log_options
def prune(
    older_than: float | None, config_path: str | None, fmt: str, log_level: str | None = None, log_format: str = "text"
) -> None:
    """Remove status files that discarded and abandoned runs left on hosts and on this machine.

    Hosts are those of the nexusfile (found as for `nexus run`, or -c); without one, only
    this machine. Entries of discarded or superseded runs go at once; others once no
    command of theirs started for the retention period.
    """
    from nexus_core.loader import NexusfileNotFound, find_nexusfile
    from nexus_core.model import LOCAL
    from nexus_core.state.leftovers import DEFAULT_RETENTION_DAYS, gone_runs, prune_hosts, prune_script

    setup_logs(log_level, log_format)
    store = open_store(required=True)
    assert store is not None
    with closing(store):
        gone = gone_runs(store, 3650)
    hosts = [LOCAL]
    config: dict[str, Any] = {}
    root = "."
    try:
        found = bool(find_nexusfile(config_path))
    except NexusfileNotFound:
        found = bool(config_path)  # an explicit path that is wrong: load() says so
    if found:
        plan = make_plan(load(config_path), (), fmt)
        config, root = dict(plan.config), plan.root
        hosts += [h for h in plan.hosts if not h.is_local]
    days = older_than or float(config.get("state_retention_days") or DEFAULT_RETENTION_DAYS)
    script = prune_script(gone, days)
    results = prune_hosts(hosts, dict(plugin_manager().registry.executors), config, root, script)
    if fmt == "json":
        click.echo(json.dumps({"retention_days": days, "hosts": [r.to_dict() for r in results]}))
    else:
        s = Style.detect()
        for r in results:
            if r.error:
                click.echo(f"{s.mark('failed')} {r.host}: {r.error}")
            else:
                n = len(r.removed)
                click.echo(f"{s.mark('ok')} {r.host}: removed {n} entr{'y' if n == 1 else 'ies'}")
    if any(r.error for r in results):
        raise Exit(ExitCode.CONNECTION)


@main.command()
@click.argument("run_id", required=False, shell_complete=lambda *a: complete("run_ids", *a))
@click.argument("task", required=False)
@click.option("-H", "--hosts", "host_patterns", metavar="HOST", multiple=True, help="Only these hosts (globs).")
@click.option("--failed", is_flag=True, help="Only the task/host pairs that did not succeed.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output until the run ends.")
@log_options
def logs(
    run_id: str | None,
    task: str | None,
    host_patterns: tuple[str, ...],
    failed: bool,
    follow: bool,
    log_level: str | None = None,
    log_format: str = "text",
) -> None:
    """Print the output of a past (or running) run: RUN_ID (default: the newest), TASK, hosts."""
    from nexus_core.logview import show_logs

    setup_logs(log_level, log_format)
    if run_id is not None and not run_id.strip():  # "" quietly meant the newest run
        fail(ExitCode.CONFIG, "An empty RUN_ID", [], ["Leave it out for the newest run, or list runs: nexus pipelines"])

    if policy_applies():
        from nexus_core.policy.gate import check

        check("logs", task or "")
    show_logs(run_id, task, list(host_patterns), failed=failed, follow=follow)
