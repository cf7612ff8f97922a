"""Session mode: one long-lived ``/bin/sh`` per pooled connection runs the commands in turn.

In exec mode every command opens an exec channel, so the server forks an sshd session and
starts the user's login shell each time (that is most of a short command's cost: docs/decisions.md, "Speed").
In session mode (``ssh_session_mode = "shell"``) a connection opens one exec channel running
``exec /bin/sh`` (handed to the login shell, whatever it is, which replaces itself with
``sh``), and the executor writes each command on that shell's stdin::

    /usr/bin/setsid /bin/sh -c '<the exec-mode script>' </dev/null; nexus_rc=$?
    printf '\\n\\036NEXUS-END <nonce> %s\\n' "$nexus_rc"; printf ... >&2

* The command text is exactly what exec mode runs (:func:`nexus_core.shell.build`: env, cwd,
  sudo, the process-group marker line, the status-file wrapper and the output spool),
  started through ``setsid``: it leads its own session and
  process group, as under its own sshd session, so timeouts and cancels signal its groups
  through a second channel exactly as in exec mode, and the session shell survives them.
  Each command is a fresh ``sh``: env and cwd never leak into the next one. Its stdin is
  ``/dev/null`` (it would otherwise read the following commands).
* When it ends, the session shell prints a sentinel line with its exit code on stdout AND
  stderr, so both streams are drained before the command is reported done. The sentinel
  carries a random per-command nonce, so output that imitates it is just output. It starts
  with a newline so it is always at the start of a line: the empty line that this newline
  makes when the output already ended with one is dropped (see ``Framer``).
* Hosts without ``setsid`` (util-linux or busybox; macOS has none) answer the handshake with
  ``-``: their connections use exec mode. So do commands whose sudo reads a password on
  stdin, and the PTY retry when sudo demands a terminal.
* A session that died (its shell killed, the channel closed) is dropped; the next command on
  the connection opens a new one. The connection itself stays in the pool.
"""

from __future__ import annotations

import contextlib
import shlex
import time
from typing import TYPE_CHECKING

from nexus_core.plugin import shell

from nexus_ssh.options import DEFAULT_MODE as DEFAULT_MODE  # re-exported: the mode names
from nexus_ssh.options import MODES as MODES
from nexus_ssh.wake import waker

if TYPE_CHECKING:
    from paramiko.channel import Channel
    from paramiko.transport import Transport

# MODES and DEFAULT_MODE live in nexus_ssh.options (read at every start, without this module).
#: Environment variable read when ``ssh_session_mode`` is not configured (tests, benchmarks).
MODE_ENV = "NEXUS_SSH_SESSION_MODE"

END = "\x1eNEXUS-END "
_READY = "\x1eNEXUS-READY "
_EXEC_PREFIX = "exec /bin/sh -c "


class SessionError(Exception):
    """The session shell could not be started (the connection may still be fine)."""


class Unsupported(SessionError):
    """The host cannot run session mode (no ``setsid``, or no working ``/bin/sh``)."""


def nonce() -> str:
    """A fresh random token for one command's sentinel."""
    import secrets  # not at module level: the plugin's hooks import this module's constants

    return secrets.token_hex(8)


def sentinel(token: str) -> str:
    """The start of the sentinel line of the command with nonce ``token`` (the exit code follows)."""
    return f"{END}{token} "


def _then_sentinels(token: str) -> str:
    """Shell text ending a command line: keep its exit code, print the sentinel on both streams."""
    end = f"printf '\\n\\036NEXUS-END {token} %s\\n' \"$nexus_rc\""
    return f"nexus_rc=$?; {end}; {end} >&3\n"


def command_input(script: str, token: str, setsid: str, keeper: bool = False) -> bytes:
    """What is written on the session shell's stdin to run ``script`` (from :func:`remote.build`).

    ``keeper``: the script was built with ``keeper_arg`` (its wrapper starts the spool keeper
    from its first argument and replays its spool with the second): the session shell passes
    the texts it holds (set by :func:`handshake_input`), so they cross the connection once per
    session.
    """
    if not script.startswith(_EXEC_PREFIX):
        raise ValueError("session mode runs scripts made by nexus_ssh.remote.build")
    # fd 3 is the channel's stderr (see handshake_input). The command's sh moves it back to
    # its fd 2 itself: a ``2>&3`` on the command line would also apply to the session shell
    # while it waits, and its ``Terminated`` would reach the output.
    args = f" nexus {shell.keeper_args()}" if keeper else ""
    body = script[len(_EXEC_PREFIX) :]
    line = f"{shlex.quote(setsid)} /bin/sh -c 'exec 2>&3 3>&-\n'{body}{args} </dev/null; "
    return (line + _then_sentinels(token)).encode()


