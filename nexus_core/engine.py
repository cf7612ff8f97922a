"""The engine: runs a :class:`~nexus_core.plan.Plan` task by task, host by host, emitting events.

Tasks start as soon as their dependencies succeeded (at most ``parallel_limit`` at once);
a task's hosts are ordered by its strategy and run at most ``forks`` at once; each
command goes through the executor of its host's transport, with retries.
"""

from __future__ import annotations

import heapq
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from nexus_core import events as ev
from nexus_core.api import (
    ANOTHER_HOST_FAILED,
    INTERRUPTED,
    Cancel,
    CommandResult,
    Executor,
    ExecutorContext,
    HostOutcome,
    StrategyContext,
)
from nexus_core.executors.watchdog import TIMEOUT_KILL_GRACE
from nexus_core.exitcodes import ExitCode, for_signal
from nexus_core.model import Command, Host, HostKey, Transfer
from nexus_core.plan import HostPlan, Plan, TaskPlan
from nexus_core.registry import Registry

if TYPE_CHECKING:
    from nexus_core.artifacts import RunArtifacts
    from nexus_core.handlers import Pending
    from nexus_core.state.leftovers import HostPruner
    from nexus_core.state.resume import ResumePoint

#: Seconds between SIGINT, SIGTERM and SIGKILL once a shutdown grace period is over.
ESCALATION_STEP = 2.0
#: How a failure report's list of a task's earlier commands marks one skipped by its guard
#: (``creates=``...) and one that failed under ``continue_on_error`` (after its status).
SKIPPED_NOTE = " (skipped)"
ALLOWED_NOTE = ", continue_on_error)"

#: Hosts a task may run at once from which a run raises the interpreter's switch interval
#: (see :func:`busy_switch_interval`).
MANY_HOSTS = 64
#: The switch interval (seconds) of a run with :data:`MANY_HOSTS` hosts at once; it grows by
#: :data:`SWITCH_PER_HOST` per host at once, up to :data:`MAX_SWITCH_INTERVAL`.
BUSY_SWITCH_INTERVAL = 0.05
SWITCH_PER_HOST = 0.00025
MAX_SWITCH_INTERVAL = 0.5


def switch_interval_for(hosts_at_once: int) -> float:
    """The switch interval a run with ``hosts_at_once`` hosts at once uses (0: unchanged)."""
    if hosts_at_once < MANY_HOSTS:
        return 0.0
    return min(MAX_SWITCH_INTERVAL, max(BUSY_SWITCH_INTERVAL, hosts_at_once * SWITCH_PER_HOST))


@contextmanager
def busy_switch_interval(hosts_at_once: int) -> Iterator[None]:
    """Raise CPython's switch interval from 5 ms to :func:`switch_interval_for` while a run
    with ``hosts_at_once >= MANY_HOSTS`` is under way (unchanged below that): 50 ms up to
    200 hosts at once, 250 ms at 1,000, at most 0.5 s.

    Every thread waiting for the GIL wakes at each interval to ask for it, so with hundreds
    of hosts' threads (each host's worker and its transport's reader) wanting it at once,
    the 5 ms default made tens of thousands of wake-ups a second and runs collapsed into the
    kernel: W1 at 1,000 hosts now and then took 90-180 s with 80-260 s of CPU, mostly system
    time, against 50-70 s and ~20 s with 20-100 ms; W4 (three tasks) at 1,000 hosts took
    474 s with 536 s of CPU at 50 ms, 130 s and 29 s at 250 ms (docs/decisions.md, Scale).
    Threads that block on I/O or a lock still let go of the GIL at once; only a thread
    computing without a pause may now keep it that long before another gets a turn.
    """
    wanted = switch_interval_for(hosts_at_once)
    before = sys.getswitchinterval()  # (kept in microseconds: 0.05 reads back as 0.0499...)
    if not wanted or before >= wanted * 0.99:
        yield
        return
    sys.setswitchinterval(wanted)
    mine = sys.getswitchinterval()
    try:
        yield
    finally:
        if sys.getswitchinterval() == mine:  # nobody else changed it since
            sys.setswitchinterval(before)


