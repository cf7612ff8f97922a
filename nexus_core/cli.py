"""The ``nexus`` command line (rich-click)."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import rich_click as click
from click.exceptions import Abort
from click.exceptions import Exit as ClickExit

from nexus_core._version import API_VERSION, __version__
from nexus_core.output.style import Style

if TYPE_CHECKING:
    from nexus_core.engine import RunResult
    from nexus_core.model import Project
    from nexus_core.plan import Plan
    from nexus_core.plugins import PluginManager
    from nexus_core.state.resume import ResumePoint
    from nexus_core.state.store import RunRecord, StateStore

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_CONNECTION, EXIT_TIMEOUT, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130

click.rich_click.USE_MARKDOWN = False
click.rich_click.SHOW_ARGUMENTS = True
click.rich_click.MAX_WIDTH = 100

_PM: PluginManager | None = None


def plugin_manager() -> PluginManager:
    """The process's plugin manager, loaded once on first use (policy applied before imports)."""
    global _PM
    if _PM is None:
        from nexus_core.plugins import PluginManager

        style = Style.detect(sys.stderr)

        def report(msg: str) -> None:
            click.echo(style.paint(f"Error: {msg}", "red"), err=True)

        _PM = PluginManager(report=report)
        for msg in _PM.errors:
            report(msg)
    return _PM


class Exit(Exception):
    """Leave the CLI with ``code`` after printing ``message`` (if any) on stderr."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def fail(code: int, headline: str, context: Sequence[str] = (), suggestions: Sequence[str] = ()) -> NoReturn:
    """Raise :class:`Exit` with an error in Nexus's shape."""
    from nexus_core.output.report import error_block

    raise Exit(code, error_block(Style.detect(sys.stderr), headline, context, suggestions))


# --- the group -----------------------------------------------------------------------------


class NexusGroup(click.RichGroup):
    """Built-in commands first; plugin commands are loaded only when asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = list(super().list_commands(ctx))
        for _, cmd in plugin_manager().commands(reserved=names):
            if cmd.name and cmd.name not in names:
                names.append(cmd.name)
        return sorted(names)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is not None:
            return found
        for _, cmd in plugin_manager().commands(reserved=list(super().list_commands(ctx))):
            if cmd.name == cmd_name:
                return cmd
        return None

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            from nexus_core.options import suggest

            name = args[0] if args else ""
            close = suggest(name, self.list_commands(ctx))
            hint = f" Did you mean '{close}'?" if close else ""
            raise click.UsageError(f"No such command '{name}'.{hint}", ctx) from exc


def _print_version(ctx: click.Context, _param: Any, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"nexus {__version__}")
        ctx.exit()


@click.group(cls=NexusGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version and exit.",
)
def main() -> None:
    """Nexus: tasks with dependencies, run in parallel locally and on many hosts.

    Write a nexusfile.py (start with `nexus init`), then `nexus run TASK`.
    """


def entry() -> None:
    """Console-script entry point: run the CLI and map every outcome to an exit code."""
    try:
        code = main.main(standalone_mode=False, prog_name="nexus")
    except Exit as exc:
        if exc.message:
            click.echo(exc.message, err=True)
        _finish(exc.code)
    except Abort:
        click.echo("Interrupted.", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_CONFIG)
    except KeyboardInterrupt:
        click.echo("Interrupted before anything ran.", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except ClickExit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # never show a traceback unless asked
        from nexus_core.logs import debug_enabled

        if debug_enabled():
            raise
        click.echo(
            f"Error: internal error: {type(exc).__name__}: {exc}\n\n"
            "  This is a bug in Nexus or a plugin. Re-run with --log-level debug for the "
            "traceback and report it.",
            err=True,
        )
        sys.exit(EXIT_FAILED)
    sys.exit(code if isinstance(code, int) else 0)


def _finish(code: int) -> NoReturn:
    """Exit once everything is said: flush, run exit handlers, skip the interpreter's teardown.

    Tearing down paramiko, cryptography and friends object by object takes tens of
    milliseconds and does nothing a finished run needs. ``NEXUS_SLOW_EXIT=1`` keeps the
    ordinary ``sys.exit`` (e.g. under coverage tools).
    """
    if os.environ.get("NEXUS_SLOW_EXIT") or "coverage" in sys.modules:
        sys.exit(code)
    import atexit

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    atexit._run_exitfuncs()
    os._exit(code)


# --- shared options ------------------------------------------------------------------------

F = Callable[..., Any]


def config_option(f: F) -> F:
    """``-c/--config``."""
    return click.option(
        "-c",
        "--config",
        "config_path",
        metavar="PATH",
        envvar="NEXUS_CONFIG",
        help="Path to nexusfile.py (default: nearest in this folder or its parents; env NEXUS_CONFIG).",
    )(f)


def format_option(f: F) -> F:
    """``--format text|json``."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="Output for people (text) or scripts (json).",
    )(f)


