"""The command kit: what every ``nexus`` command needs, built-in or from a plugin.

A command loads the nexusfile (:func:`load`), makes the plan (:func:`make_plan`, which
shows every problem and exits 2), and reports an error in Nexus's one shape (:func:`fail`,
or ``raise Exit(code)``); :class:`ExitCode` names the codes. The option decorators
(:func:`config_option`, :func:`format_option`, :func:`log_options`) give a command the same
``-c``, ``--format`` and ``--log-level`` as the built-in ones. With ``--format json``, an
error raised through :func:`fail` is printed as one JSON object on stdout.

This module is the documented kit for plugin commands (``docs/plugins/writing-plugins.md``,
"Adding a command"); ``nexus_core.cli`` re-exports the same names.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

import rich_click as click
from click.exceptions import Abort
from click.exceptions import Exit as ClickExit

from nexus_core._version import __version__
from nexus_core.exitcodes import ExitCode
from nexus_core.output.style import Style

if TYPE_CHECKING:
    from nexus_core.model import Project
    from nexus_core.plan import Plan
    from nexus_core.plugins import PluginManager
    from nexus_core.state.store import StateStore

__all__ = [
    "Exit",
    "ExitCode",
    "config_option",
    "entry",
    "fail",
    "format_option",
    "load",
    "lock_options",
    "log_options",
    "main",
    "make_plan",
    "open_store",
    "plugin_manager",
    "setup_logs",
    "show_problems",
]

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


# --- errors --------------------------------------------------------------------------------


class Exit(Exception):
    """Leave the CLI with ``code`` after printing ``message`` (if any) on stderr.

    :func:`fail` also fills ``headline``, ``context`` and ``suggestions``, from which the
    JSON form of the error is made under ``--format json``.
    """

    def __init__(
        self,
        code: int,
        message: str = "",
        *,
        headline: str = "",
        context: Sequence[str] = (),
        suggestions: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.headline = headline
        self.context = list(context)
        self.suggestions = list(suggestions)


def no_run(store: Any, run_id: str, suggestions: Sequence[str] = ("List runs with: nexus pipelines",)) -> NoReturn:
    """Exit 2 for a RUN_ID that names no single run: none matches, or (a prefix) several do."""
    matches = store.ids_like(run_id)
    if len(matches) > 1:
        more = ", ..." if len(matches) > 5 else ""
        fail(
            ExitCode.CONFIG,
            f"Run id {run_id!r} is ambiguous: it starts {'more than 5' if more else len(matches)} runs' ids",
            ["Matching: " + ", ".join(matches[:5]) + more],
            ["Give more of the id (or all of it): nexus pipelines lists them"],
        )
    fail(ExitCode.CONFIG, f"No run {run_id!r}", suggestions=list(suggestions))


def _interrupted_by() -> tuple[int, str]:
    """The exit code and word of a command stopped by Ctrl+C, or by the SIGTERM or SIGHUP a
    handler turned into one (:func:`nexus_core.loader.stop_as_interrupt`)."""
    from nexus_core.exitcodes import for_signal
    from nexus_core.loader import stopped_by

    by = stopped_by()
    return (int(for_signal(by)), f"Stopped ({by})") if by else (int(ExitCode.INTERRUPTED), "Interrupted")


def fail(code: int, headline: str, context: Sequence[str] = (), suggestions: Sequence[str] = ()) -> NoReturn:
    """Raise :class:`Exit` with an error in Nexus's shape: headline, context lines, suggestions."""
    from nexus_core.output.report import error_block

    message = error_block(Style.detect(sys.stderr), headline, context, suggestions)
    raise Exit(code, message, headline=headline, context=context, suggestions=suggestions)


def error_json(code: int, headline: str, context: Sequence[str] = (), suggestions: Sequence[str] = ()) -> str:
    """One error as the JSON object ``--format json`` prints on stdout."""
    return json.dumps(
        {"event": "error", "code": int(code), "headline": headline, "context": list(context),
         "suggestions": list(suggestions)}
    )  # fmt: skip