def new_run_id() -> str:
    """A short unique run id, sortable by time."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


@dataclass
class RunOptions:
    """How to run: parallelism, error policy, and shutdown grace periods (seconds)."""

    parallel_limit: int = 10
    forks: int | None = None
    continue_on_error: bool = False
    run_id: str = field(default_factory=new_run_id)
    interrupt_grace: float = 10.0
    terminate_grace: float = 30.0
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: Wrap commands so each host records pid and exit code (asked on resume after a crash).
    markers: bool = True
    #: Continue an interrupted run: what is done is skipped, the rest starts where it stopped.
    resume: ResumePoint | None = None
    #: Removes leftovers of other runs from hosts that are due (see nexus_core.state.leftovers).
    prune: HostPruner | None = None
    #: Run notified handlers on a host even when a later command of the task failed there.
    force_handlers: bool = False
    #: Notifications an earlier run of the same tasks left pending, by (task, host label), with
    #: that run's id: they run at the end of the task as if notified again (nexus_core.handlers).
    carried: Mapping[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    carried_from: str = ""


@dataclass(frozen=True)
class Failure:
    """Everything an error message about one failed command needs."""

    task: str
    host: str
    command: str
    status: str
    exit_code: int | None
    reason: str
    tail: tuple[str, ...] = ()
    succeeded_before: tuple[str, ...] = ()
    timeout: float | None = None
    transport: str = "local"
    hint: str = ""
    headline: str = ""
    #: The command's ``cwd=`` (remote: relative to the login directory), when it had one.
    cwd: str | None = None
    #: The handler whose command failed ("" for a command of the task itself).
    handler: str = ""
    #: The handlers notified on the host in this task and not run to success (definition
    #: order): what ``nexus resume`` runs there.
    pending_handlers: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        return {
            "task": self.task, "host": self.host, "command": self.command, "status": self.status,
            "exit_code": self.exit_code, "reason": self.reason, "output": list(self.tail),
            "succeeded_before": list(self.succeeded_before), "timeout": self.timeout, "hint": self.hint,
            "cwd": self.cwd, "handler": self.handler or None, "pending_handlers": list(self.pending_handlers),
        }  # fmt: skip


@dataclass
class TaskResult:
    """How a task went: status ok, failed, skipped or interrupted."""

    name: str
    status: str
    duration: float = 0.0
    hosts: list[HostOutcome] = field(default_factory=list)
    reason: str = ""


@dataclass
class RunResult:
    """How the run went, and the exit code the CLI returns."""

    run_id: str
    status: str
    exit_code: int
    duration: float
    tasks: dict[str, TaskResult]
    failures: list[Failure]

    def names(self, status: str) -> list[str]:
        """Tasks with the given status, in plan order."""
        return [n for n, t in self.tasks.items() if t.status == status]


class Engine:
    """Executes one plan once. Thread-safe ``interrupt`` may be called from a signal handler."""

    def __init__(
        self,
        plan: Plan,
        registry: Registry,
        bus: ev.EventBus,
        options: RunOptions,
        report: Callable[[str], None] | None = None,
    ) -> None:
        self.plan = plan
        self.registry = registry
        self.bus = bus
        self.options = options
        self.cancel = Cancel()
        self.signal_name = ""
        self._executors: dict[str, Executor] = {}
        self._executor_lock = threading.Lock()
        self._failures: list[Failure] = []
        self._lock = threading.Lock()
        self._stop_new_tasks = False
        self._escalation: list[threading.Timer] = []
        self._marked_hosts: dict[HostKey, Host] = {}
        self._cleaned: set[HostKey] = set()
        self._said_no_files = False  # "too many open files" said once for the clean-up
        #: Hosts whose last command of the run could not reach them (connection failed or
        #: lost): their clean-up is not attempted, which would only try to connect again.
        self._unreachable: set[HostKey] = set()
        #: Commands that really started, per (task, host label): what ``task.stop`` counts as executed.
        self._executed: dict[tuple[str, str], int] = {}
        #: Commands each host still has to run in this plan; at 0 its status files can go.
        self._left: dict[HostKey, int] = {}
        #: One semaphore per host whose executor declares ``capabilities.commands_per_host``.
        self._host_slots: dict[HostKey, threading.Semaphore] = {}
        for tp in plan.tasks.values():
            for hp in tp.hosts:
                key = hp.host.key
                self._left[key] = self._left.get(key, 0) + len(hp.commands)
        self._report = report or (lambda m: None)
        #: Tasks that declare artifacts (nexus_core.artifacts), and the run's store once needed.
        self._producers = {n for n, tp in plan.tasks.items() if any(hp.artifacts for hp in tp.hosts)}
        self._store: RunArtifacts | None = None

    # --- signals ---------------------------------------------------------------------------

    def interrupt(self, signal_name: str = "SIGINT") -> None:
        """Stop starting work; let running commands finish for a grace period, then stop them.

        After :meth:`grace` seconds (``interrupt_grace`` for SIGINT, ``terminate_grace`` for
        SIGTERM and SIGHUP), running commands get SIGINT, then SIGTERM and SIGKILL
        :data:`ESCALATION_STEP` seconds apart. A second call kills them at once.
        """
        first = not self.signal_name
        if first:
            self.signal_name = signal_name
        level = self.cancel.level
        self.bus.emit(ev.PipelineInterrupt(self.options.run_id, signal=signal_name, level=level + 1))
        if not first:
            self.cancel.raise_to(Cancel.KILL)
            return
        grace = self.grace(signal_name)
        self.cancel.raise_to(Cancel.STOP)
        steps = (
            (grace, Cancel.INTERRUPT),
            (grace + ESCALATION_STEP, Cancel.TERMINATE),
            (grace + 2 * ESCALATION_STEP, Cancel.KILL),
        )
        for step, level_to in steps:
            timer = threading.Timer(step, self.cancel.raise_to, args=(level_to,))
            timer.daemon = True
            timer.start()
            self._escalation.append(timer)

    def stop_new_work(self, reason: str) -> None:
        """Start no new task; running ones finish (a required audit sink stopped writing, say).

        Thread-safe. The tasks not started are skipped as after a failure; ``reason`` is the
        caller's to report.
        """
        self._stop_new_tasks = True

    def grace(self, signal_name: str) -> float:
        """Seconds running commands may go on after ``signal_name`` (SIGHUP counts as SIGTERM)."""
        if signal_name in ("SIGTERM", "SIGHUP"):
            return self.options.terminate_grace
        return self.options.interrupt_grace

    # --- running ---------------------------------------------------------------------------

    def executor(self, transport: str) -> Executor:
        """The run's executor for ``transport``, created on first use."""
        with self._executor_lock:
            found = self._executors.get(transport)
            if found is None:
                cls = self.registry.executors[transport]
                ctx = ExecutorContext(
                    config=self.plan.config,
                    root=self.plan.root,
                    emit=self.bus.emit,
                    run_id=self.options.run_id,
                    cancel=self.cancel,
                    options=self.options.extra,
                )
                found = self._executors[transport] = cls(ctx)
            return found

    def run(self) -> RunResult:
        """Run the plan to the end (or until stopped) and return the outcome."""
        rid = self.options.run_id
        started = time.monotonic()
        order = self.plan.order
        self.bus.emit(ev.PipelineStart(
            rid, tasks=tuple(order), hosts=tuple(h.label for h in self.plan.hosts),
            requested=self.plan.requested, nexusfile=self.plan.nexusfile))  # fmt: skip
        for name, why in self.plan.skipped.items():  # left out by -H: said once, not counted as a failure
            self.bus.emit(ev.TaskStop(rid, task=name, hosts=(), status="skipped", reason=why))
        results: dict[str, TaskResult] = {}
        try:
            with busy_switch_interval(self._hosts_at_once()):
                self._prepare_executors()
                self._schedule(order, results)
                # Nothing is left running, no command is uncertain: not stopped, or stopped after
                # every task went through all the same (a signal during the last commands).
                if not self.cancel.requested or (
                    len(results) == len(order) and all(r.status == "ok" for r in results.values())
                ):
                    self._clean_markers()
        except Exception as exc:  # a bug in Nexus or a plugin: tell the subscribers, then fail loudly
            self.bus.emit(ev.PipelineException(rid, duration=time.monotonic() - started,
                                               kind=type(exc).__name__, reason=str(exc)))  # fmt: skip
            raise
        finally:
            for timer in self._escalation:
                timer.cancel()
            self._close_executors()
        duration = time.monotonic() - started
        ordered = {n: results[n] for n in order if n in results}
        status, code = self._outcome(ordered)
        if self._producers:
            self._finish_artifacts(status)
        result = RunResult(rid, status, code, duration, ordered, list(self._failures))
        self.bus.emit(ev.PipelineStop(
            rid, duration=duration, status=status, exit_code=code,
            tasks_completed=tuple(result.names("ok")), tasks_failed=tuple(result.names("failed")),
            tasks_skipped=tuple(result.names("skipped"))))  # fmt: skip
        return result

    def forks(self) -> int:
        """How many hosts of one task run at once (see :func:`forks_of`)."""
        return forks_of(self.plan.config, self.options.parallel_limit, self.options.forks)

    def _hosts_at_once(self) -> int:
        """The most hosts one task of the plan may run at once (its hosts, at most ``forks``)."""
        widest = max((len(tp.hosts) for tp in self.plan.tasks.values()), default=0)
        return min(widest, self.forks())

    def _has_retries(self) -> bool:
        """True when some command of the plan (its handlers' too) may be tried more than once."""
        for tp in self.plan.tasks.values():
            for hp in tp.hosts:
                if any(c.retries for c in hp.commands):
                    return True
                if any(c.retries for h in hp.handlers for c in h.commands):
                    return True
        return False

    def _prepare_executors(self) -> None:
        """Let each executor of the plan do its one-time set-up before the hosts' threads start.

        The modules every host's thread imports are imported here first, in one thread: an
        import that fails half-way (out of open files, say) would leave the others a partial
        module (``partially initialized module 'tenacity'``). tenacity only when a command of
        the plan has retries (the only use of it here): importing it costs a run ~50 ms of
        CPU where ``tornado`` is installed (nexus-agent's Dask brings it), which tenacity then
        imports too (docs/decisions.md, "Start-up: tenacity only when retried")."""
        if self._has_retries():
            import tenacity  # noqa: F401 - each command's retries (_run_command)

        from nexus_core import markers  # noqa: F401 - each command's status marker

        by_transport: dict[str, list[Host]] = {}
        for host in self.plan.hosts:
            by_transport.setdefault(host.transport, []).append(host)
        for transport, hosts in by_transport.items():
            if transport not in self.registry.executors:
                continue
            try:
                self.executor(transport).prepare(hosts)
            except Exception as exc:  # noqa: BLE001 - commands report the problem host by host
                self.bus.emit(ev.Log(self.options.run_id, level="debug", source="engine",
                                     message=f"executor {transport!r} prepare failed: {exc!r}"))  # fmt: skip

    def _schedule(self, order: Sequence[str], results: dict[str, TaskResult]) -> None:
        tasks = self.plan.tasks
        pending = list(order)
        resume = self.options.resume
        if resume is not None:
            for name in [n for n in pending if n in resume.done_tasks]:
                pending.remove(name)
                hosts = tuple(hp.host.label for hp in tasks[name].hosts)
                reason = f"done before the {resume.ended_by}"
                self.bus.emit(ev.TaskStop(self.options.run_id, task=name, hosts=hosts, status="ok", reason=reason))
                results[name] = TaskResult(name, "ok", reason=reason)
        limit = max(1, self.options.parallel_limit)
        running: dict[Future[TaskResult], str] = {}
        # Each task waits for its unfinished deps; a finished task releases its dependents.
        # Work per task is proportional to its edges, not to the number of pending tasks.
        pos = {name: i for i, name in enumerate(order)}
        waiting = set(pending)
        dependents: dict[str, list[str]] = {}
        unmet: dict[str, int] = {}
        ready: list[tuple[int, str]] = []
        for name in pending:
            unmet[name] = 0
            for dep in tasks[name].deps:
                if dep not in results:
                    unmet[name] += 1
                    dependents.setdefault(dep, []).append(name)
            if unmet[name] == 0:
                ready.append((pos[name], name))
        heapq.heapify(ready)

        def failed_dep(name: str) -> TaskResult | None:
            return next((r for d in tasks[name].deps if (r := results.get(d)) is not None and r.status != "ok"), None)

        def finished(name: str) -> None:
            """Release ``name``'s dependents; skip those it failed, in plan order."""
            if results[name].status == "ok":
                for child in dependents.get(name, ()):
                    unmet[child] -= 1
                    if unmet[child] == 0 and child in waiting:
                        heapq.heappush(ready, (pos[child], child))
                return
            doomed = [(pos[c], c) for c in dependents.get(name, ())]
            heapq.heapify(doomed)
            while doomed:
                _, child = heapq.heappop(doomed)
                if child not in waiting:
                    continue
                bad = failed_dep(child)
                assert bad is not None
                waiting.discard(child)
                results[child] = self._skip(child, f"dependency {bad.name!r} {_past(bad.status)}")
                for grandchild in dependents.get(child, ()):
                    heapq.heappush(doomed, (pos[grandchild], grandchild))

        for name in order:  # deps that failed before a resume
            if name in results and results[name].status != "ok":
                finished(name)
        with ThreadPoolExecutor(max_workers=min(limit, max(1, len(pending))), thread_name_prefix="nexus-task") as pool:
            while waiting or running:
                if self.cancel.requested or self._stop_new_tasks:
                    why = "the run was interrupted" if self.cancel.requested else "the run stopped after a failure"
                    for name in sorted(waiting, key=pos.__getitem__):
                        bad = failed_dep(name)
                        reason = f"dependency {bad.name!r} {_past(bad.status)}" if bad is not None else why
                        results[name] = self._skip(name, reason)
                    waiting.clear()
                while ready and len(running) < limit and not (self.cancel.requested or self._stop_new_tasks):
                    _, name = heapq.heappop(ready)
                    if name in waiting:
                        waiting.discard(name)
                        running[pool.submit(self._run_task, tasks[name])] = name
                if not running:
                    if waiting:  # pragma: no cover - only if deps are outside the plan
                        for name in sorted(waiting, key=pos.__getitem__):
                            results[name] = self._skip(name, "dependencies were not run")
                    break
                done, _ = wait(list(running), timeout=1.0, return_when=FIRST_COMPLETED)
                for fut in done:
                    name = running.pop(fut)
                    try:
                        results[name] = fut.result()
                    except Exception as exc:  # noqa: BLE001 - a bug must not lose the summary
                        if _out_of_files(exc):  # the machine's limit, not a bug: said with its fix
                            results[name] = TaskResult(name, "failed", reason=_no_files_text())
                            self._report(f"nexus: task {name!r} stopped: {_no_files_text()}")
                        else:
                            results[name] = TaskResult(name, "failed", reason=f"internal error: {exc!r}")
                            self._report(f"nexus: internal error in task {name!r}: {exc!r}")
                    if results[name].status != "ok" and not self.options.continue_on_error:
                        self._stop_new_tasks = True
                    finished(name)

    def _skip(self, name: str, reason: str) -> TaskResult:
        hosts = tuple(hp.host.label for hp in self.plan.tasks[name].hosts)
        self.bus.emit(ev.TaskStop(self.options.run_id, task=name, hosts=hosts, status="skipped", reason=reason))
        return TaskResult(
            name,
            "skipped",
            reason=reason,
            hosts=[HostOutcome(hp.host, "skipped", reason=reason) for hp in self.plan.tasks[name].hosts],
        )

    def _run_task(self, tp: TaskPlan) -> TaskResult:
        rid = self.options.run_id
        hosts = [hp.host for hp in tp.hosts]
        labels = tuple(h.label for h in hosts)
        self.bus.emit(ev.TaskStart(rid, task=tp.name, hosts=labels, strategy=tp.strategy))
        started = time.monotonic()
        ctx = _TaskContext(self, tp)
        try:
            outcomes = self.registry.strategy(tp.strategy).execute(hosts, ctx)
        except Exception as exc:  # noqa: BLE001 - a plugin strategy failed: report by name
            owner = self.registry.owners.get(f"strategy:{tp.strategy}", "?")
            reason = f"strategy {tp.strategy!r} ({owner}) failed: {type(exc).__name__}: {exc}"
            self._report(f"nexus: {reason}")
            done = {o.host.label for o in ctx.outcomes}
            outcomes = list(ctx.outcomes) + [
                HostOutcome(h, "failed", reason=reason) for h in hosts if h.label not in done
            ]
        seen = {o.host.label for o in outcomes}
        outcomes += [
            HostOutcome(h, "skipped", reason="not scheduled by the strategy") for h in hosts if h.label not in seen
        ]
        # Hosts a strategy skipped without running them (a later batch, the canaries' rest)
        # get their host.stop too, so that every output lists every host with its reason.
        reported = {o.host.label for o in ctx.outcomes}
        for o in outcomes:
            if o.status == "skipped" and o.host.label not in reported:
                self.bus.emit(ev.HostStop(rid, task=tp.name, host=o.host.label, status="skipped", reason=o.reason))
        duration = time.monotonic() - started
        collect_failed = ""
        if all(o.ok for o in outcomes) and tp.name in self._producers:
            collect_failed = self._collect_artifacts(tp)
        if collect_failed:
            status, reason = "failed", collect_failed
        elif all(o.ok for o in outcomes):
            status, reason = "ok", ""
        elif any(o.status == "interrupted" for o in outcomes) or (
            self.cancel.requested and any(o.status == "skipped" for o in outcomes)
        ):
            status, reason = "interrupted", "interrupted"
        else:
            status = "failed"
            bad = [o for o in outcomes if not o.ok and o.status != "skipped"]
            reason = _failed_reason(bad) or "failed"
        self.bus.emit(
            ev.TaskStop(
                rid,
                task=tp.name,
                hosts=labels,
                status=status,
                duration=duration,
                commands_executed=ctx.commands_executed,
                reason=reason,
            )
        )
        return TaskResult(tp.name, status, duration, outcomes, reason)

    def run_host(self, tp: TaskPlan, hp: HostPlan) -> HostOutcome:
        """Run one task's commands on one host, in order."""
        rid = self.options.run_id
        host = hp.host
        self.bus.emit(ev.HostStart(rid, task=tp.name, host=host.label))
        started = time.monotonic()
        deadline = started + tp.timeout if tp.timeout > 0 else float("inf")
        status, reason = "ok", ""
        done: list[str] = []
        resume = self.options.resume
        if resume is not None and (tp.name, host.label) in resume.done_hosts:
            reason = f"done before the {resume.ended_by}"
            # Done while the interrupted run was stopping, its status folder stayed there (the
            # run cleans no host once stopping): this run's end removes it with the others.
            if self.options.markers and any(not _not_shell(c) for c in hp.commands):
                if self.executor(host.transport).supports_markers:
                    with self._lock:
                        self._marked_hosts.setdefault(host.key, host)
            self.bus.emit(ev.HostStop(rid, task=tp.name, host=host.label, status="ok", reason=reason))
            return HostOutcome(host, "ok", 0.0, reason)
        start = resume.start_at.get((tp.name, host.label), 0) if resume is not None else 0
        pending = self._pending_handlers(tp, hp)
        if start == 0 and self._producers:
            failed = self._deliver_artifacts(tp, host, done)
            if failed:
                status, reason = "failed", failed
        for index, cmd in enumerate(hp.commands):
            if status != "ok":  # artifacts could not be delivered: no command runs without its inputs
                break
            if index < start:
                done.append(cmd.shown)
                continue
            if self.cancel.requested:
                status, reason = "interrupted", "interrupted before this command"
                break
            if resume is not None and (tp.name, host.label, index) in resume.uncertain and not _not_shell(cmd):
                earlier = self._finished_while_away(tp, host, index, cmd)
                lost = earlier is not None and earlier.status in ("unreachable", "error")  # the host did not say
                if earlier is not None and (
                    earlier.ok or (cmd.continue_on_error and earlier.status != "interrupted" and not lost)
                ):
                    if earlier.ok:
                        self._notify(tp, host, index, cmd, pending)
                    done.append(cmd.shown if earlier.ok else _let_through(cmd.shown, earlier.status))
                    continue
                if earlier is not None and earlier.status == "failed" and earlier.exit_code is not None and cmd.retries:
                    cmd = replace(cmd, retries=cmd.retries - 1)  # that was its first attempt: the rest follow
                elif earlier is not None:  # it ran to its end and failed (or was stopped): not run a second time
                    status = earlier.status if earlier.status in ("timeout", "interrupted", "unreachable") else "failed"
                    reason = earlier.reason
                    if status != "interrupted":
                        self._fail(tp, host, cmd, earlier, done, cmd.timeout)
                    break
            limit = self._command_limit(tp, host, cmd, deadline, done)
            if limit is None:
                status, reason = "timeout", _task_timeout(tp)
                break
            task_limited = cmd.timeout <= 0 or limit < cmd.timeout  # the task's time ends first
            skip, guard_failure = self._check_guards(tp, host, index, cmd)
            if skip:
                done.append(cmd.shown + SKIPPED_NOTE)
                continue
            if guard_failure is not None:
                result = guard_failure
            else:
                more = index < len(hp.commands) - 1
                result = self._run_command(tp, host, index, cmd, limit if limit != float("inf") else 0.0, more)
            if not (result.status == "interrupted" and result.reason.startswith("not started")):
                with self._lock:
                    key = (tp.name, host.label)
                    self._executed[key] = self._executed.get(key, 0) + 1
            if result.ok:
                if result.changed:
                    self._notify(tp, host, index, cmd, pending)
                done.append(cmd.shown)
                continue
            if cmd.continue_on_error and result.status in ("failed", "timeout"):
                done.append(_let_through(cmd.shown, result.status))
                continue
            status = result.status if result.status in ("timeout", "unreachable", "interrupted") else "failed"
            if result.status == "timeout" and task_limited:
                result = replace(result, reason=f"task timeout of {tp.timeout:g}s reached")
            reason = result.reason
            if status != "interrupted":
                self._fail(tp, host, cmd, result, done, tp.timeout if task_limited else cmd.timeout)
            break
        if hp.handlers and pending.notified:
            status, reason = self._run_handlers(tp, hp, pending, status, reason, deadline, done)
            left = pending.left(hp.handlers) if status != "ok" else ()
            if left:
                self._left_pending(tp, host, left)
        duration = time.monotonic() - started
        self.bus.emit(ev.HostStop(rid, task=tp.name, host=host.label, status=status, duration=duration, reason=reason))
        if host.key in self._marked_hosts:  # host.stop is a checkpoint: the commands are on disk now
            self._settled(tp, host, len(hp.commands))
        self._host_done(host, len(hp.commands))
        return HostOutcome(host, status, duration, reason)

    def _command_limit(self, tp: TaskPlan, host: Host, cmd: Command, deadline: float, done: list[str]) -> float | None:
        """The seconds ``cmd`` may run: its own timeout within what is left of the task's; None
        (reported as the command's failure) when the task's time is already used up."""
        limit = min(cmd.timeout if cmd.timeout > 0 else float("inf"), deadline - time.monotonic())
        if limit > 0:
            return limit
        self._fail(tp, host, cmd, CommandResult("timeout", None, 0.0, _task_timeout(tp)), done, tp.timeout)
        return None

    def _check_guards(self, tp: TaskPlan, host: Host, index: int, cmd: Command) -> tuple[bool, CommandResult | None]:
        """Evaluate ``creates``/``only_if``/``unless`` on the host: (skip?, failure of a guard that could not run)."""
        if not (cmd.creates or cmd.only_if or cmd.unless):
            return False, None
        from nexus_core.guards import guards

        executor = self.executor(host.transport)
        for guard in guards(cmd):
            try:
                result = executor.run(host, guard.probe, lambda _s, _l: None, self.cancel, guard.probe.timeout)
            except Exception as exc:  # noqa: BLE001 - an executor plugin failed: report by name
                why = f"{guard.kind} check: {self._executor_failed(host, exc)}"
                return False, CommandResult("error", None, 0.0, why, retryable=False)
            if result.status not in ("ok", "failed"):
                return False, replace(result, reason=f"{guard.kind} check: {result.reason}")
            skip = guard.skip_reason(result.exit_code)
            if skip:
                self.bus.emit(ev.CommandStop(self.options.run_id, task=tp.name, host=host.label, command=cmd.shown,
                                             exit_code=None, duration=result.duration, status="skipped",
                                             index=index, reason=skip))  # fmt: skip
                return True, None
        return False, None

    def _finished_while_away(self, tp: TaskPlan, host: Host, index: int, cmd: Command) -> CommandResult | None:
        """Ask the host about a command that was running when the run stopped.

        A command still running is waited for (up to its timeout); one that finished (now or
        while Nexus was not running) has the end of its output shown and its result returned,
        so it is never started again. None: it never finished (killed, never started, or the
        host cannot tell): run it.
        """
        from nexus_core import markers

        assert self.options.resume is not None
        executor = self.executor(host.transport)
        if not executor.supports_markers:
            return None  # the host cannot tell: run the command again
        run_id = self.options.resume.run_id
        key = markers.key(tp.name, host.label, index)
        began = time.monotonic()
        with self._lock:  # its status folder is this run's: removed with the others at the end
            self._marked_hosts.setdefault(host.key, host)
        limit = cmd.timeout if cmd.timeout > 0 else 3600.0  # a command without a timeout: an hour at most
        deadline = began + limit
        probe = Command(markers.probe_script(run_id, key, host.label), timeout=30)
        lines: list[str] = []
        quiet = Cancel()  # the probes and signals must run while this run is being stopped

        def collect(_stream: str, line: str) -> None:
            lines.append(line)

        def send(name: str) -> None:
            executor.run(host, Command(markers.signal_script(run_id, key, name, host.label), timeout=30),
                         lambda _s, _l: None, quiet, 30.0)  # fmt: skip

        # Still running, it is this run's command now: stopped as a running one would be when
        # the run is (SIGINT, SIGTERM, SIGKILL by level), and at the end of its timeout.
        signalled, timed_out, killed, waited_for = 0, 0.0, False, False
        while True:
            lines.clear()
            result = executor.run(host, probe, collect, quiet, 30.0)
            found = markers.parse_probe(lines) if result.ok else markers.ProbeResult("unknown")
            self.bus.emit(
                ev.Log(
                    self.options.run_id,
                    level="info",
                    source="resume",
                    message=f"{tp.name} on {host.label}: command #{index + 1} {found.state}"
                    + (f" (exit code {found.exit_code})" if found.exit_code is not None else "")
                    + ("" if result.ok else f" ({result.reason or result.status})"),
                )
            )
            if not result.ok and result.status in ("unreachable", "timeout", "error"):
                # The host cannot say whether the command ended: starting it again could run it
                # twice (it may have finished, or still run), so this host stops here.
                return CommandResult(
                    "unreachable" if result.status != "error" else "error",
                    None,
                    time.monotonic() - began,
                    f"cannot ask {host.label} whether command #{index + 1}, started by the interrupted run, "
                    f"ended ({result.reason or result.status}): not started again",
                    hint="- run `nexus resume` again once the host answers: a command that finished is not "
                    "started again, one still running is waited for",
                    retryable=False,
                )
            if found.state != "running":
                break
            waited_for = True
            level, now = self.cancel.level, time.monotonic()
            if signalled >= Cancel.KILL or (killed and now > timed_out + TIMEOUT_KILL_GRACE + 5):
                break  # sent SIGKILL and it does not end even so: reported below, never started again
            if level >= Cancel.INTERRUPT and level > signalled:
                send({Cancel.INTERRUPT: "INT", Cancel.TERMINATE: "TERM"}.get(level, "KILL"))
                signalled = level
            elif not timed_out and now > deadline:
                send("TERM")
                timed_out = now
            elif timed_out and not killed and now > timed_out + TIMEOUT_KILL_GRACE:
                send("KILL")
                killed = True
            self.cancel.wait_change(level, 1.0)
        waited = time.monotonic() - began
        if found.state == "running":  # still running after SIGKILL (a process stuck in the kernel)
            return CommandResult("timeout" if timed_out else "interrupted", None, waited,
                                 "started by the interrupted run, it was still running on the host after SIGKILL: "
                                 "not started a second time")  # fmt: skip
        if timed_out:
            why = f"timed out after {limit:g}s: started by the interrupted run, it still ran at the resume"
            return CommandResult("timeout", None, waited, f"{why}, and was stopped")
        if signalled:
            return CommandResult("interrupted", None, waited, "interrupted while this resume waited for the command "
                                 "the interrupted run started; it was sent the run's signals")  # fmt: skip
        if found.state != "finished" or found.exit_code is None:
            return None
        tail = self._replay_spool(executor, host, tp.name, index, run_id, key)
        code = found.exit_code
        why = "finished while this resume waited for it" if waited_for else "finished while Nexus was not running"
        status = "ok" if code == 0 else "failed"
        spent = time.monotonic() - began if waited_for else 0.0
        self.bus.emit(ev.CommandStop(
            self.options.run_id, task=tp.name, host=host.label, command=cmd.shown, exit_code=code, duration=spent,
            status=status, index=index, reason=why if code == 0 else f"exit code {code} ({why})"))  # fmt: skip
        return CommandResult(status, code, spent, "" if code == 0 else f"exit code {code} ({why})", tail)

    def _replay_spool(self, executor: Any, host: Host, task: str, index: int, run_id: str, key: str) -> tuple[str, ...]:
        """Show the end of a finished command's spooled output (as its output); return its tail."""
        from nexus_core import markers, shell

        rid = self.options.run_id
        spooled: list[tuple[str, str]] = []
        stream = ["stdout"]

        def collect(_stream: str, line: str) -> None:
            if line.startswith(shell.SPOOL_END):  # the end of stdout (in the file, then the script's)
                stream[0] = "stderr"
                if spooled and spooled[-1][1] == "":
                    spooled.pop()  # the newline printed before that line
            else:
                spooled.append((stream[0], line))

        script = Command(markers.spool_script(run_id, key, host.label), timeout=30)
        if not executor.run(host, script, collect, self.cancel, 30.0).ok:
            return ()
        for name, line in spooled:
            self.bus.emit(ev.CommandOutput(rid, task=task, host=host.label, stream=name, line=line, index=index))
        return tuple(line for _, line in spooled[-20:])

    def _fail(
        self,
        tp: TaskPlan,
        host: Host,
        cmd: Command,
        result: CommandResult,
        done: list[str],
        timeout: float | None,
        handler: str = "",
    ) -> None:
        with self._lock:
            self._failures.append(Failure(
                task=tp.name, host=host.label, command=cmd.shown, status=result.status,
                exit_code=result.exit_code, reason=result.reason, tail=result.tail,
                succeeded_before=tuple(done), timeout=timeout, transport=host.transport,
                hint=result.hint, headline=result.headline, cwd=cmd.cwd, handler=handler))  # fmt: skip

    def _left_pending(self, tp: TaskPlan, host: Host, names: tuple[str, ...]) -> None:
        """Name the handlers left pending on the failures of this task on this host."""
        with self._lock:
            self._failures = [
                replace(f, pending_handlers=names) if f.task == tp.name and f.host == host.label else f
                for f in self._failures
            ]

    def _run_command(
        self, tp: TaskPlan, host: Host, index: int, cmd: Command, timeout: float, more: bool = False
    ) -> CommandResult:
        """Run ``cmd`` (the ``index``-th of its task on ``host``) with its retries; ``more``:
        commands of the task follow on the host (:attr:`Command.more`)."""
        rid = self.options.run_id
        attempts = cmd.retries + 1
        state = {"attempt": 0}
        executor = self.executor(host.transport)
        if self.options.markers and executor.supports_markers and not _not_shell(cmd):
            from nexus_core import markers

            run_id = self.options.resume.run_id if self.options.resume is not None else rid
            marker = markers.Marker(run_id, markers.key(tp.name, host.label, index), host.label)
            cmd = replace(cmd, marker=marker, more=more)
            with self._lock:
                self._marked_hosts.setdefault(host.key, host)
        if tp.options.get("idempotent") is False:
            cmd = replace(cmd, idempotent=False)
        emit = self.bus.emit
        label = host.label

        def on_output(stream: str, line: str) -> None:
            emit(ev.CommandOutput(rid, task=tp.name, host=label, stream=stream, line=line, index=index))

        def attempt() -> CommandResult:
            state["attempt"] += 1
            n = state["attempt"]
            if self.cancel.requested:
                return CommandResult("interrupted", None, 0.0, "interrupted", retryable=False)
            emit(
                ev.CommandStart(
                    rid,
                    task=tp.name,
                    host=label,
                    command=cmd.shown,
                    index=index,
                    sudo=cmd.sudo or bool(cmd.user),
                    attempt=n,
                )
            )
            started = time.monotonic()
            try:
                with self._host_slot(executor, host):
                    result = self._operate(executor, tp, host, index, cmd, on_output, timeout)
            except Exception as exc:  # noqa: BLE001 - an executor plugin failed: report by name
                result = CommandResult(
                    "error", None, time.monotonic() - started, self._executor_failed(host, exc), retryable=False
                )
            if result.status == "unreachable":  # its clean-up is left to a later run's prune
                self._unreachable.add(host.key)
            elif result.ok:
                self._unreachable.discard(host.key)
            emit(
                ev.CommandStop(
                    rid,
                    task=tp.name,
                    host=label,
                    command=cmd.shown,
                    exit_code=result.exit_code,
                    duration=result.duration,
                    status=result.status,
                    index=index,
                    attempt=n,
                    reason=result.reason,
                    changed=result.changed,
                )
            )
            return result

        if attempts == 1:
            return attempt()

        from tenacity import Retrying, retry_if_result, stop_after_attempt, wait_random_exponential

        def should_retry(result: CommandResult) -> bool:
            return (
                not result.ok
                and result.retryable
                and result.status in ("failed", "timeout", "unreachable")
                and not self.cancel.requested
            )

        def before_sleep(retry_state: Any) -> None:
            assert retry_state.outcome is not None
            outcome: CommandResult = retry_state.outcome.result()
            delay = retry_state.next_action.sleep if retry_state.next_action else 0.0
            emit(
                ev.TaskRetry(
                    rid,
                    task=tp.name,
                    host=label,
                    command=cmd.shown,
                    attempt=retry_state.attempt_number + 1,
                    max_attempts=attempts,
                    delay=float(delay),
                    reason=outcome.reason,
                )
            )

        retrying = Retrying(
            stop=stop_after_attempt(attempts),
            wait=wait_random_exponential(multiplier=cmd.retry_delay, max=max(cmd.retry_delay * 32, 1)),
            retry=retry_if_result(should_retry),
            before_sleep=before_sleep,
            sleep=self._pause,
            retry_error_callback=_last_result,
        )
        result: CommandResult = retrying(attempt)
        return result

    def _operate(
        self, executor: Executor, tp: TaskPlan, host: Host, index: int, cmd: Command, on_output: Any, timeout: float
    ) -> CommandResult:
        """One attempt of one operation: a file operation through :mod:`nexus_core.transfer`,
        ``wait_for``/``call`` through :mod:`nexus_core.calls`, a command through ``executor.run``;
        the result says whether it ``changed`` anything."""
        if isinstance(cmd, Transfer):
            from nexus_core import transfer

            return transfer.execute(executor, host, cmd, transfer.Reporter(self.bus.emit, self.options.run_id,
                                                                           tp.name, host.label, index),
                                    self.cancel, timeout)  # fmt: skip
        if _not_shell(cmd):  # call() or wait_for(): their module is loaded (a run of commands never loads it)
            from nexus_core import calls

            result = calls.execute(executor, host, cmd, on_output, self.cancel, timeout)
            return replace(result, changed=True) if result.ok and isinstance(cmd, calls.Call) else result
        ready = _with_input(cmd, executor)  # a secret for the command's stdin, or why it cannot have one
        if isinstance(ready, CommandResult):
            return ready
        result = executor.run(host, ready, on_output, self.cancel, timeout)
        return replace(result, changed=True) if result.ok else result

    # --- artifacts (nexus_core.artifacts) ------------------------------------------------------

    def artifacts(self) -> RunArtifacts:
        """The run's artifact store (:class:`nexus_core.artifacts.RunArtifacts`)."""
        from nexus_core.artifacts import RunArtifacts

        with self._lock:
            if self._store is None:
                rid = self.options.resume.run_id if self.options.resume is not None else self.options.run_id
                self._store = RunArtifacts(rid, self.plan.root)
            return self._store

    def _collect_artifacts(self, tp: TaskPlan) -> str:
        """Collect a task's artifacts after it succeeded; the failure's reason, or ""."""
        from nexus_core.artifacts import ArtifactError

        sources = [(hp.host, hp.artifacts) for hp in tp.hosts if hp.artifacts]
        try:
            entries = self.artifacts().collect(tp.name, sources, lambda h: self.executor(h.transport), self.cancel)
        except (ArtifactError, OSError) as exc:
            reason = f"collecting artifacts: {exc}"
            host = sources[0][0] if sources else tp.hosts[0].host
            self._fail(tp, host, Command("artifact(" + ", ".join(sources[0][1] if sources else ()) + ")"),
                       CommandResult("error", None, 0.0, reason, retryable=False), [], None)  # fmt: skip
            return reason
        size = sum(e.size for e in entries)
        message = f"{tp.name}: collected {len(entries)} artifact file(s), {size} bytes"
        self.bus.emit(ev.Log(self.options.run_id, level="info", source="artifacts", message=message))
        return ""

    def _deliver_artifacts(self, tp: TaskPlan, host: Host, done: list[str]) -> str:
        """Put the artifacts of every task ``tp`` depends on onto ``host``; the failure's reason, or ""."""
        from nexus_core.artifacts import ArtifactError, clash, upstream

        wanted = [n for n in upstream(self.plan.tasks, tp.name) if n in self._producers]
        if not wanted:
            return ""
        store = self.artifacts()
        entries = store.entries(wanted)
        try:
            why = clash(entries)
            if why:
                raise ArtifactError(why)
            written, same = store.deliver(entries, host, self.executor(host.transport), self.cancel)
        except (ArtifactError, OSError) as exc:
            reason = f"delivering artifacts: {exc}"
            self._fail(tp, host, Command("deliver artifacts of " + ", ".join(wanted)),
                       CommandResult("error", None, 0.0, reason, retryable=False), done, None)  # fmt: skip
            return reason
        self.bus.emit(ev.Log(self.options.run_id, level="info", source="artifacts",
                             message=f"{tp.name} on {host.label}: {written} artifact file(s) delivered, "
                                     f"{same} already there"))  # fmt: skip
        return ""

    def _finish_artifacts(self, status: str) -> None:
        from nexus_core.artifacts import prune

        cfg = self.plan.config
        retention = float(cfg.get("artifact_retention") or 0)
        failed_days = float(cfg.get("state_retention_days") or 7)
        try:
            self.artifacts().finish(status, retention, failed_days)
            prune(retention, failed_days)
        except OSError as exc:
            self._report(f"nexus: could not tidy the artifact store: {exc}")

    # --- handlers (nexus_core.handlers) --------------------------------------------------------

    def _pending_handlers(self, tp: TaskPlan, hp: HostPlan) -> Pending:
        """The handlers notified on this host for this task so far: by a resumed run, or left
        pending by the previous run of the same tasks (each re-recorded for this run)."""
        from nexus_core.handlers import Pending

        pending = Pending()
        key = (tp.name, hp.host.label)
        planned = {h.name for h in hp.handlers}
        resume = self.options.resume
        earlier: list[tuple[str, str]] = []
        if resume is not None:
            earlier += [(n, "") for n in resume.notified.get(key, ())]
        if self.options.carried_from:
            earlier += [
                (n, f"carried over from run {self.options.carried_from}") for n in self.options.carried.get(key, ())
            ]
        gone = sorted({name for name, _ in earlier if name not in planned})
        if gone:  # renamed or removed since it was notified: said, not dropped without a word
            self.bus.emit(ev.Log(self.options.run_id, level="warning", message=(
                f"{tp.name} on {hp.host.label}: handler{'s' if len(gone) > 1 else ''} {', '.join(map(repr, gone))} "
                "notified by an earlier run no longer defined for this task: not run")))  # fmt: skip
        for name, why in earlier:
            if name in planned and pending.add([name]) and why:
                self.bus.emit(ev.HandlerNotify(self.options.run_id, task=tp.name, host=hp.host.label, handler=name,
                                               index=-1, by=why))  # fmt: skip
        return pending

    def _notify(self, tp: TaskPlan, host: Host, index: int, cmd: Command, pending: Pending) -> None:
        """Record the notifications of an operation that changed something (checkpointed by the state)."""
        names = tuple(getattr(cmd, "notify", ()) or ())
        for name in pending.add(names):
            self.bus.emit(ev.HandlerNotify(self.options.run_id, task=tp.name, host=host.label, handler=name,
                                           index=index, by=cmd.shown))  # fmt: skip

    def _run_handlers(
        self, tp: TaskPlan, hp: HostPlan, pending: Pending, status: str, reason: str, deadline: float, done: list[str]
    ) -> tuple[str, str]:
        """Run the notified handlers once each, in definition order, at the end of the task on this host.

        After a failure they stay pending (checkpointed, for ``nexus resume`` and the next run)
        unless ``force_handlers`` is set and the host failed or timed out (not: unreachable,
        interrupted). Returns the host's status and reason (a failing handler fails the host).
        """
        forced = status != "ok"
        if forced and not (self.options.force_handlers and status in ("failed", "timeout")):
            return status, reason
        host = hp.host
        rid = self.options.run_id
        for _ in range(len(hp.handlers) + 1):  # each handler runs at most once
            h = pending.next(hp.handlers)
            if h is None:
                break
            if self.cancel.requested:
                return (status, reason) if forced else ("interrupted", "interrupted before a handler")
            pending.ran.add(h.name)
            self.bus.emit(ev.HandlerStart(rid, task=tp.name, host=host.label, handler=h.name, forced=forced))
            started = time.monotonic()
            h_status, h_reason = "ok", ""
            for j, cmd in enumerate(h.commands):
                index = h.first_index + j
                if self.cancel.requested:
                    h_status, h_reason = "interrupted", "interrupted before this command"
                    break
                limit = self._command_limit(tp, host, cmd, deadline, done)
                if limit is None:
                    h_status, h_reason = "timeout", _task_timeout(tp)
                    break
                skip, guard_failure = self._check_guards(tp, host, index, cmd)
                if skip:
                    continue
                result = guard_failure or self._run_command(
                    tp, host, index, cmd, limit if limit != float("inf") else 0.0
                )
                if result.ok:
                    if result.changed:
                        self._notify(tp, host, index, cmd, pending)
                    done.append(cmd.shown)
                    continue
                if cmd.continue_on_error and result.status in ("failed", "timeout"):
                    continue
                h_status = result.status if result.status in ("timeout", "unreachable", "interrupted") else "failed"
                h_reason = result.reason
                if h_status != "interrupted":
                    self._fail(tp, host, cmd, result, done, cmd.timeout, handler=h.name)
                break
            self.bus.emit(ev.HandlerStop(rid, task=tp.name, host=host.label, handler=h.name, status=h_status,
                                         duration=time.monotonic() - started, reason=h_reason))  # fmt: skip
            if h_status == "ok":
                pending.succeeded.add(h.name)
            if h_status != "ok":
                if not forced:
                    return h_status, f"handler {h.name!r}: {h_reason}"
                break
        return status, reason

    def _host_slot(self, executor: Executor, host: Host) -> AbstractContextManager[Any]:
        """Hold one of the host's command slots when its executor declares a per-host limit."""
        limit = executor.capabilities.commands_per_host
        if limit is None:
            return nullcontext()
        key = host.key
        with self._lock:
            slot = self._host_slots.get(key)
            if slot is None:
                slot = self._host_slots[key] = threading.Semaphore(max(1, limit))
        return slot

    def _settled(self, tp: TaskPlan, host: Host, commands: int) -> None:
        """Tell the host's executor that the task's commands there are recorded (their status
        files will not be asked about again: see ``Executor.settled``)."""
        from nexus_core import markers

        run_id = self.options.resume.run_id if self.options.resume is not None else self.options.run_id
        try:
            executor = self.executor(host.transport)
            if type(executor).settled is Executor.settled:
                return  # the executor keeps nothing per command
            stem = markers.key(tp.name, host.label, 0)[:-1]  # the index is digits: never rewritten
            executor.settled(host, run_id, [f"{stem}{i}" for i in range(commands)])
        except Exception as exc:  # noqa: BLE001 - an executor plugin's bookkeeping must not fail a run
            self._report(f"nexus: {host.transport} executor failed in settled() on {host.label}: {exc!r}")

    def _host_done(self, host: Host, commands: int) -> None:
        """Count a host's finished (or skipped) commands; when none are left, clean it at once.

        Every command of the host is then finished and checkpointed, so its status files
        can no longer be needed by a resume: removing them now overlaps with other hosts.
        """
        key = host.key
        with self._lock:
            self._left[key] = left = self._left.get(key, 0) - commands
            # Once the run is stopping a host's commands may have ended interrupted: its status
            # files stay for a resume (the run's end cleans every host when all went through).
            ready = left <= 0 and key in self._marked_hosts and key not in self._cleaned and not self.cancel.requested
            if ready:
                self._cleaned.add(key)
        if ready:
            self._clean_host(host)
        if left <= 0:
            try:
                self.executor(host.transport).host_done(host)
            except Exception as exc:  # noqa: BLE001 - an optional hook must never fail a run
                self._report(f"nexus: the {host.transport} executor failed to let go of {host.label}: {exc!r}")

    def _clean_host(self, host: Host) -> None:
        if host.key in self._unreachable:
            # Connecting again to clean up after a host that could not be reached would repeat
            # every connection attempt (twice: prune, then the status file): a later run's prune
            # removes what this run may have left there.
            return
        run_id = self.options.resume.run_id if self.options.resume is not None else self.options.run_id
        prune = self.options.prune
        try:
            script = prune.script_for(host) if prune is not None else None
            if prune is not None and script:  # due: one command cleans up and removes leftovers
                result = self.executor(host.transport).run(
                    host, Command(script, timeout=60), lambda _s, _l: None, Cancel(), 60.0
                )
                prune.done(host, result.ok)
                if result.ok:
                    return
            self.executor(host.transport).remove_markers(host, run_id)
        except Exception as exc:  # noqa: BLE001 - cleanup must never fail a run
            if _out_of_files(exc):  # said once for the run, not once per host
                with self._lock:
                    said, self._said_no_files = self._said_no_files, True
                if not said:
                    self._report(f"nexus: could not remove status files on some hosts: {_no_files_text()}; "
                                 "a later run's clean-up removes them")  # fmt: skip
                return
            self._report(f"nexus: could not remove status files on {host.label}: {exc!r}")

    def _clean_markers(self) -> None:
        """Remove the run's status file from every host not cleaned yet (in parallel)."""
        with self._lock:
            hosts = [h for k, h in self._marked_hosts.items() if k not in self._cleaned]
            self._cleaned.update(self._marked_hosts)
        if not hosts:
            return
        clean = self._clean_host
        if len(hosts) == 1:
            clean(hosts[0])
            return
        workers = min(len(hosts), max(1, self.options.forks or self.options.parallel_limit))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nexus-cleanup") as pool:
            list(pool.map(clean, hosts))

    def _pause(self, seconds: float) -> None:
        """Sleep between retries; wakes early when the run is being stopped."""
        self.cancel.sleep(seconds)

    def _executor_failed(self, host: Host, exc: Exception) -> str:
        """The reason shown when an executor plugin raised: the plugin by name, the error in
        one line; the traceback, which its maintainer needs, goes to the debug log."""
        from nexus_core.logs import LOGGER

        LOGGER.debug("executor %r raised on %s", host.transport, host.label, exc_info=True)
        if _out_of_files(exc):  # the same on every host: no module path or host in the text
            return _no_files_text()
        owner = self.registry.owners.get(f"executor:{host.transport}", "?")
        return f"executor {host.transport!r} ({owner}) failed: {type(exc).__name__}: {exc}"

    def _close_executors(self) -> None:
        for name, executor in list(self._executors.items()):
            try:
                executor.close()
            except Exception as exc:  # noqa: BLE001 - report, keep closing the others
                self._report(f"nexus: closing the {name} executor failed: {exc!r}")

    def _outcome(self, results: Mapping[str, TaskResult]) -> tuple[str, int]:
        if self.cancel.requested and not all(t.status == "ok" for t in results.values()):
            return "interrupted", int(for_signal(self.signal_name))
        if all(t.status == "ok" for t in results.values()):
            return "ok", int(ExitCode.OK)
        statuses = {f.status for f in self._failures}
        if "unreachable" in statuses:
            return "failed", int(ExitCode.CONNECTION)
        if "timeout" in statuses:
            return "failed", int(ExitCode.TIMEOUT)
        return "failed", int(ExitCode.FAILED)