def log_options(f: F) -> F:
    """``--log-level`` and ``--log-format``."""
    f = click.option(
        "--log-format",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="Format of the logs on stderr.",
    )(f)
    return click.option(
        "--log-level",
        type=click.Choice(["debug", "info", "warning", "error"]),
        default=None,
        help="Log level on stderr (default: config log_level, else warning).",
    )(f)


def _setup_logs(level: str | None, fmt: str) -> None:
    from nexus_core import logs

    logs.setup(level or "warning", fmt)


def load(config_path: str | None) -> Project:
    """Find and load the nexusfile, or exit 2 with a helpful error."""
    from nexus_core.loader import NexusfileNotFound, find_nexusfile, load_project

    try:
        path = find_nexusfile(config_path)
    except NexusfileNotFound as exc:
        fail(
            EXIT_CONFIG,
            "No nexusfile found",
            [str(exc)],
            ["Create one with: nexus init", "Or point to one with -c PATH or NEXUS_CONFIG=PATH"],
        )
    return load_project(path)


def make_plan(project: Project, tasks: Sequence[str], fmt: str, **kwargs: Any) -> Plan:
    """Validate and plan, or exit 2 listing every problem."""
    from nexus_core.plan import ValidationFailed, build_plan

    kwargs.setdefault("cache", _dag_cache())
    try:
        plan = build_plan(project, plugin_manager().registry, tasks, **kwargs)
    except ValidationFailed as exc:
        show_problems(exc.problems, fmt)
        raise Exit(EXIT_CONFIG) from None
    style = Style.detect(sys.stderr)
    for warning in plan.warnings:
        # A plugin missing for tasks this run does not include: say so, and run the rest.
        text = f"Warning: {warning.message}; not needed by this run" + (f" ({warning.hint})" if warning.hint else "")
        click.echo(style.paint(text, "yellow"), err=True)
    return plan


def _dag_cache() -> Any:
    """The state store as a planning cache (None when it cannot be opened: plan without it)."""
    from nexus_core.state.paths import state_db
    from nexus_core.state.store import StateError, StateStore

    try:
        return StateStore(state_db())
    except StateError:
        return None


def show_problems(problems: Sequence[Any], fmt: str) -> None:
    """Print validation problems (text on stderr; JSON on stdout)."""
    from nexus_core.output.report import problems_block

    if fmt == "json":
        click.echo(
            json.dumps({"event": "validation.error", "valid": False, "problems": [p.to_dict() for p in problems]})
        )
    else:
        click.echo(problems_block(Style.detect(sys.stderr), problems), err=True)


# --- run -----------------------------------------------------------------------------------


