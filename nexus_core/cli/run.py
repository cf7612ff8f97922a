"""``nexus run``: run tasks (or, with ``--dry-run``, show the plan and the pre-flight checks)."""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any

import rich_click as click

from nexus_core.cli.application import (
    Exit,
    ExitCode,
    config_option,
    fail,
    format_option,
    load,
    lock_options,
    log_options,
    main,
    make_plan,
    open_store,
    setup_logs,
)
from nexus_core.cli.preflight import run_checks
from nexus_core.cli.running import decide_resume, lock_project, run_recorded
from nexus_core.output.style import Style

if TYPE_CHECKING:
    from nexus_core.plan import Plan


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
    hosts_override: str | None,
    config_path: str | None,
    fmt: str,
    log_level: str | None,
    log_format: str,
    resume: bool,
    no_resume: bool,
    force: bool,
    no_wait: bool = False,
    lock_timeout: float | None = None,
) -> None:
    """Run TASKS and their dependencies, each once, in parallel where the DAG allows.

    After an interrupted run of the same tasks, a terminal asks whether to resume it;
    without a terminal (or under CI) the run starts fresh unless --resume is given.

    -K/--ask-sudo-pass asks for the sudo password once; it is handed to the executors only
    (never printed, never in a command line). NEXUS_SUDO_PASSWORD does the same without a prompt.
    """
    setup_logs(log_level, log_format)
    if verbose and quiet:
        fail(ExitCode.CONFIG, "-v and -q cannot be used together", suggestions=["Pick one of them"])
    if ask_sudo_pass and not _can_prompt():
        fail(
            ExitCode.CONFIG,
            "-K/--ask-sudo-pass needs a terminal to ask for the password",
            ["CI is set" if os.environ.get("CI") else "stdin is not a terminal"],
            ["Set NEXUS_SUDO_PASSWORD in the environment for non-interactive runs"],
        )
    project = load(config_path)
    overrides = {"ssh_identity": identity, "ssh_user": user, "parallel_limit": parallel_limit}
    host_list = [h for h in (hosts_override or "").split(",") if h.strip()] or None
    if hosts_override is not None and not host_list:
        fail(ExitCode.CONFIG, "--hosts is empty", suggestions=["Pass comma-separated hosts: -H web-1,web-2"])
    store = open_store(quiet=True)  # opened once: the plan cache now, the run's record later
    try:
        plan = make_plan(project, tasks, fmt, host_override=host_list, config_override=overrides, cache=store)
        if not log_level and project.config.get("log_level"):
            setup_logs(str(project.config["log_level"]), log_format)
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
                raise Exit(ExitCode.INTERRUPTED) from None
        if store is None:
            store = open_store()  # a second try, which says why the run is not recorded
        lock_project(store, plan.nexusfile, list(plan.requested), no_wait, lock_timeout)
        record = point = None
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
    finally:
        if store is not None:
            store.close()


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
