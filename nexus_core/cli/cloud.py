"""``nexus cloud``: start, list, terminate and reap the machines of ``cloud(...)`` declarations.

``scale PROVIDER=N`` starts or terminates instances until N run (the hard limits of the
declaration still apply); ``status`` lists them with age, idle time and cost so far;
``terminate`` ends some or all; ``reap`` ends those a dead run started. Instances started
here belong to no run (their ``nexus:run`` tag is ``manual``): reap leaves them alone and
their own ``max_runtime`` self-destruct ends them if nobody does.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Sequence
from typing import Any

import rich_click as click

from nexus_core.cli.application import (
    ExitCode,
    config_option,
    fail,
    format_option,
    log_options,
    main,
    plugin_manager,
    setup_logs,
)


@main.group("cloud")
def cloud_group() -> None:
    """Machines started on demand that join the agent cluster (cloud(...) in the nexusfile)."""


def _project(config_path: str | None) -> Any:
    """The nexusfile's project when there is one (the commands also work without)."""
    from nexus_core.cli.application import load
    from nexus_core.loader import NexusfileNotFound, find_nexusfile

    try:
        find_nexusfile(config_path)
    except NexusfileNotFound:
        if config_path:
            load(config_path)  # says what is wrong with -c PATH
        return None
    project = load(config_path)
    if project.problems or project.clouds:
        from nexus_core import clouds

        problems = [*project.problems, *clouds.check(project, plugin_manager().registry)]
        if problems:
            from nexus_core.cli.application import Exit, show_problems

            show_problems(problems, "text")
            raise Exit(ExitCode.CONFIG)
    return project


def _session(config_path: str | None) -> Any:
    from nexus_core.clouds.session import CloudSession

    return CloudSession(plugin_manager().registry, _project(config_path), warn=lambda m: click.echo(m, err=True))


@contextlib.contextmanager
def _audited_session(config_path: str | None) -> Iterator[Any]:
    """A cloud session whose instance events (``cloud.instance.provisioned`` / ``terminated``)
    go to the project's audit sinks, as a run's do: a required sink that cannot write refuses
    the command before any machine starts or ends (exit 2)."""
    from nexus_core.clouds import MANUAL
    from nexus_core.clouds.session import CloudSession
    from nexus_core.settings import section_files

    project = _project(config_path)
    root = project.root if project is not None else None
    sinks: Any = None
    emit = None
    if section_files("audit", root):
        from nexus_core.events import EventBus
        from nexus_core.policy.gate import open_sinks

        sinks = open_sinks(root, MANUAL, strict=True)
        if sinks is not None:
            bus = EventBus(MANUAL, report=lambda m: click.echo(m, err=True))
            bus.subscribe("audit", sinks)
            emit = bus.emit
    try:
        with CloudSession(plugin_manager().registry, project, emit=emit,
                          warn=lambda m: click.echo(m, err=True)) as session:  # fmt: skip
            yield session
    finally:
        if sinks is not None:
            sinks.close()
    if sinks is not None:
        from nexus_core.policy.gate import refuse_incomplete

        refuse_incomplete(sinks)


def _cloud_fail(exc: Any) -> None:
    fail(exc.exit_code, exc.message, [], [exc.hint] if exc.hint else [])


def _providers(session: Any, names: Sequence[str]) -> list[str]:
    """The providers a command looks at: those named, else declared, else used here before."""
    from nexus_core.clouds.session import remembered

    chosen = list(names) or session.declared or [n for n in remembered() if n in session.registry.cloud_providers]
    if not chosen:
        fail(
            ExitCode.CONFIG,
            "No cloud provider to look at",
            ["the nexusfile declares no cloud(...) and `nexus cloud scale` was not used on this machine"],
            ["Name one: nexus cloud status local", 'Or declare one: cloud("aws", instance_type="t3.micro")'],
        )
    return chosen