@main.command()
@click.argument("tasks", nargs=-1, required=True)
@click.option("-n", "--dry-run", is_flag=True, help="Print the plan; execute nothing on any host.")
@click.option("-v", "--verbose", is_flag=True, help="Stream every output line, tagged with task and host.")
@click.option("-q", "--quiet", is_flag=True, help="One line per task.")
@click.option("--continue-on-error", is_flag=True, help="Run everything that does not depend on a failure.")
@click.option("-i", "--identity", metavar="PATH", help="SSH private key (overrides ssh_identity).")
@click.option("-u", "--user", metavar="NAME", help="SSH user (overrides ssh_user).")
@click.option(
    "-K",
    "--ask-sudo-pass",
    is_flag=True,
    help="Ask once (on a terminal) for the sudo password of remote hosts. Without a terminal "
    "set NEXUS_SUDO_PASSWORD instead.",
)
@click.option("-p", "--parallel-limit", type=click.IntRange(min=1), help="Tasks running at once.")
@click.option(
    "-H",
    "--hosts",
    "hosts_override",
    metavar="LIST",
    help="Comma-separated hosts replacing the targets of remote tasks.",
)
@click.option("--resume", is_flag=True, help="Continue the interrupted run of these tasks without asking.")
@click.option("--no-resume", is_flag=True, help="Start fresh even if an interrupted run exists.")
@click.option("--force", is_flag=True, help="With --resume: resume even if the remaining work changed.")
@config_option
@format_option
@log_options
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
    hosts_override: str | None,
    config_path: str | None,
    fmt: str,
    log_level: str | None,
    log_format: str,
    resume: bool,
    no_resume: bool,
    force: bool,
) -> None:
    """Run TASKS and their dependencies, each once, in parallel where the DAG allows.

    After an interrupted run of the same tasks, a terminal asks whether to resume it;
    without a terminal (or under CI) the run starts fresh unless --resume is given.

    -K/--ask-sudo-pass asks for the sudo password once; it is handed to the executors only
    (never printed, never in a command line). NEXUS_SUDO_PASSWORD does the same without a prompt.
    """
    _setup_logs(log_level, log_format)
    if verbose and quiet:
        fail(EXIT_CONFIG, "-v and -q cannot be used together", suggestions=["Pick one of them"])
    if ask_sudo_pass and not _can_prompt():
        fail(
            EXIT_CONFIG,
            "-K/--ask-sudo-pass needs a terminal to ask for the password",
            ["CI is set" if os.environ.get("CI") else "stdin is not a terminal"],
            ["Set NEXUS_SUDO_PASSWORD in the environment for non-interactive runs"],
        )
    project = load(config_path)
    overrides = {"ssh_identity": identity, "ssh_user": user, "parallel_limit": parallel_limit}
    host_list = [h for h in (hosts_override or "").split(",") if h.strip()] or None
    if hosts_override is not None and not host_list:
        fail(EXIT_CONFIG, "--hosts is empty", suggestions=["Pass comma-separated hosts: -H web-1,web-2"])
    cache = _dag_cache()  # the state store, opened once: plan cache now, run records later
    plan = make_plan(project, tasks, fmt, host_override=host_list, config_override=overrides, cache=cache)
    if not log_level and project.config.get("log_level"):
        _setup_logs(str(project.config["log_level"]), log_format)
    if dry_run:
        _dry_run(plan, fmt)
        return
    extra: dict[str, Any] = {}
    if ask_sudo_pass:
        import getpass

        try:
            extra["ssh_sudo_password"] = getpass.getpass("SUDO password: ")
        except (EOFError, KeyboardInterrupt):
            click.echo("", err=True)
            raise Exit(EXIT_INTERRUPTED) from None
    from nexus_core.cli_state import decide_resume, open_store, run_recorded

    record = point = None
    store = cache if cache is not None else open_store()  # open_store says why it cannot
    if store is not None and not no_resume:
        record, point = decide_resume(store, plan, resume=resume, force=force, fmt=fmt)
    run_recorded(
        plan,
        store=store,
        record=record,
        point=point,
        fmt=fmt,
        mode="verbose" if verbose else "quiet" if quiet else "normal",
        continue_on_error=continue_on_error,
        parallel_limit=parallel_limit,
        extra=extra,
    )


def _can_prompt() -> bool:
    """True when a password may be asked for: stdin is a terminal and CI is unset."""
    try:
        return not os.environ.get("CI") and sys.stdin is not None and sys.stdin.isatty()
    except ValueError:  # stdin closed
        return False


