"""CLI for durable run state: resume decisions for ``nexus run``, ``nexus resume``, ``nexus pipelines``."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Any

import rich_click as click

from nexus_core.cli import (
    EXIT_CONFIG,
    Exit,
    config_option,
    execute,
    fail,
    format_option,
    load,
    main,
    make_plan,
)
from nexus_core.output.style import Style

if TYPE_CHECKING:
    from nexus_core.plan import Plan
    from nexus_core.state.resume import ResumePoint
    from nexus_core.state.store import RunRecord, StateStore


def open_store(required: bool = False) -> StateStore | None:
    """The state database; None (with a warning) when it cannot be used and is not required."""
    from nexus_core.state.paths import state_db
    from nexus_core.state.store import StateError, StateStore

    try:
        return StateStore(state_db())
    except StateError as exc:
        if required:
            fail(
                EXIT_CONFIG,
                "Cannot open the run-state database",
                [str(exc)],
                ["Check the permissions of $XDG_STATE_HOME/nexus (or set NEXUS_STATE_DB)"],
            )
        click.echo(f"nexus: warning: {exc}; this run is not recorded and cannot be resumed", err=True)
        return None


def check_resumable(record: RunRecord, plan: Plan, point: ResumePoint, force: bool, interactive: bool) -> None:
    """Refuse (exit 2) when the remaining plan changed, or a non-idempotent task may have run."""
    from nexus_core.state.resume import plan_changes

    changes = plan_changes(record, plan, point)
    if changes and not force:
        fail(EXIT_CONFIG, f"Cannot resume run {record.id}: the nexusfile changed the remaining work",
             changes, ["Start fresh with --no-resume (or discard it: nexus pipelines discard " + record.id + ")",
                       "Or resume anyway with --force"])  # fmt: skip
    risky = sorted(t for t in point.in_progress() if plan.tasks[t].options.get("idempotent") is False)
    if risky and not force:
        names = ", ".join(risky)
        question = f"Task(s) {names} are not idempotent and may have run partly. Run them again?"
        if not interactive or not click.confirm(question, default=False, err=True):
            fail(
                EXIT_CONFIG,
                f"Not resuming: {names} declared idempotent=False and may have run partly",
                [f"Run {record.id} stopped inside {names}"],
                ["Check the hosts by hand, then resume with --force", "Or start fresh with --no-resume"],
            )


def decide_resume(
    store: StateStore, plan: Plan, *, resume: bool, force: bool, fmt: str
) -> tuple[RunRecord | None, ResumePoint | None]:
    """For ``nexus run``: offer (terminal) or apply (``--resume``) a resume of an interrupted run."""
    from nexus_core.state.resume import describe, resume_point

    previous = store.last_interrupted(plan.nexusfile, list(plan.requested))
    if previous is None:
        if resume:
            click.echo("nexus: no interrupted run of this pipeline to resume; starting fresh", err=True)
        return None, None
    point = resume_point(previous, plan)
    style = Style.detect(sys.stderr)
    interactive = style.interactive and fmt != "json"
    if not resume:
        if not interactive:
            click.echo(
                f"nexus: run {previous.id} of this pipeline was interrupted; starting fresh "
                "(use --resume to continue it)",
                err=True,
            )
            return None, None
        for line in describe(previous, point, plan):
            click.echo(line, err=True)
        answer = click.prompt("Resume? [Y/n/discard]", default="y", show_default=False, err=True,
                              type=click.Choice(["y", "n", "discard", "Y", "N"], case_sensitive=False),
                              show_choices=False)  # fmt: skip
        answer = answer.lower()
        if answer == "discard":
            store.discard(previous.id)
            click.echo(f"Discarded run {previous.id}.", err=True)
            return None, None
        if answer == "n":
            return None, None
    check_resumable(previous, plan, point, force, interactive)
    return previous, point


def run_recorded(
    plan: Plan, *, store: StateStore | None, record: RunRecord | None, point: ResumePoint | None, **kwargs: Any
) -> None:
    """Execute ``plan`` with the state store (if any) attached; exit with the run's code."""
    result = execute(plan, store=store, resume_record=record, resume=point, **kwargs)
    raise Exit(result.exit_code)


