"""Logs of past runs: every command's output, kept per run, task and host, for ``nexus logs``.

A subscriber of the event stream writes ``$XDG_STATE_HOME/nexus/logs/RUN_ID/TASK/HOST.log.gz``:
the command (``$ cmd``), its output lines (stdout and stderr in arrival order), and how it
ended (``[ok]``, ``[failed: exit code 1]``). Files are gzip-compressed and flushed as they
grow (so ``nexus logs --follow`` reads a running run), capped at ``log_max_bytes`` of text
per task and host, and secret values are replaced by ``***`` before anything is written.
Runs older than ``log_retention_days`` are removed when a new run starts.
"""

from __future__ import annotations

import os
import threading
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import quote, unquote

from nexus_core.records import Record

DEFAULT_MAX_BYTES = 1_000_000
#: Bytes of one log held before they are written (by the thread adding the line) rather than
#: at the flusher's next round: 200 hosts printing 1 MB each within a round held 200 MB.
PENDING_MAX = 64 << 10
DEFAULT_RETENTION_DAYS = 14
#: Bytes past ``log_max_bytes`` still given to the lines naming each command and how it ended
#: (``$ cmd``, ``[failed: exit code 5]``) once the output was cut: the failure a report points
#: to stays in the log whatever its commands printed before it.
MARKS_EXTRA = 64 << 10
#: Seconds between flushes of a file while its command keeps printing.
FLUSH_EVERY = 0.5
REDACTED = "***"
#: Names of run(env=...) variables whose values are treated as secrets.
SECRET_WORDS = ("PASSWORD", "PASSWD", "SECRET", "TOKEN", "API_KEY", "PRIVATE_KEY", "CREDENTIAL")


def logs_dir(state_dir: str) -> str:
    """The folder holding one sub-folder per run."""
    return os.path.join(state_dir, "logs")


def host_file(root: str, run_id: str, task: str, host: str) -> str:
    """Path of one task's log on one host (the host label is quoted into a file name)."""
    return os.path.join(root, run_id, task, quote(host, safe="") + ".log.gz")


def redact(line: str, secrets: Iterable[str]) -> str:
    """``line`` with every secret value replaced by ``***`` (longest first, values of 3+ characters)."""
    return _redact(line, _order(secrets))


def _order(secrets: Iterable[str]) -> tuple[str, ...]:
    """The values :func:`redact` hides, longest first (so a value inside another is not half-hidden)."""
    return tuple(sorted({s for s in secrets if len(s) >= 3}, key=len, reverse=True))


def _redact(line: str, ordered: Sequence[str]) -> str:
    for value in ordered:
        if value in line:
            line = line.replace(value, REDACTED)
    return line


def plan_secrets(plan: Any, extra: dict[str, Any] | None = None) -> list[str]:
    """Values to hide: run(env=...) variables named like secrets, and the sudo password."""
    found = {
        value
        for t in plan.tasks.values()
        for hp in t.hosts
        for c in hp.commands
        for name, value in c.env
        if any(word in name.upper() for word in SECRET_WORDS)
    }
    for key, value in (extra or {}).items():
        if "password" in key and isinstance(value, str):
            found.add(value)
    return sorted(found)


def prune(root: str, retention_days: float, now: float | None = None, keep: Sequence[str] = ()) -> list[str]:
    """Remove run folders not modified for ``retention_days``; return their run ids."""
    if retention_days <= 0 or not os.path.isdir(root):
        return []
    limit = (now if now is not None else time.time()) - retention_days * 86400
    # A run id starts with its local start time (YYYYmmdd-HHMMSS): a folder named a day (any
    # time zone) after the limit was made after it, so it needs no stat. With a long history
    # that is nearly every folder (1,200 runs: 2,400 stats, 4-5 ms of every run's start).
    newer = time.strftime("%Y%m%d-%H%M%S", time.localtime(limit + 86400))
    removed: list[str] = []
    for name in sorted(os.listdir(root)):
        if name > newer and name[:8].isdigit() and name[8:9] == "-" and name[9:15].isdigit():
            continue
        path = os.path.join(root, name)
        try:
            if name not in keep and os.path.isdir(path) and os.path.getmtime(path) < limit:
                import shutil  # with bz2 and lzma: only when there is an old run to remove

                shutil.rmtree(path, ignore_errors=True)
                removed.append(name)
        except OSError:
            continue
    return removed