def _dry_run(plan: Plan, fmt: str) -> None:
    """Print the plan after the pre-flight checks; exit as ``nexus preflight`` would when one fails.

    Checks connect and authenticate but run nothing on a host (``dry_run`` option): the sudo
    check, which has to execute ``sudo -n true``, is left to ``nexus preflight``.
    """
    from nexus_core.output.report import plan_text, preflight_exit_code, preflight_failures

    checks = run_checks(plan, {"dry_run": True})
    code = preflight_exit_code(preflight_failures(checks))
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    "event": "plan",
                    "dry_run": True,
                    "plan": plan.to_dict(),
                    "preflight": [c.to_dict() for c in checks],
                    "preflight_passed": code == 0,
                }
            )
        )
    else:
        click.echo(plan_text(Style.detect(), plan, checks))
    if code:
        raise Exit(code)


def run_checks(plan: Plan, options: dict[str, Any]) -> list[Any]:
    """Run every registered pre-flight check over the plan; a crashing check is reported by name."""
    from nexus_core.api import CheckResult

    registry = plugin_manager().registry
    results: list[CheckResult] = []
    options = {**options, "registry": registry}
    for name in registry.checks.ordered("order"):
        owner = registry.owners.get(f"pre-flight check:{name}", "?")
        why = registry.checks.problem(name)
        if why:
            results.append(CheckResult("Checks", "fail", why, exit_code=2))
            continue
        try:
            results.extend(registry.checks[name]().run(plan, options))
        except Exception as exc:  # noqa: BLE001 - plugin code
            results.append(CheckResult("Checks", "fail", f"check {name!r} ({owner}) crashed: {exc!r}"))
    return results


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
) -> RunResult:
    """Run a plan with renderers, the state recorder and plugin subscribers attached.

    Prints failures and the summary. With ``resume``, continues ``resume_record`` under its
    own run id: finished work is skipped. ``extra`` becomes the executors' options
    (``ExecutorContext.options``), e.g. ``ssh_sudo_password``; it is never recorded.
    ``NEXUS_SUDO_PASSWORD`` is moved from the environment into ``ssh_sudo_password`` here.
    """
    from nexus_core.engine import Engine, RunOptions, new_run_id
    from nexus_core.events import EventBus
    from nexus_core.logs import LOGGER
    from nexus_core.output.render import make_renderer
    from nexus_core.output.report import failure_block, summary_line

    style = Style.detect()
    run_id = resume_record.id if resume_record is not None else new_run_id()
    bus = EventBus(run_id, report=lambda m: click.echo(m, err=True))
    if store is not None:
        from nexus_core.state.recorder import StateRecorder

        if resume_record is not None:
            store.reopen_run(run_id, plan.to_dict(), plan.source_hash)
        else:
            options_seen = {"continue_on_error": continue_on_error, "parallel_limit": parallel_limit, "mode": mode}
            store.supersede(plan.nexusfile, list(plan.requested))
            store.begin_run(run_id, plan.nexusfile, plan.source_hash, list(plan.requested), options_seen,
                            plan.to_dict())  # fmt: skip
        bus.subscribe("state", StateRecorder(store, run_id))
    renderer = make_renderer(mode, fmt, style)
    bus.subscribe("output", renderer)
    if LOGGER.isEnabledFor(10):
        bus.subscribe("debug-log", lambda e: LOGGER.debug("event %s", json.dumps(e.to_dict(), default=str)))
    from nexus_core.plan import resolved_config

    cfg = plan.config
    full_cfg = resolved_config(plan, plugin_manager().registry)
    for dist, sub in plugin_manager().subscribers(full_cfg, {"format": fmt, "mode": mode}):
        bus.subscribe(dist, sub)
    extra = dict(extra or {})
    # The sudo password must not reach local commands through their inherited environment.
    env_sudo_password = os.environ.pop("NEXUS_SUDO_PASSWORD", None)
    if env_sudo_password and "ssh_sudo_password" not in extra:
        extra["ssh_sudo_password"] = env_sudo_password
    options = RunOptions(
        parallel_limit=int(parallel_limit or cfg.get("parallel_limit") or 10),
        forks=cfg.get("forks"),
        continue_on_error=continue_on_error,
        run_id=run_id,
        interrupt_grace=float(cfg.get("interrupt_grace", 10)),
        terminate_grace=float(cfg.get("terminate_grace", 30)),
        resume=resume,
        extra=extra,
    )
    engine = Engine(plan, plugin_manager().registry, bus, options, report=lambda m: click.echo(m, err=True))
    previous = _install_signals(engine)
    try:
        result = engine.run()
    finally:
        _restore_signals(previous)
        renderer.close()
    if fmt != "json":
        err_style = Style.detect(sys.stderr)
        for failure in result.failures:
            click.echo(failure_block(err_style, failure) + "\n", err=True)
        if mode != "quiet" or result.status != "ok":
            click.echo(summary_line(style, result))
    return result