def wants_json(args: Sequence[str]) -> bool:
    """True when errors are to be one JSON object: the command line's last ``--format`` says
    ``json`` (read before click parses it, which may be what failed), or, with none given,
    the ``format`` setting does (``NEXUS_FORMAT``, the config files), as for ``--format``'s
    own default."""
    given: str | None = None
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg.startswith("--format="):
            given = arg.partition("=")[2]
        elif arg == "--format" and i + 1 < len(args):
            given = args[i + 1]
    if given is not None:
        return given == "json"
    try:
        return bool(setting_default("format") == "json")
    except Exception:  # noqa: BLE001 - a broken config file is reported by the command itself
        return False


# --- the group -----------------------------------------------------------------------------


#: Each built-in command and the module that registers it on ``main`` when imported. A
#: command's module is imported only when that command is looked up, so ``nexus run`` does not
#: pay for ``secret``, ``exec``, ``tui``... at every start (``nexus --help`` and completion
#: import them all). ``tests/test_cli_lazy.py`` checks this table against the modules.
BUILTIN_COMMANDS: dict[str, str] = {
    "approve": "nexus_core.cli.policy",
    "artifacts": "nexus_core.cli.artifacts",
    "audit": "nexus_core.cli.audit",
    "cloud": "nexus_core.cli.cloud",
    "completion": "nexus_core.cli.info",
    "config": "nexus_core.cli.info",
    "exec": "nexus_core.cli.exec",
    "help": "nexus_core.cli.info",
    "hosts": "nexus_core.cli.hosts",
    "init": "nexus_core.cli.project",
    "list": "nexus_core.cli.project",
    "logs": "nexus_core.cli.state",
    "pipelines": "nexus_core.cli.state",
    "plugin": "nexus_core.cli.info",
    "plugins": "nexus_core.cli.info",
    "policy": "nexus_core.cli.policy",
    "preflight": "nexus_core.cli.preflight",
    "reject": "nexus_core.cli.policy",
    "resume": "nexus_core.cli.state",
    "run": "nexus_core.cli.run",
    "secret": "nexus_core.cli.secret",
    "tui": "nexus_core.cli.tui",
    "validate": "nexus_core.cli.project",
    "version": "nexus_core.cli.info",
}


