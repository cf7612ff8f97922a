"""Connection failures, classified: refused, timeout, reset, DNS, auth failed, host key.

Each becomes a :class:`ConnectError` whose ``reason`` is what the user reads: a first line
with the cause (the "Reason" of the failure report), then lines starting with ``- `` that are
suggestions. ``transient`` failures are retried while connecting (refused, reset,
timeout, network unreachable); auth and host key failures never are.
"""

from __future__ import annotations

import errno
import socket

from nexus_ssh.settings import Endpoint


class ConnectError(Exception):
    """A classified connection failure."""

    def __init__(self, kind: str, reason: str, *, transient: bool, retryable: bool) -> None:
        super().__init__(reason)
        self.kind = kind  # refused, timeout, reset, dropped, dns, unreachable, auth, hostkey, protocol, proxy
        self.reason = reason
        self.transient = transient  # retried by the connect loop
        self.retryable = retryable  # CommandResult.retryable


class HandshakeTimeout(TimeoutError):
    """The server accepted the TCP connection but did not finish the SSH handshake in time."""


class LoginTimeout(HandshakeTimeout):
    """The handshake ended but the server did not answer the login in time (a busy client or
    server, not a wrong key: retried like a slow handshake)."""


class CancelledConnect(Exception):
    """A stop was requested while connecting."""


class DroppedBeforeBanner(EOFError):
    """The server closed the TCP connection before its SSH banner (sshd's ``MaxStartups``
    sends ``Exceeded MaxStartups`` and closes; a per-source penalty closes silently)."""


def dropped_before_banner(exc: BaseException) -> bool:
    """True when ``exc`` says the server closed the connection before sending its banner.

    Paramiko reads the banner itself: sshd's ``Exceeded MaxStartups`` line is skipped as a
    pre-banner line, then the close is an ``EOFError`` (or a reset) that it raises as
    ``SSHException("Error reading SSH protocol banner")`` with that error as its context.
    """
    from paramiko.ssh_exception import SSHException

    if isinstance(exc, DroppedBeforeBanner):
        return True
    closed = (EOFError, ConnectionResetError, ConnectionAbortedError, BrokenPipeError)
    return (
        isinstance(exc, SSHException)
        and "protocol banner" in str(exc)
        and isinstance(exc.__context__, closed)
    )


