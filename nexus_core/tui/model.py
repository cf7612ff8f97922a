"""What the dashboard shows, as plain data: fed by a run's events or by its recorded state.

The model imports no Textual: it is the dashboard's state (tasks, hosts, log lines,
failures), updated by :meth:`DashboardModel.apply` from the items an
:class:`~nexus_core.tui.feed.EventFeed` hands over, and read by the widgets. Each change
marks what it touched (``dirty_tasks``, ``dirty_hosts``), so the screen redraws only that.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nexus_core import events as ev
from nexus_core.output.safe import clean
from nexus_core.tui.cluster import ClusterView

if TYPE_CHECKING:
    from nexus_core.engine import Failure, RunResult
    from nexus_core.state.store import RunRecord

#: Log lines the dashboard keeps in memory (all tasks and hosts together; older ones go first).
MAX_LINES = 200_000
#: Statuses that end a task or host badly.
BAD = frozenset({"failed", "timeout", "unreachable", "error"})
#: Statuses after which nothing more happens on a task or host.
DONE = BAD | {"ok", "skipped", "interrupted"}
#: How many output lines a failure shows (as the plain report).
TAIL = 10


@dataclass(frozen=True)
class LogLine:
    """One line of a task's output on a host; ``kind``: cmd, out, err, ok, fail or note."""

    seq: int
    task: str
    host: str
    text: str
    kind: str = "out"

    @property
    def is_error(self) -> bool:
        """True for the line that says a command failed (``[failed: exit code 1]``)."""
        return self.kind == "fail"


@dataclass
class TransferRow:
    """A file operation of a command (upload, download, template): bytes to move and moved so far.

    ``total`` comes from ``transfer.start``; ``transfer.progress`` events (sent for big files
    only) say how far each file is, so ``done`` is known while they flow; ``transfer.stop``
    ends it with the bytes really sent.
    """

    op: str
    dest: str
    files: int = 0
    total: int = 0
    status: str = "running"
    sent: int = 0
    reason: str = ""
    per_file: dict[str, int] = field(default_factory=dict)

    @property
    def done(self) -> int:
        """Bytes moved so far (all of them once it ended well)."""
        if self.status == "ok":
            return self.total
        return min(self.total, sum(self.per_file.values()))

    @property
    def share(self) -> float | None:
        """How far it is, from 0 to 1 (None when nothing is known: no bytes to move)."""
        return self.done / self.total if self.total else None

    def describe(self) -> str:
        """``upload 45% 4.5/10.0 MB → /srv/app`` (or how it ended)."""
        size = f"{_mb(self.done)}/{_mb(self.total)} MB" if self.total else f"{self.files} file(s)"
        share = self.share
        if self.status == "running":
            shown = f"{share:.0%} {size}" if share is not None else size
        else:
            shown = f"{self.status}, {_mb(self.sent)} MB sent" + (f": {self.reason}" if self.reason else "")
        return f"{self.op} {shown} → {self.dest}"


def _mb(n: int) -> str:
    return f"{n / 1_000_000:.1f}"


@dataclass
class CommandRow:
    """One command of a task on a host (with its file transfer, for a file operation)."""

    command: str
    status: str = "running"
    exit_code: int | None = None
    duration: float | None = None
    attempt: int = 1
    reason: str = ""
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL))
    transfer: TransferRow | None = None


@dataclass
class HostRow:
    """A task on one host: status, timing, retries, why it failed, its commands."""

    task: str
    host: str
    status: str = "pending"
    started: float | None = None
    ended: float | None = None
    duration: float | None = None
    reason: str = ""
    retries: int = 0
    commands: list[CommandRow] = field(default_factory=list)

    @property
    def current(self) -> str:
        """The command running now ('' when none)."""
        if self.commands and self.commands[-1].status == "running" and self.status == "running":
            return self.commands[-1].command
        return ""

    @property
    def transfer(self) -> TransferRow | None:
        """The file transfer going on now (None when none)."""
        if self.current and self.commands[-1].transfer is not None:
            row = self.commands[-1].transfer
            return row if row.status == "running" else None
        return None

    @property
    def shard(self) -> int | None:
        """The shard number when this "host" is a shard of a ``parallel="sharded"`` task (``shard-N``)."""
        return shard_number(self.host)

    def elapsed(self, now: float) -> float | None:
        """Seconds so far (running) or in all (done); None before it starts."""
        if self.duration is not None:
            return self.duration
        if self.started is None:
            return None
        return (self.ended or now) - self.started