class _File:
    """One task/host log: lines not yet written, bytes kept.

    Nothing is opened until the first flush. Each flush appends its batch as one gzip member
    of its own (a gzip file may hold many; :func:`inflate` reads them all), so no zlib stream
    stays open between batches: an open stream held ~260 KB of zlib state per log while its
    host's task ran, which at 1,000 hosts whose commands outlast a flush was most of the
    run's memory above one command per host (docs/decisions.md, "Scale").
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.written = False
        self.size = 0
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.truncated = False
        #: Past :data:`MARKS_EXTRA` more: not even the commands and how they ended are kept.
        self.marks_cut = False
        #: Held from taking a batch until it is written: batches reach the file in order,
        #: whichever thread writes them (the flusher, or a host's thread over PENDING_MAX).
        self.io = threading.Lock()

    def take(self) -> bytes:
        """The pending lines, as one block (the caller holds the writer's lock)."""
        data = b"".join(self.pending)
        self.pending.clear()
        self.pending_bytes = 0
        return data

    def write_out(self, data: bytes) -> None:
        """Compress and write ``data``, readable at once by ``nexus logs --follow``."""
        if not data:
            return
        if not self.written:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self.written = True
        # memLevel 2 (a 1 KiB match table instead of 64 KiB) and a window no larger than the
        # batch (at least 512 bytes): zlib allocates and clears both for every stream, which
        # cost more than compressing a short batch; a window the batch's size loses nothing.
        bits = max(9, min(zlib.MAX_WBITS, (len(data) - 1).bit_length()))
        packer = zlib.compressobj(6, zlib.DEFLATED, 16 + bits, 2)
        with open(self.path, "ab") as fh:
            fh.write(packer.compress(data) + packer.flush())

    def close(self) -> None:
        """Nothing stays open between batches (kept for the writer's end-of-log step)."""


class RunLogWriter:
    """Event subscriber that keeps each command's output of one run (thread-safe)."""

    def __init__(self, root: str, run_id: str, max_bytes: int = DEFAULT_MAX_BYTES, secrets: Iterable[str] = ()) -> None:
        self.root = root
        self.run_id = run_id
        self.max_bytes = max_bytes
        self.secrets = list(secrets)
        self._ordered = _order(self.secrets)
        self._files: dict[tuple[str, str], _File] = {}
        self._lock = threading.Lock()
        self.failed = False
        # Lines are collected and written by a flusher every FLUSH_EVERY seconds (and when a
        # host's task ends): a gzip flush per command cost more than the command's own
        # bookkeeping on short commands (docs/decisions.md).
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        #: Logs whose host finished the task: written and closed by the flusher (or close()).
        self._done: list[_File] = []
        self._io = threading.Lock()  # one writer of the files at a time (flusher, close())

    #: The events it handles (``EventBus.subscribe`` hands it no other).
    subscribed_events = frozenset({"command.start", "command.output", "command.stop", "host.stop", "pipeline.stop"})

    def __call__(self, event: Any) -> None:
        name = event.name
        if name == "command.start":
            attempt = f" (attempt {event.attempt})" if getattr(event, "attempt", 1) > 1 else ""
            self._write(event.task, event.host, f"$ {event.command}{attempt}", mark=True)
        elif name == "command.output":
            self._write(event.task, event.host, event.line)
        elif name == "command.stop":
            code = f"exit code {event.exit_code}" if event.exit_code is not None else ""
            detail = event.reason or code
            if event.status == "skipped":
                self._write(event.task, event.host, f"$ {event.command}", mark=True)
            # the reason after the status, unless it only repeats it ("[interrupted: interrupted]")
            shown = f": {detail}" if detail and event.status not in ("ok", detail) else ""
            self._write(event.task, event.host, f"[{event.status}{shown}]", flush=True, mark=True)
        elif name == "host.stop":
            self._close(event.task, event.host)
        elif name == "pipeline.stop":
            self.close()

    def _write(self, task: str, host: str, line: str, flush: bool = False, mark: bool = False) -> None:
        """Keep ``line`` in its task/host log. Output stops at ``log_max_bytes`` (a line across
        the cap keeps its front); ``mark`` lines (a command, how it ended) go on for
        :data:`MARKS_EXTRA` more bytes."""
        if self.failed:
            return
        text = (_redact(line, self._ordered) if self._ordered else line) + "\n"
        data = text.encode("utf-8", "replace")
        with self._lock:
            try:
                f = self._files.get((task, host))
                if f is None:
                    f = self._files[(task, host)] = _File(host_file(self.root, self.run_id, task, host))
                    self._start_flusher()
                if mark:
                    if f.marks_cut:
                        return
                    if f.size + len(data) > self.max_bytes + MARKS_EXTRA:
                        f.marks_cut = True
                        data = b"[... later commands not kept either (log_max_bytes) ...]\n"
                elif f.truncated:
                    return
                elif f.size + len(data) > self.max_bytes:
                    f.truncated = True
                    room = self.max_bytes - f.size
                    front = data[:room].decode("utf-8", "ignore").encode() + b"\n" if room > 0 else b""
                    note = (f"[... output cut at {self.max_bytes} bytes (log_max_bytes): the commands that "
                            "follow and how they ended are kept, not their output ...]\n")  # fmt: skip
                    data = front + note.encode()
                f.pending.append(data)
                f.size += len(data)
                f.pending_bytes += len(data)
                batch = b""
                if f.pending_bytes > PENDING_MAX:
                    batch = f.take()
                    f.io.acquire()  # taken with the batch: no later batch of this file overtakes it
            except OSError:
                self.failed = True  # a full disk must not fail the run; the output is still printed
                return
        if batch:  # a host printing fast writes its own batch: memory stays bounded by hosts x PENDING_MAX
            try:
                f.write_out(batch)
            except OSError:
                self.failed = True
            finally:
                f.io.release()

    def _start_flusher(self) -> None:
        if self._flusher is None and not self._stop.is_set():
            self._flusher = threading.Thread(target=self._flush_loop, name="nexus-run-logs", daemon=True)
            self._flusher.start()

    def _flush_loop(self) -> None:
        while not self._stop.wait(FLUSH_EVERY):
            self.flush()

    def flush(self) -> None:
        """Write what every file has pending and close finished ones (the flusher's round).

        The lines are taken under the lock, then compressed and written outside it (one
        writer at a time): a task's thread never waits for the disk or for zlib.
        """
        with self._lock:
            done, self._done = self._done, []
            batches = [(f, f.take()) for f in self._files.values() if f.pending]
            batches += [(f, f.take()) for f in done]
            for f, _ in batches:
                f.io.acquire()  # a host thread may be writing its own batch of it: in order
        with self._io:
            try:
                for f, data in batches:
                    f.write_out(data)
                for f in done:
                    f.close()
            except OSError:
                self.failed = True
            finally:
                for f, _ in batches:
                    f.io.release()

    def _close(self, task: str, host: str) -> None:
        """The host finished the task: its log is written and closed by the next flush."""
        with self._lock:
            f = self._files.pop((task, host), None)
            if f is not None:
                self._done.append(f)

    def close(self) -> None:
        """Write and close every file, stop the flusher (end of the run)."""
        self._stop.set()
        if self._flusher is not None and self._flusher is not threading.current_thread():
            self._flusher.join(timeout=5)
        with self._lock:
            self._done.extend(self._files.values())
            self._files.clear()
        self.flush()


# --- reading ------------------------------------------------------------------------------------


class LogFile(Record):
    """One task/host log of a run."""

    __slots__ = ("run_id", "task", "host", "path")
    run_id: str
    task: str
    host: str
    path: str

    def __init__(self, run_id: str, task: str, host: str, path: str) -> None:
        self._init(run_id, task, host, path)


def inflate(data: bytes) -> str:
    """The text of a (possibly still growing, possibly multi-member) gzip file."""
    out: list[bytes] = []
    while data:  # members: one per batch written; each is at least 18 bytes, so this ends
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out.append(d.decompress(data))
        except zlib.error:
            break
        if not d.eof:
            break
        data = d.unused_data
    return b"".join(out).decode("utf-8", "replace")


def run_files(root: str, run_id: str) -> list[LogFile]:
    """Every task/host log of ``run_id``, sorted by task then host."""
    base = os.path.join(root, run_id)
    out: list[LogFile] = []
    if not os.path.isdir(base):
        return out
    for task in sorted(os.listdir(base)):
        folder = os.path.join(base, task)
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            if name.endswith(".log.gz"):
                out.append(LogFile(run_id, task, unquote(name[: -len(".log.gz")]), os.path.join(folder, name)))
    return out


def read_lines(path: str) -> list[str]:
    """The complete lines of one log so far (a line still being written is left for later)."""
    try:
        with open(path, "rb") as fh:
            text = inflate(fh.read())
    except OSError:
        return []
    lines = text.split("\n")
    return lines[:-1]


def select(
    files: Sequence[LogFile], task: str | None, hosts: Sequence[str], only: set[tuple[str, str]] | None
) -> list[LogFile]:
    """Files of ``task`` (all when None), of hosts matching the ``hosts`` globs, within ``only``."""
    import fnmatch

    return [
        f
        for f in files
        if (task is None or f.task == task)
        and (not hosts or any(fnmatch.fnmatchcase(f.host, h) for h in hosts))
        and (only is None or (f.task, f.host) in only)
    ]


def render(files: Sequence[LogFile]) -> Iterator[str]:
    """Each log under a ``== task on host ==`` heading."""
    for f in files:
        yield f"== {f.task} on {f.host} =="
        yield from read_lines(f.path)


def follow(
    root: str, run_id: str, pick: Any, running: Any, interval: float = 0.2, max_seconds: float = 86400
) -> Iterator[str]:
    """New lines of a run's logs as they are written, tagged ``[task host]``, until it ends.

    ``pick(files)`` chooses the files to show; ``running()`` says whether the run still goes.
    """
    seen: dict[str, int] = {}
    deadline = time.monotonic() + max_seconds
    while time.monotonic() < deadline:
        alive = running()
        for f in pick(run_files(root, run_id)):
            lines = read_lines(f.path)
            for line in lines[seen.get(f.path, 0) :]:
                yield f"[{f.task} {f.host}] {line}"
            seen[f.path] = len(lines)
        if not alive:
            return
        time.sleep(interval)


def start(bus: Any, plan: Any, run_id: str, state_dir: str, extra: dict[str, Any] | None = None) -> RunLogWriter:
    """Subscribe a :class:`RunLogWriter` for this run to ``bus`` and prune old runs' logs."""
    cfg = plan.config
    root = logs_dir(state_dir)
    prune(root, float(cfg.get("log_retention_days", DEFAULT_RETENTION_DAYS)), keep=[run_id])
    writer = RunLogWriter(root, run_id, int(cfg.get("log_max_bytes", DEFAULT_MAX_BYTES)), plan_secrets(plan, extra))
    bus.subscribe("run-logs", writer)
    return writer


def logs_command(run_id: str, task: str, host: str) -> str:
    """The ``nexus logs`` command that prints one failed command's full output."""
    import shlex

    return " ".join(shlex.quote(w) for w in ("nexus", "logs", run_id, task, "-H", host))
