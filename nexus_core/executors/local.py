"""The ``local`` executor: commands on this machine, one process group each.

Each command is one ``/bin/sh -c`` in a new session (so a timeout or a cancel signals the
whole group), built by :mod:`nexus_core.shell` like every other shell transport. With a
status marker (every run), the command's output goes to its spool files in the run's status
folder, not to pipes: a command still running when ``nexus`` dies keeps running to its end
(a pipe to a dead reader would kill it at its next line), and a resumed run finds it
finished or running instead of starting it again. The controller follows the two files in
the calling thread, woken by the process's pidfd (at once when it ends) or every few ms
while output flows: no helper thread per command. Without a marker the two pipes are read
with ``poll``. invoke's runner did this job before; it started three threads per command
and its import alone cost 33 ms, which was a third of a small local run's time against
``make -j`` (docs/decisions.md, "The local executor").
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import fcntl
import os
import select
import subprocess
import threading
import time
from collections import deque
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import IO, TYPE_CHECKING, Any

from nexus_core import shell
from nexus_core.api import (
    INTERRUPTED,
    Cancel,
    Capabilities,
    CommandResult,
    Executor,
    ExecutorContext,
    OutputCallback,
    ProgressCallback,
    TransferInterrupted,
)
from nexus_core.executors.lines import LineSplitter
from nexus_core.model import Command, Host
from nexus_core.state.paths import cache_dir

if TYPE_CHECKING:
    from nexus_core.api import SmallFile

TAIL_LINES = 20
_CHUNK = 65536


class LineStream:
    """Decodes one output stream and hands its complete lines to a callback (linear time)."""

    def __init__(self, stream: str, on_output: OutputCallback, tail: deque[str]) -> None:
        self.stream = stream
        self.on_output = on_output
        self.tail = tail
        self._split = LineSplitter()
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> None:
        """Decode ``data`` (any chunk of bytes) and emit each line it completes."""
        self.write(self._decoder.decode(data))

    def write(self, data: str) -> int:
        """Split ``data`` into lines and emit each complete one."""
        for line in self._split.feed(data):
            self._emit(line)
        return len(data)

    def _emit(self, line: str) -> None:
        self.tail.append(line)
        self.on_output(self.stream, line)

    def gap(self, size: int) -> None:
        """``size`` bytes of the output are gone (the spool keeper gave them back before they
        were read): end the line they cut and say so."""
        self.finish()
        self._emit(shell.dropped_note(size))

    def finish(self) -> None:
        """Emit the last line when the output did not end with a newline."""
        rest = self._decoder.decode(b"", final=True)
        if rest:
            self.write(rest)
        for line in self._split.finish():
            self._emit(line)


def pump(streams: dict[int, LineStream]) -> None:
    """Read every pipe in ``streams`` (fd -> stream) until each reaches end of file."""
    poller = select.poll()  # no descriptor of its own to open and close, unlike epoll
    for fd in streams:
        poller.register(fd, select.POLLIN)
    left = len(streams)
    while left:
        for fd, _ in poller.poll():
            data = os.read(fd, _CHUNK)
            if data:
                streams[fd].feed(data)
            else:
                poller.unregister(fd)
                left -= 1


#: Bytes of a spool file kept on disk behind the reader; older ones are freed (Linux).
SPOOL_KEEP = 1 << 20
_ROUND_CHUNKS = 64  # chunks read per file before the process is checked again


class _Spool:
    """One spool file followed by the controller while the command writes it.

    Two open file descriptions of the file: ``writer``, the command's stdout or stderr
    (closed here once the command has it), and ``fd``, the controller's own, read-only. Once
    the command ended, a read lease on ``fd`` is granted only when no process still has the
    file open for writing (a background job the command left behind): that is what lets an
    executor give the file to a later command (:meth:`LocalExecutor.settled`).
    """

    def __init__(self, path: str, stream: LineStream, keep: int = SPOOL_KEEP, emptied: bool = False) -> None:
        self.path = path
        self.stream = stream
        self.keep = keep
        # Created here (empty) so it can be opened before the command starts writing.
        self.writer = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            os.close(self.writer)
            raise
        if emptied:
            # An earlier command's file, just emptied: ext4 writes a file emptied this way to
            # disk at the next close of any descriptor of it (auto_da_alloc), which would be the
            # command's own at its end; one closed now, before anything is written, does it with
            # nothing to write (docs/decisions.md, "The spool's parse and flush"). Best effort.
            with contextlib.suppress(OSError):
                os.close(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
        self.offset = 0
        self.freed = 0

    def handed_over(self) -> None:
        """The command has its copy of the writing end: close ours."""
        if self.writer >= 0:
            os.close(self.writer)
            self.writer = -1

    def drain(self, limit: int) -> bool:
        """Read what is new (at most ``limit`` chunks); True when something was read."""
        got = False
        for _ in range(limit):
            data = os.pread(self.fd, _CHUNK, self.offset)
            if not data:
                break
            if data[0] == 0 and self._skip_hole():  # read as zeros: what the keeper gave back
                got = True
                continue
            self.offset += len(data)
            self.stream.feed(data)
            got = True
        if self.offset - self.freed > 2 * self.keep:
            self.freed = _free(self.path, self.offset - self.keep) or self.freed
        return got

    def _skip_hole(self) -> bool:
        """Skip a hole at the read offset: the front of the file the run's spool keeper gave
        back (``spool_max_bytes``) while the command wrote faster than it was read. True when
        there was one (said on the stream); NUL bytes the command printed are not a hole."""
        try:
            after = os.lseek(self.fd, self.offset, os.SEEK_DATA)  # where data starts again
        except OSError as exc:  # ENXIO: only a hole up to the end; else no SEEK_DATA here
            if exc.errno != errno.ENXIO:
                return False
            after = os.fstat(self.fd).st_size
        if after <= self.offset:
            return False
        self.stream.gap(after - self.offset)
        self.offset = after
        return True

    def unwritten(self) -> bool:
        """True when no process has the file open for writing any more (Linux read lease)."""
        return _lease_free(self.fd)

    def close(self) -> None:
        """Stop following (the file stays until the status folder goes, or serves a later command)."""
        self.handed_over()
        os.close(self.fd)


def _lease_free(fd: int) -> bool:
    """True when a read lease on ``fd`` (read-only) is granted: no process has its file open
    for writing. False too where there are no leases (not Linux, some network file systems)."""
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except (OSError, AttributeError):
        return False
    fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
    return True


def _unwritten(path: str) -> bool:
    """:func:`_lease_free` for a path (False when it cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return _lease_free(fd)
    finally:
        os.close(fd)


def _free(path: str, upto: int) -> int:
    """Give the disk blocks of ``[0, upto)`` back (a hole; the size stays). 0 when not supported."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        punch = 0x02 | 0x01  # FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)  # fallocate needs a writable descriptor
        try:
            if libc.fallocate(fd, punch, ctypes.c_longlong(0), ctypes.c_longlong(upto)) == 0:
                return upto
        finally:
            os.close(fd)
    except (OSError, AttributeError):
        pass
    return 0


def follow(proc: subprocess.Popen[bytes], spools: list[_Spool]) -> int:
    """Follow the spool files until ``proc`` ends; return its exit code.

    Woken by the process's pidfd when it ends, else after a short wait that grows from
    5 ms to 100 ms while no output comes. Output that background jobs write after the
    command's end is read up to that moment only.
    """
    poller = select.poll()
    try:
        pidfd = os.pidfd_open(proc.pid)
        poller.register(pidfd, select.POLLIN)
    except (AttributeError, OSError):
        pidfd = -1
    wait = 0.005
    try:
        for _ in range(1 << 62):
            got = False
            for spool in spools:
                got = spool.drain(_ROUND_CHUNKS) or got
            code = proc.poll()
            if code is not None:
                for spool in spools:
                    while spool.drain(_ROUND_CHUNKS):
                        pass
                return code
            wait = 0.005 if got else min(wait * 2, 0.1)
            if pidfd >= 0:
                poller.poll(wait * 1000)
            else:
                time.sleep(wait)
        return proc.wait()
    finally:
        if pidfd >= 0:
            os.close(pidfd)


def _no_status_dir(exc: OSError, duration: float) -> CommandResult:
    """The result of a command whose run status folder could not be made (a setting of the
    environment, not the command: it names the folder and what to change)."""
    where = exc.filename or "the status folder"
    cache = os.environ.get("XDG_CACHE_HOME")
    hint = (
        f"- XDG_CACHE_HOME={cache} must be a folder you can write in (or unset it: ~/.cache is used)"
        if cache
        else "- ~/.cache must be a folder you can write in (or set XDG_CACHE_HOME to one)"
    )
    return CommandResult("error", None, duration,
                         f"cannot make the run's status folder {where}: {exc.strerror or exc}", hint=hint,
                         retryable=False)  # fmt: skip


class LocalExecutor(Executor):
    """Runs commands on the machine Nexus runs on, in the nexusfile's folder by default."""

    name = "local"
    supports_markers = True
    #: Any number of commands at once, streamed, every cancel level; files copied on this machine;
    #: standard input for ``secret(..., to=...)``; call(fn) gets an invoke Context with
    #: Fabric's put/get (nexus_core.executors.localconn).
    capabilities = Capabilities(file_transfer=True, stdin=True, connection=True)

    def __init__(self, context: ExecutorContext) -> None:
        super().__init__(context)
        from nexus_core.executors.watchdog import Watchdog

        self._watchdog = Watchdog(context.cancel)
        self._lock = threading.Lock()
        self._made: set[str] = set()
        self._dirs: dict[tuple[str, str], str] = {}  # (run, host) -> its status folder, made
        #: Spool pairs of finished commands not yet recorded, by folder and marker key, and
        #: those recorded (settled), which later commands of the folder take over (_reuse).
        #: Each entry: (stdout spool, stderr spool, True when something still wrote to them).
        self._settling: dict[str, dict[str, tuple[str, str, bool]]] = {}
        self._spare: dict[str, list[tuple[str, str, bool]]] = {}
        self.shell = str(context.config.get("shell") or "/bin/sh")
        #: Bound of each spool while its command runs, followed or not (``spool_max_bytes``):
        #: the follower frees what it read behind the last quarter; the run's keeper process
        #: (nexus_core.shell.keeper_script) holds the bound when nobody follows.
        self.spool_max = int(context.config.get("spool_max_bytes") or shell.SPOOL_MAX_BYTES)
        self.staging_dir = os.path.join(cache_dir(), "transfers")

    # --- files: plain file I/O (nexus_core.transfer builds the rest on these) ------------------

    def _path(self, path: str) -> str:
        """A host path as the file scripts see it: relative paths start at the nexusfile's folder."""
        return path if os.path.isabs(path) else os.path.join(self.context.root, path)

    def send_file(
        self,
        host: Host,
        local_path: str,
        remote_path: str,
        offset: int = 0,
        progress: ProgressCallback | None = None,
        cancel: Cancel | None = None,
    ) -> int:
        """Copy ``local_path`` from ``offset`` into ``remote_path`` (a path on this machine)."""
        return _copy(local_path, self._path(remote_path), offset, progress, cancel)

    #: :meth:`send_files` applies each file's mode and modification time itself.
    sets_attributes = True

    def send_files(
        self, host: Host, files: Sequence[SmallFile], cancel: Cancel | None = None
    ) -> list[BaseException | None]:
        """Copy each small file, then give it its mode and modification time (in this process)."""
        out: list[BaseException | None] = []
        for f in files:
            target = self._path(f.remote_path)
            try:
                _copy(f.local_path, target, 0, None, cancel)
                if f.mode is not None:
                    os.chmod(target, f.mode)
                if f.mtime is not None:
                    os.utime(target, (f.mtime, f.mtime))
            except OSError as exc:
                out.append(exc)
            except TransferInterrupted as exc:
                out.append(exc)
            else:
                out.append(None)
        return out

    def rename_files(self, host: Host, moves: Sequence[tuple[str, str]]) -> list[str | None]:
        """Rename each ``(temporary, destination)`` with ``os.replace`` (atomic, in this process)."""
        out: list[str | None] = []
        for old, new in moves:
            try:
                os.replace(self._path(old), self._path(new))
            except OSError as exc:
                out.append(exc.strerror or str(exc))
            else:
                out.append(None)
        return out

    def receive_file(
        self,
        host: Host,
        remote_path: str,
        local_path: str,
        offset: int = 0,
        progress: ProgressCallback | None = None,
        cancel: Cancel | None = None,
    ) -> int:
        """Copy ``remote_path`` (a path on this machine) from ``offset`` into ``local_path``."""
        return _copy(self._path(remote_path), local_path, offset, progress, cancel)

    def file_size(self, host: Host, remote_path: str) -> int | None:
        """Size of a file on this machine, None when there is none."""
        try:
            return os.stat(self._path(remote_path)).st_size
        except OSError:
            return None

    def connection(self, host: Host, streams: Any) -> AbstractContextManager[Any]:
        """An invoke ``Context`` working in the project's folder, with Fabric's ``put``/``get``."""
        from nexus_core.executors.localconn import local_connection

        password = self.context.options.get("sudo_password")
        return local_connection(self.context.root, streams, password if isinstance(password, str) else None)

    def run(
        self,
        host: Host,
        command: Command,
        on_output: OutputCallback,
        cancel: Cancel,
        timeout: float,
    ) -> CommandResult:
        """Run ``command`` in a new process group; kill the whole group on timeout or cancel."""
        started = time.monotonic()
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        cwd = command.cwd or self.context.root
        if not os.path.isdir(cwd):
            return CommandResult("error", None, 0.0, f"working directory {cwd} does not exist", retryable=False)
        try:
            # sudo resets the environment: with sudo=/user=, env= values are exported inside.
            text = shell.body(
                command.cmd,
                sudo=command.sudo,
                user=command.user,
                env=tuple((k, str(v)) for k, v in command.env) if (command.sudo or command.user) else (),
                shell=self.shell,
            )
        except shell.CommandError as exc:
            return CommandResult("error", None, 0.0, str(exc), retryable=False)
        if cancel.requested:
            return CommandResult("interrupted", None, 0.0, INTERRUPTED)
        env = {**os.environ, **{k: str(v) for k, v in command.env}} if command.env else None
        out = LineStream("stdout", on_output, tail)
        err = LineStream("stderr", on_output, tail)
        spools: list[_Spool] = []
        marker = command.marker
        if marker is not None:
            try:
                folder = self._status_dir(marker.run_id, marker.host)
            except OSError as exc:
                return _no_status_dir(exc, time.monotonic() - started)
        try:
            if marker is not None:
                keep = min(SPOOL_KEEP, self.spool_max // 4)
                paths = (os.path.join(folder, f"{marker.key}.out"), os.path.join(folder, f"{marker.key}.err"))
                reused = self._reuse(folder, paths)
                try:
                    spools = [_Spool(paths[0], out, keep, reused)]
                except FileNotFoundError:  # an earlier command removed the run's folder: made again
                    folder = self._status_dir(marker.run_id, marker.host, again=True)
                    spools = [_Spool(paths[0], out, keep)]
                spools.append(_Spool(paths[1], err, keep, reused))
                # The spool files are the shell's stdout and stderr from the start: the same
                # thing as the wrapper's redirection (shell.wrap with spool=True), two opens less.
                text = shell.wrap(
                    text, marker, status_dir=shell.quote(folder), spool_max=self.spool_max, keeper_stay=command.more
                )
            proc = subprocess.Popen(
                [self.shell, "-c", text],
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL if command.input is None else subprocess.PIPE,
                stdout=spools[0].writer if spools else subprocess.PIPE,
                stderr=spools[1].writer if spools else subprocess.PIPE,
                start_new_session=True,
            )
            for spool in spools:
                spool.handed_over()
        except OSError as exc:
            for spool in spools:
                spool.close()
            return CommandResult(
                "error",
                None,
                time.monotonic() - started,
                f"cannot start the command: {exc.strerror or exc}",
                retryable=False,
            )
        if command.input is not None and proc.stdin is not None:
            threading.Thread(target=_feed, args=(proc.stdin, command.input.encode("utf-8")), daemon=True).start()
        watched = self._watchdog.add(proc.pid, timeout, cancel)
        try:
            if spools:
                code = follow(proc, spools)
                if watched.signalled or watched.timed_out:
                    # What ignored the signal outlives the shell: stay watched (the next
                    # cancel level, or the kill after a timeout, reaches it) until it is gone.
                    _wait_group(proc.pid, spools)
            else:
                assert proc.stdout is not None and proc.stderr is not None
                with proc.stdout, proc.stderr:
                    pump({proc.stdout.fileno(): out, proc.stderr.fileno(): err})
                code = proc.wait()
        finally:
            if proc.returncode is None:  # an output callback raised: do not leave the group behind
                _kill_group(proc.pid)
                proc.wait()
            self._watchdog.remove(watched)
            # Once the command is recorded, a later command may have its spools (settled()):
            # unless something still writes to them (a job the command left running, or for
            # a moment a child another thread is starting), which _reuse() then checks again.
            written = not all([s.unwritten() for s in spools])
            for spool in spools:
                spool.close()
            out.finish()
            err.finish()
        duration = time.monotonic() - started
        if watched.signalled and code != 0 and not watched.timed_out:
            return CommandResult("interrupted", code, duration, "interrupted", tuple(tail), retryable=False)
        if marker is not None:
            with self._lock:
                self._settling.setdefault(folder, {})[marker.key] = (*paths, written)
        if watched.timed_out:
            return CommandResult("timeout", code, duration, f"timed out after {timeout:.3g}s", tuple(tail))
        if code == 0:
            return CommandResult("ok", 0, duration, "", tuple(tail))
        reason = f"exit code {code}" if code >= 0 else f"killed by signal {-code}"
        return CommandResult("failed", code, duration, reason, tuple(tail))

    def _status_dir(self, run_id: str, host: str, again: bool = False) -> str:
        """The run's status folder for ``host`` on this machine, made once per run and host
        (``again``: made again, a command having removed it)."""
        found = self._dirs.get((run_id, host))
        if found is not None and not again:
            return found
        from nexus_core.markers import adopt_old_layout, local_status_dir

        folder = local_status_dir(run_id, host)
        with self._lock:
            if folder not in self._made or again:
                adopt_old_layout(folder)
                # Only the user reads what commands printed (see shell.wrap): the runs folder and
                # the run's own are made 0700 (makedirs' mode applies to the last one only).
                os.makedirs(os.path.dirname(folder), mode=0o700, exist_ok=True)
                os.makedirs(folder, mode=0o700, exist_ok=True)
                self._made.add(folder)
            self._dirs[(run_id, host)] = folder
        return folder

    def _reuse(self, folder: str, paths: tuple[str, str]) -> bool:
        """Give ``paths`` the spool files of a settled command of the folder, when there is one
        (True when they were given).

        A rename instead of a new file: creating a file and removing it at the end cost more
        than the rest of a short command's bookkeeping (docs/decisions.md, "Spool files
        reused"). The spool is truncated when opened, as a new one would be.
        """
        for _ in range(8):  # bounded: a pair still written to is left where it is
            with self._lock:
                spare = self._spare.get(folder)
                if not spare:
                    return False
                out, err, written = spare.pop()
            if written and not (_unwritten(out) and _unwritten(err)):
                continue
            try:
                os.rename(out, paths[0])
                os.rename(err, paths[1])
            except OSError:  # gone (the folder was removed by hand): the spools are made afresh
                return False
            return True
        return False

    def settled(self, host: Host, run_id: str, keys: Sequence[str]) -> None:
        """The commands ``keys`` of ``run_id`` on ``host`` are recorded as done: a resume will
        never ask for their spools, so later commands of the run may have the files."""
        folder = self._dirs.get((run_id, host.label))
        if folder is None:
            return
        with self._lock:
            waiting = self._settling.get(folder)
            if not waiting:
                return
            found = [pair for pair in map(waiting.pop, keys, [None] * len(keys)) if pair is not None]
            self._spare.setdefault(folder, []).extend(found)

    def remove_markers(self, host: Host, run_id: str) -> None:
        """Remove the run's status folder (status file and spools) in-process."""
        from nexus_core.markers import local_status_dir

        folder = local_status_dir(run_id, host.label)
        with self._lock:  # first: a spare spool handed out now is made afresh, not lost
            self._spare.pop(folder, None)
            self._settling.pop(folder, None)
        if os.path.isfile(folder):  # a status file of Nexus 0.1
            os.remove(folder)
        _remove_flat(folder)
        with self._lock:
            self._made.discard(folder)
            self._dirs.pop((run_id, host.label), None)

    def close(self) -> None:
        """Stop the watchdog thread."""
        self._watchdog.close()


def _remove_flat(folder: str) -> None:
    """Remove ``folder`` (a status folder: files only), quietly.

    ``shutil.rmtree`` does the same, but importing ``shutil`` loads ``bz2`` and ``lzma`` at
    every local run's end; it is still what removes anything else found there.
    """
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                os.unlink(entry.path)
        os.rmdir(folder)
    except OSError:  # a file removed meanwhile (the keeper's pid file), a subfolder, gone already
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


def _copy(source: str, target: str, offset: int, progress: ProgressCallback | None, cancel: Cancel | None) -> int:
    """Copy ``source`` from ``offset`` into ``target`` at ``offset`` (created or truncated at 0)."""
    from nexus_core.api import TransferInterrupted

    done = 0
    with open(source, "rb") as src, open(target, "r+b" if offset else "wb") as dst:
        src.seek(offset)
        dst.seek(offset)
        dst.truncate()
        while True:
            if cancel is not None and cancel.level >= Cancel.INTERRUPT:
                raise TransferInterrupted("interrupted: the run is stopping")
            chunk = src.read(1 << 20)
            if not chunk:
                break
            dst.write(chunk)
            done += len(chunk)
            if progress is not None:
                progress(offset + done)
    return done


def _wait_group(pgid: int, spools: list[_Spool]) -> None:
    """Wait (reading the spools) until no process of group ``pgid`` is left (bounded: 1 h)."""
    for _ in range(72_000):
        if not _group_alive(pgid):
            return
        for spool in spools:
            spool.drain(_ROUND_CHUNKS)
        time.sleep(0.05)


def _group_alive(pgid: int) -> bool:
    """True while a process of group ``pgid`` runs (zombies do not count: on Linux, from /proc)."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        names = os.listdir("/proc")
    except OSError:
        return True
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != b"Z":
            return True
    return False


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, 9)
    except (ProcessLookupError, PermissionError):
        pass


def _feed(pipe: IO[bytes], data: bytes) -> None:
    """Write ``data`` on a command's standard input and close it (a command that exits early is fine)."""
    try:
        with pipe:
            pipe.write(data)
    except OSError:
        pass