@dataclass
class TaskRow:
    """One task: its hosts in plan order, status, timing, retries and reason."""

    name: str
    hosts: dict[str, HostRow] = field(default_factory=dict)
    status: str = "pending"
    started: float | None = None
    ended: float | None = None
    duration: float | None = None
    reason: str = ""
    attempts: int = 0
    strategy: str = ""

    @property
    def sharded(self) -> bool:
        """True for a ``parallel="sharded"`` task: its "hosts" are its shards (``shard-0`` ...)."""
        return bool(self.hosts) and all(shard_number(h) is not None for h in self.hosts)

    def progress(self) -> tuple[int, int, int]:
        """(hosts or shards done, running, in all)."""
        done = sum(1 for h in self.hosts.values() if h.status in DONE)
        running = sum(1 for h in self.hosts.values() if h.status == "running")
        return done, running, len(self.hosts)

    @property
    def retries(self) -> int:
        """Command retries on all its hosts, plus repeated task attempts."""
        return sum(h.retries for h in self.hosts.values()) + max(0, self.attempts - 1)

    def elapsed(self, now: float) -> float | None:
        """Seconds so far (running) or in all (done); None before it starts."""
        if self.duration is not None:
            return self.duration
        if self.started is None:
            return None
        return (self.ended or now) - self.started

    def host(self, name: str) -> HostRow:
        """The row of ``name`` (made when first seen)."""
        row = self.hosts.get(name)
        if row is None:
            row = self.hosts[name] = HostRow(self.name, name)
        return row


def shard_number(host: str) -> int | None:
    """N for a shard's host name (``shard-N``, as the planner names the shards of a sharded task)."""
    prefix, _, number = host.partition("-")
    return int(number) if prefix == "shard" and number.isdigit() else None


@dataclass(frozen=True)
class HostSummary:
    """One host across the run's tasks: what it does now and how its tasks went."""

    host: str
    status: str
    task: str
    done: int
    total: int
    failed: int


class LineIndex:
    """Every kept line once, and the same lines per task, per host and per task/host (references).

    Each list only grows (appends), so the log panel can hold one and draw from it while it
    grows: showing another selection is taking another list, whatever the number of lines.
    Past ``max_lines`` (plus a tenth, so that it happens rarely) the oldest lines go and the
    lists are rebuilt, ``generation`` telling the panel to take its list again.
    """

    def __init__(self, max_lines: int = MAX_LINES) -> None:
        self.max_lines = max_lines
        self.all: list[LogLine] = []
        self.by_task: dict[str, list[LogLine]] = {}
        self.by_host: dict[str, list[LogLine]] = {}
        self.by_pair: dict[tuple[str, str], list[LogLine]] = {}
        self.generation = 0
        #: Lines dropped to stay within ``max_lines``.
        self.dropped = 0

    def __len__(self) -> int:
        return len(self.all)

    def __iter__(self) -> Iterator[LogLine]:
        return iter(self.all)

    def append(self, line: LogLine) -> None:
        """Keep ``line`` (in every list it belongs to)."""
        self.all.append(line)
        self._file(line)
        if len(self.all) > self.max_lines + self.max_lines // 10:
            self._trim()

    def _file(self, line: LogLine) -> None:
        by = self.by_task.get(line.task)
        if by is None:
            by = self.by_task[line.task] = []
        by.append(line)
        by = self.by_host.get(line.host)
        if by is None:
            by = self.by_host[line.host] = []
        by.append(line)
        key = (line.task, line.host)
        by = self.by_pair.get(key)
        if by is None:
            by = self.by_pair[key] = []
        by.append(line)

    def _trim(self) -> None:
        cut = len(self.all) - self.max_lines
        self.dropped += cut
        self.all = self.all[cut:]
        self.by_task, self.by_host, self.by_pair = {}, {}, {}
        for line in self.all:
            self._file(line)
        self.generation += 1

    def select(self, selection: tuple[str, ...]) -> list[LogLine]:
        """The (growing) list of ``("all",)``, ``("task", t)``, ``("host", t, h)`` or ``("anyhost", h)``."""
        kind = selection[0]
        if kind == "task":
            return self.by_task.setdefault(selection[1], [])
        if kind == "host":
            return self.by_pair.setdefault((selection[1], selection[2]), [])
        if kind == "anyhost":
            return self.by_host.setdefault(selection[1], [])
        return self.all