def _install_signals(engine: Any) -> dict[int, Any]:
    previous: dict[int, Any] = {}

    def handler(signum: int, _frame: Any) -> None:
        engine.interrupt("SIGTERM" if signum == signal.SIGTERM else "SIGINT")

    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread (e.g. embedded use): no signal handling
        pass
    return previous


def _restore_signals(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


# --- validate, list ------------------------------------------------------------------------


@main.command()
@click.argument("tasks", nargs=-1)
@config_option
@format_option
def validate(tasks: tuple[str, ...], config_path: str | None, fmt: str) -> None:
    """Check the nexusfile (and every task body) without running anything."""
    project = load(config_path)
    plan = make_plan(project, tasks, fmt, every_plugin=True)
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    "event": "validation.ok",
                    "valid": True,
                    "nexusfile": plan.nexusfile,
                    "tasks": len(plan.tasks),
                    "commands": plan.command_count(),
                }
            )
        )
    else:
        s = Style.detect()
        click.echo(
            s.paint(
                f"{s.ok} {os.path.basename(plan.nexusfile)} is valid: {len(plan.tasks)} tasks, "
                f"{len(plan.phases)} phases, {plan.command_count()} commands",
                "green",
            )
        )


@main.command(name="list")
@config_option
@format_option
def list_tasks(config_path: str | None, fmt: str) -> None:
    """List tasks: name, dependencies, where they run, and the first line of the docstring."""
    from nexus_core.plan import _dep_name, check_structure

    project = load(config_path)
    problems = check_structure(project, plugin_manager().registry, running=())
    if problems:
        show_problems(problems, fmt)
        raise Exit(EXIT_CONFIG)
    rows: list[dict[str, Any]] = []
    for t in project.tasks.values():
        deps = [n for n in (_dep_name(d) for d in t.deps) if n]
        target = t.on if isinstance(t.on, str) else ", ".join(map(str, t.on))
        rows.append(
            {
                "name": t.name,
                "deps": deps,
                "on": target,
                "strategy": t.strategy,
                "description": t.summary,
                "line": t.location.line,
            }
        )
    if fmt == "json":
        click.echo(json.dumps({"tasks": rows}))
        return
    if not rows:
        click.echo("No tasks defined yet: add a function decorated with @task (see `nexus init`).")
        return
    width = max(len(r["name"]) for r in rows)
    twidth = max(len(r["on"]) for r in rows)
    for r in rows:
        after = f"  (after {', '.join(r['deps'])})" if r["deps"] else ""
        click.echo(f"{r['name']:<{width}}  {r['on']:<{twidth}}  {r['description']}{after}".rstrip())


# --- init, version, plugins, preflight, completion ----------------------------------------

STARTER = '''\
"""Nexus pipeline: run `nexus list` to see the tasks, `nexus run deploy -n` to preview."""

from nexus_core import config, env, hosts, run, task

# Project-wide settings (all optional). See `nexus run --help` for the CLI overrides.
config(parallel_limit=4)

# Remote hosts need the SSH plugin: pip install nexus-ssh
# hosts("web", "deploy@web-1.example.com", "deploy@web-2.example.com:2222")


@task
def test():
    """Run the test suite."""
    run("echo running tests")


@task
def lint():
    """Check the code style (runs in parallel with test)."""
    run("echo linting")


@task(deps=[test, lint])
def build():
    """Build the release."""
    run("echo building version " + env("VERSION", "dev"))


@task(deps=[build])
def deploy():
    """Ship it (change on= to a host group once nexus-ssh is installed)."""
    run("echo deploying", retries=2, retry_delay=1)
'''


