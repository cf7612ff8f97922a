"""Files over SFTP on the executor's pooled SSH connections.

The core (``nexus_core.transfer``) does the checking, verifying and renaming through
commands; this module moves the bytes. One SFTP session per host and thread serves a whole
series of files (a tree of 1,000 files opens one channel, not 1,000), on a connection
borrowed from the host's pool and given back when the series ends. Writes are pipelined
(paramiko sends them without waiting for each acknowledgement; errors surface at the next
write or at close) and reads prefetched, so the bytes flow at the link's speed rather than
one round trip per 32 KiB.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from nexus_core.plugin import Cancel, Host, ProgressCallback, TransferInterrupted

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

#: Bytes read from the source per write call (paramiko splits them into 32 KiB requests).
CHUNK = 1 << 18


class SftpFiles:
    """The executor's file primitives over SFTP (a mixin of the SSH executor).

    The executor provides ``_borrow(host)``: a context manager lending a pooled connection.
    """

    _sftp_local = threading.local()

    def _borrow(self, host: Host) -> AbstractContextManager[Any]:  # pragma: no cover - the executor's
        raise NotImplementedError

    def _sftp_sessions(self) -> dict[Any, Any]:
        found: dict[Any, Any] | None = getattr(self._sftp_local, "sessions", None)
        if found is None:
            found = self._sftp_local.sessions = {}
        return found

    @contextlib.contextmanager
    def file_session(self, host: Host) -> Iterator[None]:
        """One SFTP session for the file calls on ``host`` made by this thread inside the block."""
        sessions = self._sftp_sessions()
        key = (id(self), host.key)
        if key in sessions:
            yield
            return
        from paramiko.sftp_client import SFTPClient

        with self._borrow(host) as conn:
            sftp = SFTPClient.from_transport(conn.transport)
            if sftp is None:
                raise ConnectionError(
                    f"SFTP is not available on {host.label} (is the sftp subsystem enabled?)"
                )
            sessions[key] = sftp
            try:
                yield
            finally:
                sessions.pop(key, None)
                with contextlib.suppress(Exception):
                    sftp.close()

    @contextlib.contextmanager
    def _client(self, host: Host) -> Iterator[Any]:
        with self.file_session(host):
            yield self._sftp_sessions()[(id(self), host.key)]

    def send_file(
        self,
        host: Host,
        local_path: str,
        remote_path: str,
        offset: int = 0,
        progress: ProgressCallback | None = None,
        cancel: Cancel | None = None,
    ) -> int:
        """Write ``local_path`` from ``offset`` into ``remote_path`` over SFTP (pipelined)."""
        done = 0
        with self._client(host) as sftp, open(local_path, "rb") as src:
            remote = sftp.open(remote_path, "r+" if offset else "w")
            try:
                remote.set_pipelined(True)
                if offset:
                    remote.seek(offset)
                    src.seek(offset)
                while True:
                    if cancel is not None and cancel.level >= Cancel.INTERRUPT:
                        raise TransferInterrupted("interrupted: the run is stopping (what was sent is kept)")
                    chunk = src.read(CHUNK)
                    if not chunk:
                        break
                    remote.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(offset + done)
            finally:
                remote.close()  # waits for the pipelined writes' answers...
            # ...and keeps their first error (a full disk...) without raising it: raise it here
            remote._check_exception()
        return done

    def receive_file(
        self,
        host: Host,
        remote_path: str,
        local_path: str,
        offset: int = 0,
        progress: ProgressCallback | None = None,
        cancel: Cancel | None = None,
    ) -> int:
        """Append ``remote_path`` from ``offset`` on to ``local_path`` over SFTP (prefetched)."""
        done = 0
        with self._client(host) as sftp, open(local_path, "ab") as dst:
            remote = sftp.open(remote_path, "r")
            try:
                size = remote.stat().st_size or 0
                if offset:
                    remote.seek(offset)
                if size - offset > CHUNK:
                    remote.prefetch(size)  # from the current position to the end
                while True:
                    if cancel is not None and cancel.level >= Cancel.INTERRUPT:
                        raise TransferInterrupted(
                            "interrupted: the run is stopping (what was received is kept)"
                        )
                    chunk = remote.read(CHUNK)
                    if not chunk:
                        break
                    dst.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(offset + done)
            finally:
                remote.close()
        return done

    def file_size(self, host: Host, remote_path: str) -> int | None:
        """Size of ``remote_path`` over SFTP, None when there is no such file."""
        with self._client(host) as sftp:
            try:
                size = sftp.stat(remote_path).st_size
            except OSError:
                return None
        return int(size) if size is not None else None
