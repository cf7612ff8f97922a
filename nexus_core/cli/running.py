"""Running a plan from a command: resume decisions, output, failures, summary, exit code.

The run itself is :class:`nexus_core.session.RunSession` (no click); this module adds what a
person sees around it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import rich_click as click

from nexus_core.cli.application import Exit, ExitCode, fail, plugin_manager
from nexus_core.output.style import Style

if TYPE_CHECKING:
    import datetime

    from nexus_core.engine import RunResult
    from nexus_core.events import Event
    from nexus_core.plan import Plan
    from nexus_core.state.resume import ResumePoint
    from nexus_core.state.store import RunRecord, StateStore


def secret_warning(message: str) -> None:
    """A secrets warning on stderr (yellow on a terminal)."""
    click.echo(Style.detect(sys.stderr).paint(f"Warning: {message}", "yellow"), err=True)


def run_secrets(interactive: bool) -> None:
    """Make this process resolve ``secret()`` values (``nexus run``, ``nexus resume``)."""
    from nexus_core.secrets.resolve import start

    start(plugin_manager().registry, resolve=True, interactive=interactive, warn=secret_warning)


def _age_days(stamp: str, now: datetime.datetime) -> float | None:
    import datetime

    try:
        then = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    except (TypeError, ValueError):
        return None
    return (now - then).total_seconds() / 86400


def rotation_reminders(config: Mapping[str, Any], warn: Callable[[str], None] = secret_warning) -> list[str]:
    """Warn about old master keys and old secrets of the stores this run unlocked; return the warnings.

    ``config(key_rotation_reminder=DAYS)`` (default 90) and ``secret_rotation_reminder``
    (default 30) set the ages; 0 turns one off; ``check_rotation_on_run=False`` both.
    """
    from nexus_core.secrets.resolve import active

    current = active()
    if current is None or not current.used or config.get("check_rotation_on_run") is False:
        return []  # no secret used: no store to look at (and its modules stay unloaded)
    import datetime

    from nexus_core.secrets.local import used_stores

    key_days = config.get("key_rotation_reminder", 90)
    secret_days = config.get("secret_rotation_reminder", 30)
    now = datetime.datetime.now(datetime.UTC)
    said: list[str] = []
    backends = dict(current._backends)
    for store in used_stores(backends.get("local")):
        assert store.doc is not None
        age = _age_days(str(store.doc.get("key_created_at", "")), now)
        if key_days and age is not None and age > key_days:
            said.append(
                f"the master key of {store.path} is {int(age)} days old (key_rotation_reminder={key_days}); "
                "rotate it with `nexus secret rotate-key`"
            )
        for name, _rest in sorted(current.used):
            if name != "local" or _rest not in store:
                continue
            age = _age_days(str(store.entry(_rest).get("updated_at", "")), now)
            if secret_days and age is not None and age > secret_days:
                said.append(
                    f"secret {_rest!r} in {store.path} was last set {int(age)} days ago "
                    f"(secret_rotation_reminder={secret_days}); set a new value with `nexus secret set {_rest}`"
                )
    for message in said:
        warn(message)
    return said


def lock_project(
    store: StateStore | None, nexusfile: str, tasks: list[str], no_wait: bool, timeout: float | None
) -> None:
    """Hold this project's run lock until the process ends; wait for it, or exit 2 (``--no-wait``)."""
    from nexus_core.state.lock import LockBusy, acquire_project
    from nexus_core.state.paths import state_dir

    try:
        # Under the user's state folder whatever NEXUS_STATE_DB says: two runs of one nexusfile
        # recorded in two databases would still meet on the same hosts.
        acquire_project(state_dir(), nexusfile, tasks, wait=not no_wait, timeout=timeout,
                        say=lambda m: click.echo(m, err=True), store=store)  # fmt: skip
    except OSError as exc:  # a read-only or odd state folder: run, but say what is not guarded
        click.echo(f"nexus: warning: cannot lock this project ({exc.strerror or exc}); "
                   "another run of it at the same time would not be noticed", err=True)  # fmt: skip
    except LockBusy as exc:
        waited = f" after waiting {exc.waited:.1f}s" if exc.waited else ""
        fail(ExitCode.CONFIG, f"Another run of this project is in progress{waited}: {exc.holder.describe()}",
             [f"Nexusfile: {nexusfile}"],
             ["Wait for it to finish (run again without --no-wait)" if no_wait
              else "Wait longer for it (a larger --lock-timeout, or none to wait until it ends)",
              "Or stop it first"])  # fmt: skip


