"""``nexus run``: run tasks (or, with ``--dry-run``, show the plan and the pre-flight checks)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import rich_click as click

from nexus_core.cli.application import (
    Exit,
    ExitCode,
    config_option,
    fail,
    format_option,
    hosts_option,
    load,
    lock_options,
    log_options,
    main,
    make_plan,
    open_store,
    plugin_manager,
    policy_applies,
    setup_logs,
    show_problems,
)
from nexus_core.cli.running import decide_resume, lock_project, run_recorded
from nexus_core.complete import complete
from nexus_core.output.style import Style

if TYPE_CHECKING:
    from nexus_core.events import Event
    from nexus_core.model import Host
    from nexus_core.plan import Plan, TaskPlan


#: ``-K/--ask-sudo-pass``, shared by ``nexus run`` and ``nexus exec``.
ask_sudo_pass_option = click.option(
    "-K",
    "--ask-sudo-pass",
    is_flag=True,
    help="Ask once (on a terminal) for the sudo password of remote hosts. Without a terminal "
    "set NEXUS_SUDO_PASSWORD instead.",
)


@main.command()
@click.argument("tasks", nargs=-1, metavar="[TASKS]...", shell_complete=lambda *a: complete("tasks_and_params", *a))
@click.option(
    "--param",
    "param_words",
    metavar="KEY=VALUE",
    multiple=True,
    help="An argument for the tasks' parameters (same as a KEY=VALUE word after the tasks).",
)
@click.option("-n", "--dry-run", is_flag=True, help="Print the plan; execute nothing on any host.")
@click.option("-v", "--verbose", is_flag=True, help="Stream every output line, tagged with task and host.")
@click.option("-q", "--quiet", is_flag=True, help="One line per task.")
@click.option("--continue-on-error", is_flag=True, help="Run everything that does not depend on a failure.")
@click.option("-i", "--identity", metavar="PATH", help="SSH private key (overrides ssh_identity).")
@click.option("-u", "--user", metavar="NAME", help="SSH user (overrides ssh_user).")
@ask_sudo_pass_option
@click.option("-p", "--parallel-limit", type=click.IntRange(min=1), help="Tasks running at once.")
@hosts_option(
    "Run only on these of each task's hosts: names, addresses, groups, globs, !exclude, "
    "&intersect, @file; comma-separated or repeated (like Ansible's --limit)."
)
@click.option(
    "--scale",
    "scale",
    metavar="PROVIDER=N",
    multiple=True,
    help="With --dry-run: the cloud instances N of PROVIDER would be, with an estimated cost; nothing is started.",
)
@click.option(
    "--simulate-failure",
    "simulate_failure",
    metavar="HOST",
    help="With --dry-run: what-if analysis of HOST failing (who runs, who fails, who is skipped).",
)
@click.option("--list-hosts", is_flag=True, help="Print the hosts each task would run on; connect to nothing.")
@click.option("--refresh", is_flag=True, help="Discover hosts afresh, ignoring config(discovery_ttl=...)'s cache.")
@click.option("--resume", is_flag=True, help="Continue the interrupted run of these tasks without asking.")
@click.option("--no-resume", is_flag=True, help="Start fresh even if an interrupted run exists.")
@click.option("--force", is_flag=True, help="With --resume: resume even if the remaining work changed.")
@click.option(
    "--force-handlers",
    is_flag=True,
    help="Run notified handlers on a host even when a later command of the task failed there.",
)
@click.option(
    "--tui/--no-tui",
    "tui",
    default=False,
    help="Show the run on the live dashboard (needs a terminal and the tui extra; never under CI or TERM=dumb).",
)
@click.option(
    "--override-window",
    is_flag=True,
    help="Emergency: run a task outside its change window (needs --reason; audited).",
)
@click.option("--reason", metavar="TEXT", default="", help="Why the change window is overridden (recorded).")
@config_option
@format_option
@log_options
@lock_options
def run(
    tasks: tuple[str, ...],
    dry_run: bool,
    verbose: bool,
    quiet: bool,
    continue_on_error: bool,
    identity: str | None,
    user: str | None,
    ask_sudo_pass: bool,
    parallel_limit: int | None,
    hosts_override: tuple[str, ...],
    config_path: str | None,
    fmt: str,
    log_level: str | None,
    log_format: str,
    resume: bool,
    no_resume: bool,
    force: bool,
    no_wait: bool = False,
    lock_timeout: float | None = None,
    list_hosts: bool = False,
    param_words: tuple[str, ...] = (),
    refresh: bool = False,
    force_handlers: bool = False,
    tui: bool = False,
    override_window: bool = False,
    reason: str = "",
    scale: tuple[str, ...] = (),
    simulate_failure: str | None = None,
) -> None:
    """Run TASKS and their dependencies, each once, in parallel where the DAG allows.

    KEY=VALUE words are arguments for the tasks' parameters. Without a task, the default
    task runs (config(default=...) or @task(default=True)).

    After an interrupted run of the same tasks, a terminal asks whether to resume it;
    without a terminal (or under CI) the run starts fresh unless --resume is given.

    -K/--ask-sudo-pass asks for the sudo password once; it is handed to the executors only
    (never printed, never in a command line). NEXUS_SUDO_PASSWORD does the same without a prompt.

    --tui shows the run on the live dashboard (keys: ? for help); without a terminal, under
    CI or with TERM=dumb it prints one line saying why and the plain output follows.

    A policy (docs/compliance.md) is enforced before anything runs: a denial exits 77; a
    task that needs approval waits for it (exit 75 at once with --no-wait).
    """
    setup_logs(log_level, log_format)
    if verbose and quiet:
        fail(ExitCode.CONFIG, "-v and -q cannot be used together", suggestions=["Pick one of them"])
    if resume and no_resume:
        fail(ExitCode.CONFIG, "--resume and --no-resume cannot be used together", suggestions=["Pick one of them"])
    if override_window and not reason.strip():
        fail(ExitCode.CONFIG, "--override-window needs --reason",
             suggestions=['Say why, for the audit trail: --override-window --reason "TEXT"'])  # fmt: skip
    check_can_ask_sudo_pass(ask_sudo_pass)
    if not (dry_run or list_hosts):  # only a real run decrypts secrets (a dry run shows ***)
        from nexus_core.cli.running import run_secrets

        run_secrets(interactive=_can_prompt())
    project = load(config_path)
    if simulate_failure and not dry_run:
        fail(ExitCode.CONFIG, "--simulate-failure only goes with --dry-run", [],
             [f"nexus run TASK --dry-run --simulate-failure {simulate_failure}"])  # fmt: skip
    if scale and not dry_run:
        fail(ExitCode.CONFIG, "--scale only goes with --dry-run", [],
             ["nexus run TASK --dry-run --scale aws=5", "To start instances: nexus cloud scale aws=5"])  # fmt: skip
    tasks, params = run_words(project, tasks, param_words, fmt)
    from nexus_core.options import config_overrides  # -u/-i: the keys their plugin declares

    known = plugin_manager().registry.config_options
    overrides = config_overrides(known, identity=identity, user=user, parallel_limit=parallel_limit)
    limit = list(hosts_override) or None
    store = open_store(quiet=True)  # opened once: the plan cache now, the run's record later
    burst = _burst(project, dry_run or list_hosts, fmt, tasks)
    try:
        plan = make_plan(project, tasks, fmt, limit=limit, params=params, config_override=overrides, cache=store,
                         refresh=refresh, dry_clouds=dry_run or list_hosts)  # fmt: skip
        if not log_level and project.config.get("log_level"):
            setup_logs(str(project.config["log_level"]), log_format)
        gated = policy_applies() or _uses_compliance(project)
        gate = None
        if gated:
            from nexus_core.policy.gate import gate_run

            mode = "list-hosts" if list_hosts else "dry-run" if dry_run else "run"
            gate = gate_run(plan, project, mode=mode, override_window=override_window, reason=reason,
                            no_wait=no_wait, fmt=fmt)  # fmt: skip
        if list_hosts:
            from nexus_core.hostlist import hosts_listing, hosts_text

            click.echo(json.dumps(hosts_listing(plan)) if fmt == "json" else hosts_text(plan))
            return
        if dry_run:
            if scale:
                _dry_scale(project, scale, fmt)
            if simulate_failure:
                _what_if(plan, simulate_failure, continue_on_error, fmt, parallel_limit)
            _dry_run(plan, fmt, _held_handlers(store, plan))
            if gated:
                from nexus_core.policy.gate import record_dry_run

                record_dry_run(plan, project)
            return
        from nexus_core.cli.running import rotation_reminders

        rotation_reminders(plan.config)
        extra: dict[str, Any] = ask_sudo_password() if ask_sudo_pass else {}
        if store is None:
            store = open_store()  # a second try, which says why the run is not recorded
        lock_project(store, plan.nexusfile, list(plan.requested), no_wait, lock_timeout)
        record = point = None
        if store is not None and not no_resume:
            fresh = plan
            plan = _with_saved_discovery(store, plan, project, tasks, fmt, limit=limit, params=params,
                                         config_override=overrides)  # fmt: skip
            record, point = decide_resume(store, plan, resume=resume, force=force, fmt=fmt)
            if record is None:
                plan = fresh  # starting fresh: on the hosts discovered now
        if burst is not None:
            extra["cloud_burst"] = True  # shards on tagged agents wait where the autoscaler sees them
            burst.start()
        ids: dict[str, Any] = {}
        if burst is not None and record is None:
            ids["run_id"] = burst.cloud.run_id  # the id its machines are tagged with
        if gate:  # a policy gate's id wins (its checks were recorded under it); the machines keep theirs
            ids.update(run_id=gate.run_id if record is None else None, events=gate.events)
        run_recorded(
            plan,
            store=store,
            record=record,
            point=point,
            on_session=burst.attach if burst is not None else None,
            fmt=fmt,
            mode="verbose" if verbose else "quiet" if quiet else "normal",
            continue_on_error=continue_on_error,
            parallel_limit=parallel_limit,
            extra=extra,
            force_handlers=force_handlers,
            tui=tui and _tui_can_start(fmt),
            **ids,
        )
    finally:
        if burst is not None:
            burst.finish()  # before the store closes: the costs go into the run's record
        if store is not None:
            store.close()


def _uses_compliance(project: Any) -> bool:
    """True when the nexusfile uses approvals, change windows or dry-run requirements."""
    return bool(project.compliance) or any(
        key in ("approval", "change_window") for t in project.tasks.values() for key, _ in t.extra
    )


def _burst(project: Any, dry: bool, fmt: str = "text", tasks: Sequence[str] | None = None) -> Any:
    """The cloud bursting of a real run when the nexusfile declares ``cloud(...)`` (else None);
    its machines are started here, before the plan looks for agents. ``tasks``: the run's
    requested tasks (their dependencies count too; None or empty: every task)."""
    if dry or not project.clouds:
        return None
    from nexus_core.plan import closure

    names = [t for t in tasks or () if t in project.tasks]
    run_tasks = closure(project, names) if names else None
    from nexus_core import clouds
    from nexus_core.api import CloudError
    from nexus_core.clouds.burst import BurstRun
    from nexus_core.engine import new_run_id

    registry = plugin_manager().registry
    problems = clouds.check(project, registry)
    if problems:
        show_problems(problems, "text")
        raise Exit(ExitCode.CONFIG)
    burst = BurstRun(registry, project, new_run_id(), say=lambda m: click.echo(m, err=True), tasks=run_tasks)
    if fmt == "json":  # a run that ends before its own output starts still shows its machines
        from nexus_core.output.render import event_json

        def show(events: list[Any]) -> None:
            for event in events:
                click.echo(event_json(event))

        burst.on_unsent = show
    try:
        burst.before_plan()
    except CloudError as exc:
        burst.finish()
        fail(exc.exit_code, f"Cloud bursting failed: {exc.message}", [], [exc.hint] if exc.hint else [])
    _stop_through_clean_up()
    return burst


def _stop_through_clean_up() -> None:
    """Until the run installs its own handlers: SIGTERM and SIGHUP (a CI runner, a closed
    terminal) end the command through its clean-up, which terminates the machines just
    started, as Ctrl+C already does, instead of killing it on the spot and leaving them
    billed (``nexus cloud reap`` would have to find them)."""
    import signal
    import threading

    from nexus_core.loader import stop_as_interrupt

    def stop(signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        click.echo(f"nexus: {name} before the run started: stopping", err=True)
        stop_as_interrupt(name)  # as Ctrl+C: through the clean-up, even from a task body being planned

    if threading.current_thread() is not threading.main_thread():
        return
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, stop)


def _what_if(plan: Plan, target: str, continue_on_error: bool, fmt: str, parallel_limit: int | None) -> None:
    """The what-if analysis of ``target`` failing: per task in run order, who runs, fails, is skipped.

    Each task's own strategy (a plugin's too) decides, driven by :func:`_simulate_task`."""

    def matches(label: str) -> bool:
        return target in (label, label.rpartition("@")[2])

    from nexus_core.engine import forks_of

    forks = forks_of(plan.config, int(parallel_limit or plan.config.get("parallel_limit") or 10))
    tasks: list[dict[str, Any]] = []
    failed: set[str] = set()
    known = False
    for phase in plan.phases:
        for name in phase:
            tp = plan.tasks[name]
            order = [label for batch in tp.batches for label in batch] or [h.host.label for h in tp.hosts]
            known = known or any(matches(label) for label in order)
            blocked = sorted(d for d in tp.deps if d in failed)
            row: dict[str, Any] = {"task": name, "strategy": tp.strategy, "hosts": {}}
            if blocked:  # a task whose dependency fails is skipped, --continue-on-error or not
                row["hosts"] = dict.fromkeys(order, "skipped")
                row["why"] = f"depends on {', '.join(blocked)}, which would fail"
                failed.add(name)
                tasks.append(row)
                continue
            simulated, why = _simulate_task(tp, lambda h: matches(h.label), continue_on_error, forks)
            row["hosts"] = dict.fromkeys(order, "skipped") | simulated  # in the planned order
            if why:
                row["why"] = why
            if any(state != "ok" for state in simulated.values()):
                failed.add(name)
            tasks.append(row)
    if not known:
        fail(ExitCode.CONFIG, f"--simulate-failure {target}: no task of this run uses that host", [],
             ["Pick one of the hosts the plan shows (nexus run TASK --list-hosts)"])  # fmt: skip
    skipped = sum(1 for t in tasks for s in t["hosts"].values() if s == "skipped")
    advice = []
    if skipped:
        advice.append("Use --continue-on-error to run what does not depend on the failure")
        if any(t["strategy"] != "parallel" for t in tasks if "failed" in t["hosts"].values()):
            advice.append(
                "Or a rolling rollout that tolerates some failures (max_fail_percentage=) with wait_for() "
                "health checks, or a canary first (strategy='canary')"
            )
    if any(not hp.host.is_local for tp in plan.tasks.values() for hp in tp.hosts):
        advice.append("Re-run just the failed host later with -H " + target)
    else:  # -H on a run of local tasks only is refused: there is no host to choose
        advice.append("Fix the failure, then run again: `nexus resume` skips what already succeeded")
    if fmt == "json":
        click.echo(json.dumps({"event": "what_if", "host": target, "tasks": tasks, "recommendations": advice}))
        return
    marks = {"ok": "would execute normally", "failed": "✗ SIMULATED FAILURE", "skipped": "would be SKIPPED"}
    click.echo("WHAT-IF ANALYSIS")
    click.echo(f"Simulating failure of: {target}")
    click.echo("")
    for t in tasks:
        click.echo(f"With {t['strategy']} strategy ({t['task']})" + (f": {t['why']}" if t.get("why") else ":"))
        for label, state in t["hosts"].items():
            click.echo(f"  • {label}: {marks[state]}")
    click.echo("")
    click.echo("Impact:")
    for t in tasks:
        states = list(t["hosts"].values())
        click.echo(f"  • {t['task']}: {states.count('ok')} of {len(states)} host(s) would run it")
    click.echo("")
    click.echo("Recommendations:")
    for line in advice:
        click.echo(f"  • {line}")
    click.echo("")


def _simulate_task(
    tp: TaskPlan, fails: Callable[[Host], bool], continue_on_error: bool, forks: int
) -> tuple[dict[str, str], str]:
    """Drive the task's strategy with hosts that succeed except where ``fails``; nothing runs.

    Returns each host's state (``ok``, ``failed``, ``skipped``: also a host the strategy did
    not schedule) and why the strategy itself failed (empty when it did not). A batch starts
    its hosts in order, ``forks`` at a time, all taking as long as each other: the hosts
    started in the same wave as a failing host run; those of later waves are skipped when
    the failures stop the batch (``stop_on_failure``, or more of them than ``max_failures``),
    as the engine would.
    """
    from nexus_core.api import ANOTHER_HOST_FAILED, HostOutcome, StrategyContext

    class Simulated(StrategyContext):
        def __init__(self) -> None:
            self.continue_on_error = continue_on_error
            self.options = dict(tp.options)
            self.outcomes: list[HostOutcome] = []

        def run_batch(
            self,
            hosts: Sequence[Host],
            stop_on_failure: bool | None = None,
            max_failures: int | None = None,
            stop_reason: Callable[[int], str] | None = None,
        ) -> list[HostOutcome]:
            stop = not self.continue_on_error if stop_on_failure is None else stop_on_failure
            results: list[HostOutcome] = []
            failures = 0
            for start in range(0, len(hosts), forks):
                stops = failures > 0 and (stop or (max_failures is not None and failures > max_failures))
                for host in hosts[start : start + forks]:
                    if stops:
                        why = stop_reason(failures) if stop_reason else ANOTHER_HOST_FAILED
                        results.append(HostOutcome(host, "skipped", reason=f"not started: {why}"))
                    elif fails(host):
                        failures += 1
                        results.append(HostOutcome(host, "failed", reason="simulated failure"))
                    else:
                        results.append(HostOutcome(host, "ok"))
            self.outcomes += results
            return results

        def stopping(self) -> bool:
            return False

        def wait(self, seconds: float) -> bool:
            return True

        def emit(self, event: Event) -> None:
            return None

    hosts = [hp.host for hp in tp.hosts]
    context = Simulated()
    why = ""
    try:
        outcomes = plugin_manager().registry.strategy(tp.strategy).execute(hosts, context)
    except Exception as exc:  # noqa: BLE001 - a plugin strategy failed: the engine fails the rest of its hosts
        why = f"strategy {tp.strategy!r} would fail: {type(exc).__name__}: {exc}"
        done = {o.host.label for o in context.outcomes}
        outcomes = context.outcomes + [HostOutcome(h, "failed", reason=why) for h in hosts if h.label not in done]
    states = {o.host.label: o.status if o.status in ("ok", "skipped") else "failed" for o in outcomes}
    return dict.fromkeys((h.label for h in hosts), "skipped") | states, why


def _dry_scale(project: Any, words: Sequence[str], fmt: str) -> None:
    """What ``--scale PROVIDER=N`` would start and cost, asking providers only read-only things."""
    from nexus_core.api import CloudError
    from nexus_core.clouds import parse_scale
    from nexus_core.clouds.session import CloudSession

    try:
        wanted = parse_scale(list(words))
    except ValueError as exc:
        fail(ExitCode.CONFIG, f"--scale {exc}", [], ["Write PROVIDER=COUNT, for example: --scale aws=5"])
    rows: list[dict[str, Any]] = []
    with CloudSession(plugin_manager().registry, project, warn=lambda m: click.echo(m, err=True)) as session:
        for name, count in wanted.items():
            try:
                row = _dry_row(session, name, count)
            except CloudError as exc:
                fail(exc.exit_code, f"--scale {name}={count}: {exc.message}", [], [exc.hint] if exc.hint else [])
            rows.append(row)
    if fmt == "json":
        click.echo(json.dumps({"event": "cloud.dry_run", "clouds": rows}))
        return
    click.echo("Cloud (dry run: nothing is started or changed)")
    for r in rows:
        click.echo(f"  {r['provider']}: {r['count']} x {r['describe']}")
        if r["refused"]:
            click.echo(f"    the limits allow {r['allowed']}: {r['refused']}")
        if r["hourly_price"] is None:
            click.echo("    price unknown (declare price=... in cloud(...))")
        else:
            click.echo(f"    estimated ${r['cost_per_hour']:.4f}/h for {r['allowed']} instance(s); "
                       f"${r['cost_low']:.4f} to ${r['cost_high']:.4f} from one hour to max_runtime "
                       f"({r['max_runtime']:g} s)")  # fmt: skip
    click.echo("")


def _dry_row(session: Any, name: str, count: int) -> dict[str, Any]:
    """One provider's part of the ``--scale`` dry run (list and prices: read only)."""
    from nexus_core.api import CloudInstance

    ctl = session.controller(name)
    settings = ctl.settings
    price = ctl.hourly_price()
    allowed, refused = 0, ""
    planned: list[CloudInstance] = list(ctl.instances())  # those running count against the limits
    running = len(planned)
    for i in range(count):
        why = ctl.refusal(planned)
        if why is not None:
            # the limit counts the planned ones too: say how many really run (not "3 running")
            refused = why.replace(f"({len(planned)} running)", f"({running} running, {allowed} planned)")
            break
        planned.append(CloudInstance(f"planned-{i}", f"planned-{i}", "pending", hourly_price=price))
        allowed += 1
    runtime = float(settings.get("max_runtime") or 3600)
    per_hour = (price or 0.0) * allowed
    return {
        "provider": name,
        "count": count,
        "allowed": allowed,
        "refused": refused,
        "describe": ctl.provider.describe(settings),
        "hourly_price": price,
        "cost_per_hour": round(per_hour, 6),
        "cost_low": round(per_hour * min(1.0, runtime / 3600), 6),
        "cost_high": round(per_hour * runtime / 3600, 6),
        "max_runtime": runtime,
    }


