"""``nexus logs``: print (or follow) the kept output of a run, chosen by run id, task and host."""

from __future__ import annotations

from collections.abc import Sequence

import rich_click as click

from nexus_core import runlogs


def show_logs(run_id: str | None, task: str | None, hosts: Sequence[str], *, failed: bool, follow: bool) -> None:
    """Print the logs of ``run_id`` (default: the newest run); exit 2 when there is nothing to show."""
    from nexus_core.cli.application import ExitCode, fail, no_run, open_store
    from nexus_core.options import suggest
    from nexus_core.output.safe import clean  # kept output is a host's: its escapes shown, never obeyed
    from nexus_core.state.paths import state_dir

    store = open_store(required=True)
    assert store is not None
    record = store.get(run_id) if run_id else next(iter(store.runs(limit=1)), None)
    if record is None:
        if run_id and store.get(run_id) is None and not task:
            # `nexus logs TASK`: the word is a task, not a run id; the newest run that has it
            newest = next((r for r in store.runs(limit=50) if run_id in r.plan.get("tasks", {})), None)
            if newest is not None:
                record, task = newest, run_id
        if record is None:
            looks_like_id = all(c in "0123456789abcdef-" for c in run_id or "x")
            if run_id and not task and not looks_like_id and not store.ids_like(run_id):
                fail(ExitCode.CONFIG, f"No run id starts with {run_id!r}, and no recorded run has a task "
                     f"{run_id!r}", suggestions=["Runs and their tasks: nexus pipelines",
                                                 "A task's logs: nexus logs TASK (once it ran)"])  # fmt: skip
            if run_id:
                no_run(store, run_id)
            fail(ExitCode.CONFIG, "No runs recorded yet", suggestions=["List runs with: nexus pipelines"])
    root = runlogs.logs_dir(state_dir())
    files = runlogs.run_files(root, record.id)
    tasks = list(record.plan.get("tasks", {}))
    if task is not None and task not in tasks:
        close = suggest(task, tasks)
        fail(ExitCode.CONFIG, f"Run {record.id} has no task {task!r}",
             suggestions=[f"did you mean {close!r}?" if close else "tasks: " + ", ".join(tasks)])  # fmt: skip
    only: set[tuple[str, str]] | None = None
    if failed:
        only = {key for key, row in record.hosts.items() if row.get("status") not in ("ok", "skipped", "running")}
    if follow:

        def running() -> bool:
            fresh = store.get(record.id)
            return fresh is not None and fresh.status == "running" and fresh.alive

        for line in runlogs.follow(root, record.id, lambda fs: runlogs.select(fs, task, hosts, only), running):
            click.echo(clean(line))
        return
    chosen = runlogs.select(files, task, hosts, only)
    if not chosen:
        if not files:
            fail(ExitCode.CONFIG, f"No logs to show for run {record.id}: no output was kept for it",
                 suggestions=["Logs are kept for log_retention_days (default 14)"])  # fmt: skip
        if only is not None and not only:
            fail(ExitCode.CONFIG, f"No logs to show for run {record.id}: nothing failed in it",
                 suggestions=["Drop --failed to see every host's output"])  # fmt: skip
        seen = sorted({f.host for f in files if task is None or f.task == task})
        if task is not None and not seen and not hosts:  # the task left no output at all
            row = record.tasks.get(task) or {}
            status, reason = str(row.get("status") or ""), str(row.get("reason") or "")
            if status in ("skipped", "pending", ""):
                why = "it did not run" + (f" ({reason})" if reason else f" ({status})" if status else "")
            else:
                why = f"it {status} without printing anything" + (f" ({reason})" if reason else "")
            fail(ExitCode.CONFIG, f"No logs to show for task {task!r} of run {record.id}: {why}",
                 suggestions=[f"See the run's tasks: nexus logs {record.id}"])  # fmt: skip
        what = f"no host of task {task!r} matches" if task else "no host matches"
        pattern = " ".join(f"-H {h!r}" for h in hosts) if hosts else "these filters"
        fail(ExitCode.CONFIG, f"No logs to show for run {record.id}: {what} {pattern}",
             suggestions=["hosts with logs: " + ", ".join(seen[:10]) + (" ..." if len(seen) > 10 else "")]
             if seen else [])  # fmt: skip
    if not run_id:  # the newest run of any project: say which one it is
        click.echo(clean(f"# run {record.id} of {record.nexusfile}"), err=True)
    for line in runlogs.render(chosen):
        click.echo(clean(line))