@cloud_group.command("scale")
@click.argument("targets", nargs=-1, required=True, metavar="PROVIDER=N...")
@config_option
@log_options
def cloud_scale(
    targets: tuple[str, ...], config_path: str | None, log_level: str | None = None, log_format: str = "text"
) -> None:
    """Start or terminate instances until N of each PROVIDER run (``nexus cloud scale aws=5``).

    Every start is checked against max_instances, count and max_hourly_cost first; the first
    refusal stops the scaling of that provider with the reason (exit 1).
    """
    from nexus_core.api import CloudError
    from nexus_core.clouds import parse_scale
    from nexus_core.clouds.session import remember

    setup_logs(log_level, log_format)
    try:
        wanted = parse_scale(targets)
    except ValueError as exc:
        fail(ExitCode.CONFIG, str(exc), [],
             ["Write PROVIDER=COUNT, for example: nexus cloud scale local=3"])  # fmt: skip
    refused = False
    with _audited_session(config_path) as session:
        for name, count in wanted.items():
            try:
                controller = session.controller(name)
                remember([name])
                result = controller.scale_to(count, session.bootstrap(name))
            except CloudError as exc:
                _cloud_fail(exc)
            now = len(result.started) + result.before - len(result.stopped)
            line = f"{name}: {result.before} -> {now} instance(s)"
            if result.started:
                line += ", started " + ", ".join(i.name for i in result.started)
            if result.stopped:
                line += ", terminated " + ", ".join(i.id for i in result.stopped)
            click.echo(line)
            if result.error is not None:
                if result.error.exit_code != 1:
                    _cloud_fail(result.error)
                hint = f"\n  {result.error.hint}" if result.error.hint else ""
                click.echo(f"nexus: {result.refused}{hint}", err=True)
                refused = True
    if refused:
        from nexus_core.cli.application import Exit

        raise Exit(ExitCode.FAILED)


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


@cloud_group.command("status")
@click.argument("providers", nargs=-1, metavar="[PROVIDER...]")
@config_option
@format_option
@log_options
def cloud_status(
    providers: tuple[str, ...],
    config_path: str | None,
    fmt: str,
    log_level: str | None = None,
    log_format: str = "text",
) -> None:
    """Instances of this cluster: provider, id, agent, state, age, idle time, cost so far."""
    from nexus_core.api import CloudError
    from nexus_core.clouds import TAG_RUN
    from nexus_core.clouds.controller import cost_of

    setup_logs(log_level, log_format)
    rows: list[dict[str, Any]] = []
    now = time.time()
    with _session(config_path) as session:
        for name in _providers(session, providers):
            try:
                controller = session.controller(name)
                found = controller.instances()
            except CloudError as exc:
                _cloud_fail(exc)
            idle: dict[str, float | None] = {}
            view = session.cluster()
            if view is not None and found:
                try:
                    idle = dict(view.demand(()).idle_since)
                except Exception:  # noqa: BLE001 - the cluster down: status still lists instances
                    idle = {}
            for i in found:
                since = idle.get(i.name)
                rows.append({**i.to_dict(), "provider": name, "age": now - i.launched if i.launched else None,
                             "idle": (now - since) if since is not None else None, "joined": i.name in idle,
                             "run": i.tags.get(TAG_RUN, ""), "cost": cost_of(i, now)})  # fmt: skip
    hourly = sum(r["hourly_price"] or 0 for r in rows)
    total = sum(r["cost"] or 0 for r in rows)
    if fmt == "json":
        click.echo(json.dumps({"event": "cloud.status", "instances": rows, "hourly_cost": round(hourly, 6),
                               "cost": round(total, 6)}))  # fmt: skip
        return
    if not rows:
        click.echo("no instances")
        return
    click.echo(f"{'PROVIDER':<9} {'ID':<22} {'AGENT':<26} {'STATE':<8} {'AGE':>6} {'IDLE':>6} {'COST':>9}  RUN")
    for r in rows:
        idle_text = _age(r["idle"]) if r["idle"] is not None else ("busy" if r["joined"] else "-")
        cost = f"${r['cost']:.4f}" if r["cost"] is not None else "?"
        age = _age(r["age"]) if r["age"] is not None else "?"
        click.echo(f"{r['provider']:<9} {r['id']:<22} {r['name']:<26} {r['state']:<8} {age:>6} {idle_text:>6} "
                   f"{cost:>9}  {r['run']}")  # fmt: skip
    click.echo(f"{len(rows)} instance(s), ${hourly:.4f}/h, ${total:.4f} so far")