class NexusGroup(click.RichGroup):
    """Built-in commands first (their modules imported on demand); plugin commands are loaded
    only when asked for."""

    #: Built-in groups a plugin's group of the same name adds subcommands to (``nexus hosts``).
    OPEN = ("hosts",)
    #: Subgroups (``nexus config``, ``nexus pipelines``...) are plain groups: rich-click would
    #: make them NexusGroups, which listed plugin commands (a plugin's ``hosts`` group) among their own.
    group_class = click.RichGroup

    def _builtin(self, name: str) -> click.Command | None:
        """The built-in command ``name``, importing the module that registers it if needed."""
        if name not in self.commands and name in BUILTIN_COMMANDS:
            importlib.import_module(BUILTIN_COMMANDS[name])
        return self.commands.get(name)

    def _builtin_names(self) -> list[str]:
        return sorted(set(self.commands) | set(BUILTIN_COMMANDS))

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = self._builtin_names()
        for _, cmd in plugin_manager().commands(reserved=[n for n in names if n not in self.OPEN]):
            if cmd.name and cmd.name not in names:
                names.append(cmd.name)
        return sorted(names)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = self._builtin(cmd_name)
        if found is not None:
            return found
        builtin = [n for n in self._builtin_names() if n not in self.OPEN]
        for _, cmd in plugin_manager().commands(reserved=builtin):
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
    from nexus_core.output.pipes import guard_std_streams

    guard_std_streams()  # a closed output pipe never stops or fails a run

    def as_json() -> bool:  # decided when an error is shown: the settings are read only then
        return wants_json(sys.argv[1:])

    def error(code: int, headline: str, text: str, context: Sequence[str] = (), hints: Sequence[str] = ()) -> None:
        if as_json():
            click.echo(error_json(code, headline, context, hints))
        else:
            click.echo(text, err=True)

    try:
        code = main.main(standalone_mode=False, prog_name="nexus")
    except Exit as exc:
        if exc.message or exc.headline:
            headline = exc.headline or exc.message.strip()
            error(exc.code, headline, exc.message, exc.context, exc.suggestions)
        _finish(exc.code)
    except Abort:  # click's form of a KeyboardInterrupt
        code, what = _interrupted_by()
        error(code, what, f"{what}.")
        sys.exit(code)
    except click.ClickException as exc:
        if as_json():
            ctx = getattr(exc, "ctx", None)
            pieces = ctx.command.collect_usage_pieces(ctx) if ctx is not None else []
            usage = [f"Usage: {ctx.command_path} {' '.join(pieces)}"] if ctx is not None else []
            hint = [f"Run: {ctx.command_path} --help"] if ctx is not None else []
            error(ExitCode.CONFIG, exc.format_message(), "", usage, hint)
        else:
            exc.show()
        sys.exit(ExitCode.CONFIG)
    except KeyboardInterrupt:
        code, what = _interrupted_by()
        error(code, f"{what} before anything ran", f"{what} before anything ran.")
        sys.exit(code)
    except ClickExit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # never show a traceback unless asked
        from nexus_core.logs import debug_enabled
        from nexus_core.state.paths import state_db
        from nexus_core.state.recover import damage_found_late

        damaged = damage_found_late(exc, state_db())
        if damaged:
            error(ExitCode.CONFIG, damaged.splitlines()[0].removeprefix("Error: "), damaged)
            sys.exit(ExitCode.CONFIG)
        if debug_enabled():
            raise
        import errno

        if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):  # a limit, not a bug
            why = "Too many open files: raise the limit (ulimit -n 65536) or run on fewer hosts at once (forks=, -p)"
            error(ExitCode.FAILED, why, f"Error: {why}")
            sys.exit(ExitCode.FAILED)
        bug = f"internal error: {type(exc).__name__}: {exc}"
        why = "This is a bug in Nexus or a plugin. Re-run with --log-level debug for the traceback and report it."
        error(ExitCode.FAILED, bug, f"Error: {bug}\n\n  {why}", hints=[why])
        sys.exit(ExitCode.FAILED)
    sys.exit(_with_lost_output(code if isinstance(code, int) else 0))


def _with_lost_output(code: int) -> int:
    """``code``, or 1 for a command that ran no task and could not write its output (a full
    disk under ``> file``), said on stderr: what it printed is not there, and it is no bug."""
    from nexus_core.output import pipes

    for stream in (sys.stdout, sys.stderr):  # what is buffered meets the error now
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    lost = pipes.lost_output()
    if not lost:
        return code
    with contextlib.suppress(OSError, ValueError):
        os.write(2, f"nexus: could not write to {lost}: the output is lost\n".encode())
    return ExitCode.FAILED if code == 0 and not pipes.TASKS_RAN else code


def _finish(code: int) -> NoReturn:
    """Exit once everything is said: flush, run exit handlers, skip the interpreter's teardown.

    Tearing down paramiko, cryptography and friends object by object takes tens of
    milliseconds and does nothing a finished run needs. ``NEXUS_SLOW_EXIT=1`` keeps the
    ordinary ``sys.exit`` (e.g. under coverage tools).
    """
    code = _with_lost_output(code)
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
    """``-c/--config PATH`` (env ``NEXUS_CONFIG``), passed to the command as ``config_path``."""
    return click.option(
        "-c",
        "--config",
        "config_path",
        metavar="PATH",
        envvar="NEXUS_CONFIG",
        is_eager=True,  # read before the defaults that come from the project's .nexus/config.toml
        help="Path to nexusfile.py (default: nearest in this folder or its parents; env NEXUS_CONFIG).",
    )(f)


