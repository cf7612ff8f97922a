"""Entry module of the ``nexus-ssh`` plugin (entry point ``nexus: ssh``).

Cheap to import: no Paramiko or Fabric here; the executor imports them on first use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

try:  # the core re-exports the marker; fall back to an equivalent one
    from nexus_core import hookimpl
except ImportError:  # pragma: no cover - depends on the core's version
    import pluggy

    hookimpl = pluggy.HookimplMarker("nexus")

from nexus_core.api import (  # loaded already: the core's built-ins use them
    Capabilities,
    Executor,
    PreflightCheck,
)

if TYPE_CHECKING:
    import click

#: The core plugin API version this plugin was built for.
NEXUS_API_VERSION = 1

#: Headings of the pre-flight results (nexus_ssh.preflight).
CONNECTIVITY = "Host Connectivity"
AUTH = "SSH Authentication"
SUDO = "Sudo Access"
RESOURCES = "Resources"


class SshExecutor(Executor):
    """The ``ssh`` transport as registered; creating one makes a :class:`nexus_ssh.executor.SshExecutor`.

    That subclass (and Paramiko behind it) is imported on first use, so registering the
    transport costs every ``nexus`` command, local runs included, nothing.
    """

    name = "ssh"
    package = "nexus-ssh"
    supports_markers = True
    #: Commands at once per host are bounded by the connection pool itself (``ssh_pool_size``:
    #: a command waits for a free connection); every cancel level signals the remote process
    #: group; files go over SFTP.
    capabilities = Capabilities(file_transfer=True)

    def __new__(cls, *args: Any, **kwargs: Any) -> SshExecutor:
        if cls is SshExecutor:
            from nexus_ssh.executor import SshExecutor as real

            cls = real
        return super().__new__(cls)


@hookimpl
def nexus_executors() -> Sequence[type[Executor]]:
    """The ``ssh`` transport."""
    return [SshExecutor]


@hookimpl
def nexus_config_options() -> Sequence[Any]:
    """``config(ssh_config_file=...)``: the OpenSSH client config to read (default ~/.ssh/config).

    ``config(ssh_session_mode=...)``: how commands reach a host's shell. ``"shell"`` (default):
    each pooled connection keeps one ``/bin/sh`` session that runs the commands one after the
    other; ``"exec"``: one exec channel per command (a new sshd session and login shell each
    time). Unset, env ``NEXUS_SSH_SESSION_MODE`` decides.
    Hosts without ``setsid``, and sudo with a password, always use exec channels. See
    ``nexus_ssh/session.py`` and docs/ssh.md.
    """
    from nexus_core.options import Option

    from nexus_ssh.session import DEFAULT_MODE, MODES

    return [
        Option(
            "ssh_config_file",
            (str,),
            None,
            "OpenSSH client config to read (default ~/.ssh/config; '' reads none)",
        ),
        Option(
            "ssh_session_mode",
            (str,),
            DEFAULT_MODE,
            "'shell': one long-lived shell per connection runs the commands in turn (fast); "
            "'exec': a new exec channel (sshd session, login shell) per command",
            choices=MODES,
        ),
    ]


class SshHostsCheck(PreflightCheck):
    """Connectivity, authentication and sudo for every SSH host, as registered.

    Creating one makes a :class:`nexus_ssh.preflight.SshHostsCheck`, imported then.
    """

    name = "ssh-hosts"
    category = CONNECTIVITY
    order = 10

    def __new__(cls, *args: Any, **kwargs: Any) -> SshHostsCheck:
        if cls is SshHostsCheck:
            from nexus_ssh.preflight import SshHostsCheck as real

            cls = real
        return super().__new__(cls)


@hookimpl
def nexus_preflight_checks() -> Sequence[type[PreflightCheck]]:
    """Connectivity (latency, banner), authentication, sudo and open-files checks for SSH hosts."""
    return [SshHostsCheck]


@hookimpl
def nexus_commands() -> Sequence[click.Command]:
    """``nexus hosts scan [--add]`` and ``nexus hosts verify``."""
    from nexus_ssh.commands import hosts_group

    return [hosts_group()]


@hookimpl
def nexus_subscribers(
    config: Mapping[str, Any], options: Mapping[str, Any]
) -> Sequence[Callable[[Any], None]]:
    """Before a run over many hosts: raise the open-files limit, or warn how to (``ulimit -n``)."""
    return [_FdLimitGuard(config)]


class _FdLimitGuard:
    """On ``pipeline.start``: compare the hosts x pool size with ``RLIMIT_NOFILE``."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = config

    def __call__(self, event: Any) -> None:
        if getattr(event, "name", "") != "pipeline.start":
            return
        hosts = [h for h in getattr(event, "hosts", ()) if h != "local"]
        if not hosts:
            return
        import logging

        from nexus_ssh.limits import ensure_fd_limit, fds_needed

        pool = int(self.config.get("ssh_pool_size") or 4)
        limit = int(self.config.get("parallel_limit") or 10)
        forks = int(self.config.get("forks") or limit)
        report = ensure_fd_limit(fds_needed(len(hosts), pool, forks * limit, tasks_at_once=limit))
        log = logging.getLogger("nexus")
        if not report.enough:
            log.warning(report.warning(len(hosts), pool))
        elif report.raised:
            log.info(
                "open files limit raised from %d to %d for %d hosts",
                report.soft_before,
                report.soft,
                len(hosts),
            )
