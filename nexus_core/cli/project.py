"""``nexus validate``, ``nexus list`` and ``nexus init``: the nexusfile itself."""

from __future__ import annotations

import json
import os

import rich_click as click

from nexus_core.cli.application import (
    Exit,
    ExitCode,
    config_option,
    fail,
    format_option,
    load,
    log_options,
    main,
    make_plan,
    plugin_manager,
    policy_applies,
    setup_logs,
    show_problems,
)
from nexus_core.output.style import Style


@main.command()
@click.argument("tasks", nargs=-1)
@config_option
@format_option
@log_options
def validate(
    tasks: tuple[str, ...], config_path: str | None, fmt: str, log_level: str | None = None, log_format: str = "text"
) -> None:
    """Check the nexusfile (and every task body) without running anything.

    Tasks with parameters need their arguments here too, as KEY=VALUE words.
    """
    from nexus_core.params import split_words

    setup_logs(log_level, log_format)
    project = load(config_path)
    names, params = split_words(tasks)
    plan = make_plan(project, names, fmt, every_plugin=True, params=params)
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
                f"{s.ok} {os.path.basename(plan.nexusfile)} is valid: {_count(len(plan.tasks), 'task')}, "
                f"{_count(len(plan.phases), 'phase')}, {_count(plan.command_count(), 'command')}",
                "green",
            )
        )


def _count(n: int, noun: str) -> str:
    """``1 task``, ``3 tasks``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


@main.command(name="list")
@config_option
@format_option
@log_options
def list_tasks(config_path: str | None, fmt: str, log_level: str | None = None, log_format: str = "text") -> None:
    """List tasks: name and parameters, dependencies, where they run, and the first docstring line."""
    setup_logs(log_level, log_format)
    if policy_applies():
        from nexus_core.policy.gate import check

        check("list")
    from nexus_core.plan import check_structure, default_task
    from nexus_core.tasklist import rows_text, task_rows

    project = load(config_path)
    problems = check_structure(project, plugin_manager().registry, running=())
    if problems:
        show_problems(problems, fmt)
        raise Exit(ExitCode.CONFIG)
    rows = task_rows(project, default_task(project)[0])
    if fmt == "json":
        click.echo(json.dumps({"tasks": rows}))
        return
    if not rows:
        click.echo("No tasks defined yet: add a function decorated with @task (see `nexus init`).")
        return
    click.echo(rows_text(rows))


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
    """Ship it (add on="web", a host group, once nexus-ssh is installed)."""
    run("echo deploying", retries=2, retry_delay=1)
'''


@main.command()
@click.option("--force", is_flag=True, help="Overwrite an existing nexusfile.py.")
def init(force: bool) -> None:
    """Write a commented starter nexusfile.py in this folder (never overwrites one)."""
    path = os.path.join(os.getcwd(), "nexusfile.py")
    if os.path.isdir(path):
        fail(
            ExitCode.CONFIG,
            "nexusfile.py is a folder here",
            [f"Folder: {path}"],
            ["Rename or remove that folder, then run nexus init again (--force only replaces a file)"],
        )
    if os.path.lexists(path) and not force:
        fail(
            ExitCode.CONFIG,
            "nexusfile.py already exists",
            [f"File: {path}"],
            ["Edit it, or remove it first (or pass --force to overwrite)"],
        )
    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(STARTER)
    except OSError as exc:
        fail(
            ExitCode.CONFIG,
            f"cannot write nexusfile.py: {exc.strerror or exc}",
            [f"File: {path}"],
            ["Check the folder's permissions, or run nexus init in a folder you can write to"],
        )
    click.echo(f"Created {path}\nNext: nexus list, then nexus run deploy --dry-run")
