"""Files over SFTP on the executor's pooled SSH connections.

The core (``nexus_core.transfer``) does the checking, verifying and renaming through
commands; this module moves the bytes. One SFTP session per host and thread serves a whole
series of files (a tree of 1,000 files opens one channel, not 1,000), on a connection
borrowed from the host's pool and given back when the series ends. Writes are pipelined
(paramiko sends them without waiting for each acknowledgement; errors surface at the next
write or at close) and reads prefetched, so the bytes flow at the link's speed rather than
one round trip per 32 KiB.

A series of small files (a tree) is pipelined too, across files: :meth:`SftpFiles.send_files`
keeps up to :data:`WINDOW` files in flight (open, writes, attributes, close all sent without
waiting for an answer), and :meth:`SftpFiles.rename_files` sends every ``posix-rename``
before reading the first answer. A tree of 1,000 files then costs a few round trips, not
thousands, and no process on the host per file.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from nexus_core.plugin import Cancel, Host, ProgressCallback, SmallFile, TransferInterrupted

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

#: Bytes read from the source per write call (paramiko splits them into 32 KiB requests).
CHUNK = 1 << 18
#: Small files in flight at once in :meth:`SftpFiles.send_files` (bounds memory and the
#: requests waiting on the server).
WINDOW = 64
#: Bytes of one SFTP write request (what OpenSSH's server takes in one).
WRITE_MAX = 32768
#: Requests in flight at once in :meth:`SftpFiles.rename_files`.
RENAME_WINDOW = 512


class _Answers:
    """Collects the answers to pipelined SFTP requests (paramiko hands each to ``_async_response``)."""

    def __init__(self) -> None:
        self.got: list[tuple[int, int, Any]] = []

    def _async_response(self, t: int, msg: Any, num: int) -> None:
        self.got.append((num, t, msg))


def _status_error(sftp: Any, msg: Any) -> OSError | None:
    """The ``OSError`` of an SFTP status answer (``errno`` set when the status says it), or None."""
    try:
        sftp._convert_status(msg)
    except EOFError as exc:
        return OSError(str(exc) or "end of file")
    except OSError as exc:
        return exc
    return None


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

    #: :meth:`send_files` applies each file's mode and modification time itself.
    sets_attributes = True

    def send_files(
        self, host: Host, files: Sequence[SmallFile], cancel: Cancel | None = None
    ) -> list[BaseException | None]:
        """Write each small file whole over one SFTP session, pipelined across files.

        Up to :data:`WINDOW` files are in flight: each open is sent at once, and as its
        handle comes back the file's writes, its attributes (mode, times) and its close
        follow without waiting. One outcome per file (None or the ``OSError`` met).
        """
        from paramiko.sftp import (
            CMD_CLOSE,
            CMD_FSETSTAT,
            CMD_HANDLE,
            CMD_OPEN,
            CMD_WRITE,
            SFTP_FLAG_CREATE,
            SFTP_FLAG_TRUNC,
            SFTP_FLAG_WRITE,
            int64,
        )
        from paramiko.sftp_attr import SFTPAttributes

        out: list[BaseException | None] = [None] * len(files)
        flags = SFTP_FLAG_WRITE | SFTP_FLAG_CREATE | SFTP_FLAG_TRUNC
        with self._client(host) as sftp:
            answers = _Answers()
            waiting: dict[int, tuple[str, int]] = {}  # request number -> (step, file index)
            in_flight = 0
            following = 0

            def ask(index: int, step: str, kind: int, *args: Any) -> None:
                waiting[sftp._async_request(answers, kind, *args)] = (step, index)

            def opened(index: int, handle: bytes) -> None:
                f = files[index]
                try:
                    with open(f.local_path, "rb") as src:
                        data = src.read()
                except OSError as exc:
                    out[index] = exc
                    data = b""
                for at in range(0, len(data), WRITE_MAX):
                    ask(index, "write", CMD_WRITE, handle, int64(at), data[at : at + WRITE_MAX])
                if f.mode is not None or f.mtime is not None:
                    attrs = SFTPAttributes()
                    if f.mode is not None:
                        attrs.st_mode = f.mode
                    if f.mtime is not None:
                        attrs.st_atime = attrs.st_mtime = int(f.mtime)
                    ask(index, "attrs", CMD_FSETSTAT, handle, attrs)
                ask(index, "close", CMD_CLOSE, handle)

            while following < len(files) or waiting:
                while following < len(files) and in_flight < WINDOW:
                    if cancel is not None and cancel.level >= Cancel.INTERRUPT:
                        for rest in range(following, len(files)):
                            out[rest] = TransferInterrupted("interrupted: the run is stopping")
                        following = len(files)
                        break
                    path = sftp._adjust_cwd(files[following].remote_path)
                    ask(following, "open", CMD_OPEN, path, flags, SFTPAttributes())
                    following += 1
                    in_flight += 1
                if not waiting:
                    break
                sftp._read_response()  # one answer, handed to `answers`
                for num, kind, msg in answers.got:
                    step, index = waiting.pop(num)
                    if step == "open" and kind == CMD_HANDLE:
                        opened(index, msg.get_binary())
                        continue
                    error = _status_error(sftp, msg)
                    if error is not None and out[index] is None:
                        out[index] = error
                    if step in ("open", "close"):
                        in_flight -= 1
                answers.got.clear()
        return out

    def rename_files(self, host: Host, moves: Sequence[tuple[str, str]]) -> list[str | None]:
        """Rename each ``(temporary, destination)`` with SFTP's ``posix-rename`` (atomic,
        replacing the destination), every request sent before the first answer is read."""
        from paramiko.sftp import CMD_EXTENDED

        out: list[str | None] = [None] * len(moves)
        with self._client(host) as sftp:
            answers = _Answers()
            waiting: dict[int, int] = {}
            following = 0
            while following < len(moves) or waiting:
                while following < len(moves) and len(waiting) < RENAME_WINDOW:
                    old, new = moves[following]
                    num = sftp._async_request(answers, CMD_EXTENDED, "posix-rename@openssh.com",
                                              sftp._adjust_cwd(old), sftp._adjust_cwd(new))  # fmt: skip
                    waiting[num] = following
                    following += 1
                sftp._read_response()
                for num, _kind, msg in answers.got:
                    error = _status_error(sftp, msg)
                    out[waiting.pop(num)] = None if error is None else (str(error) or "rename failed")
                answers.got.clear()
        return out

    def file_size(self, host: Host, remote_path: str) -> int | None:
        """Size of ``remote_path`` over SFTP, None when there is no such file."""
        with self._client(host) as sftp:
            try:
                size = sftp.stat(remote_path).st_size
            except OSError:
                return None
        return int(size) if size is not None else None
