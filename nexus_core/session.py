"""One run of a plan, without the command line: what ``nexus run`` does once the plan is made.

A :class:`RunSession` wires the engine to an event bus, the state store (so the run can be
listed and resumed), the caller's subscribers and the plugins' subscribers, and handles
SIGINT, SIGTERM and SIGHUP while it runs. It imports no click: an agent, a CI plugin or a
test can run a plan from Python::

    from nexus_core.loader import load_project
    from nexus_core.plan import build_plan
    from nexus_core.plugins import PluginManager
    from nexus_core.session import run_plan

    pm = PluginManager()
    plan = build_plan(load_project("nexusfile.py"), pm.registry, ["deploy"])
    result = run_plan(plan, plugins=pm)
    print(result.status, result.exit_code)

Printing is the caller's business: pass a renderer (``nexus_core.output.render.make_renderer``)
as a subscriber to see the run as ``nexus run`` shows it.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from types import FrameType

    from nexus_core.engine import Engine, RunResult
    from nexus_core.events import Event, Subscriber
    from nexus_core.plan import Plan
    from nexus_core.plugins import PluginManager
    from nexus_core.state.resume import ResumePoint
    from nexus_core.state.store import RunRecord, StateStore

#: The signals a session turns into a graceful stop (the terminal closing sends SIGHUP).
STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


class RunRefused(Exception):
    """The run must not start (a required audit sink cannot write...): nothing ran.

    ``headline`` says what and why, ``context`` where (the file that declares it),
    ``suggestions`` how to fix it; the CLI exits with ``code`` (2).
    """

    def __init__(self, headline: str, context: Sequence[str] = (), suggestions: Sequence[str] = (),
                 code: int = 2) -> None:  # fmt: skip
        super().__init__(headline)
        self.headline = headline
        self.context = list(context)
        self.suggestions = list(suggestions)
        self.code = code


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def interrupt_message(signal_name: str, grace: float) -> str:
    """What the first stop signal means for the user: how long running commands may go on."""
    wait = f"waiting up to {grace:g} s for running commands"
    if signal_name == "SIGINT":
        return f"Interrupted: {wait}; Ctrl+C again to stop now"
    why = " (terminal closed)" if signal_name == "SIGHUP" else ""
    return f"{signal_name}{why}: stopping, {wait}; send {signal_name} again to stop now"


class RunSession:
    """Runs one plan once: engine, event bus, state record, subscribers and signal handling.

    ``store``: record the run (``None``: not recorded, not resumable). ``resume_record`` and
    ``resume``: continue that interrupted run under its own id, skipping finished work.
    ``subscribers``: ``(name, callback)`` pairs attached before the plugins' subscribers.
    ``fmt`` and ``mode`` are what the plugins' subscribers are told about the output, and
    ``mode`` is recorded with the run. ``extra`` becomes the executors' options
    (``ExecutorContext.options``, e.g. ``sudo_password``); it is never recorded.
    ``report`` prints notices (default: stderr). ``handle_signals``: install handlers for
    SIGINT, SIGTERM and SIGHUP during :meth:`run` (only possible in the main thread).
    ``markers``: leave a status file per command on the hosts (what makes a resume exact);
    ``False`` for runs that are never resumed, such as ``nexus exec``.
    ``force_handlers``: run notified handlers on a host even after a failure there (also
    ``config(force_handlers=True)``). A fresh recorded run takes over the handler notifications
    the previous run of the same tasks left pending (see :mod:`nexus_core.handlers`).
    ``run_id``: the id of a fresh run (default: a new one; cloud bursting picks it before
    planning, to tag the machines it starts). ``events``: emitted on the run's bus before
    anything else, with the run's id (the policy checks that let it start).
    """

    def __init__(
        self,
        plan: Plan,
        *,
        plugins: PluginManager | None = None,
        store: StateStore | None = None,
        resume_record: RunRecord | None = None,
        resume: ResumePoint | None = None,
        continue_on_error: bool = False,
        parallel_limit: int | None = None,
        extra: Mapping[str, Any] | None = None,
        subscribers: Sequence[tuple[str, Subscriber]] = (),
        fmt: str = "text",
        mode: str = "normal",
        report: Callable[[str], None] | None = None,
        handle_signals: bool = True,
        markers: bool = True,
        force_handlers: bool = False,
        run_id: str | None = None,
        events: Sequence[Event] = (),
    ) -> None:
        from nexus_core.engine import new_run_id

        self.plan = plan
        self.store = store
        self.resume_record = resume_record
        self.resume = resume
        self.continue_on_error = continue_on_error
        self.parallel_limit = parallel_limit
        self.extra = dict(extra or {})
        self.subscribers = list(subscribers)
        self.fmt = fmt
        self.mode = mode
        self.report = report or _stderr
        self.handle_signals = handle_signals
        self.markers = markers
        self.force_handlers = force_handlers
        self.run_id = resume_record.id if resume_record is not None else run_id or new_run_id()
        self.first_events = list(events)
        self._plugins = plugins
        self.engine: Engine | None = None

    @property
    def plugins(self) -> PluginManager:
        """The plugin manager (created on first use when none was given)."""
        if self._plugins is None:
            from nexus_core.plugins import PluginManager

            self._plugins = PluginManager(report=self._say)
        return self._plugins

    def run(self) -> RunResult:
        """Run the plan to its end, or until stopped by a signal or :meth:`interrupt`.

        Raises :class:`RunRefused` before anything runs when a required audit sink cannot
        write (or a sink is misdeclared).
        """
        audit = self._start_audit()
        try:
            engine = self.engine = self._make_engine(audit)
        except BaseException:
            if audit is not None:
                audit.close()
            raise
        from nexus_core.output import pipes

        pipes.TASKS_RAN = True  # the exit code is the tasks' now, whatever becomes of stdout
        previous = self._install_signals() if self.handle_signals else {}
        # What exists now (modules, the plan, the engine) lives until the run ends: left out of
        # the cyclic collector's full passes, which otherwise walk all of it again mid-run
        # (10-18 ms of a tree's re-run: docs/decisions.md, "The run's heap and the collector").
        gc.freeze()
        try:
            result = engine.run()
        finally:
            gc.unfreeze()
            _restore_signals(previous)
            if engine.options.prune is not None:
                engine.options.prune.save()  # the recorder is done with the store now
            if audit is not None:
                audit.close()  # every sink drained (each within its flush_timeout)
        self._say_held(engine)
        if audit is not None and audit.required_failure is not None:
            import dataclasses

            from nexus_core.exitcodes import ExitCode

            self._say(f"nexus: the audit trail of run {result.run_id} is incomplete: "
                      f"{audit.required_failure.line()}")  # fmt: skip
            result = dataclasses.replace(result, status="failed", exit_code=int(ExitCode.CONFIG))
        return result

    def _say_held(self, engine: Engine) -> None:
        """Name the handlers taken over from an earlier run for hosts this run left out (-H):
        they stay pending, for the next run of these tasks on those hosts."""
        carried = engine.options.carried
        if not carried:
            return
        planned = {(name, hp.host.label) for name, tp in self.plan.tasks.items() for hp in tp.hosts}
        held = sorted({(name, host) for (task, host), names in carried.items() if (task, host) not in planned
                       for name in names})  # fmt: skip
        if held:
            from nexus_core.output.alike import listed

            shown = listed([f"{name} on {host}" for name, host in held])
            self._say(f"nexus: handlers still pending from run {engine.options.carried_from} on hosts this run "
                      f"left out: {shown}; the next run of these tasks on them runs them")  # fmt: skip

    def _start_audit(self) -> Any:
        """The run's audit (``nexus_core.audit``) when a configuration file declares sinks, else None.

        Costs a few file reads when none is declared: the audit package is not imported.
        """
        from nexus_core.settings import section_files

        root = os.path.dirname(os.path.abspath(self.plan.nexusfile)) if self.plan.nexusfile else None
        if not section_files("audit", root):
            return None
        from nexus_core.audit.delivery import AuditRefused, start

        try:
            return start(root, self.plugins.registry, self.run_id, self._say)
        except AuditRefused as exc:
            raise RunRefused(exc.headline, [f"declared in {exc.where}"] if exc.where else [],
                             [exc.hint] if exc.hint else []) from None  # fmt: skip

    def interrupt(self, signal_name: str = "SIGINT") -> None:
        """Stop as the signal would (callable from any thread); the first call says what follows."""
        engine = self.engine
        if engine is None:
            return
        if not engine.signal_name:
            self._say(interrupt_message(signal_name, engine.grace(signal_name)))
        engine.interrupt(signal_name)

    # --- wiring --------------------------------------------------------------------------------

    def _record_start(self, run_id: str) -> bool:
        """Record the run's start (or a resume's); False, having said why, when the database
        cannot be written (read-only, immutable, a full disk): the run goes on unrecorded."""
        import sqlite3

        assert self.store is not None
        plan = self.plan
        try:
            if self.resume_record is not None:
                self.store.reopen_run(run_id, plan.to_dict(), plan.source_hash)
            else:
                seen = {"continue_on_error": self.continue_on_error, "parallel_limit": self.parallel_limit,
                        "mode": self.mode, "params": dict(plan.params), "limit": plan.limit}  # fmt: skip
                self.store.supersede(plan.nexusfile, list(plan.requested))
                self.store.begin_run(run_id, plan.nexusfile, plan.source_hash, list(plan.requested), seen,
                                     plan.to_dict())  # fmt: skip
        except sqlite3.OperationalError as exc:
            self._say(
                f"nexus: warning: cannot write the run-state database {self.store.path} ({exc}); this run is "
                "not recorded and cannot be resumed (check the file's permissions, attributes and free space)"
            )
            return False
        return True

    def _make_engine(self, audit: Any = None) -> Engine:
        import json

        from nexus_core.engine import Engine, RunOptions
        from nexus_core.events import EventBus
        from nexus_core.logs import LOGGER
        from nexus_core.plan import resolved_config

        plan, run_id = self.plan, self.run_id
        extra = dict(self.extra)
        # The sudo password must not reach local commands through their inherited environment.
        env_sudo_password = os.environ.pop("NEXUS_SUDO_PASSWORD", None)
        if env_sudo_password and "sudo_password" not in extra:
            extra["sudo_password"] = env_sudo_password
        from nexus_core import runlogs
        from nexus_core.secrets.redact import register

        # never shown, logged or recorded: *** everywhere (output, events, reports, state,
        # logs): the sudo password and run(env=...) values named like secrets (DB_PASSWORD).
        # Before anything is written: the run's plan goes into the state database first.
        for value in runlogs.plan_secrets(plan, extra):
            register(value)
        bus = EventBus(run_id, report=self._say)
        if audit is not None:
            bus.subscribe("audit", audit)  # first: it sees every event before any other subscriber
        if self.store is not None and not self._record_start(run_id):
            self.store = None  # the caller closes it
        if self.store is not None:
            from nexus_core.state.recorder import StateRecorder

            recorder = StateRecorder(self.store, run_id)
            bus.subscribe("state", recorder, after=recorder.after)
        for name, callback in self.subscribers:
            bus.subscribe(name, callback)
        if LOGGER.isEnabledFor(10):
            bus.subscribe("debug-log", lambda e: LOGGER.debug("event %s", json.dumps(e.to_dict(), default=str)))
        from nexus_core.logs import milestones

        milestones_log = milestones()
        if milestones_log is not None:  # --log-level: the run's milestones on stderr
            bus.subscribe("log", milestones_log)
        registry = self.plugins.registry
        full_cfg = resolved_config(plan, registry)
        for dist, sub in self.plugins.subscribers(full_cfg, {"format": self.fmt, "mode": self.mode}):
            bus.subscribe(dist, sub)
        if self.first_events:
            import dataclasses

            for event in self.first_events:
                bus.emit(dataclasses.replace(event, run_id=run_id))
        from nexus_core.state.paths import state_dir

        runlogs.start(bus, plan, run_id, state_dir(), extra)  # every command's output, for `nexus logs`
        cfg = plan.config
        if self.store is not None:  # the records of old finished runs go with their logs
            self.store.forget_finished(float(cfg.get("log_retention_days", runlogs.DEFAULT_RETENTION_DAYS)))
        options = RunOptions(
            parallel_limit=int(self.parallel_limit or cfg.get("parallel_limit") or 10),
            forks=cfg.get("forks"),
            continue_on_error=self.continue_on_error,
            run_id=run_id,
            interrupt_grace=float(cfg.get("interrupt_grace", 10)),
            terminate_grace=float(cfg.get("terminate_grace", 30)),
            resume=self.resume,
            extra=extra,
            markers=self.markers,
            force_handlers=self.force_handlers or cfg.get("force_handlers") is True,
        )
        if self.store is not None and self.resume_record is None:
            earlier = self.store.previous_pending(plan.nexusfile, list(plan.requested), run_id)
            if earlier is not None:
                options.carried, options.carried_from = earlier.pending_handlers(), earlier.id
                self.store.carry_notifications(earlier.id, run_id)  # kept if this run stops early too
        if self.store is not None:  # leftovers of other runs go with this run's clean-up, once a day per host
            from nexus_core.state.leftovers import DEFAULT_RETENTION_DAYS, HostPruner

            retention = float(cfg.get("state_retention_days") or DEFAULT_RETENTION_DAYS)
            options.prune = HostPruner(self.store, retention, run_id, [h.label for h in plan.hosts])
        engine = Engine(plan, registry, bus, options, report=self._say)
        if audit is not None:
            audit.connect(engine.stop_new_work)
        return engine

    def _say(self, message: str) -> None:
        try:
            self.report(message)
        except (OSError, ValueError, RuntimeError):  # terminal gone, stream closed or busy
            pass

    def _install_signals(self) -> dict[int, Any]:
        previous: dict[int, Any] = {}

        def handler(signum: int, _frame: FrameType | None) -> None:
            self.interrupt(signal.Signals(signum).name)

        try:
            for name in STOP_SIGNALS:
                sig = getattr(signal, name, None)
                if sig is not None:
                    previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread (e.g. embedded use): no signal handling
            pass
        return previous


def _restore_signals(previous: Mapping[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def run_plan(plan: Plan, **kwargs: Any) -> RunResult:
    """Run ``plan`` once with a :class:`RunSession` (same keyword arguments) and return the result."""
    return RunSession(plan, **kwargs).run()