def format_option(f: F) -> F:
    """``--format text|json``, passed to the command as ``fmt``."""
    return formats("text", "json", help="Output for people (text) or scripts (json); default from NEXUS_FORMAT or "
                   "config.toml.")(f)  # fmt: skip


def formats(*choices: str, help: str) -> Callable[[F], F]:
    """``--format`` with these ``choices`` (``nexus preflight`` adds ``quiet``), passed as ``fmt``;
    the default from ``NEXUS_FORMAT`` or config.toml, else text."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(list(choices)),
        default=lambda: setting_default("format"),
        show_default="text",
        help=help,
    )


def hosts_option(help: str) -> Callable[[F], F]:
    """``-H/--hosts PATTERN`` (repeatable, completed with host and group names), passed as ``hosts_override``.

    ``--limit`` is the same option, under the name Ansible users type (docs/inventories.md).
    """

    def decorate(f: F) -> F:
        from nexus_core.complete import complete

        return click.option(
            "-H",
            "--hosts",
            "--limit",
            "hosts_override",
            metavar="PATTERN",
            multiple=True,
            shell_complete=lambda *a: complete("hosts", *a),
            help=help,
        )(f)

    return decorate


def log_options(f: F) -> F:
    """``--log-level`` and ``--log-format`` (call :func:`setup_logs` with them)."""
    f = click.option(
        "--log-format",
        type=click.Choice(["text", "json"]),
        default=lambda: setting_default("log_format"),
        show_default="text",
        help="Format of the logs on stderr.",
    )(f)
    return click.option(
        "--log-level",
        type=click.Choice(["debug", "info", "warning", "error"]),
        default=None,
        help="Log level on stderr (default: config log_level, else warning).",
    )(f)


class Number(click.FloatRange):
    """A finite number of seconds (``unit="s"``) or days (``unit="days"``) for a CLI option:
    above ``minimum`` (or at it, unless ``min_open``) and at most ``maximum`` (a year of
    seconds, a century of days by default, as the config keys). ``nan`` and ``inf`` are
    usage errors (exit 2), not a wait that never ends or an internal error."""

    def __init__(self, minimum: float = 0, *, min_open: bool = False, unit: str = "s",
                 maximum: float | None = None) -> None:  # fmt: skip
        from nexus_core.options import MAX_DAYS, MAX_SECONDS

        top = maximum if maximum is not None else (MAX_DAYS if unit == "days" else MAX_SECONDS)
        super().__init__(min=minimum, max=top, min_open=min_open)
        self.unit = unit

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        import math

        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number of {'days' if self.unit == 'days' else 'seconds'}",
                      param, ctx)  # fmt: skip
        return super().convert(number, param, ctx)


def lock_options(f: F) -> F:
    """``--no-wait`` and ``--lock-timeout`` for commands that take the project's run lock."""
    f = click.option(
        "--lock-timeout",
        type=Number(0),
        metavar="SECONDS",
        default=None,
        help="Give up (exit 2) if another run of this project still holds the lock after SECONDS.",
    )(f)
    return click.option(
        "--no-wait", is_flag=True, help="Exit 2 at once if another run of this project is in progress."
    )(f)


def setting_default(key: str) -> Any:
    """Default of a CLI option from NEXUS_<KEY> or the config files (see nexus_core.settings)."""
    from nexus_core.loader import NexusfileNotFound, find_nexusfile
    from nexus_core.settings import cli_default

    ctx = click.get_current_context(silent=True)
    explicit = ctx.params.get("config_path") if ctx is not None else None
    try:
        root: str | None = os.path.dirname(find_nexusfile(explicit if isinstance(explicit, str) else None))
    except NexusfileNotFound:
        root = None
    return cli_default(key, root)


def setup_logs(level: str | None, fmt: str) -> None:
    """Send logs to stderr at ``level`` (default warning) in ``fmt`` (text or json)."""
    from nexus_core import logs

    logs.setup(level or "warning", fmt, asked=level is not None)


# --- nexusfile, plan, state ----------------------------------------------------------------


