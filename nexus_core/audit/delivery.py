"""Delivery of a run's records: one bounded queue and one thread per sink, and the failure policy.

The event bus calls :class:`RunAudit` with each event; the record is made once and put on
every sink's queue without waiting (a slow sink never stalls the hosts). Each sink's thread
takes the records in order, in batches, and calls the sink's ``write``. When a queue is full
(the sink is too slow for ``queue_size`` records) or ``write`` raises, the sink has failed:

- a ``required`` sink stops the run from starting new work (fail closed: the audit trail
  would be incomplete), and the run exits 2 with a message naming the sink and why;
- any other sink is reported once, on stderr, and gets no more records.

At the end of the run every queue is drained and every sink closed, each within its
``flush_timeout``.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from nexus_core.api import AuditSink, AuditSinkContext, AuditSinkError
from nexus_core.audit.config import AuditConfigError, SinkConfig, check_options, salt_of
from nexus_core.audit.records import Actor, clear_identity, of_event, secret_records, with_hmacs
from nexus_core.events import Event

#: Records handed to ``write`` at most at once.
BATCH = 200

_STOP = object()


@dataclass(frozen=True)
class SinkProblem:
    """Why a sink cannot start or stopped: the sink, what happened, and how to fix it."""

    sink: SinkConfig
    reason: str
    hint: str = ""

    def line(self) -> str:
        """One line for stderr."""
        return f"audit sink {self.sink.describe()} {self.reason}"


#: The built-in sink types (type -> "module:Class"), looked up before any plugin's: like the
#: built-in host source, they are not registered through the hook, so ``nexus plugins`` shows
#: nexus-core's hooks as it always has.
BUILTIN_SINKS: dict[str, str] = {
    "file": "nexus_core.audit.file:FileSink",
    "syslog": "nexus_core.audit.syslog:SyslogSink",
    "splunk": "nexus_core.audit.splunk:SplunkSink",
    "azure_log_analytics": "nexus_core.audit.loganalytics:LogAnalyticsSink",
}


def sink_class(cfg: SinkConfig, registry: Any) -> type[AuditSink]:
    """The class of ``cfg``'s type: a built-in, else a plugin's (raise :class:`AuditConfigError`)."""
    import importlib

    target = BUILTIN_SINKS.get(cfg.type)
    if target is not None:
        module, _, name = target.partition(":")
        found: type[AuditSink] = getattr(importlib.import_module(module), name)
        return found
    table = registry.audit_sinks
    if cfg.type not in table:
        known = ", ".join(sorted({*BUILTIN_SINKS, *table}))
        raise AuditConfigError(f"audit sink {cfg.name!r}: no sink type {cfg.type!r}", cfg.where,
                               f"known types: {known} (a plugin may add others)")  # fmt: skip
    problem = table.problem(cfg.type)
    if problem:
        raise AuditConfigError(f"audit sink {cfg.name!r}: {problem}", cfg.where, "reinstall or remove that plugin")
    plugin: type[AuditSink] = table[cfg.type]
    return plugin


def make_sink(cfg: SinkConfig, registry: Any, warn: Callable[[str], None]) -> AuditSink:
    """An instance of the sink ``cfg`` declares (its type looked up, its options checked)."""
    from nexus_core.audit.config import audit_dir

    cls = sink_class(cfg, registry)
    options = check_options(cfg, tuple(getattr(cls, "options", ())))
    context = AuditSinkContext(cfg.name, options, cfg.required, os.path.dirname(audit_dir()), cfg.where, warn)
    return cls(context)


class SinkWorker:
    """One sink's queue and thread."""

    def __init__(
        self, cfg: SinkConfig, sink: AuditSink, salt: bytes, on_failure: Callable[[SinkProblem], None]
    ) -> None:
        self.cfg = cfg
        self.sink = sink
        self.salt = salt
        self.on_failure = on_failure
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=cfg.queue_size)
        self.failed: SinkProblem | None = None
        self.queued = 0
        self.delivered = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._loop, name=f"nexus-audit-{cfg.name}", daemon=True)
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the sink's thread."""
        self._thread.start()

    def put(self, record: dict[str, Any]) -> None:
        """Queue ``record`` without waiting; a full queue fails the sink (records would be lost)."""
        if self.failed is not None:
            self.dropped += 1
            return
        try:
            self.queue.put_nowait(record)
            self.queued += 1
        except queue.Full:
            self.dropped += 1
            self._fail(f"fell behind: its queue of {self.cfg.queue_size} records is full, records are lost",
                       "make the sink faster or raise queue_size")  # fmt: skip

    def _fail(self, reason: str, hint: str = "") -> None:
        with self._lock:
            if self.failed is not None:
                return
            self.failed = SinkProblem(self.cfg, reason, hint)
        self.on_failure(self.failed)

    def _loop(self) -> None:
        stop = False
        while not stop:
            item = self.queue.get()
            batch: list[dict[str, Any]] = []
            while True:
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
                if len(batch) >= BATCH:
                    break
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
            if batch and self.failed is None:
                try:
                    self.sink.write([with_hmacs(r, self.salt) for r in batch])
                    self.delivered += len(batch)
                except AuditSinkError as exc:
                    self._fail(f"cannot write: {exc.message}", exc.hint)
                except Exception as exc:  # noqa: BLE001 - a sink's bug fails that sink, not the run
                    self._fail(f"failed: {type(exc).__name__}: {exc}")
        try:
            self.sink.close()
        except AuditSinkError as exc:
            self._fail(f"cannot finish: {exc.message}", exc.hint)
        except Exception as exc:  # noqa: BLE001
            self._fail(f"failed to close: {type(exc).__name__}: {exc}")

    def settle(self, deadline: float) -> None:
        """Wait until every record queued so far is written, the sink failed, or ``deadline``."""
        while (
            self.failed is None
            and self.delivered < self.queued
            and self._thread.is_alive()
            and time.monotonic() < deadline
        ):
            time.sleep(0.005)

    def finish(self, deadline: float) -> None:
        """Drain the queue and close the sink, by ``deadline`` (``time.monotonic()``)."""
        try:
            self.queue.put(_STOP, timeout=max(0.0, deadline - time.monotonic()))
        except queue.Full:
            pass
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            left = self.queue.qsize()
            self._fail(f"did not finish within flush_timeout={self.cfg.flush_timeout:g}s ({left} records left)",
                       "make the sink faster or raise flush_timeout")  # fmt: skip


