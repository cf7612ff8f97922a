"""The connection ``call(fn)`` hands to a fabfile-style function: a Fabric ``Connection`` bound
to the SSH transport nexus-ssh already holds for the host.

No second connection is opened: the ``Connection``'s Paramiko client is given the pooled
transport (authenticated, host key verified, through the jump hosts), checked out of the
host's pool for the duration of the call as a command's would be. ``c.run``/``c.sudo`` open
channels on it, ``c.put``/``c.get`` an SFTP session on it. Closing the ``Connection`` (a
``with c:`` block, ``c.close()``) closes only that SFTP session; the transport goes back to
the pool. Output goes to the run's output (invoke's ``out_stream``/``err_stream``), never
to Nexus's own stdout, and no command reads Nexus's stdin.

Fabric is imported here only, when a run's first ``call()`` reaches an SSH host.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from nexus_core.plugin import Host, honour_hide


def _connection_class() -> type[Any]:
    import fabric

    class PooledConnection(fabric.Connection):  # type: ignore[misc]
        """A Fabric ``Connection`` that rides a transport owned by nexus-ssh's pool."""

        def open(self) -> None:
            """Nothing to open: the pooled transport is already there (a lost one is an error)."""
            if not self.is_connected:
                raise ConnectionError(
                    f"the SSH connection to {self.host} was lost during call(); "
                    "nexus-ssh does not open a second one behind the run's back"
                )

        def close(self) -> None:
            """Close this call's SFTP session only; the transport stays with the pool."""
            sftp: Any = getattr(self, "_sftp", None)
            if sftp is not None:
                sftp.close()
                self._sftp = None

        def run(self, command: str, **kwargs: Any) -> Any:
            """Fabric's ``run``, honouring ``hide=`` (see ``nexus_core.plugin.honour_hide``)."""
            return super().run(command, **honour_hide(kwargs))

        def sudo(self, command: str, **kwargs: Any) -> Any:
            """Fabric's ``sudo``, honouring ``hide=`` (see ``nexus_core.plugin.honour_hide``)."""
            return super().sudo(command, **honour_hide(kwargs))

    return PooledConnection


@contextmanager
def bound_connection(
    transport: Any,
    host: Host,
    target_host: str,
    user: str,
    port: int,
    streams: Any,
    sudo_password: str | None,
) -> Iterator[Any]:
    """A Fabric ``Connection`` to ``host`` on ``transport`` (open), detached from it on exit."""
    import fabric
    import paramiko

    overrides: dict[str, Any] = {
        "run": {
            "out_stream": streams.stdout,
            "err_stream": streams.stderr,
            "in_stream": False,
            "echo": False,
        },
        "load_ssh_configs": False,
    }
    if streams.timeout and streams.timeout > 0:
        overrides["timeouts"] = {"command": streams.timeout}
    if sudo_password is not None:
        overrides["sudo"] = {"password": sudo_password}
    config = fabric.Config(overrides=overrides, ssh_config=paramiko.SSHConfig())
    conn = _connection_class()(host=target_host, user=user, port=port, config=config)
    conn.client._transport = transport
    conn.transport = transport
    try:
        yield conn
    finally:
        conn.close()
        conn.client._transport = None
        conn.transport = None


@contextmanager
def pooled_connection(executor: Any, host: Host, streams: Any) -> Iterator[Any]:
    """Check a connection to ``host`` out of ``executor``'s pool and yield a Fabric ``Connection`` on it.

    A host that cannot be reached raises ``ConnectionError`` with the executor's reason.
    """
    import time

    from nexus_core.plugin import CommandResult

    from nexus_ssh.events import host_label

    spec = executor.spec_for(host)
    pool = executor._pool(spec, host_label(host.name, spec.target.port))
    deadline = time.monotonic() + streams.timeout if streams.timeout and streams.timeout > 0 else None
    got = executor._checkout(pool, spec, host, streams.cancel, deadline, time.monotonic())
    if isinstance(got, CommandResult):
        raise ConnectionError(got.reason)
    conn, _ = got
    try:
        with bound_connection(
            conn.transport,
            host,
            spec.target.hostname,
            spec.target.user,
            spec.target.port,
            streams,
            executor._sudo_password,
        ) as fab:
            yield fab
    finally:
        pool.checkin(conn)