def classify(exc: BaseException, ep: Endpoint, via: str = "") -> ConnectError:
    """Map a socket / Paramiko exception raised while connecting to ``ep`` to a ConnectError."""
    from paramiko.ssh_exception import (
        AuthenticationException,
        ChannelException,
        ProxyCommandFailure,
        SSHException,
    )

    from nexus_ssh.hostkeys import HostKeyError

    where = f"{ep.hostname} port {ep.port}" + (f", via {via}" if via else "")
    if isinstance(exc, ConnectError):
        return exc
    if isinstance(exc, HostKeyError):
        return ConnectError("hostkey", exc.reason, transient=False, retryable=False)
    if isinstance(exc, AuthenticationException):
        return ConnectError(
            "auth",
            f"Authentication failed for {ep.user}@{ep.hostname} (port {ep.port}): {exc}\n"
            f"- Check the user name (ssh_user, or user@host in the host string)\n"
            f"- Check the key: ssh_identity / -i, ssh-agent (ssh-add -l), ~/.ssh/id_ed25519\n"
            f"- Test by hand: ssh -p {ep.port} {ep.user}@{ep.hostname} true",
            transient=False,
            retryable=False,
        )
    if isinstance(exc, socket.gaierror):
        temporary = exc.errno == socket.EAI_AGAIN
        return ConnectError(
            "dns",
            f"Cannot resolve host name {ep.hostname!r}: {exc.strerror}\n"
            f"- Check the spelling, your DNS, or add a HostName in ~/.ssh/config",
            transient=temporary,
            retryable=temporary,
        )
    if isinstance(exc, ConnectionRefusedError):
        return ConnectError(
            "refused",
            f"Connection refused ({where})\n"
            f"- Verify the host is reachable: ping {ep.hostname}\n"
            f"- Check if SSH is running: nc -zv {ep.hostname} {ep.port}\n"
            f"- Verify firewall rules allow port {ep.port}",
            transient=True,
            retryable=True,
        )
    if dropped_before_banner(exc):
        return ConnectError(
            "dropped",
            f"The server dropped the connection before its banner ({where}): sshd's MaxStartups "
            f"limit? lower the rate (ssh_connect_rate) or raise MaxStartups\n"
            f"- Pace new connections: config(ssh_connect_rate='20/second') (and ssh_jump_concurrency "
            f"behind a jump host)\n"
            f"- Or raise MaxStartups in the server's sshd_config (OpenSSH's default: 10:30:100)",
            transient=True,
            retryable=True,
        )
    # Paramiko turns a silent server (TCP accepted, no SSH banner within the connect timeout)
    # into SSHException("Error reading SSH protocol banner") raised while handling the timeout.
    timed_out = isinstance(exc.__context__, (TimeoutError, socket.timeout))
    handshake = isinstance(exc, HandshakeTimeout) or (isinstance(exc, SSHException) and timed_out)
    if isinstance(exc, (TimeoutError, socket.timeout)) or handshake:
        what = "during the SSH handshake " if handshake else ""
        return ConnectError(
            "timeout",
            f"Connection timed out {what}({where})\n"
            f"- Verify the host is up and the port is right: nc -zv {ep.hostname} {ep.port}\n"
            f"- Raise ssh_connect_timeout (or ConnectTimeout in ~/.ssh/config) if the network is slow",
            transient=True,
            retryable=True,
        )
    if isinstance(exc, (ConnectionResetError, ConnectionAbortedError, EOFError, BrokenPipeError)):
        return ConnectError(
            "reset",
            f"Connection reset during the SSH handshake ({where})\n"
            f"- The server may be overloaded (MaxStartups) or block this client (fail2ban, AllowUsers)",
            transient=True,
            retryable=True,
        )
    if isinstance(exc, ProxyCommandFailure):
        return ConnectError(
            "proxy",
            f"ProxyCommand for {where} {exc.error}\n"
            f"- The command (run with /bin/sh): {exc.command}\n"
            f"- Check the ProxyCommand line in your ssh config, and that the proxy host is reachable",
            transient=False,
            retryable=True,
        )
    if isinstance(exc, ChannelException):
        return ConnectError(
            "refused",
            f"Jump host could not open a connection to {ep.hostname} port {ep.port}: {exc}\n"
            f"- Check the target is reachable from the jump host, and AllowTcpForwarding on it",
            transient=True,
            retryable=True,
        )
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL):
        return ConnectError(
            "unreachable",
            f"Host unreachable ({where}): {exc.strerror}\n- Check routing / VPN to {ep.hostname}",
            transient=True,
            retryable=True,
        )
    if isinstance(exc, SSHException):
        text = str(exc)
        transient = "banner" in text.lower() or "reset" in text.lower() or "eof" in text.lower()
        return ConnectError(
            "reset" if transient else "protocol",
            f"SSH negotiation failed ({where}): {text}",
            transient=transient,
            retryable=transient,
        )
    if isinstance(exc, OSError):
        return ConnectError("unreachable", f"Cannot connect ({where}): {exc}", transient=True, retryable=True)
    return ConnectError(
        "error", f"Cannot connect ({where}): {type(exc).__name__}: {exc}", transient=False, retryable=False
    )


#: Suggestions for a connection failure whose reason carries none, by a word of its first line.
CONNECTION_HINTS = {
    "refused": [
        "Check that sshd runs on the host and listens on that port",
        "Verify firewall rules allow the SSH port",
    ],
    "timed out": ["Verify the host is reachable (ping, VPN)", "Raise ssh_connect_timeout for slow links"],
    "auth": ["Check the user and key: ssh -i KEY USER@HOST true", "Pass a key with -i or ssh_identity"],
    "host key": ["If the host was rebuilt, remove the old key from known_hosts (file and line above)"],
    "dns": ["Check the host name for typos", "Verify DNS resolution: getent hosts HOST"],
}


def headline(reason: str) -> str:
    """The failure report's headline for a connection that failed with ``reason``."""
    if "host key changed" in reason.lower():
        return "SSH host key changed - possible man-in-the-middle attack"
    return "SSH connection failed"


def with_hints(head: str, rest: str) -> str:
    """``rest`` (details and ``- `` suggestions) plus general suggestions when it has none."""
    if any(line.strip().startswith("- ") for line in rest.splitlines()):
        return rest
    lowered = head.lower()
    extra = [f"- {h}" for key, hints in CONNECTION_HINTS.items() if key in lowered for h in hints]
    return "\n".join([rest, *extra]) if rest and extra else rest or "\n".join(extra)
