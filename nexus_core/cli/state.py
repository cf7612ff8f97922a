"""``nexus resume`` and ``nexus pipelines``: the runs recorded in the state database."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING

import rich_click as click

from nexus_core.cli.application import (
    ExitCode,
    closing,
    config_option,
    fail,
    format_option,
    load,
    main,
    make_plan,
    open_store,
)
from nexus_core.cli.running import check_resumable, run_recorded
from nexus_core.output.style import Style

if TYPE_CHECKING:
    from nexus_core.state.store import RunRecord, StateStore


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
    from nexus_core.loader import load_project as load_file
    from nexus_core.state.resume import resume_point

    store = open_store(required=True)
    assert store is not None
    with closing(store):
        record = _record_to_resume(store, run_id, config_path)
        project = load_file(record.nexusfile) if config_path is None else load(config_path)
        plan = make_plan(project, record.requested, fmt, cache=store)
        point = resume_point(record, plan)
        check_resumable(record, plan, point, force, Style.detect(sys.stderr).interactive)
        run_recorded(plan, store=store, record=record, point=point, fmt=fmt,
                     mode="verbose" if verbose else "quiet" if quiet else "normal",
                     continue_on_error=continue_on_error)  # fmt: skip


def _record_to_resume(store: StateStore, run_id: str | None, config_path: str | None) -> RunRecord:
    """The run ``nexus resume`` continues: RUN_ID, else the newest interrupted one of the nexusfile."""
    from nexus_core.loader import NexusfileNotFound, find_nexusfile

    if run_id:
        record = store.get(run_id)
        if record is None:
            fail(ExitCode.CONFIG, f"No run {run_id!r}", suggestions=["List runs with: nexus pipelines"])
    else:
        try:
            path = find_nexusfile(config_path)
        except NexusfileNotFound as exc:
            fail(ExitCode.CONFIG, "No nexusfile found", [str(exc)], ["Pass a run id: nexus resume RUN_ID"])
        candidates = [r for r in store.runs(limit=200, nexusfile=path) if r.interrupted]
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
@click.pass_context
def pipelines(ctx: click.Context, interrupted: bool, limit: int, fmt: str) -> None:
    """List recent runs (newest first) with their status; `discard RUN_ID` forgets one."""
    if ctx.invoked_subcommand is not None:
        return
    store = open_store(required=True)
    assert store is not None
    with closing(store):
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
    with closing(store):
        record = store.get(run_id)
        if record is None:
            fail(ExitCode.CONFIG, f"No run {run_id!r}", suggestions=["List runs with: nexus pipelines"])
        store.discard(record.id)
    click.echo(f"Discarded run {record.id}.")