def _failed_reason(bad: Sequence[HostOutcome]) -> str:
    """A failed task's reason over its hosts: each distinct failure once (failures alike but
    for their host count as one, see ``nexus_core.output.alike``), with its hosts; the
    commonest first, at most five."""
    if len(bad) == 1:
        return f"{bad[0].host.label}: {bad[0].reason}"
    from nexus_core.output.alike import merged, names_of, shape

    groups: dict[str, list[tuple[Any, str]]] = {}
    for o in bad:
        form = shape(o.reason or o.status, names_of(o.host.label, o.host.name))
        groups.setdefault(form.key, []).append((form, o.host.label))
    parts = []
    for members in sorted(groups.values(), key=len, reverse=True)[:5]:
        hosts = [label for _, label in members]
        shown = ", ".join(hosts[:3]) + (f", +{len(hosts) - 3} more" if len(hosts) > 3 else "")
        what = merged([form for form, _ in members])
        parts.append(f"{what} ({shown})" if len(hosts) > 1 else f"{hosts[0]}: {what}")
    if len(groups) > 5:
        parts.append(f"and {len(groups) - 5} other failures")
    return "; ".join(parts)


def forks_of(config: Mapping[str, Any], parallel_limit: int, forks: int | None = None) -> int:
    """How many hosts of one task run at once: ``forks`` (the API's :attr:`RunOptions.forks`),
    else ``config(forks=...)``, else ``parallel_limit`` (the run's: ``-p``, else the config's)."""
    return max(1, forks or int(config.get("forks") or 0) or parallel_limit)