def _with_saved_discovery(store: Any, plan: Plan, project: Any, tasks: Sequence[str], fmt: str, **kwargs: Any) -> Plan:
    """The plan on the hosts an interrupted run of these tasks discovered, when there is one
    to resume (a resume continues on its own hosts); else ``plan`` itself."""
    if not plan.discovery:
        return plan
    previous = store.last_interrupted(plan.nexusfile, list(plan.requested))
    saved = previous.plan.get("discovery") if previous is not None else None
    if not saved:
        return plan
    return make_plan(project, tasks, fmt, cache=store, saved_discovery=saved, quiet_notes=True, **kwargs)


def run_words(
    project: Any, words: Sequence[str], param_words: Sequence[str], fmt: str
) -> tuple[tuple[str, ...], dict[str, str]]:
    """Task names and ``key=value`` arguments; no task -> the default one, or the list and exit 2."""
    from nexus_core.params import split_words
    from nexus_core.plan import default_task

    for word in param_words:
        if "=" not in word:
            fail(ExitCode.CONFIG, f"--param {word}: expected KEY=VALUE", suggestions=[f"--param {word}=VALUE"])
    names, params = split_words([*words, *param_words])
    given: dict[str, str] = {}
    for word in [*words, *param_words]:
        key, eq, value = word.partition("=")
        if eq and key in given and given[key] != value:
            fail(ExitCode.CONFIG, f"{key}= is given twice, with different values ({given[key]!r} and {value!r})",
                 suggestions=[f"Give {key}= once"])  # fmt: skip
        if eq:
            given[key] = value
    if names:
        return tuple(names), params
    chosen, problems = default_task(project)
    loading = [p for p in project.problems if p.code in ("syntax", "exception")]
    if loading and not chosen:  # the file stopped half-way: that is the problem, not a missing task
        problems = [*loading, *problems]
    if problems:
        show_problems(problems, fmt)
        raise Exit(ExitCode.CONFIG)
    if chosen:
        return (chosen,), params
    from nexus_core.tasklist import rows_text, task_rows

    rows = task_rows(project)
    listing = ["Tasks:", *("  " + line for line in rows_text(rows).splitlines())] if rows else []
    fail(ExitCode.CONFIG, "No task given, and the nexusfile has no default task", listing,
         ["Run one: nexus run TASK", 'Or set one: config(default="build") or @task(default=True)'])  # fmt: skip