# --- nexus resume --------------------------------------------------------------------------


@main.command()
@click.argument("run_id", required=False)
@click.option("--force", is_flag=True, help="Resume even if the nexusfile changed the remaining work.")
@click.option("-v", "--verbose", is_flag=True, help="Stream every output line.")
@click.option("-q", "--quiet", is_flag=True, help="One line per task.")
@click.option("--continue-on-error", is_flag=True, help="Run everything that does not depend on a failure.")
@config_option
@format_option
def resume(
    run_id: str | None,
    force: bool,
    verbose: bool,
    quiet: bool,
    continue_on_error: bool,
    config_path: str | None,
    fmt: str,
) -> None:
    """Resume an interrupted run (by default the newest one of this nexusfile).

    Nothing that finished is run again; tasks that were in progress continue on each host
    from the first command that did not finish.
    """
    from nexus_core.loader import NexusfileNotFound, find_nexusfile
    from nexus_core.loader import load_project as load_file
    from nexus_core.state.resume import resume_point

    store = open_store(required=True)
    assert store is not None
    if run_id:
        record = store.get(run_id)
        if record is None:
            fail(EXIT_CONFIG, f"No run {run_id!r}", suggestions=["List runs with: nexus pipelines"])
    else:
        try:
            path = find_nexusfile(config_path)
        except NexusfileNotFound as exc:
            fail(EXIT_CONFIG, "No nexusfile found", [str(exc)], ["Pass a run id: nexus resume RUN_ID"])
        candidates = [r for r in store.runs(limit=200, nexusfile=path) if r.interrupted]
        if not candidates:
            fail(
                EXIT_CONFIG,
                "Nothing to resume",
                [f"No interrupted run of {path}"],
                ["List runs with: nexus pipelines --interrupted"],
            )
        record = candidates[0]
    assert record is not None
    if record.status in ("ok", "discarded") or (record.status == "running" and record.alive):
        state = "still running" if record.status == "running" else record.status
        fail(EXIT_CONFIG, f"Run {record.id} cannot be resumed: it is {state}")
    project = load_file(record.nexusfile) if config_path is None else load(config_path)
    plan = make_plan(project, record.requested, fmt)
    point = resume_point(record, plan)
    check_resumable(record, plan, point, force, Style.detect(sys.stderr).interactive)
    run_recorded(plan, store=store, record=record, point=point, fmt=fmt,
                 mode="verbose" if verbose else "quiet" if quiet else "normal",
                 continue_on_error=continue_on_error)  # fmt: skip


# --- nexus pipelines -----------------------------------------------------------------------


@main.group(invoke_without_command=True)
@click.option("--interrupted", is_flag=True, help="Only runs that were interrupted or crashed.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="How many runs.")
@format_option
@click.pass_context
def pipelines(ctx: click.Context, interrupted: bool, limit: int, fmt: str) -> None:
    """List recent runs (newest first) with their status; `discard RUN_ID` forgets one."""
    if ctx.invoked_subcommand is not None:
        return
    store = open_store(required=True)
    assert store is not None
    records = store.runs(limit=1000 if interrupted else limit)
    if interrupted:
        records = [r for r in records if r.interrupted][:limit]
    if fmt == "json":
        click.echo(json.dumps({"runs": [r.to_dict() for r in records]}))
        return
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
@click.argument("run_id")
def discard(run_id: str) -> None:
    """Forget an interrupted run: it will not be offered for resume again."""
    store = open_store(required=True)
    assert store is not None
    record = store.get(run_id)
    if record is None:
        fail(EXIT_CONFIG, f"No run {run_id!r}", suggestions=["List runs with: nexus pipelines"])
    store.discard(record.id)
    click.echo(f"Discarded run {record.id}.")