def _let_through(command: str, status: str) -> str:
    """An earlier command that failed under ``continue_on_error``, as a failure report lists
    it: ``make test (failed, continue_on_error)`` (see :data:`ALLOWED_NOTE`)."""
    return f"{command} ({status}{ALLOWED_NOTE}"


def _out_of_files(exc: BaseException) -> bool:
    """True for the process's (or the system's) limit of open files reached."""
    import errno

    return isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE)


def _no_files_text() -> str:
    """Why a host failed when no file could be opened any more, with the fix."""
    import resource

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    limit = "no limit" if soft == resource.RLIM_INFINITY else str(soft)
    return (f"too many open files (this process may open {limit}: ulimit -n); raise the limit "
            "(ulimit -n 65536) or run on fewer hosts at once (forks=, -p)")  # fmt: skip


def _task_timeout(tp: TaskPlan) -> str:
    return f"task timeout of {tp.timeout:g}s reached"


def _not_shell(cmd: Command) -> bool:
    """True for operations that are not one shell command (no status marker, not asked about on resume)."""
    if isinstance(cmd, Transfer):
        return True
    if "nexus_core.calls" not in sys.modules:  # call() and wait_for() import it: none was used
        return False
    from nexus_core.calls import NOT_SHELL

    return isinstance(cmd, (Transfer, *NOT_SHELL))