class AuditRefused(Exception):
    """A required sink cannot write (or a sink is misdeclared): the run must not start.

    ``headline`` names the sink and why, ``where`` the file that declares it, ``hint`` the fix.
    """

    def __init__(self, headline: str, where: str = "", hint: str = "") -> None:
        super().__init__(headline)
        self.headline = headline
        self.where = where
        self.hint = hint

    @classmethod
    def of(cls, problem: SinkProblem) -> AuditRefused:
        """The refusal for a sink's problem."""
        return cls(f"{problem.line()}: the run does not start", problem.sink.where, problem.hint)


class RunAudit:
    """A run's audit: the sinks, opened before anything runs; an event bus subscriber; closed at the end.

    ``report`` prints a line on stderr; ``stop_new_work`` is called (once) when a required
    sink fails during the run. :attr:`required_failure` says which one, for the exit code.
    """

    def __init__(
        self,
        configs: Sequence[SinkConfig],
        registry: Any,
        run_id: str,
        report: Callable[[str], None],
        actor: Actor | None = None,
    ) -> None:
        self.configs = list(configs)
        self.registry = registry
        self.run_id = run_id
        self.report = report
        self._actor = actor
        self.workers: list[SinkWorker] = []
        self.required_failure: SinkProblem | None = None
        self.stop_new_work: Callable[[str], None] = lambda _reason: None
        self._secrets_seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    @property
    def actor(self) -> Actor:
        """Who acts: the identity given, else this process's at the time of the event (an
        executor sets its client certificate's identity when the run's commands go to agents)."""
        return self._actor or Actor.current()

    def open(self) -> None:
        """Create and open every sink; raise :class:`AuditRefused` when a required one (or any
        declaration) cannot be used, warn for the others."""
        for cfg in self.configs:
            try:
                sink = make_sink(cfg, self.registry, self.report)
                salt = salt_of(cfg)
                sink.open()
            except AuditConfigError as exc:
                self.abort()
                raise AuditRefused(
                    f"audit sink {cfg.describe()} is misdeclared: {exc.message}", exc.where, exc.hint
                ) from None
            except AuditSinkError as exc:
                problem = SinkProblem(cfg, f"cannot write: {exc.message}", exc.hint)
                if cfg.required:
                    self.abort()
                    raise AuditRefused.of(problem) from None
                self.report(f"nexus: warning: {problem.line()}; the run goes on without it")
                continue
            except Exception as exc:  # noqa: BLE001 - a plugin's sink: its bug is that sink's failure
                problem = SinkProblem(cfg, f"failed to open: {type(exc).__name__}: {exc}")
                if cfg.required:
                    self.abort()
                    raise AuditRefused.of(problem) from None
                self.report(f"nexus: warning: {problem.line()}; the run goes on without it")
                continue
            worker = SinkWorker(cfg, sink, salt, self._failed)
            worker.start()
            self.workers.append(worker)

    def connect(self, stop_new_work: Callable[[str], None]) -> None:
        """Call ``stop_new_work`` when a required sink fails: at once if one already did (its
        first records, written before the run's engine existed)."""
        self.stop_new_work = stop_new_work
        with self._lock:
            failed = self.required_failure
        if failed is not None:
            stop_new_work(failed.line())

    def _failed(self, problem: SinkProblem) -> None:
        if problem.sink.required:
            with self._lock:
                first = self.required_failure is None
                if first:
                    self.required_failure = problem
            if first:
                self.report(f"nexus: {problem.line()}; it is required: no new work starts")
                self.stop_new_work(problem.line())
        else:
            self.report(f"nexus: warning: {problem.line()}; it gets no more records, the run goes on")

    def __call__(self, event: Event) -> None:
        """The bus subscriber: the event's record (if audited) to every sink's queue."""
        try:
            found = of_event(event, self.actor)
            records = [found] if found is not None else []
            if event.name == "pipeline.start":  # the secrets the run resolved before it started
                records += secret_records(self.run_id, self.actor, self._secrets_seen, event.ts)
            elif event.name == "pipeline.stop":  # ... and those resolved as commands ran
                records[:0] = secret_records(self.run_id, self.actor, self._secrets_seen, event.ts)
            for rec in records:
                for worker in self.workers:
                    worker.put(rec)
            if event.name == "pipeline.start":
                # The run's first records written before its first task: a required sink that
                # opens but cannot write (a full disk) stops the run before anything starts.
                for worker in self.workers:
                    if worker.cfg.required:
                        worker.settle(time.monotonic() + worker.cfg.flush_timeout)
        except Exception as exc:  # noqa: BLE001 - never lose the bus subscription over one event
            self.report(f"nexus: warning: audit could not record {event.name}: {type(exc).__name__}: {exc}")

    def close(self) -> None:
        """Drain every queue and close every sink (each within its ``flush_timeout``)."""
        for worker in self.workers:
            worker.finish(time.monotonic() + worker.cfg.flush_timeout)
        clear_identity()  # the identity an executor set was this run's

    def abort(self) -> None:
        """Close the sinks already opened (the run is not starting)."""
        for worker in self.workers:
            worker.finish(time.monotonic() + min(5.0, worker.cfg.flush_timeout))
        self.workers = []


def start(root: str | None, registry: Any, run_id: str, report: Callable[[str], None]) -> RunAudit | None:
    """The run's audit with every declared sink open, or None when no sink is declared.

    Raises :class:`AuditRefused` (the run must not start) when a declaration is wrong or a
    required sink cannot write.
    """
    from nexus_core.audit.config import load

    try:
        configs = load(root)
    except AuditConfigError as exc:
        raise AuditRefused(f"audit configuration: {exc.message}", exc.where, exc.hint) from None
    if not configs:
        return None
    audit = RunAudit(configs, registry, run_id, report)
    audit.open()
    return audit