def check_resumable(record: RunRecord, plan: Plan, point: ResumePoint, force: bool, interactive: bool) -> None:
    """Refuse (exit 2) when the remaining plan changed, or a non-idempotent task may have run."""
    from nexus_core.state.resume import plan_changes

    changes = plan_changes(record, plan, point)
    fresh = f"nexus run {' '.join(plan.requested)} --no-resume".replace("  ", " ")
    if changes and not force:
        fail(ExitCode.CONFIG,
             f"Cannot resume run {record.id}: its remaining work changed (the nexusfile, task arguments or hosts)",
             changes, [f"Start fresh: {fresh} (or discard it: nexus pipelines discard {record.id})",
                       "Or resume anyway with --force"])  # fmt: skip
    risky = sorted(t for t in point.in_progress() if plan.tasks[t].options.get("idempotent") is False)
    if risky and not force:
        names = ", ".join(risky)
        question = f"Task(s) {names} are not idempotent and may have run partly. Run them again?"
        if not interactive or not click.confirm(question, default=False, err=True):
            fail(
                ExitCode.CONFIG,
                f"Not resuming: {names} declared idempotent=False and may have run partly",
                [f"Run {record.id} stopped inside {names}"],
                ["Check the hosts by hand, then resume with --force", f"Or start fresh: {fresh}"],
            )