@cloud_group.command("terminate")
@click.argument("ids", nargs=-1, metavar="[ID...]")
@click.option("--all", "everything", is_flag=True, help="Terminate every instance of this cluster.")
@click.option("--provider", "only", multiple=True, metavar="NAME", help="Only at this provider (repeatable).")
@config_option
@log_options
def cloud_terminate(
    ids: tuple[str, ...],
    everything: bool,
    only: tuple[str, ...],
    config_path: str | None,
    log_level: str | None = None,
    log_format: str = "text",
) -> None:
    """Terminate instances by ID (or agent name), or all of them with --all."""
    from nexus_core.api import CloudError

    setup_logs(log_level, log_format)
    if bool(ids) == everything:
        fail(ExitCode.CONFIG, "Say which instances: IDs, or --all", [],
             ["nexus cloud terminate i-0abc123", "nexus cloud terminate --all"])  # fmt: skip
    left = set(ids)
    done = 0
    with _audited_session(config_path) as session:
        for name in _providers(session, only):
            try:
                controller = session.controller(name)
                chosen = [i for i in controller.instances() if everything or i.id in left or i.name in left]
                controller.terminate(chosen, "terminated by hand")
            except CloudError as exc:
                _cloud_fail(exc)
            for i in chosen:
                left.discard(i.id)
                left.discard(i.name)
                click.echo(f"{name}: terminated {i.id} ({i.name})")
            done += len(chosen)
    if left:
        fail(ExitCode.FAILED, f"No such instance: {', '.join(sorted(left))}", [],
             ["List them: nexus cloud status"])  # fmt: skip
    if everything and not done:
        click.echo("no instances")


@cloud_group.command("reap")
@click.option("-n", "--dry-run", is_flag=True, help="List what would be terminated; terminate nothing.")
@click.argument("providers", nargs=-1, metavar="[PROVIDER...]")
@config_option
@log_options
def cloud_reap(
    dry_run: bool,
    providers: tuple[str, ...],
    config_path: str | None,
    log_level: str | None = None,
    log_format: str = "text",
) -> None:
    """Terminate instances that a run started and that no live run owns (its process is gone).

    Instances started by ``nexus cloud scale`` belong to no run and are kept (terminate them
    with ``nexus cloud terminate``); so are those whose owner runs on another machine.
    """
    from nexus_core.api import CloudError
    from nexus_core.clouds import MANUAL, TAG_OWNER, TAG_RUN
    from nexus_core.clouds.controller import owner_alive

    setup_logs(log_level, log_format)
    reaped = kept_manual = 0
    # A dry run ends nothing: it needs no audit sink (and is not refused when one cannot write).
    with _session(config_path) if dry_run else _audited_session(config_path) as session:
        for name in _providers(session, providers):
            try:
                controller = session.controller(name)
                orphans = []
                for i in controller.instances():
                    if i.tags.get(TAG_RUN, MANUAL) == MANUAL:
                        kept_manual += 1
                    elif owner_alive(i.tags.get(TAG_OWNER, "")) is False:
                        orphans.append(i)
                if not dry_run:
                    controller.terminate(orphans, "reaped: its run is gone")
            except CloudError as exc:
                _cloud_fail(exc)
            for i in orphans:
                verb = "would terminate" if dry_run else "terminated"
                click.echo(f"{name}: {verb} {i.id} ({i.name}, run {i.tags.get(TAG_RUN)})")
            reaped += len(orphans)
    if not reaped:
        click.echo("nothing to reap")
    if kept_manual:
        click.echo(f"kept {kept_manual} instance(s) started by `nexus cloud scale` (nexus cloud terminate ID|--all)")
