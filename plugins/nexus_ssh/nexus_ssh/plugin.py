"""Entry module of the ``nexus-ssh`` plugin (entry point ``nexus: ssh``).

Cheap to import: it names its classes as ``"module:Class"`` registrations, so Paramiko,
the executor and the pre-flight checks are imported only when a plan uses SSH hosts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from nexus_core.plugin import Event, Option, Registration, Subscriber, hookimpl

if TYPE_CHECKING:
    import click

#: The core plugin API version this plugin was built for.
NEXUS_API_VERSION = 1

#: Headings of the pre-flight results (nexus_ssh.preflight).
CONNECTIVITY = "Host Connectivity"
AUTH = "SSH Authentication"
SUDO = "Sudo Access"
DISK = "Disk Space"
RESOURCES = "Resources"


@hookimpl
def nexus_executors() -> Sequence[Registration]:
    """The ``ssh`` transport (:class:`nexus_ssh.executor.SshExecutor`, imported on first use)."""
    return [Registration("ssh", "nexus_ssh.executor:SshExecutor")]


@hookimpl
def nexus_config_options() -> Sequence[Option]:
    """The ``ssh_*`` keys (``nexus_ssh.options``): user, identity, port, known hosts, host key
    policy, jump hosts, pool size, connect timeout, the OpenSSH config file and the session mode.

    ``ssh_session_mode``: how commands reach a host's shell. ``"shell"`` (default): each pooled
    connection keeps one ``/bin/sh`` session that runs the commands one after the other;
    ``"exec"``: one exec channel per command (a new sshd session and login shell each time).
    Unset, env ``NEXUS_SSH_SESSION_MODE`` decides. Hosts without ``setsid``, and sudo with a
    password, always use exec channels. See ``nexus_ssh/session.py`` and docs/ssh.md.
    ``ssh_user`` and ``ssh_identity`` are what ``-u/--user`` and ``-i/--identity`` set.
    """
    from nexus_ssh.options import config_options

    return config_options()


@hookimpl
def nexus_event_types() -> Sequence[Registration]:
    """``ssh.connect.start``, ``ssh.connect``, ``ssh.disconnect``, ``ssh.error``, ``ssh.pool.*``.

    By name: ``nexus_ssh.events`` is imported when a class is first asked for, not at every start.
    """
    return [Registration(name, f"nexus_ssh.events:{cls}") for name, cls in _EVENTS.items()]


#: nexus-ssh's events: name -> class in ``nexus_ssh.events`` (a test checks they match).
_EVENTS = {
    "ssh.connect.start": "SshConnectStart",
    "ssh.connect": "SshConnect",
    "ssh.disconnect": "SshDisconnect",
    "ssh.error": "SshError",
    "ssh.pool.checkout": "PoolCheckout",
    "ssh.pool.checkin": "PoolCheckin",
}


@hookimpl
def nexus_preflight_checks() -> Sequence[Registration]:
    """Connectivity (latency, banner), authentication, sudo and open-files checks for SSH hosts."""
    return [
        Registration(
            "ssh-hosts", "nexus_ssh.preflight:SshHostsCheck", {"category": CONNECTIVITY, "order": 10}
        )
    ]


@hookimpl
def nexus_host_sources() -> Sequence[Registration]:
    """``discover("ssh_config", pattern="web-*")``: the Host entries of the OpenSSH client config."""
    filters = (
        Option("pattern", (str,), None, "glob over the Host names (default: every one)"),
        Option("file", (str,), None, "the ssh config to read (default: ssh_config_file, then ~/.ssh/config)"),
    )
    return [Registration("ssh_config", "nexus_ssh.sources:SshConfigSource", {"filters": filters})]


@hookimpl
def nexus_commands() -> Sequence[click.Command]:
    """``nexus hosts scan [--add]`` and ``nexus hosts verify``."""
    from nexus_ssh.commands import hosts_group

    return [hosts_group()]


@hookimpl
def nexus_subscribers(config: Mapping[str, Any], options: Mapping[str, Any]) -> Sequence[Subscriber]:
    """Before a run over many hosts: raise the open-files limit, or warn how to (``ulimit -n``)."""
    return [_FdLimitGuard(config)]


class _FdLimitGuard:
    """On ``pipeline.start``: compare the hosts x pool size with ``RLIMIT_NOFILE``."""

    subscribed_events = frozenset({"pipeline.start"})  # the bus hands it no other event

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = config

    def __call__(self, event: Event) -> None:
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
