"""The ``nexus`` command line (rich-click)."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
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


def reset_plugin_manager() -> None:
    """Forget the loaded plugins (for tests that change the environment between calls)."""
    global _PM
    _PM = None


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
        sys.exit(exc.code)
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

    try:
        return build_plan(project, plugin_manager().registry, tasks, **kwargs)
    except ValidationFailed as exc:
        show_problems(exc.problems, fmt)
        raise Exit(EXIT_CONFIG) from None


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
@click.option("-p", "--parallel-limit", type=click.IntRange(min=1), help="Tasks running at once.")
@click.option(
    "-H",
    "--hosts",
    "hosts_override",
    metavar="LIST",
    help="Comma-separated hosts replacing the targets of remote tasks.",
)
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
    parallel_limit: int | None,
    hosts_override: str | None,
    config_path: str | None,
    fmt: str,
    log_level: str | None,
    log_format: str,
) -> None:
    """Run TASKS and their dependencies, each once, in parallel where the DAG allows."""
    _setup_logs(log_level, log_format)
    if verbose and quiet:
        fail(EXIT_CONFIG, "-v and -q cannot be used together", suggestions=["Pick one of them"])
    project = load(config_path)
    overrides = {"ssh_identity": identity, "ssh_user": user, "parallel_limit": parallel_limit}
    host_list = [h for h in (hosts_override or "").split(",") if h.strip()] or None
    if hosts_override is not None and not host_list:
        fail(EXIT_CONFIG, "--hosts is empty", suggestions=["Pass comma-separated hosts: -H web-1,web-2"])
    plan = make_plan(project, tasks, fmt, host_override=host_list, config_override=overrides)
    if not log_level and project.config.get("log_level"):
        _setup_logs(str(project.config["log_level"]), log_format)
    if dry_run:
        _dry_run(plan, fmt)
        return
    result = execute(
        plan,
        fmt=fmt,
        mode="verbose" if verbose else "quiet" if quiet else "normal",
        continue_on_error=continue_on_error,
        parallel_limit=parallel_limit,
    )
    raise Exit(result.exit_code)


def _dry_run(plan: Plan, fmt: str) -> None:
    from nexus_core.output.report import plan_text

    checks = run_checks(plan, {"dry_run": True})
    if fmt == "json":
        click.echo(
            json.dumps(
                {"event": "plan", "dry_run": True, "plan": plan.to_dict(), "preflight": [c.to_dict() for c in checks]}
            )
        )
    else:
        click.echo(plan_text(Style.detect(), plan, checks))


def run_checks(plan: Plan, options: dict[str, Any]) -> list[Any]:
    """Run every registered pre-flight check over the plan; a crashing check is reported by name."""
    from nexus_core.api import CheckResult

    registry = plugin_manager().registry
    results: list[CheckResult] = []
    for name, cls in registry.checks.items():
        try:
            results.extend(cls().run(plan, options))
        except Exception as exc:  # noqa: BLE001 - plugin code
            owner = registry.owners.get(f"pre-flight check:{name}", "?")
            results.append(CheckResult("Checks", "fail", f"check {name!r} ({owner}) crashed: {exc!r}"))
    return results


def execute(
    plan: Plan,
    *,
    fmt: str = "text",
    mode: str = "normal",
    continue_on_error: bool = False,
    parallel_limit: int | None = None,
    out: Any = None,
) -> RunResult:
    """Run a plan with renderers and plugin subscribers attached; print failures and the summary."""
    from nexus_core.engine import Engine, RunOptions, new_run_id
    from nexus_core.events import EventBus
    from nexus_core.logs import LOGGER
    from nexus_core.output.render import make_renderer
    from nexus_core.output.report import failure_block, summary_line

    style = Style.detect()
    run_id = new_run_id()
    bus = EventBus(run_id, report=lambda m: click.echo(m, err=True))
    renderer = make_renderer(mode, fmt, style)
    bus.subscribe("output", renderer)
    if LOGGER.isEnabledFor(10):
        bus.subscribe("debug-log", lambda e: LOGGER.debug("event %s", json.dumps(e.to_dict(), default=str)))
    cfg = plan.config
    for dist, sub in plugin_manager().subscribers(cfg, {"format": fmt, "mode": mode}):
        bus.subscribe(dist, sub)
    options = RunOptions(
        parallel_limit=int(parallel_limit or cfg.get("parallel_limit") or 10),
        forks=cfg.get("forks"),
        continue_on_error=continue_on_error,
        run_id=run_id,
        interrupt_grace=float(cfg.get("interrupt_grace", 10)),
        terminate_grace=float(cfg.get("terminate_grace", 30)),
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
    plan = make_plan(project, tasks, fmt)
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
    problems = check_structure(project, plugin_manager().registry)
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
@click.option("-H", "--hosts", "hosts_override", metavar="LIST", help="Check only these hosts.")
@config_option
@format_option
def preflight(tasks: tuple[str, ...], hosts_override: str | None, config_path: str | None, fmt: str) -> None:
    """Run the pre-flight checks for TASKS without executing anything."""
    from nexus_core.output.report import checks_lines

    project = load(config_path)
    host_list = [h for h in (hosts_override or "").split(",") if h.strip()] or None
    plan = make_plan(project, tasks, fmt, host_override=host_list)
    checks = run_checks(plan, {})
    failed = [c for c in checks if c.status == "fail" and c.blocking]
    if fmt == "json":
        click.echo(json.dumps({"passed": not failed, "checks": [c.to_dict() for c in checks]}))
    else:
        s = Style.detect()
        click.echo("PRE-FLIGHT CHECKS\n" + "\n".join(checks_lines(s, checks)))
        verdict = (
            s.paint(f"{s.fail} {len(failed)} check(s) failed", "red")
            if failed
            else s.paint(f"{s.ok} All checks passed", "green")
        )
        click.echo("\n" + verdict)
    if failed:
        raise Exit(EXIT_CONFIG if all(c.category == "Configuration" for c in failed) else EXIT_CONNECTION)


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