def _last_result(retry_state: Any) -> CommandResult:
    """When retries run out, the last attempt's result is the command's result."""
    outcome = retry_state.outcome
    assert outcome is not None
    result: CommandResult = outcome.result()
    return result


def _past(status: str) -> str:
    return {"failed": "failed", "skipped": "was skipped", "interrupted": "was interrupted"}.get(status, status)


class _TaskContext(StrategyContext):
    """The strategy's view of one task's execution."""

    def __init__(self, engine: Engine, tp: TaskPlan) -> None:
        self.engine = engine
        self.tp = tp
        self.continue_on_error = engine.options.continue_on_error
        self.options = dict(tp.options)
        self.by_host = {id(hp.host): hp for hp in tp.hosts}
        self.outcomes: list[HostOutcome] = []
        self.commands_executed = 0
        self.forks = engine.forks()

    def stopping(self) -> bool:
        return self.engine.cancel.requested

    def resumed(self, host: Host) -> bool:
        resume = self.engine.options.resume
        if resume is None:
            return False
        key = (self.tp.name, host.label)
        return key in resume.done_hosts or key in resume.start_at or any(k[:2] == key for k in resume.uncertain)

    def wait(self, seconds: float) -> bool:
        if seconds > 0:  # said, so that a pipe or CI log does not fall silent for the wait
            self.emit(ev.TaskWait(self.engine.options.run_id, task=self.tp.name, strategy=self.tp.strategy,
                                  seconds=seconds))  # fmt: skip
        return self.engine.cancel.sleep(seconds)

    def emit(self, event: ev.Event) -> None:
        self.engine.bus.emit(event)

    def _one(self, host: Host, batch: _Batch) -> HostOutcome:
        if self.stopping() or batch.stops():
            reason = INTERRUPTED if self.stopping() else batch.reason()
            outcome = HostOutcome(host, "skipped", reason=reason)
            self.engine.bus.emit(
                ev.HostStop(self.engine.options.run_id, task=self.tp.name, host=host.label, status="skipped",
                            reason=outcome.reason)
            )  # fmt: skip
        else:
            hp = self.by_host[id(host)]
            outcome = self.engine.run_host(self.tp, hp)
            with self.engine._lock:  # hosts of a batch finish in parallel
                self.commands_executed += self.engine._executed.get((self.tp.name, host.label), 0)
            if not outcome.ok:
                with self.engine._lock:
                    batch.failures += 1
        self.outcomes.append(outcome)
        return outcome

    def run_batch(
        self,
        hosts: Sequence[Host],
        stop_on_failure: bool | None = None,
        max_failures: int | None = None,
        stop_reason: Callable[[int], str] | None = None,
    ) -> list[HostOutcome]:
        batch = _Batch(not self.continue_on_error if stop_on_failure is None else stop_on_failure, max_failures,
                       stop_reason=stop_reason)  # fmt: skip
        if len(hosts) == 1 or self.forks == 1:
            return [self._one(h, batch) for h in hosts]
        # Every worker thread is started before any host's work begins. A thread's start waits
        # until the new thread has run (``Thread.start``), and once the first hosts connect, each
        # such hand-over waits for the GIL behind them: 250 threads took 3.4 s to start on a busy
        # client, the last hosts beginning that late. Held at a gate, the new threads take no
        # GIL, so starting them all takes milliseconds. One plain lock per host, not one shared
        # ``threading.Event``: a thousand threads woken by one event all queue on its internal
        # lock to leave ``wait`` (found holding 638 of them 40 s into a 1,000-host run).
        gates = [threading.Lock() for _ in hosts]
        for gate in gates:
            gate.acquire()

        def one(job: tuple[int, Host]) -> HostOutcome:
            gates[job[0]].acquire()
            return self._one(job[1], batch)

        with ThreadPoolExecutor(
            max_workers=min(self.forks, len(hosts)), thread_name_prefix=f"nexus-{self.tp.name}"
        ) as pool:
            try:
                results = pool.map(one, enumerate(hosts))
            finally:
                for gate in gates:
                    gate.release()
            return list(results)