def load(config_path: str | None) -> Project:
    """Find and load the nexusfile, or exit 2 with a helpful error."""
    from nexus_core.loader import NexusfileNotFound, find_nexusfile, load_project

    try:
        path = find_nexusfile(config_path)
    except NexusfileNotFound as exc:
        fail(
            ExitCode.CONFIG,
            "No nexusfile found",
            [str(exc)],
            ["Create one with: nexus init", "Or point to one with -c PATH or NEXUS_CONFIG=PATH"],
        )
    from nexus_core.secrets.resolve import start

    # secret() decrypts nothing unless the command asked for values first (`nexus run`, `resume`).
    start(plugin_manager().registry, resolve=False, replace=False)
    project = load_project(path)
    from nexus_core.secrets.resolve import register_team_key

    register_team_key(project.root)  # `cat .nexus/team.key` in a task shows ***, as NEXUS_MASTER_KEY does
    from nexus_core.settings import SettingsError, apply

    try:  # defaults from .nexus/config.toml, the user's config.toml and NEXUS_<KEY> variables
        apply(project, plugin_manager().registry.config_options)
    except SettingsError as exc:
        fail(ExitCode.CONFIG, f"Configuration error: {exc.message}", [exc.where], [exc.hint] if exc.hint else [])
    return project


def make_plan(project: Project, tasks: Sequence[str], fmt: str, **kwargs: Any) -> Plan:
    """Validate and plan ``tasks`` (all when empty), or exit 2 listing every problem.

    Keyword arguments go to ``nexus_core.plan.build_plan`` (``host_override``,
    ``config_override``, ``cache``). Without a ``cache``, the state store serves as the
    planning cache for this call and is closed again.

    Hosts of ``discover(...)`` sources are discovered first (not for ``every_plugin``, the
    offline ``nexus validate``): ``refresh=True`` ignores the discovery cache,
    ``saved_discovery`` (a resumed run's ``Plan.discovery``) reuses what that run found.
    A source that cannot answer exits with its error and fix (2 for a bad inventory, 3
    for a source that cannot be reached).
    """
    from nexus_core.plan import ValidationFailed, build_plan

    refresh = bool(kwargs.pop("refresh", False))
    saved = kwargs.pop("saved_discovery", None) or ()
    quiet_notes = bool(kwargs.pop("quiet_notes", False))
    dry_clouds = bool(kwargs.pop("dry_clouds", False))
    own = None
    if "cache" not in kwargs:
        own = kwargs["cache"] = open_store(quiet=True)
    resolution = None
    try:
        if not kwargs.get("every_plugin"):
            declared = project
            named = _limit_groups(project, kwargs.get("limit"))
            resolution = _discover(project, tasks, fmt, kwargs.get("cache"), refresh, saved, groups=named,
                                   dry_clouds=dry_clouds)  # fmt: skip
            if resolution is not None:
                project = resolution.project
                if resolution.waiting:
                    kwargs["waiting"] = _waiting_tasks(declared, resolution.waiting)
        else:  # nexus validate: nothing discovered, but a where= over written-out hosts runs
            from dataclasses import replace

            from nexus_core.discovery import static_where_problems

            wrong = static_where_problems(project)
            if wrong:
                project = replace(project, problems=[*project.problems, *wrong])
        plan = build_plan(project, plugin_manager().registry, tasks, untargeted=_untargeted(resolution), **kwargs)
    except ValidationFailed as exc:
        show_problems(exc.problems, fmt)
        raise Exit(ExitCode.CONFIG) from None
    finally:
        if own is not None:
            own.close()
    style = Style.detect(sys.stderr)
    if resolution is not None and resolution.found:
        from dataclasses import replace

        plan = replace(plan, discovery=resolution.records())
        for note in () if quiet_notes else resolution.notes:
            click.echo(style.paint(f"Note: {note}", "yellow"), err=True)
    for warning in plan.warnings:
        # A plugin missing for tasks this run does not include: say so, and run the rest.
        text = f"Warning: {warning.message} (not needed by this run)" + (f"; {warning.hint}" if warning.hint else "")
        click.echo(style.paint(text, "yellow"), err=True)
    return plan


