"""``nexus hosts``: the project's hosts by group, where each comes from (``nexus hosts list``).

The group is built in, and open: subcommands a plugin adds under its own ``hosts`` group
(a transport plugin's host-key commands, say) join it, so ``nexus hosts --help`` lists them all.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

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
    open_store,
    plugin_manager,
    setup_logs,
    show_problems,
)
from nexus_core.model import EMPTY, Host, HostSpec, Project, SourceSpec, thaw
from nexus_core.output.style import Style

#: Built-in command groups that plugins may add subcommands to (``nexus hosts scan``).
OPEN_GROUPS = ("hosts",)


class OpenGroup(click.RichGroup):
    """A built-in group whose subcommands include those of a plugin group of the same name."""

    def _plugin_commands(self, ctx: click.Context) -> dict[str, click.Command]:
        parent = ctx.parent.command if ctx.parent is not None else main
        reserved = [n for n in click.Group.list_commands(parent, ctx) if n not in OPEN_GROUPS]  # type: ignore[arg-type]
        found: dict[str, click.Command] = {}
        for _, cmd in plugin_manager().commands(reserved=reserved):
            if cmd.name == self.name and isinstance(cmd, click.Group):
                for name, sub in cmd.commands.items():
                    found.setdefault(name, sub)
        return found

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = list(super().list_commands(ctx))
        names += [n for n in self._plugin_commands(ctx) if n not in names]
        return sorted(names)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is not None:
            return found
        return self._plugin_commands(ctx).get(cmd_name)


@main.group("hosts", cls=OpenGroup)
def hosts_group() -> None:
    """The project's hosts: list them by group with where they come from (plugins add more subcommands)."""


@hosts_group.command("list")
@click.argument("group", required=False)
@click.option("--refresh", is_flag=True, help="Discover afresh, ignoring config(discovery_ttl=...)'s cache.")
@config_option
@format_option
@log_options
def hosts_list(
    group: str | None,
    refresh: bool,
    config_path: str | None,
    fmt: str,
    log_level: str | None = None,
    log_format: str = "text",
) -> None:
    """Every host group with its hosts: source, tags and online state (offline hosts are listed, never targeted).

    Sources (``discover(...)``, ``inventory(...)``) are asked as a run would ask them.
    """
    from nexus_core.discovery import DiscoveryFailed, resolve
    from nexus_core.plan import ValidationFailed, check_structure

    setup_logs(log_level, log_format)
    project = load(config_path)
    registry = plugin_manager().registry
    if group is not None and group not in project.groups:
        from nexus_core.options import suggest

        close = suggest(group, project.groups)
        shown = ", ".join(project.groups) or "none"
        fail(ExitCode.CONFIG, f"No host group {group!r}", [f"Groups: {shown}"],
             [f"Did you mean {close!r}?"] if close else ["List them all: nexus hosts list"])  # fmt: skip
    problems = [p for p in check_structure(project, registry, running=()) if p.code != "empty-task"]
    if problems:
        show_problems(problems, fmt)
        raise Exit(ExitCode.CONFIG)
    chosen = [group] if group else list(project.groups)
    store = open_store(quiet=True)
    try:
        resolution = resolve(project, registry, store=store, refresh=refresh, groups=chosen)
    except DiscoveryFailed as exc:
        for note in exc.notes:  # the retries that came before the failure
            click.echo(f"Note: {note}", err=True)
        if exc.exit_code == ExitCode.CONFIG:
            show_problems(exc.problems(), fmt)
            raise Exit(ExitCode.CONFIG) from None
        fail(exc.exit_code, *exc.report())
    except ValidationFailed as exc:  # pragma: no cover - resolve reports through DiscoveryFailed
        show_problems(exc.problems, fmt)
        raise Exit(ExitCode.CONFIG) from None
    finally:
        if store is not None:
            store.close()
    rows = [_group_row(project, resolution, name) for name in chosen]
    if fmt == "json":
        click.echo(json.dumps({"event": "hosts.list", "groups": rows, "discovery": list(resolution.records())}))
        return
    click.echo(_text(Style.detect(), rows))
    for note in resolution.notes:
        if "`nexus hosts list` shows them" not in note:  # the rows say it
            click.echo(f"Note: {note}", err=True)


def _host_row(entry: str | HostSpec, source: str, targeted: bool) -> dict[str, Any]:
    """One host: ``online`` is the machine's own state (as its source reported it), ``targeted``
    whether a run would target it (an offline host a source was asked to target anyway is
    ``online: false, targeted: true``)."""
    from nexus_core.hosts import format_host
    from nexus_core.plan import to_host

    host = to_host(entry)
    facts: Mapping[str, Any] = {}
    tags: Sequence[str] = ()
    variables: Mapping[str, Any] = {}
    if isinstance(entry, HostSpec):
        facts, tags, variables = entry.facts, entry.tags, entry.vars
    name = facts.get("name") if isinstance(facts.get("name"), str) else None
    return {
        "host": "local" if host.is_local else format_host(host),
        "name": name or host.label,
        "address": host.name,
        "user": host.user,
        "port": host.port,
        "transport": host.transport,
        "source": source,
        "tags": list(tags),
        "online": bool(facts.get("online", True)),
        "targeted": targeted,
        "os": facts.get("os"),
        "vars": thaw(variables),
        "facts": thaw(facts),
    }