def may_still_run(where: Iterable[str], run: str, then: str) -> str:
    """The warning that commands of a crashed ``run`` (``where``: "TASK on HOST") may still run
    on their hosts, ending with ``then`` (what follows from it)."""
    from nexus_core.output.alike import listed

    names = sorted(set(where))
    shown = listed(names)
    return (f"nexus: warning: {shown} {'was' if len(names) == 1 else 'were'} running a command when {run} "
            f"stopped; it may still be running there{then}")  # fmt: skip


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
    before = str(previous.options.get("limit") or "")
    if before != (plan.limit or ""):
        # -H names other hosts than the interrupted run's: resuming would close that run on
        # these hosts alone, the others never run nor checked.
        said = f"-H {before}" if before else "all of its hosts"
        if resume:
            fail(ExitCode.CONFIG,
                 f"Run {previous.id} of this pipeline ran on {said}; -H {plan.limit or '(none)'} would resume it on "
                 "other hosts", [],
                 [f"Resume it as it was: nexus resume {previous.id}",
                  "Or start a fresh run on these hosts: drop --resume (or pass --no-resume)"])  # fmt: skip
        click.echo(f"nexus: run {previous.id} of this pipeline was interrupted on {said}; starting fresh on "
                   f"-H {plan.limit or '(none)'} (nexus resume {previous.id} first would continue it)",
                   err=True)  # fmt: skip
        return None, None
    point = resume_point(previous, plan)
    style = Style.detect(sys.stderr)
    interactive = style.interactive and fmt != "json"
    if not resume:
        if not interactive:
            how = "crashed" if previous.status == "running" else "was interrupted"
            click.echo(f"nexus: run {previous.id} of this pipeline {how}; starting fresh (use --resume to "
                       "continue it)", err=True)  # fmt: skip
            if previous.status == "running" and point.uncertain:  # crashed: a command may still run
                where = {f"{task} on {host}" for task, host, _ in point.uncertain}
                then = " (--resume waits for it instead of starting it again)"
                click.echo(may_still_run(where, f"run {previous.id}", then), err=True)
            return None, None
        for line in describe(previous, point, plan):
            click.echo(line, err=True)
        answer = click.prompt("Resume? [Y/n/discard]", default="y", show_default=False, err=True,
                              type=click.Choice(["y", "n", "discard"], case_sensitive=False),
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


def execute(
    plan: Plan,
    *,
    fmt: str = "text",
    mode: str = "normal",
    continue_on_error: bool = False,
    parallel_limit: int | None = None,
    store: StateStore | None = None,
    resume_record: RunRecord | None = None,
    resume: ResumePoint | None = None,
    extra: Mapping[str, Any] | None = None,
    force_handlers: bool = False,
    tui: bool = False,
    run_id: str | None = None,
    events: Sequence[Event] = (),
    on_session: Callable[[Any], None] | None = None,
) -> RunResult:
    """Run a plan as ``nexus run`` shows it: live output, then failures and the summary.

    The run is a :class:`~nexus_core.session.RunSession` (state record, plugin subscribers,
    signals); see there for the arguments. After an interrupted, recorded run the summary
    says how to resume it. ``tui``: show the run on the dashboard (``nexus_core.tui``; the
    caller checked that it can start), the plain renderer taking over if it closes early.
    ``run_id`` and ``events``: the id a policy gate chose and its checks, emitted first.
    """
    from nexus_core.output.render import make_renderer
    from nexus_core.output.report import failures_text, summary_line
    from nexus_core.runlogs import logs_command
    from nexus_core.session import RunRefused, RunSession

    style = Style.detect()
    dashboard = None
    if tui:
        from nexus_core.logs import debug_enabled
        from nexus_core.tui.live import DashboardRun

        dashboard = DashboardRun(lambda: make_renderer(mode, fmt, style), say=lambda m: click.echo(m, err=True),
                                 show_tracebacks=debug_enabled())  # fmt: skip
    renderer: Any = dashboard or make_renderer(mode, fmt, style)
    session = RunSession(
        plan,
        plugins=plugin_manager(),
        store=store,
        resume_record=resume_record,
        resume=resume,
        continue_on_error=continue_on_error,
        parallel_limit=parallel_limit,
        extra=extra,
        force_handlers=force_handlers,
        subscribers=[("output", renderer)],
        fmt=fmt,
        mode=mode,
        report=dashboard.report if dashboard else lambda m: click.echo(m, err=True),
        run_id=run_id,
        events=events,
    )
    if on_session is not None:  # cloud bursting: emits its events on this run's bus
        on_session(session)
    try:
        result = dashboard.run(session) if dashboard else session.run()
    except RunRefused as exc:
        fail(exc.code, exc.headline, exc.context, exc.suggestions)
    finally:
        renderer.close()
    if fmt != "json":
        try:
            err_style = Style.detect(sys.stderr)
            if result.failures:  # one block per distinct error (hosts that failed alike share one)
                see = lambda f: logs_command(result.run_id, f.task, f.host)  # noqa: E731
                order = [h.label for h in plan.hosts]  # hosts named in the plan's order, not as they failed
                click.echo(failures_text(err_style, result.failures, see, mode == "verbose", order), err=True)
            if mode != "quiet" or result.status != "ok":
                click.echo(summary_line(style, result))
            if result.status == "interrupted" and store is not None:
                click.echo(f"Resume with: nexus resume {result.run_id}")
            elif result.status == "failed" and store is not None:  # what succeeded is not run again
                kept = " (it delivers the artifacts this run kept instead of building them again)"
                click.echo(f"Resume with: nexus resume {result.run_id}{kept if _kept_artifacts(result.run_id) else ''}")
        except OSError:  # the terminal is gone (SIGHUP) or the pipe closed: the run's outcome stands
            pass
    return result


def _kept_artifacts(run_id: str) -> bool:
    """True when the run kept artifacts (its manifest names files; none without one)."""
    from nexus_core import artifacts

    return bool(artifacts.read_manifest(run_id))


def run_recorded(
    plan: Plan, *, store: StateStore | None, record: RunRecord | None, point: ResumePoint | None, **kwargs: Any
) -> NoReturn:
    """Execute ``plan`` with the state store (if any) attached; exit with the run's code."""
    result = execute(plan, store=store, resume_record=record, resume=point, **kwargs)
    raise Exit(result.exit_code)