@main.command()
@click.option("--force", is_flag=True, help="Overwrite an existing nexusfile.py.")
def init(force: bool) -> None:
    """Write a commented starter nexusfile.py in this folder (never overwrites one)."""
    path = os.path.join(os.getcwd(), "nexusfile.py")
    if os.path.exists(path) and not force:
        fail(
            EXIT_CONFIG,
            "nexusfile.py already exists",
            [f"File: {path}"],
            ["Edit it, or remove it first (or pass --force to overwrite)"],
        )
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(STARTER)
    click.echo(f"Created {path}\nNext: nexus list, then nexus run deploy --dry-run")


@main.command()
@format_option
def version(fmt: str) -> None:
    """Show the version of nexus-core and of every plugin."""
    pm = plugin_manager()
    plugins = [p for p in pm.plugins if not p.builtin]
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    "nexus-core": __version__,
                    "api": API_VERSION,
                    "python": sys.version.split()[0],
                    "plugins": {p.distribution: p.version for p in plugins},
                }
            )
        )
        return
    click.echo(f"nexus-core {__version__} (plugin API {API_VERSION}, Python {sys.version.split()[0]})")
    for p in plugins:
        state = "" if p.loaded else " (blocked)" if not p.allowed else " (failed)"
        click.echo(f"{p.distribution} {p.version}{state}")


@main.command()
@format_option
def plugins(fmt: str) -> None:
    """List installed plugins: distribution, version, hooks, and whether policy allows them."""
    pm = plugin_manager()
    pm.check_registrations()
    if fmt == "json":
        env_names = sorted(pm.policy.env_names) if pm.policy.env_names is not None else None
        click.echo(
            json.dumps(
                {
                    "policy": pm.policy.source or None,
                    "load_plugins": env_names,
                    "plugins": [p.to_dict() for p in pm.plugins],
                    "errors": pm.errors,
                }
            )
        )
        return
    s = Style.detect()
    for p in pm.plugins:
        if p.builtin:
            continue
        state = (
            s.paint("allowed, with errors", "red")
            if p.loaded and p.error
            else s.paint("allowed", "green")
            if p.loaded
            else s.paint("blocked", "yellow")
            if not p.allowed
            else s.paint("failed", "red")
        )
        click.echo(f"{p.distribution} {p.version}  [{state}]  {p.name} = {p.module}")
        click.echo(f"    {p.reason}")
        if p.hooks:
            click.echo(f"    hooks: {', '.join(p.hooks)}")
        if p.error:
            click.echo(f"    error: {p.error}")
    builtin = sorted({h for p in pm.plugins if p.builtin for h in p.hooks})
    click.echo(f"nexus-core {__version__}  [built-in]  hooks: {', '.join(builtin)}")