def _untargeted(resolution: Any) -> list[tuple[str, tuple[str, ...]]]:
    """The hosts a source found but does not target (offline, or left out by the source), each
    as its shown name and its spellings, for the planner's ``-H`` problems."""
    out: list[tuple[str, tuple[str, ...]]] = []
    for found in resolution.entries.values() if resolution is not None else ():
        for entry, targeted in found:
            name = str(entry.facts.get("name") or "")
            if not targeted:
                out.append((name or entry.text, (entry.text, name) if name else (entry.text,)))
    return out


def _limit_groups(project: Project, limit: Sequence[str] | None) -> list[str] | None:
    """The host groups a ``-H`` limit names (globs included): their discovered members decide
    which hosts it keeps (``-H '!web'`` over an inventory's ``web``), so they are discovered
    with the run's own sources. None without a limit (or one the planner reports as bad)."""
    if not limit:
        return None
    import fnmatch

    from nexus_core.limit import LimitError, parse_limit

    try:
        terms = parse_limit(limit).terms
    except LimitError:
        return None
    return [g for g in project.groups if any(fnmatch.fnmatchcase(g, t.pattern) for t in terms)] or None


def _discover(
    project: Project,
    tasks: Sequence[str],
    fmt: str,
    store: Any,
    refresh: bool,
    saved: Any,
    groups: Sequence[str] | None = None,
    dry_clouds: bool = False,
    only_groups: bool = False,
) -> Any:
    """The project with the sources its ``tasks`` (or ``groups``) need resolved (None when it
    has none), or exit with the source's error. ``dry_clouds``: a dry run, where agents that
    a declared cloud starts with the run are not there yet (see :func:`_cloud_agents`).
    ``only_groups``: the sources of ``groups`` alone, none of the tasks' own ``on=``."""
    from nexus_core.model import has_sources

    if not has_sources(project):
        return None
    from nexus_core.discovery import DiscoveryFailed, resolve
    from nexus_core.plan import closure

    names = None if only_groups else closure(project, tasks) if tasks else list(project.tasks)
    registry = plugin_manager().registry
    from nexus_core.plan import config_value_problems

    wrong = config_value_problems(project, registry)  # before a source acts on them (cluster=123)
    if wrong:
        show_problems(wrong, fmt)
        raise Exit(ExitCode.CONFIG)
    waiting = _cloud_agents(project, registry) if dry_clouds and project.clouds else None
    try:
        return resolve(project, registry, store=store, refresh=refresh, saved=saved, tasks=names, groups=groups,
                       waiting=waiting)  # fmt: skip
    except DiscoveryFailed as exc:
        style = Style.detect(sys.stderr)
        for note in exc.notes:  # the retries that came before the failure
            click.echo(style.paint(f"Note: {note}", "yellow"), err=True)
        if exc.exit_code == ExitCode.CONFIG:
            show_problems(exc.problems(), fmt)
            raise Exit(ExitCode.CONFIG) from None
        fail(exc.exit_code, *exc.report())


def _cloud_agents(project: Project, registry: Any) -> Callable[[Any], str | None]:
    """For a dry run: why an agent selector finds no agent when a declared cloud's instances
    join with its tag (they start only when the run does), else None."""
    from nexus_core import clouds

    by_tag: dict[str, str] = {}
    for name, spec in project.clouds.items():
        try:
            tags = clouds.resolved(registry, spec)["tags"]
        except Exception:  # noqa: BLE001 - a bad declaration is reported by validation
            continue
        for tag in tags:
            by_tag.setdefault(str(tag), name)

    def why(spec: Any) -> str | None:
        tag = spec.filters.get("tag") if spec.source == "agent" else None
        cloud = by_tag.get(tag) if isinstance(tag, str) else None
        if cloud is None:
            return None
        return f"runs on the instances cloud({cloud!r}) starts with the run (agents tagged {tag!r}: none yet)"

    return why


