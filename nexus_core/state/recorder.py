"""The event subscriber that checkpoints a run into the state store.

One transaction per change: after every command and every task the database holds what
happened, so a crash at any instant loses at most the command that was running.
"""

from __future__ import annotations

from nexus_core import events as ev
from nexus_core.state.store import StateStore


class StateRecorder:
    """Writes task, host and command outcomes of one run as its events arrive."""

    def __init__(self, store: StateStore, run_id: str) -> None:
        self.store = store
        self.run_id = run_id

    def __call__(self, event: ev.Event) -> None:
        handler = getattr(self, "on_" + event.name.replace(".", "_"), None)
        if handler is not None:
            handler(event)

    def on_task_start(self, e: ev.TaskStart) -> None:
        self.store.execute(
            "UPDATE tasks SET status = 'running', attempts = attempts + 1, started = ? WHERE run_id = ? AND task = ?",
            (e.ts, self.run_id, e.task),
        )

    def on_task_stop(self, e: ev.TaskStop) -> None:
        self.store.execute(
            "UPDATE tasks SET status = ?, ended = ?, last_error = ? WHERE run_id = ? AND task = ?",
            (e.status, e.ts, e.reason or None, self.run_id, e.task),
        )

    def on_host_start(self, e: ev.HostStart) -> None:
        self.store.execute(
            "INSERT INTO hosts (run_id, task, host, status, started) VALUES (?, ?, ?, 'running', ?)"
            " ON CONFLICT (run_id, task, host) DO UPDATE SET status = 'running', started = excluded.started,"
            " ended = NULL, reason = NULL",
            (self.run_id, e.task, e.host, e.ts),
        )

    def on_host_stop(self, e: ev.HostStop) -> None:
        self.store.execute(
            "INSERT INTO hosts (run_id, task, host, status, ended, reason) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (run_id, task, host) DO UPDATE SET status = excluded.status, ended = excluded.ended,"
            " reason = excluded.reason",
            (self.run_id, e.task, e.host, e.status, e.ts, e.reason or None),
        )

    # A command's start is not written: the host row says the host is in progress, and on
    # resume the first unfinished command of such a host is asked about on the host itself
    # (nexus_core.markers). One transaction per command instead of two.

    def on_command_stop(self, e: ev.CommandStop) -> None:
        self.store.execute(
            "INSERT INTO commands (run_id, task, host, idx, command, status, exit_code, attempts, started, ended)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (run_id, task, host, idx) DO UPDATE SET status = excluded.status,"
            " exit_code = excluded.exit_code, attempts = excluded.attempts, ended = excluded.ended",
            (
                self.run_id,
                e.task,
                e.host,
                e.index,
                e.command,
                e.status,
                e.exit_code,
                e.attempt,
                e.ts - e.duration,
                e.ts,
            ),
        )

    def on_pipeline_stop(self, e: ev.PipelineStop) -> None:
        self.store.end_run(self.run_id, e.status, e.exit_code)
