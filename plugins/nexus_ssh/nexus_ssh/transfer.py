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

A larger series (at least :data:`TAR_MIN_FILES` files that carry their mode and time) goes
as one tar stream instead, into GNU tar on the host, on a channel of the same connection:
five SFTP requests and answers per file (each parsed by the server and the client, each
answer a wake-up of the client's thread) become one byte stream, about 1.6 s of the host's
CPU less for 1,000 files to 10 hosts (docs/decisions.md, "Files: a tree as one tar
stream"). The files land at the same temporary paths as over SFTP, with the same mode and
time, so the core's checksum and rename steps are unchanged. A host without GNU tar, or a
stream that failed for any reason (a full disk, a folder it cannot write), gets the SFTP
path for the whole series, which reports each file's own error.
"""

from __future__ import annotations

import contextlib
import posixpath
import re
import struct
import threading
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

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
#: Queued requests are sent once they add up to this many bytes (or an answer is awaited).
FLUSH_BYTES = 1 << 16
#: Bytes asked of the channel at once when answers are read (what is there comes back).
READ_BYTES = 1 << 16
#: Fewest files of one :meth:`SftpFiles.send_files` call sent as a tar stream (fewer: SFTP,
#: which costs no process on the host).
TAR_MIN_FILES = 8
#: Bytes of a tar stream gathered before they are sent (a few SSH packets at once).
TAR_SEND_BYTES = 1 << 18
#: Seconds a tar stream may stall (the host not reading, or not answering at the end)
#: before the series goes over SFTP instead.
TAR_STALL = 60.0
#: Exit code of :data:`TAR_EXTRACT` when the host's ``tar`` is not GNU tar.
_NOT_GNU_TAR = 97
#: The host's side of a tar stream. Only GNU tar: it keeps absolute names (``-P``; BusyBox
#: and bsdtar would strip the ``/`` or refuse), applies the archive's modes exactly and
#: never changes an owner (as root too). Members are regular files only.
TAR_EXTRACT = (
    f'case "$(tar --version 2>/dev/null)" in *"GNU tar"*) ;; *) exit {_NOT_GNU_TAR};; esac; '
    "exec tar --extract --file=- --absolute-names --preserve-permissions --no-same-owner"
)


#: A temporary file's name ends with its host's tag (``-TAG.part``: see
#: ``nexus_core.transfer.staging_path``); the rest of it is the same on every host.
_HOST_SUFFIX = re.compile(r"-[0-9a-f]{8}\.part\Z")
#: Bytes of tar headers kept for the other hosts of an upload (all dropped when full).
HEADER_CACHE_BYTES = 8 << 20


class _Headers:
    """Tar headers of small files, built once (``tarfile``: about 24 µs each) and sent to
    every host of an upload. A member's name is relative to the series' common folder
    (``tar --directory``) and without the host's tag (``tar --transform`` adds it), so the
    same tree sent to many hosts, under one path or one folder per host, has one header per
    file. Keyed by name, size, mode and time; bounded in bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.items: dict[tuple[str, int, int, int], bytes] = {}
        self.lock = threading.Lock()

    def header(self, name: str, size: int, mode: int, mtime: int) -> bytes:
        """The GNU tar header of a regular file ``name``."""
        key = (name, size, mode, mtime)
        found = self.items.get(key)
        if found is not None:
            return found
        import tarfile

        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, mode, mtime
        made = info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
        with self.lock:
            if self.size + len(made) > self.limit:
                self.items.clear()
                self.size = 0
            if key not in self.items:
                self.items[key] = made
                self.size += len(made)
        return made


_HEADERS = _Headers(HEADER_CACHE_BYTES)


def _layout(paths: Sequence[str]) -> tuple[str, str, list[str]]:
    """``(folder, suffix, names)``: the folder all ``paths`` are in (cut at a ``/``; "" for
    none), the host's tag they all end with ("" if not), and each path without both."""
    found = _HOST_SUFFIX.search(paths[0]) if paths else None
    suffix = found.group() if found is not None else ""
    if suffix and not all(p.endswith(suffix) for p in paths):
        suffix = ""
    cut = posixpath.commonprefix(list(paths)).rfind("/")
    folder = "" if cut < 0 else paths[0][:cut] or "/"
    end = len(suffix)
    return folder, suffix, [p[cut + 1 : len(p) - end] for p in paths]


def _quote(text: str) -> str:
    """``text`` as one shell word."""
    import shlex

    return shlex.quote(text)


class _Raw(bytes):
    """Bytes sent as they are in a request (attributes packed beforehand)."""


#: An SFTP attributes block with no attribute set.
NO_ATTRS = _Raw(struct.pack(">I", 0))


def _attrs(mode: int | None, mtime: float | None) -> _Raw:
    """An SFTP attributes block with permissions and/or times (SFTP v3 times are whole seconds)."""
    from paramiko.message import Message
    from paramiko.sftp_attr import SFTPAttributes

    attrs = SFTPAttributes()
    if mode is not None:
        attrs.st_mode = mode
    if mtime is not None:
        attrs.st_atime = attrs.st_mtime = int(mtime)
    msg = Message()
    attrs._pack(msg)
    return _Raw(msg.asbytes())


class _Pipe:
    """Pipelined SFTP requests on a paramiko ``SFTPClient`` this thread has to itself: requests
    are packed into one buffer and sent together (one SSH packet carries many), answers are
    read as they come and handed back with the request's tag.

    Request numbers come from the client's counter; the answers are read here (no other
    request is outstanding on the client while a pipe works), each as ``(tag, type, body)``.
    """

    def __init__(self, sftp: Any) -> None:
        self.sftp = sftp
        self.tags: dict[int, Any] = {}
        self.out: list[bytes] = []
        self.size = 0
        #: Bytes read from the channel and not parsed yet (from ``pos``): answers are read a
        #: buffer at a time, not with two ``recv`` calls each as Paramiko's ``_read_packet``
        #: does (four answers per small file: docs/decisions.md, "Files: the re-run's look").
        self.buf = b""
        self.pos = 0

    def ask(self, tag: Any, kind: int, *args: Any) -> None:
        """Queue one request (sent by :meth:`flush`): ``int`` (32 bits), paramiko's ``int64``,
        ``str``/``bytes`` (a string) or :class:`_Raw`."""
        from paramiko.sftp import int64

        sftp = self.sftp
        with sftp._lock:
            num = sftp.request_number
            sftp.request_number += 1
        parts = [struct.pack(">I", num)]
        for item in args:
            if isinstance(item, _Raw):
                parts.append(item)
            elif isinstance(item, int64):
                parts.append(struct.pack(">Q", item))
            elif isinstance(item, int):
                parts.append(struct.pack(">I", item))
            else:
                raw = item.encode("utf-8") if isinstance(item, str) else bytes(item)
                parts.append(struct.pack(">I", len(raw)))
                parts.append(raw)
        body = b"".join(parts)
        self.tags[num] = tag
        self.out.append(struct.pack(">IB", len(body) + 1, kind))
        self.out.append(body)
        self.size += len(body) + 5
        if self.size >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Send what is queued."""
        if self.out:
            data, self.out, self.size = b"".join(self.out), [], 0
            self.sftp._write_all(data)

    @property
    def waiting(self) -> int:
        """Requests sent or queued, not answered yet."""
        return len(self.tags)

    def _complete(self) -> bool:
        """Whether a whole answer is in the buffer (its length read, it is checked first)."""
        have = len(self.buf) - self.pos
        if have < 4:
            return False
        if self.buf[self.pos]:  # more than 16 MB: not an SFTP answer (as Paramiko checks)
            from paramiko.sftp import SFTPError

            raise SFTPError("Garbage packet received")
        size: int = struct.unpack_from(">I", self.buf, self.pos)[0]
        return have >= 4 + size

    def _one(self) -> tuple[Any, int, bytes] | None:
        """The next answer (read from the channel when the buffer holds none whole)."""
        while not self._complete():
            more = self.sftp.sock.recv(READ_BYTES)
            if not more:
                raise EOFError()
            self.buf = self.buf[self.pos :] + more if self.pos < len(self.buf) else more
            self.pos = 0
        at = self.pos
        size = struct.unpack_from(">I", self.buf, at)[0]
        self.pos = at + 4 + size
        if size < 5:
            return None
        kind = self.buf[at + 4]
        num = struct.unpack_from(">I", self.buf, at + 5)[0]
        tag = self.tags.pop(num, None)
        return None if tag is None else (tag, kind, self.buf[at + 9 : self.pos])

    def answers(self) -> list[tuple[Any, int, bytes]]:
        """The answers come so far: at least one (waiting for it), then all that are already here."""
        self.flush()
        got = [self._one()]
        while self.tags and (self._complete() or self.sftp.sock.recv_ready()):
            got.append(self._one())
        return [g for g in got if g is not None]


def _string(body: bytes) -> bytes:
    """The SFTP string at the start of ``body`` (a handle)."""
    size = struct.unpack(">I", body[:4])[0]
    return body[4 : 4 + size]


def _status_error(sftp: Any, body: bytes) -> OSError | None:
    """The ``OSError`` of an SFTP status answer (``errno`` set when the status says it), or None."""
    if body[:4] == b"\0\0\0\0":  # SSH_FX_OK
        return None
    from paramiko.message import Message

    try:
        sftp._convert_status(Message(body))
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
    #: Hosts (by key) found without GNU tar: their series go over SFTP from then on.
    _no_tar: ClassVar[set[Any]] = set()

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
        """Write each small file whole, then give it its mode and time; one outcome per file
        (None, the ``OSError`` met, or :class:`TransferInterrupted`).

        A series of at least :data:`TAR_MIN_FILES` files with mode and time goes as one tar
        stream (:meth:`_tar_files`); the rest, and everything when the stream could not be
        used, over SFTP (:meth:`_sftp_files`).
        """
        out: list[BaseException | None] = [None] * len(files)
        rest = list(range(len(files)))
        if len(files) >= TAR_MIN_FILES and host.key not in self._no_tar:
            tarred = [i for i in rest if files[i].mode is not None and files[i].mtime is not None]
            if len(tarred) >= TAR_MIN_FILES:
                done = self._tar_files(host, [files[i] for i in tarred], cancel)
                if done is not None:
                    for i, outcome in zip(tarred, done, strict=True):
                        out[i] = outcome
                    rest = [i for i in rest if files[i].mode is None or files[i].mtime is None]
        if rest:
            sent = self._sftp_files(host, [files[i] for i in rest], cancel)
            for i, outcome in zip(rest, sent, strict=True):
                out[i] = outcome
        return out

    def _tar_files(
        self, host: Host, files: Sequence[SmallFile], cancel: Cancel | None
    ) -> list[BaseException | None] | None:
        """Write ``files`` (each with mode and time) as one tar stream into the host's GNU tar.

        One outcome per file: None, the ``OSError`` of a local file that could not be read (left
        out of the stream), or :class:`TransferInterrupted` for those not sent once the run
        began to stop. None when the stream did not work out as a whole (no GNU tar, tar
        failed, the channel failed or stalled): the caller sends the series over SFTP.
        """
        import tarfile

        out: list[BaseException | None] = [None] * len(files)
        with self._client(host) as sftp:
            try:
                chan = sftp.sock.get_transport().open_session(timeout=TAR_STALL)
            except Exception:  # the SFTP path then meets (and reports) the same trouble
                return None
            try:
                chan.settimeout(TAR_STALL)
                folder, suffix, names = _layout([f.remote_path for f in files])
                command = TAR_EXTRACT
                if folder:
                    command += f" --directory={_quote(folder)}"
                if suffix:
                    command += f" --transform={_quote(f's,$,{suffix},')}"
                chan.exec_command("exec /bin/sh -c " + _quote(command))
                buf = bytearray()
                sent = 0
                for index, f in enumerate(files):
                    if cancel is not None and cancel.level >= Cancel.INTERRUPT:
                        for rest in range(index, len(files)):
                            out[rest] = TransferInterrupted("interrupted: the run is stopping")
                        break
                    try:
                        with open(f.local_path, "rb") as src:
                            data = src.read()
                    except OSError as exc:
                        out[index] = exc
                        continue
                    buf += _HEADERS.header(names[index], len(data), int(f.mode or 0), int(f.mtime or 0))
                    buf += data
                    buf += bytes(-len(data) % tarfile.BLOCKSIZE)
                    if len(buf) >= TAR_SEND_BYTES:
                        chan.sendall(bytes(buf))
                        sent += len(buf)
                        buf.clear()
                # The end: two zero blocks, then up to a whole record, as tar writes it.
                buf += bytes(2 * tarfile.BLOCKSIZE)
                buf += bytes(-(sent + len(buf)) % tarfile.RECORDSIZE)
                chan.sendall(bytes(buf))
                chan.shutdown_write()
                deadline = time.monotonic() + TAR_STALL
                while not chan.status_event.wait(1.0):
                    if not chan.get_transport().is_active() or time.monotonic() > deadline:
                        return None
                    if cancel is not None and cancel.level >= Cancel.KILL:
                        return None
                    while chan.recv_stderr_ready():
                        chan.recv_stderr(READ_BYTES)  # tar's complaints: the SFTP path reports each
                code = chan.recv_exit_status()
            except Exception:  # a failed or stalled stream: SFTP sends the series
                return None
            finally:
                chan.close()
        if code == _NOT_GNU_TAR:
            self._no_tar.add(host.key)
        return out if code == 0 else None

    def _sftp_files(
        self, host: Host, files: Sequence[SmallFile], cancel: Cancel | None = None
    ) -> list[BaseException | None]:
        """Write each small file whole over one SFTP session, pipelined across files.

        Up to :data:`WINDOW` files are in flight: their opens go out together, and as each
        handle comes back the file's writes, its attributes (mode, times) and its close
        follow in one packet, without waiting. One outcome per file (None or the
        ``OSError`` met).
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

        out: list[BaseException | None] = [None] * len(files)
        flags = SFTP_FLAG_WRITE | SFTP_FLAG_CREATE | SFTP_FLAG_TRUNC
        with self._client(host) as sftp:
            pipe = _Pipe(sftp)
            in_flight = 0
            following = 0

            def opened(index: int, handle: bytes) -> None:
                f = files[index]
                try:
                    with open(f.local_path, "rb") as src:
                        data = src.read()
                except OSError as exc:
                    out[index] = exc
                    data = b""
                for at in range(0, len(data), WRITE_MAX):
                    pipe.ask(("write", index), CMD_WRITE, handle, int64(at), data[at : at + WRITE_MAX])
                if f.mode is not None or f.mtime is not None:
                    pipe.ask(("attrs", index), CMD_FSETSTAT, handle, _attrs(f.mode, f.mtime))
                pipe.ask(("close", index), CMD_CLOSE, handle)

            while following < len(files) or pipe.waiting:
                while following < len(files) and in_flight < WINDOW:
                    if cancel is not None and cancel.level >= Cancel.INTERRUPT:
                        for rest in range(following, len(files)):
                            out[rest] = TransferInterrupted("interrupted: the run is stopping")
                        following = len(files)
                        break
                    path = sftp._adjust_cwd(files[following].remote_path)
                    pipe.ask(("open", following), CMD_OPEN, path, flags, NO_ATTRS)
                    following += 1
                    in_flight += 1
                if not pipe.waiting:
                    break
                for (step, index), kind, body in pipe.answers():
                    if step == "open" and kind == CMD_HANDLE:
                        opened(index, _string(body))
                        continue
                    error = _status_error(sftp, body)
                    if error is not None and out[index] is None:
                        out[index] = error
                    if step in ("open", "close"):
                        in_flight -= 1
        return out

    def rename_files(self, host: Host, moves: Sequence[tuple[str, str]]) -> list[str | None]:
        """Rename each ``(temporary, destination)`` with SFTP's ``posix-rename`` (atomic,
        replacing the destination), many requests to a packet, without waiting in between."""
        from paramiko.sftp import CMD_EXTENDED

        out: list[str | None] = [None] * len(moves)
        with self._client(host) as sftp:
            pipe = _Pipe(sftp)
            following = 0
            while following < len(moves) or pipe.waiting:
                while following < len(moves) and pipe.waiting < RENAME_WINDOW:
                    old, new = moves[following]
                    pipe.ask(following, CMD_EXTENDED, "posix-rename@openssh.com", sftp._adjust_cwd(old),
                             sftp._adjust_cwd(new))  # fmt: skip
                    following += 1
                for index, _kind, body in pipe.answers():
                    error = _status_error(sftp, body)
                    out[index] = None if error is None else (str(error) or "rename failed")
        return out

    def file_size(self, host: Host, remote_path: str) -> int | None:
        """Size of ``remote_path`` over SFTP, None when there is no such file."""
        with self._client(host) as sftp:
            try:
                size = sftp.stat(remote_path).st_size
            except OSError:
                return None
        return int(size) if size is not None else None