@main.command()
@click.argument("tasks", nargs=-1, required=True)
@click.option("-H", "--hosts", "hosts_override", metavar="LIST", help="Check only these hosts (comma-separated).")
@click.option("--skip-connectivity", is_flag=True, help="Do not check that hosts accept TCP connections.")
@click.option("--skip-auth", is_flag=True, help="Do not check SSH authentication.")
@click.option("--skip-sudo-check", is_flag=True, help="Do not check sudo for tasks that use it.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=5.0,
    show_default=True,
    help="Seconds per host for each check.",
)
@click.option("--parallel", type=click.IntRange(min=1), default=10, show_default=True, help="Hosts checked at once.")
@click.option("--force", is_flag=True, help="Hosts that fail are marked unavailable; exit 0 if others remain.")
@click.option("-i", "--identity", metavar="PATH", help="SSH private key (overrides ssh_identity).")
@click.option("-u", "--user", metavar="NAME", help="SSH user (overrides ssh_user).")
@config_option
@format_option
def preflight(
    tasks: tuple[str, ...],
    hosts_override: str | None,
    skip_connectivity: bool,
    skip_auth: bool,
    skip_sudo_check: bool,
    timeout: float,
    parallel: int,
    force: bool,
    identity: str | None,
    user: str | None,
    config_path: str | None,
    fmt: str,
) -> None:
    """Run the pre-flight checks for TASKS (config, connectivity, auth, sudo, local files).

    Exit codes: 0 passed (or --force with hosts left), 3 a host is unreachable or refuses
    authentication, 2 configuration or local files, 1 anything else (e.g. sudo).
    """
    import time

    from nexus_core.output.report import preflight_exit_code, preflight_failures, preflight_text

    project = load(config_path)
    host_list = [h for h in (hosts_override or "").split(",") if h.strip()] or None
    overrides = {"ssh_identity": identity, "ssh_user": user}
    plan = make_plan(project, tasks, fmt, host_override=host_list, config_override=overrides)
    options = {
        "dry_run": False,
        "skip_connectivity": skip_connectivity,
        "skip_auth": skip_auth,
        "skip_sudo_check": skip_sudo_check,
        "timeout": timeout,
        "parallel": parallel,
        "force": force,
    }
    started = time.monotonic()
    checks = run_checks(plan, options)
    duration = time.monotonic() - started
    failures = preflight_failures(checks)
    code = preflight_exit_code(failures)
    from nexus_core.hosts import format_host

    unavailable = list(dict.fromkeys(c.host for c in failures if c.host))
    available = [format_host(h) for h in plan.hosts if not h.is_local and h.label not in unavailable]
    if force and code and all(c.host for c in failures) and _every_task_keeps_a_host(plan, unavailable):
        code = EXIT_OK
    if fmt == "json":
        counted = [c for c in checks if c.status != "skipped"]
        click.echo(
            json.dumps(
                {
                    "event": "preflight",
                    "tasks": list(tasks),
                    "passed": not failures,
                    "exit_code": code,
                    "duration": round(duration, 3),
                    "summary": {
                        "checks": len(counted),
                        "passed": sum(1 for c in checks if c.status == "ok"),
                        "failed": len(failures),
                        "warnings": sum(1 for c in checks if c.status == "warn"),
                        "skipped": len(checks) - len(counted),
                    },
                    "checks": [c.to_dict() for c in checks],
                    "errors": [c.to_dict() for c in failures],
                    "available_hosts": available,
                    "unavailable_hosts": unavailable,
                }
            )
        )
    else:
        s = Style.detect()
        text = preflight_text(s, tasks, checks, duration, force=force and code == EXIT_OK, unavailable=unavailable)
        click.echo(text)
        if force and code == EXIT_OK and unavailable:
            click.echo(f"Continue with the available hosts: nexus run {' '.join(tasks)} -H {','.join(available)}")
    if code:
        raise Exit(code)


def _every_task_keeps_a_host(plan: Plan, unavailable: Sequence[str]) -> bool:
    """True when each remote task still has at least one host once ``unavailable`` are left out."""
    gone = set(unavailable)
    for t in plan.tasks.values():
        labels = [hp.host.label for hp in t.hosts if not hp.host.is_local]
        if labels and all(label in gone for label in labels):
            return False
    return True


@main.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL (bash, zsh or fish).

    \b
    bash: eval "$(nexus completion bash)"   (in ~/.bashrc)
    zsh:  eval "$(nexus completion zsh)"    (in ~/.zshrc)
    fish: nexus completion fish > ~/.config/fish/completions/nexus.fish
    """
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    if cls is None:  # pragma: no cover - choices above are all supported by click
        fail(EXIT_CONFIG, f"no completion for {shell}")
    comp = cls(main, {}, "nexus", "_NEXUS_COMPLETE")
    click.echo(comp.source())


# Commands that live in their own modules register themselves on import.
import nexus_core.cli_state  # noqa: E402, F401
