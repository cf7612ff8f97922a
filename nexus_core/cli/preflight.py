"""``nexus preflight``, and the pre-flight checks ``nexus run --dry-run`` shows."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import rich_click as click

from nexus_core.cli.application import (
    Exit,
    ExitCode,
    Number,
    config_option,
    formats,
    hosts_option,
    load,
    log_options,
    main,
    make_plan,
    plugin_manager,
    policy_applies,
    setup_logs,
)
from nexus_core.output.style import Style

if TYPE_CHECKING:
    from nexus_core.plan import Plan


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


@main.command()
@click.argument("tasks", nargs=-1, required=True)
@hosts_option("Check only these of each task's hosts (patterns as for `nexus run -H`).")
@click.option("--skip-connectivity", is_flag=True, help="Do not check that hosts accept TCP connections.")
@click.option("--skip-auth", is_flag=True, help="Do not check SSH authentication.")
@click.option("--skip-sudo-check", is_flag=True, help="Do not check sudo for tasks that use it.")
@click.option("--skip-disk-check", is_flag=True, help="Do not check the hosts' free space for the files uploaded.")
@click.option(
    "--timeout",
    type=Number(0, min_open=True),
    default=5.0,
    show_default=True,
    help="Seconds per host for each check.",
)
@click.option("--parallel", type=click.IntRange(min=1), default=10, show_default=True, help="Hosts checked at once.")
@click.option("--force", is_flag=True, help="Hosts that fail are marked unavailable; exit 0 if others remain.")
@click.option("-i", "--identity", metavar="PATH", help="SSH private key (overrides ssh_identity).")
@click.option("-u", "--user", metavar="NAME", help="SSH user (overrides ssh_user).")
@config_option
@formats("text", "json", "quiet", help="For people (text), scripts (json), or the errors only (quiet).")
@log_options
def preflight(
    tasks: tuple[str, ...],
    hosts_override: tuple[str, ...],
    skip_connectivity: bool,
    skip_auth: bool,
    skip_sudo_check: bool,
    skip_disk_check: bool,
    timeout: float,
    parallel: int,
    force: bool,
    identity: str | None,
    user: str | None,
    config_path: str | None,
    fmt: str,
    log_level: str | None = None,
    log_format: str = "text",
) -> None:
    """Run the pre-flight checks for TASKS (config, connectivity, auth, sudo, local files).

    Exit codes: 0 passed (or --force with hosts left), 3 a host is unreachable or refuses
    authentication, 2 configuration or local files, 1 anything else (e.g. sudo, disk space).
    """
    import time

    from nexus_core.output.report import preflight_errors, preflight_exit_code, preflight_failures, preflight_text

    setup_logs(log_level, log_format)
    project = load(config_path)
    from nexus_core.params import split_words

    tasks_words = tasks
    names, params = split_words(tasks)
    tasks = tuple(names)
    from nexus_core.options import config_overrides  # -u/-i: the keys their plugin declares

    overrides = config_overrides(plugin_manager().registry.config_options, identity=identity, user=user)
    plan = make_plan(project, tasks, fmt, limit=list(hosts_override) or None, params=params, config_override=overrides)
    if policy_applies():  # it logs in to the hosts: the permission a dry run needs
        from nexus_core.policy.gate import check

        check("list", ", ".join(tasks), plan.config)
    options = {
        "dry_run": False,
        "skip_connectivity": skip_connectivity,
        "skip_auth": skip_auth,
        "skip_sudo_check": skip_sudo_check,
        "skip_disk_check": skip_disk_check,
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
        code = ExitCode.OK
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
    elif fmt == "quiet":
        s = Style.detect()
        if failures:
            click.echo(preflight_errors(s, failures), err=True)
    else:
        s = Style.detect()
        text = preflight_text(s, tasks, checks, duration, force=force and code == ExitCode.OK, unavailable=unavailable)
        click.echo(text)
        if force and code == ExitCode.OK and unavailable:
            from nexus_core.limit import rerun_command

            again = rerun_command(tasks_words, available, {"-c": config_path, "-u": user, "-i": identity})
            click.echo(f"Continue with the available hosts: {again}")
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
