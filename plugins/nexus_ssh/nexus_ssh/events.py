"""The SSH and pool events, declared to the core through ``nexus_event_types``.

They join the event catalogue and the ``--format json`` stream like the core's own. ``host``
names the host as the task gave it, with ``:PORT`` when the port is not 22 (``web-1:2222``),
so that two servers on one machine are told apart; ``port`` carries the number alone.
Cheap to import (the plugin manager asks for them at every start).
"""

from __future__ import annotations

from typing import ClassVar

from nexus_core.plugin import Event, event_type


def host_label(name: str, port: int) -> str:
    """``name`` with ``:port`` when the port is not 22 (``[v6]:port`` for an IPv6 address)."""
    if port == 22:
        return name
    return f"[{name}]:{port}" if ":" in name else f"{name}:{port}"


@event_type
class SshConnectStart(Event):
    """An SSH connection attempt begins."""

    name: ClassVar[str] = "ssh.connect.start"
    host: str
    user: str = ""
    port: int = 22
    attempt: int = 1


@event_type
class SshConnect(Event):
    """An SSH connection is up (``duration`` of the handshake and authentication)."""

    name: ClassVar[str] = "ssh.connect"
    #: Audited as an authentication success (the audit sinks' generic convention).
    audit: ClassVar[str] = "auth.success"
    host: str
    duration: float = 0.0
    auth: str = ""
    port: int = 22


@event_type
class SshDisconnect(Event):
    """An SSH connection was closed."""

    name: ClassVar[str] = "ssh.disconnect"
    host: str
    reason: str = ""
    port: int = 22


@event_type
class SshError(Event):
    """An SSH connection failed (refused, timeout, DNS, auth failed, host key changed)."""

    name: ClassVar[str] = "ssh.error"
    #: Audited as an authentication (or connection) failure, with the reason.
    audit: ClassVar[str] = "auth.failure"
    host: str
    reason: str
    port: int = 22


@event_type
class PoolCheckout(Event):
    """A pooled connection was taken (``queue_time`` waited for it)."""

    name: ClassVar[str] = "ssh.pool.checkout"
    host: str
    queue_time: float = 0.0
    pool_size: int = 0
    available: int = 0
    port: int = 22


@event_type
class PoolCheckin(Event):
    """A pooled connection was given back (``use_time`` it was held)."""

    name: ClassVar[str] = "ssh.pool.checkin"
    host: str
    use_time: float = 0.0
    port: int = 22


#: Every event this plugin emits, in the order the docs list them.
EVENT_TYPES: tuple[type[Event], ...] = (
    SshConnectStart,
    SshConnect,
    SshDisconnect,
    SshError,
    PoolCheckout,
    PoolCheckin,
)