def _waiting_tasks(project: Project, waiting: Mapping[str, str]) -> dict[str, str]:
    """The tasks whose every host source is one of ``waiting`` (a dry run's cloud agents): why."""
    from nexus_core.discovery import needed_specs
    from nexus_core.model import SourceSpec, on_items

    def only_sources(on: Any, seen: set[str]) -> bool:  # no host written out: nothing to plan yet
        if isinstance(on, str):
            g = project.groups.get(on)
            if g is None or on in seen:
                return g is not None
            seen.add(on)
            return all(isinstance(m, SourceSpec) for m in g.members) and all(
                only_sources(sub, seen) for sub in g.groups if isinstance(sub, str)
            )
        return all(isinstance(i, SourceSpec) or only_sources(i, seen) for i in on_items(on))

    out: dict[str, str] = {}
    for name, t in project.tasks.items():
        specs = needed_specs(project, [name])
        if specs and all(s.key in waiting for s in specs) and t.on is not None and only_sources(t.on, set()):
            out[name] = waiting[specs[0].key]
    return out


def discover_groups(project: Project, fmt: str) -> Project:
    """``project`` with the sources of every host group discovered (for commands that pick
    hosts by group or name, like ``nexus exec``), or exit with the source's error."""
    store = open_store(quiet=True)
    try:
        # The groups' sources only: a task's on=tagged("gpu") finding no agent is that task's
        # business, not a reason for `nexus exec agent://a1` to fail.
        resolution = _discover(project, (), fmt, store, False, (), groups=list(project.groups), only_groups=True)
    finally:
        if store is not None:
            store.close()
    return project if resolution is None else resolution.project


def show_problems(problems: Sequence[Any], fmt: str) -> None:
    """Print validation problems (text on stderr; one JSON object on stdout)."""
    from nexus_core.output.report import problems_block

    if fmt == "json":
        click.echo(
            json.dumps({"event": "validation.error", "valid": False, "problems": [p.to_dict() for p in problems]})
        )
    else:
        click.echo(problems_block(Style.detect(sys.stderr), problems), err=True)


def open_store(required: bool = False, quiet: bool = False) -> StateStore | None:
    """The run-state database, or None when it cannot be used and is not ``required``.

    ``required``: exit 2 saying why; else warn (unless ``quiet``) that the run is not recorded.
    """
    from nexus_core.state.paths import state_db
    from nexus_core.state.recover import open_state
    from nexus_core.state.store import StateError

    try:  # a damaged database is moved aside and replaced, with a warning
        return open_state(state_db(), warn=lambda m: click.echo(m, err=True))
    except StateError as exc:
        if required:
            path = state_db()
            if exc.hint:
                hint = exc.hint
            elif os.path.isdir(path):
                hint = f"{path} is a folder, not a database: move it away (or set NEXUS_STATE_DB)"
            else:
                hint = "Check the permissions of $XDG_STATE_HOME/nexus (or set NEXUS_STATE_DB)"
            fail(ExitCode.CONFIG, "Cannot open the run-state database", [str(exc)], [] if exc.damaged else [hint])
        if not quiet:
            click.echo(f"nexus: warning: {exc}; this run is not recorded and cannot be resumed", err=True)
        return None


def policy_applies() -> bool:
    """True when a policy may be in force (the system file exists or ``NEXUS_POLICY`` is set).

    A cheap look, so that commands import ``nexus_core.policy`` only when there is one; then
    ``nexus_core.policy.gate.check(action)`` enforces it.
    """
    return bool(os.environ.get("NEXUS_POLICY")) or os.path.exists("/etc/nexus/policy.toml")


@contextmanager
def closing(store: StateStore | None) -> Iterator[StateStore | None]:
    """Close ``store`` (if any) when the block ends, however it ends."""
    try:
        yield store
    finally:
        if store is not None:
            store.close()