def check_can_ask_sudo_pass(ask: bool) -> None:
    """Exit 2 when -K/--ask-sudo-pass was given but no password can be asked for (no terminal, CI)."""
    if ask and not _can_prompt():
        fail(
            ExitCode.CONFIG,
            "-K/--ask-sudo-pass needs a terminal to ask for the password",
            ["CI is set" if os.environ.get("CI") else "stdin is not a terminal"],
            ["Set NEXUS_SUDO_PASSWORD in the environment for non-interactive runs"],
        )


def ask_sudo_password() -> dict[str, Any]:
    """Ask for the sudo password once, without echo: the executors' ``sudo_password`` option."""
    import getpass

    try:
        return {"sudo_password": getpass.getpass("SUDO password: ")}
    except (EOFError, KeyboardInterrupt):
        click.echo("", err=True)
        raise Exit(ExitCode.INTERRUPTED) from None


def _tui_can_start(fmt: str) -> bool:
    """For ``--tui``: True when the dashboard can start; else a one-line note on stderr (plain output follows)."""
    from nexus_core.tui import tui_refusal

    why = tui_refusal(fmt=fmt)
    if why:
        click.echo(f"nexus: --tui ignored: {why}; {'JSON' if fmt == 'json' else 'plain'} output follows", err=True)
        return False
    return True