@dataclass
class _Batch:
    """Shared state of one batch of hosts: how many failed, and whether that stops the rest."""

    stop_on_failure: bool
    max_failures: int | None = None
    failures: int = 0
    #: Why a host is left out, given the failures so far (see StrategyContext.run_batch).
    stop_reason: Callable[[int], str] | None = None

    def reason(self) -> str:
        """What a host the batch leaves out says."""
        return "not started: " + (self.stop_reason(self.failures) if self.stop_reason else ANOTHER_HOST_FAILED)

    def stops(self) -> bool:
        """True when the hosts of the batch not started yet must not start."""
        if self.stop_on_failure and self.failures:
            return True
        return self.max_failures is not None and self.failures > self.max_failures


def _with_input(cmd: Command, executor: Executor) -> Command | CommandResult:
    """``cmd`` with the value of its ``input_secret`` (fetched now, never planned), or why not."""
    if cmd.input_secret is None:
        return cmd
    from nexus_core.api import SecretError
    from nexus_core.secrets.files import marker
    from nexus_core.secrets.resolve import reveal

    if not executor.capabilities.stdin:
        return CommandResult(
            "error",
            reason=f"the {executor.name!r} transport cannot pass a secret on standard input (secret(..., to=...))",
            retryable=False,
        )
    try:
        value = reveal(cmd.input_secret)
    except SecretError as exc:
        fix = f"; {exc.hint}" if exc.hint else ""
        return CommandResult("error", reason=f"secret {cmd.input_secret!r}: {exc}{fix}", retryable=False)
    return replace(cmd, input=f"{marker(cmd.input_secret)}\n{value}")