# --- items a feed carries besides events ----------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """A run as recorded in the state store (``nexus tui`` polls it)."""

    record: RunRecord


@dataclass(frozen=True)
class FileLines:
    """New lines of one task/host run log (``nexus tui`` reads them as they are written)."""

    task: str
    host: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Dropped:
    """Output lines of a task/host the feed left out because the screen fell behind."""

    task: str
    host: str
    count: int


@dataclass(frozen=True)
class RunDone:
    """The run ended (live mode): its result, with the engine's own failures."""

    result: RunResult


@dataclass(frozen=True)
class Notice:
    """A message of the run for the user (what plain output prints on stderr)."""

    text: str


# --- the model ------------------------------------------------------------------------------


class DashboardModel:
    """The state of one run as the dashboard shows it."""

    def __init__(self, run_id: str = "", max_lines: int = MAX_LINES) -> None:
        self.run_id = run_id
        self.pipeline = ""
        self.nexusfile = ""
        self.status = "starting"
        self.exit_code: int | None = None
        self.started: float | None = None
        self.ended: float | None = None
        self.duration: float | None = None
        self.tasks: dict[str, TaskRow] = {}
        self.index = LineIndex(max_lines)
        self.notices: list[str] = []
        self.final_failures: list[Failure] | None = None
        self.dirty_tasks: set[str] = set()
        self.dirty_hosts: set[str] = set()
        self.dirty_pairs: set[tuple[str, str]] = set()
        self.structure_changed = False
        self.new_lines: list[LogLine] = []
        #: The cluster the run uses (agents and their load), when there is one.
        self.cluster: ClusterView | None = None
        self.cluster_changed = False
        self._seq = 0
        self._host_order: dict[str, None] = {}

    # --- reading ---------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """True once the run has ended (ok, failed, interrupted, error)."""
        return self.status not in ("starting", "running")

    def elapsed(self, now: float | None = None) -> float:
        """Seconds since the run started (its duration once it ended)."""
        if self.duration is not None:
            return self.duration
        if self.started is None:
            return 0.0
        return (self.ended or (now if now is not None else time.time())) - self.started

    @property
    def hosts(self) -> list[str]:
        """Every host of the run, in the order first seen."""
        return list(self._host_order)

    def host_summary(self, host: str) -> HostSummary:
        """``host`` across the tasks: running task (or last), tasks done and failed."""
        rows = [t.hosts[host] for t in self.tasks.values() if host in t.hosts]
        running = [r for r in rows if r.status == "running"]
        failed = sum(1 for r in rows if r.status in BAD)
        done = sum(1 for r in rows if r.status in DONE)
        if running:
            status, task = "running", running[0].task
        elif failed:
            status, task = "failed", next(r.task for r in rows if r.status in BAD)
        elif rows and done == len(rows):
            status, task = ("ok" if all(r.status in ("ok", "skipped") for r in rows) else rows[-1].status), ""
            if all(r.status == "skipped" for r in rows):
                status = "skipped"
        else:
            started = [r for r in rows if r.status != "pending"]
            status, task = ("waiting" if started else "pending"), ""
        return HostSummary(host, status, task, done, len(rows), failed)

    @property
    def lines(self) -> list[LogLine]:
        """Every kept log line, in order."""
        return self.index.all

    def lines_for(self, task: str | None = None, host: str | None = None) -> list[LogLine]:
        """Kept log lines of ``task`` and/or ``host`` (all when both are None)."""
        if task is not None and host is not None:
            return self.index.by_pair.get((task, host), [])
        if task is not None:
            return self.index.by_task.get(task, [])
        if host is not None:
            return self.index.by_host.get(host, [])
        return self.index.all

    def failures(self) -> list[Failure]:
        """Failures in the plain report's terms: the engine's once the run ended, else built from what was seen."""
        if self.final_failures is not None:
            return self.final_failures
        from nexus_core.engine import Failure

        out: list[Failure] = []
        for t in self.tasks.values():
            for h in t.hosts.values():
                if h.status not in BAD:
                    continue
                failed = next((c for c in reversed(h.commands) if c.status in BAD), None)
                ok_before = tuple(c.command for c in h.commands if c.status == "ok")
                if failed is None:
                    out.append(Failure(t.name, h.host, "", h.status, None, h.reason))
                    continue
                status = h.status if failed.status == "failed" and h.status != "failed" else failed.status
                out.append(
                    Failure(
                        t.name, h.host, failed.command, status, failed.exit_code,
                        failed.reason or h.reason, tuple(failed.tail), ok_before,
                    )
                )  # fmt: skip
        return out

    # --- changes ---------------------------------------------------------------------------

    def take_changes(self) -> tuple[set[str], set[str], set[tuple[str, str]], bool, list[LogLine]]:
        """(tasks, hosts, task/host pairs changed, tasks or hosts added, new log lines) since the last call."""
        out = (self.dirty_tasks, self.dirty_hosts, self.dirty_pairs, self.structure_changed, self.new_lines)
        self.dirty_tasks, self.dirty_hosts, self.dirty_pairs = set(), set(), set()
        self.structure_changed, self.new_lines = False, []
        return out

    def apply_all(self, items: Iterable[Any]) -> None:
        """Apply every item of a feed's batch in order."""
        for item in items:
            self.apply(item)

    def apply(self, item: Any) -> None:
        """Apply one event, snapshot, file lines, dropped count, notice or end of run."""
        if isinstance(item, ev.Event):
            handler = getattr(self, "_on_" + item.name.replace(".", "_"), None)
            if handler is not None:
                handler(item)
        elif isinstance(item, Snapshot):
            self.load_record(item.record)
        elif isinstance(item, FileLines):
            for text in item.lines:
                self._line(item.task, item.host, text, _kind_of_file_line(text))
        elif isinstance(item, Dropped):
            self._line(item.task, item.host,
                       f"[... {item.count} output line(s) not shown here (the screen fell behind): "
                       f"nexus logs {self.run_id} {item.task} -H {item.host} has them all]", "note")  # fmt: skip
        elif isinstance(item, RunDone):
            self._done(item.result)
        elif isinstance(item, Notice):
            self.notices.append(clean(item.text, multiline=True))
        elif isinstance(item, ClusterView):
            self.cluster, self.cluster_changed = item, True

    def _task(self, name: str) -> TaskRow:
        row = self.tasks.get(name)
        if row is None:
            row = self.tasks[name] = TaskRow(name)
            self.structure_changed = True
        self.dirty_tasks.add(name)
        return row

    def _host(self, task: str, host: str) -> HostRow:
        t = self._task(task)
        if host not in t.hosts:
            self.structure_changed = True
        if host not in self._host_order:
            self._host_order[host] = None
        self.dirty_hosts.add(host)
        self.dirty_pairs.add((task, host))
        return t.host(host)

    def _line(self, task: str, host: str, text: str, kind: str) -> None:
        self._seq += 1
        line = LogLine(self._seq, task, host, clean(text), kind)
        self.index.append(line)
        self.new_lines.append(line)

    # events

    def _on_pipeline_start(self, e: ev.PipelineStart) -> None:
        self.run_id = e.run_id
        self.pipeline = " ".join(e.requested) or " ".join(e.tasks)
        self.nexusfile = e.nexusfile
        self.status = "running"
        self.started = e.ts
        for name in e.tasks:
            self._task(name)

    def _on_pipeline_stop(self, e: ev.PipelineStop) -> None:
        self.status, self.exit_code, self.duration, self.ended = e.status, e.exit_code, e.duration, e.ts

    def _on_pipeline_interrupt(self, e: ev.PipelineInterrupt) -> None:
        self.notices.append(f"{e.signal}: stopping (level {e.level})")

    def _on_pipeline_exception(self, e: ev.PipelineException) -> None:
        self.notices.append(f"internal error: {e.kind}: {clean(e.reason)}")

    def _on_task_start(self, e: ev.TaskStart) -> None:
        t = self._task(e.task)
        t.status, t.started, t.strategy, t.attempts = "running", e.ts, e.strategy, e.attempt
        t.ended = t.duration = None
        for h in e.hosts:
            self._host(e.task, h)

    def _on_task_stop(self, e: ev.TaskStop) -> None:
        t = self._task(e.task)
        t.status, t.ended, t.reason = e.status, e.ts, clean(e.reason)
        t.duration = e.duration if e.status != "skipped" else None

    def _on_task_retry(self, e: ev.TaskRetry) -> None:
        h = self._host(e.task, e.host)
        h.retries += 1
        self.dirty_tasks.add(e.task)

    def _on_host_start(self, e: ev.HostStart) -> None:
        h = self._host(e.task, e.host)
        h.status, h.started, h.ended, h.duration, h.reason = "running", e.ts, None, None, ""

    def _on_host_stop(self, e: ev.HostStop) -> None:
        h = self._host(e.task, e.host)
        h.status, h.ended, h.reason = e.status, e.ts, clean(e.reason)
        h.duration = e.duration if h.started is not None else None

    def _on_command_start(self, e: ev.CommandStart) -> None:
        h = self._host(e.task, e.host)
        if h.status == "pending":
            h.status, h.started = "running", e.ts
        attempt = f" (attempt {e.attempt})" if e.attempt > 1 else ""
        h.commands.append(CommandRow(clean(e.command), attempt=e.attempt))
        self._line(e.task, e.host, f"$ {e.command}{attempt}", "cmd")

    def _on_command_output(self, e: ev.CommandOutput) -> None:
        # The hot path (every output line): no change marks, one clean().
        t = self.tasks.get(e.task)
        h = t.hosts.get(e.host) if t is not None else None
        if h is None:
            h = self._host(e.task, e.host)
        text = clean(e.line)
        if h.commands:
            h.commands[-1].tail.append(text)
        self._seq += 1
        line = LogLine(self._seq, e.task, e.host, text, "err" if e.stream == "stderr" else "out")
        self.index.append(line)
        self.new_lines.append(line)

    def _on_command_stop(self, e: ev.CommandStop) -> None:
        h = self._host(e.task, e.host)
        row = h.commands[-1] if h.commands and h.commands[-1].status == "running" else None
        if row is None:
            row = CommandRow(clean(e.command))
            h.commands.append(row)
        row.status, row.exit_code, row.duration, row.reason = e.status, e.exit_code, e.duration, clean(e.reason)
        code = f"exit code {e.exit_code}" if e.exit_code is not None else ""
        detail = e.reason or code
        shown = f": {detail}" if detail and e.status != "ok" else ""
        self._line(e.task, e.host, f"[{e.status}{shown}]", _end_kind(e.status))

    def _transfer_of(self, task: str, host: str) -> tuple[HostRow, CommandRow | None]:
        h = self._host(task, host)
        row = h.commands[-1] if h.commands and h.commands[-1].status == "running" else None
        return h, row

    def _on_transfer_start(self, e: ev.TransferStart) -> None:
        _h, row = self._transfer_of(e.task, e.host)
        if row is not None:
            row.transfer = TransferRow(e.op, clean(e.dest), e.files, e.bytes)

    def _on_transfer_progress(self, e: ev.TransferProgress) -> None:
        _h, row = self._transfer_of(e.task, e.host)
        if row is not None and row.transfer is not None:
            row.transfer.per_file[e.path] = e.done

    def _on_transfer_stop(self, e: ev.TransferStop) -> None:
        _h, row = self._transfer_of(e.task, e.host)
        if row is None:
            return
        t = row.transfer or TransferRow(e.op, clean(e.dest), e.files)
        t.status, t.sent, t.reason, row.transfer = e.status, e.bytes, clean(e.reason), t

    def _done(self, result: RunResult) -> None:
        self.final_failures = list(result.failures)
        self.status, self.exit_code, self.duration = result.status, result.exit_code, result.duration
        for t in self.tasks.values():
            self.dirty_tasks.add(t.name)
            self.dirty_pairs.update((t.name, h) for h in t.hosts)

    # recorded state

    def load_record(self, record: RunRecord) -> None:
        """Take tasks, hosts and commands as the state store has them (``nexus tui``)."""
        self.run_id = record.id
        self.pipeline = record.pipeline
        self.nexusfile = record.nexusfile
        self.status = record.display_status
        self.exit_code = record.exit_code
        self.started, self.ended = record.started, record.ended
        self.duration = (record.ended - record.started) if record.ended else None
        plan_tasks: Mapping[str, Any] = record.plan.get("tasks", {})
        for name, spec in plan_tasks.items():
            t = self._task(name)
            t.strategy = str(spec.get("strategy", ""))
            for hp in spec.get("hosts", []):
                label = str(hp.get("host", {}).get("label", ""))
                if label:
                    self._host(name, label)
        for name, row in record.tasks.items():
            t = self._task(name)
            t.status = str(row.get("status") or "pending")
            t.attempts = int(row.get("attempts") or 0)
            t.started, t.ended = row.get("started"), row.get("ended")
            t.duration = (t.ended - t.started) if t.ended and t.started else None
            t.reason = clean(str(row.get("last_error") or ""))
        for (task, host), row in record.hosts.items():
            h = self._host(task, host)
            h.status = str(row.get("status") or "pending")
            h.started, h.ended = row.get("started"), row.get("ended")
            h.duration = (h.ended - h.started) if h.ended and h.started else None
            h.reason = clean(str(row.get("reason") or ""))
        by_host: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for (task, host, _idx), row in sorted(record.commands.items(), key=lambda kv: kv[0]):
            by_host.setdefault((task, host), []).append(row)
        for (task, host), rows in by_host.items():
            h = self._host(task, host)
            tails = [c.tail for c in h.commands]
            h.commands = []
            for i, row in enumerate(rows):
                c = CommandRow(clean(str(row["command"])), str(row["status"]), row.get("exit_code"))
                if row.get("ended") and row.get("started"):
                    c.duration = row["ended"] - row["started"]
                c.attempt = int(row.get("attempts") or 1)
                if i < len(tails):
                    c.tail = tails[i]
                h.commands.append(c)
            h.retries = sum(c.attempt - 1 for c in h.commands)
            if h.status in BAD:
                failed = next((c for c in reversed(h.commands) if c.status in BAD), None)
                if failed is not None and not failed.reason:
                    failed.reason = h.reason
        self._tails_from_lines()

    def _tails_from_lines(self) -> None:
        """Each failed command's last output lines, from the log lines read so far."""
        for t in self.tasks.values():
            for h in t.hosts.values():
                failed = next((c for c in reversed(h.commands) if c.status in BAD), None)
                if failed is None:
                    continue
                out: list[str] = []
                for line in self.lines_for(t.name, h.host):
                    if line.kind == "cmd":
                        out = []
                    elif line.kind in ("out", "err"):
                        out.append(line.text)
                failed.tail = deque(out[-TAIL:], maxlen=TAIL)


def _end_kind(status: str) -> str:
    return "ok" if status in ("ok", "skipped") else "fail" if status in BAD else "note"


def _kind_of_file_line(text: str) -> str:
    """The kind of a line of a run log file (``$ cmd``, output, ``[status: reason]``)."""
    if text.startswith("$ "):
        return "cmd"
    if text.startswith("[") and text.endswith("]"):
        status = text[1:-1].split(":", 1)[0]
        if status in DONE:
            return _end_kind(status)
    return "out"