def _can_prompt() -> bool:
    """True when a password may be asked for: stdin is a terminal and CI is unset."""
    try:
        return not os.environ.get("CI") and sys.stdin is not None and sys.stdin.isatty()
    except ValueError:  # stdin closed
        return False


def _file_checks(plan: Plan) -> dict[tuple[str, str, int], Any]:
    """What each file operation would change on its host (read only; see nexus_core.transfer)."""
    from nexus_core import transfer

    limit = int(plan.config.get("parallel_limit") or 10)
    return transfer.dry_run(plan, plugin_manager().registry, workers=limit)


def _held_handlers(store: Any, plan: Plan) -> tuple[str, dict[str, dict[str, list[str]]]]:
    """The handlers an earlier run of these tasks left pending, which a run now takes over:
    (that run's id, {task: {handler: [host labels]}}); ("", {}) when none."""
    if store is None:
        return "", {}
    try:
        earlier = store.previous_pending(plan.nexusfile, list(plan.requested), "")
    except Exception:  # noqa: BLE001 - a dry run shows the plan whatever the store says
        return "", {}
    if earlier is None:
        return "", {}
    held: dict[str, dict[str, list[str]]] = {}
    for (task, host), names in earlier.pending_handlers().items():
        for name in names:
            held.setdefault(task, {}).setdefault(name, []).append(host)
    return earlier.id, held


def _dry_run(plan: Plan, fmt: str, held: tuple[str, dict[str, dict[str, list[str]]]] = ("", {})) -> None:
    """Print the plan after the pre-flight checks; exit as ``nexus preflight`` would when one fails.

    Checks connect and authenticate but run nothing on a host (``dry_run`` option): the sudo
    check, which has to execute ``sudo -n true``, is left to ``nexus preflight``.
    """
    from nexus_core.cli.preflight import run_checks  # registers `nexus preflight`: only a dry run needs it
    from nexus_core.output.report import plan_text, preflight_exit_code, preflight_failures

    checks = run_checks(plan, {"dry_run": True})
    code = preflight_exit_code(preflight_failures(checks))
    files = _file_checks(plan) if code == 0 else {}
    if fmt == "json":
        out: dict[str, Any] = {
            "event": "plan",
            "dry_run": True,
            "plan": plan.to_dict(),
            "preflight": [c.to_dict() for c in checks],
            "preflight_passed": code == 0,
        }
        if files:
            out["files"] = [c.to_dict() for c in files.values()]
        click.echo(json.dumps(out))
    else:
        click.echo(plan_text(Style.detect(), plan, checks, files, held))
    if code:
        raise Exit(code)