def _unusable_row(entry: str | HostSpec, source: str, targeted: bool, exc: Exception) -> dict[str, Any]:
    """A host whose string Nexus cannot connect to (a discovered name that is not a host
    name, say): listed with ``problem``, the reason a run on it stops, instead of left out."""
    text = entry.text if isinstance(entry, HostSpec) else str(entry)
    facts = entry.facts if isinstance(entry, HostSpec) else EMPTY
    name = facts.get("name") if isinstance(facts.get("name"), str) else None
    return {
        "host": text, "name": name or text, "address": None, "user": None, "port": None, "transport": None,
        "source": source, "tags": list(entry.tags) if isinstance(entry, HostSpec) else [],
        "online": bool(facts.get("online", True)), "targeted": targeted, "os": facts.get("os"),
        "vars": thaw(entry.vars) if isinstance(entry, HostSpec) else {}, "facts": thaw(facts),
        "problem": str(exc),
    }  # fmt: skip


def _keeps(where: Any, entry: str | HostSpec) -> bool:
    """What a group's ``where=`` says of a host (True when it has none or it raises)."""
    if where is None:
        return True
    from nexus_core.plan import to_host

    try:
        host: Host = to_host(entry)
        if isinstance(entry, HostSpec):
            host = replace(host, tags=entry.tags, vars=entry.vars, facts=entry.facts)
        return bool(where(host))
    except Exception:  # noqa: BLE001 - reported by a run; listing shows the host
        return True


def _group_row(project: Project, resolution: Any, name: str) -> dict[str, Any]:
    """One group: its hosts (its own, then those of the groups it includes), each with its source."""
    from nexus_core.hosts import HostParseError

    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    pending = False

    def walk(group_name: str, via: str, visited: set[str]) -> None:
        nonlocal pending
        if group_name in visited or group_name not in project.groups:
            return
        visited.add(group_name)
        g = project.groups[group_name]
        for m in g.members:
            items: list[tuple[str | HostSpec, str, bool]] = []
            if isinstance(m, SourceSpec):
                found = resolution.entries.get(m.key)
                if found is None:
                    pending = True
                    continue
                items = [(entry, m.describe(), targeted) for entry, targeted in found]
            elif isinstance(m, (str, HostSpec)):
                items = [(m, "nexusfile", True)]
            for entry, source, targeted in items:
                if not _keeps(g.where, entry):
                    continue
                try:
                    row = _host_row(entry, source + via, targeted)
                except (HostParseError, TypeError, ValueError) as exc:
                    row = _unusable_row(entry, source + via, targeted, exc)  # shown, with why
                if row["host"] in seen:
                    continue
                seen.add(row["host"])
                rows.append(row)
        for sub in g.groups:
            if isinstance(sub, str):
                walk(sub, f" (via group {sub})" if not via else via, visited)

    walk(name, "", set())
    g = project.groups[name]
    return {
        "group": name,
        "line": g.location.line,
        "groups": [s for s in g.groups if isinstance(s, str)],
        "hosts": rows,
        "targeted": sum(1 for r in rows if r["targeted"]),
        "complete": not pending,
    }


def _text(s: Style, rows: Sequence[Mapping[str, Any]]) -> str:
    lines: list[str] = []
    for row in rows:
        hosts = row["hosts"]
        n = len(hosts)
        offline = sum(1 for h in hosts if not h["online"])
        forced = sum(1 for h in hosts if not h["online"] and h["targeted"])
        idle = sum(1 for h in hosts if h["online"] and not h["targeted"])
        extra = f", {offline} offline" if offline else ""
        extra += f" ({forced} targeted)" if forced else ""
        extra += f", {idle} not targeted" if idle else ""
        includes = f"; includes {', '.join(row['groups'])}" if row["groups"] else ""
        lines.append(s.paint(f"{row['group']}", "bold") + f" ({n} host{'s' if n != 1 else ''}{extra}{includes})")
        width = max((len(h["name"]) for h in hosts), default=0)
        for h in hosts:
            parts = [h["host"]] if h["host"] != h["name"] else []
            parts.append(h["source"])
            if h["tags"]:
                parts.append("tags: " + ", ".join(h["tags"]))
            if h["os"]:
                parts.append(f"os: {h['os']}")
            state = ""
            if not h["targeted"]:
                why = h["facts"].get("note")
                state = "  offline (not targeted)" if not h["online"] else "  not targeted"
                state += f": {why}" if isinstance(why, str) and h["online"] else ""
            elif not h["online"]:
                state = "  offline (targeted: its source was asked to)"
            if h.get("problem"):
                state = f"  unusable: {h['problem']}"
            state = s.paint(state, "yellow") if state else ""
            lines.append(f"  {h['name'].ljust(width)}  {'  '.join(parts)}{state}")
        if not hosts:
            lines.append(s.paint("  (no hosts)", "dim"))
    if not rows:
        lines.append("No host groups: define them with hosts(...), inventory(...) or discover(...)")
    return "\n".join(lines)
