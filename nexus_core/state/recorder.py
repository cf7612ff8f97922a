"""The event subscriber that checkpoints a run into the state store.

Checkpoints are transactions at the moments a crash could make them matter:

* before a command starts (``command.start``): its task and host are marked running, so
  that a resume asks the host what became of the command;
* when a host is done with a task (``host.stop``), before its status files are removed
  (with its commands' outcomes, in the same transaction);
* when a task ends (``task.stop``) and when the run ends.

Other rows (a task or host starting, a command's outcome) join the next checkpoint: until
then the host's status files (nexus_core.markers) say how the command ended, so a crash
loses at most what was running, never what a resume needs. A one-command task costs two
checkpoints per host (its start, its end), which hosts reaching them together share in one
transaction (:meth:`StateRecorder.after`).
"""

from __future__ import annotations

import threading
from typing import Any

from nexus_core import events as ev
from nexus_core.state.store import StateStore


class StateRecorder:
    """Writes task, host and command outcomes of one run as its events arrive.

    Called under the event bus's lock, it only queues rows (in event order). A checkpoint's
    transaction is written by :meth:`after`, which the bus calls in the emitting thread
    outside its lock: a group commit. The first thread to get there writes every row queued
    so far, by any thread, in one transaction; the others find theirs written and go on. Each
    emitter still returns only once its own checkpoint is on disk, so what a resume relies on
    is unchanged; what changes is that a thousand hosts starting their commands share a few
    transactions, where each used to hold the bus (and every other host's events) through
    its own commit: 85 % of the time the bus was held at 250 hosts.
    """

    #: Events whose rows must be on disk before their emitter goes on (see :meth:`after`).
    GROUP_COMMIT = frozenset({"command.start", "host.stop", "task.stop"})

    #: What the bus hands this subscriber (and :meth:`after`): the events it writes rows for or
    #: checkpoints on (``EventBus.subscribe``); every other event skips it.
    subscribed_events = GROUP_COMMIT | {
        "task.start",
        "host.start",
        "command.stop",
        "handler.notify",
        "handler.stop",
        "cloud.provisioned",
        "cloud.terminated",
        "pipeline.exception",
        "pipeline.stop",
    }

    def __init__(self, store: StateStore, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self._pending: list[tuple[str, tuple[Any, ...]]] = []
        self._queued = 0  # rows queued so far
        self._written = 0  # rows on disk so far (a prefix of the queued ones, in order)
        self._rows = threading.Lock()  # guards _pending and _queued
        self._commit = threading.Lock()  # one transaction at a time, rows in queue order
        self._waiting: list[threading.Lock] = []  # threads waiting for a transaction to end

    def _defer(self, sql: str, args: tuple[Any, ...]) -> None:
        with self._rows:
            self._pending.append((sql, args))
            self._queued += 1

    def flush(self) -> None:
        """Write every row queued so far in one transaction (unless another thread just did).

        The thread that finds no transaction under way writes; the others each wait on a lock
        of their own that the writer releases when its transaction ends, then look again. (They
        used to queue on the writer's lock and take it one after another only to find their
        rows written: 343 threads were found there in a 1,000-host run, each hand-over waiting
        for the GIL.)
        """
        wanted = self._queued
        for _ in range(1_000_000):  # bounded: each round, a transaction ends or this one writes
            if self._written >= wanted:
                return
            if self._commit.acquire(blocking=False):
                try:
                    self._write()
                finally:
                    self._commit.release()
                    with self._rows:
                        waiting, self._waiting = self._waiting, []
                    for lock in waiting:
                        lock.release()
                continue
            mine = threading.Lock()
            mine.acquire()
            with self._rows:
                # Wait only while a transaction is under way: its writer releases the waiting
                # under this same lock once it has let go of the commit.
                if self._written >= wanted or not self._commit.locked():
                    continue
                self._waiting.append(mine)
            mine.acquire(timeout=5.0)

    def _write(self) -> None:
        with self._rows:
            pending, self._pending = self._pending, []
            upto = self._queued
        if pending:
            with self.store.transaction() as cur:
                for sql, args in pending:
                    cur.execute(sql, args)
        self._written = upto

    def after(self, event: ev.Event) -> None:
        """The bus's ``after`` hook: a checkpoint's emitter waits here until its rows are written."""
        if event.name in self.GROUP_COMMIT:
            self.flush()

    def __call__(self, event: ev.Event) -> None:
        handler = getattr(self, "on_" + event.name.replace(".", "_"), None)
        if handler is not None:
            handler(event)

    def on_task_start(self, e: ev.TaskStart) -> None:
        self._defer(
            "UPDATE tasks SET status = 'running', attempts = attempts + 1, started = ? WHERE run_id = ? AND task = ?",
            (e.ts, self.run_id, e.task),
        )

    def on_task_stop(self, e: ev.TaskStop) -> None:
        self._defer(
            "UPDATE tasks SET status = ?, ended = ?, last_error = ? WHERE run_id = ? AND task = ?",
            (e.status, e.ts, e.reason or None, self.run_id, e.task),
        )

    def on_host_start(self, e: ev.HostStart) -> None:
        self._defer(
            "INSERT INTO hosts (run_id, task, host, status, started) VALUES (?, ?, ?, 'running', ?)"
            " ON CONFLICT (run_id, task, host) DO UPDATE SET status = 'running', started = excluded.started,"
            " ended = NULL, reason = NULL",
            (self.run_id, e.task, e.host, e.ts),
        )

    def on_host_stop(self, e: ev.HostStop) -> None:
        # One transaction with the host's deferred rows (its commands' outcomes), not one for
        # the host row and another for them: a checkpoint fewer per host and task, and the
        # host is never recorded as done without its commands.
        self._defer(
            "INSERT INTO hosts (run_id, task, host, status, ended, reason) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (run_id, task, host) DO UPDATE SET status = excluded.status, ended = excluded.ended,"
            " reason = excluded.reason",
            (self.run_id, e.task, e.host, e.status, e.ts, e.reason or None),
        )

    # A command's own start is not written: the host row says the host is in progress, and
    # on resume the first unfinished command of such a host is asked about on the host
    # itself (nexus_core.markers). Its checkpoint (the rows queued before it) is written by
    # after(), in GROUP_COMMIT.

    def on_command_stop(self, e: ev.CommandStop) -> None:
        self._defer(
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

    # A notification is a checkpoint of its own: once the operation that notified is recorded
    # as done, a resume will not run it again, so the notification must not be lost.

    def on_handler_notify(self, e: ev.HandlerNotify) -> None:
        self._defer(
            "INSERT INTO notifications (run_id, task, host, handler, status, notified)"
            " VALUES (?, ?, ?, ?, 'pending', ?)"
            " ON CONFLICT (run_id, task, host, handler) DO UPDATE SET status = 'pending', ended = NULL",
            (self.run_id, e.task, e.host, e.handler, e.ts),
        )
        self.flush()

    def on_handler_stop(self, e: ev.HandlerStop) -> None:
        self._defer(
            "UPDATE notifications SET status = ?, ended = ? WHERE run_id = ? AND task = ? AND host = ? AND handler = ?",
            (e.status, e.ts, self.run_id, e.task, e.host, e.handler),
        )
        self.flush()

    # No write on pipeline.interrupt: it is emitted from the signal handler, which may have
    # interrupted this very subscriber inside a transaction. Deferred rows wait for the next
    # checkpoint; nothing a resume needs is among them (the hosts' status files are).

    def on_cloud_provisioned(self, e: Any) -> None:
        self._defer(
            "INSERT OR REPLACE INTO cloud_instances (run_id, provider, instance, agent, hourly_price, launched) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (self.run_id, e.provider, e.instance, e.agent, e.hourly_price, e.ts),
        )
        self.flush()  # money is being spent: on disk at once

    def on_cloud_terminated(self, e: Any) -> None:
        self._defer(
            "UPDATE cloud_instances SET ended = ?, cost = ? WHERE run_id = ? AND provider = ? AND instance = ?",
            (e.ts, e.cost, self.run_id, e.provider, e.instance),
        )
        self.flush()

    def on_pipeline_exception(self, e: ev.PipelineException) -> None:
        self.flush()

    def on_pipeline_stop(self, e: ev.PipelineStop) -> None:
        self.flush()
        with self._commit:  # the store's one connection: never beside a group commit
            self.store.end_run(self.run_id, e.status, e.exit_code)
