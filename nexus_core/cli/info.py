"""``nexus version``, ``nexus plugins``, ``nexus completion``, ``nexus config show``, ``nexus help``:
about the installation."""

from __future__ import annotations

import json
import sys

import rich_click as click

from nexus_core._version import API_VERSION, __version__
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
from nexus_core.output.style import Style


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


@main.command(name="help")
@click.argument("command", nargs=-1)
@click.pass_context
def help_command(ctx: click.Context, command: tuple[str, ...]) -> None:
    """Show the help of nexus, or of COMMAND (`nexus help run`, `nexus help pipelines discard`)."""
    from nexus_core.options import suggest

    here = ctx.find_root()
    for depth, name in enumerate(command):
        group = here.command
        found = group.get_command(here, name) if isinstance(group, click.Group) else None
        if found is None:
            before = " ".join(command[:depth])
            where = f"nexus {before}".rstrip()
            if not isinstance(group, click.Group):
                raise click.UsageError(f"`{where}` has no subcommands: `nexus help {before}` shows its help.", ctx)
            close = suggest(name, group.list_commands(here))
            more = f" Did you mean '{close}'?" if close else f" See `{where} --help` for its commands."
            raise click.UsageError(f"No such command '{name}' in `{where}`.{more}", ctx)
        here = found.context_class(found, info_name=name, parent=here)
    click.echo(here.get_help())


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
        fail(ExitCode.CONFIG, f"no completion for {shell}")
    comp = cls(main, {}, "nexus", "_NEXUS_COMPLETE")
    click.echo(comp.source())


@main.group(name="config")
def config_group() -> None:
    """Settings from the command line, environment, nexusfile and config files."""


@config_group.command(name="show")
@config_option
@format_option
@log_options
def config_show(config_path: str | None, fmt: str, log_level: str | None = None, log_format: str = "text") -> None:
    """Print every effective setting and where it came from (user file, project file, nexusfile...)."""
    setup_logs(log_level, log_format)
    from nexus_core.settings import SettingsError, show

    try:
        click.echo(show(config_path, plugin_manager().registry.config_options, fmt))
    except SettingsError as exc:
        fail(ExitCode.CONFIG, f"Configuration error: {exc.message}", [exc.where], [exc.hint] if exc.hint else [])


def _plugin_group() -> None:
    """Register ``nexus plugin new NAME`` (the generator lives in nexus_core.plugin_template)."""
    from nexus_core.plugin_template import plugin_group

    main.add_command(plugin_group())


_plugin_group()