def raw_input(line: str, token: str) -> bytes:
    """What is written on the session shell's stdin to run ``line`` in that shell itself.

    For Nexus's own short commands (removing a run's status file): no ``setsid``, no new
    ``sh``, no process-group marker. The line must not read stdin, change directory or set
    variables the next commands would see; its stderr goes nowhere.
    """
    return f"{line}; {_then_sentinels(token)}".encode()


def handshake_input(token: str) -> bytes:
    """Asks the fresh session shell where ``setsid`` is (``-`` when it has none).

    It first moves the channel's stderr to fd 3 and points its own fd 2 at ``/dev/null``: the
    shell's own messages (``Terminated`` when a command is killed) are not the command's output.
    ``command -v`` prints the path itself: no command substitution, so no fork. It also keeps
    the spool keeper's text in a variable of its own, passed to the commands that start the
    keeper (:func:`command_input`).
    """
    return (
        f"exec 3>&2 2>/dev/null\n{shell.keeper_assignment()}\n"
        f"printf '\\036NEXUS-READY {token} '; command -v setsid || echo -\n"
    ).encode()


class Session:
    """One long-lived ``sh`` on one connection; used by one command at a time."""

    def __init__(self, chan: Channel, setsid: str) -> None:
        self.chan = chan
        self.setsid = setsid
        self.commands = 0

    @classmethod
    def open(cls, transport: Transport, timeout: float) -> Session:
        """Start ``/bin/sh`` on a new exec channel and check it can run commands.

        Raises :class:`Unsupported` when the host has no ``setsid``, :class:`SessionError`
        when the shell did not answer, and Paramiko's / socket errors when the channel could
        not be opened (a stale connection).
        """
        chan = transport.open_session(timeout=timeout)
        try:
            # The login shell (bash, zsh, fish, tcsh...) replaces itself with a POSIX sh.
            chan.exec_command("exec /bin/sh")
            token = nonce()
            chan.sendall(handshake_input(token))
            found = _read_ready(chan, _READY + token + " ", timeout)
        except BaseException:
            chan.close()
            raise
        if found is None:
            chan.close()
            raise SessionError("the session shell did not answer")
        if found == "-" or not found.startswith("/"):
            chan.close()
            raise Unsupported("no setsid on the host")
        return cls(chan, found)

    def usable(self) -> bool:
        """True while the shell can take a command (its channel open, the shell not gone)."""
        c = self.chan
        return not (c.closed or c.eof_received or c.exit_status_ready() or not c.active)

    def discard_pending(self) -> None:
        """Drop output left from an earlier command (a background process it left behind)."""
        while self.chan.recv_ready():
            self.chan.recv(65536)
        while self.chan.recv_stderr_ready():
            self.chan.recv_stderr(65536)

    def start(self, script: str, token: str, keeper: bool = False) -> None:
        """Start ``script`` (from :func:`remote.build`) with sentinel nonce ``token``, after
        dropping output left from an earlier command (a background process it left behind).
        ``keeper``: the script was built with ``keeper_arg`` (see :func:`command_input`)."""
        self.discard_pending()
        self.commands += 1
        self.chan.sendall(command_input(script, token, self.setsid, keeper))

    def start_raw(self, line: str, token: str) -> None:
        """Run ``line`` in the session shell itself (see :func:`raw_input`)."""
        self.discard_pending()
        self.commands += 1
        self.chan.sendall(raw_input(line, token))

    def close(self) -> None:
        """End the shell (EOF on its stdin) and close the channel."""
        with contextlib.suppress(Exception):  # best effort: the connection may be gone already
            self.chan.close()


def _read_ready(chan: Channel, prefix: str, timeout: float) -> str | None:
    """The value after ``prefix`` on a stdout line, skipping what the login shell printed."""
    deadline = time.monotonic() + max(1.0, timeout)
    buf = b""
    want = prefix.encode()
    wake = waker(chan)  # not select(): see nexus_ssh.wake
    while time.monotonic() < deadline:
        while chan.recv_stderr_ready():
            chan.recv_stderr(65536)  # rc-file noise of the login shell
        if chan.recv_ready():
            data = chan.recv(65536)
            if not data:
                return None
            buf += data
            at = buf.find(want)
            if at >= 0:
                end = buf.find(b"\n", at)
                if end >= 0:
                    value: str = buf[at + len(want) : end].decode("utf-8", "replace")
                    return value.strip()
            continue
        if chan.closed or chan.exit_status_ready() or chan.eof_received:
            return None
        # Data, EOF and a close wake it (the channel's buffers); 1 s only bounds the rest.
        wake.wait(min(1.0, max(0.0, deadline - time.monotonic())))
    return None
