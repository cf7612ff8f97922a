"""One run of a project at a time: an OS file lock per nexusfile, released by the kernel.

``nexus run`` and ``nexus resume`` take an exclusive ``flock`` on
``<state folder>/locks/<hash of the nexusfile's path>.lock`` before they record or start
anything, and hold it until the process ends. A second run of the same project waits for
it, saying which run holds it (run id, tasks, pid, since when), or is refused at once with
``--no-wait`` (or after ``--lock-timeout`` seconds). A run killed with ``kill -9`` holds
nothing: the kernel releases a ``flock`` when the last descriptor of the file closes, so
there is no stale lock to break, only a stale description in the file, which the next
holder overwrites.

The lock file holds a JSON description of its holder (pid, machine, tasks, start time,
nexusfile); the holder's run id is looked up in the state store by pid. Runs of different
projects never wait for each other.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from nexus_core.records import Record

if TYPE_CHECKING:
    from nexus_core.state.store import StateStore

#: Seconds between two attempts while waiting for a lock (bounded by the timeout).
POLL = 0.2


class LockBusy(Exception):
    """The project's lock is held by another run and we were asked not to wait (longer)."""

    def __init__(self, holder: Holder, waited: float) -> None:
        super().__init__(holder.describe())
        self.holder = holder
        self.waited = waited


class Holder(Record):
    """Who holds (or last held) a project lock, as its lock file says."""

    __slots__ = ("pid", "machine", "tasks", "started", "nexusfile", "run_id")
    pid: int | None
    machine: str
    tasks: tuple[str, ...]
    started: float | None
    nexusfile: str
    run_id: str

    def __init__(
        self,
        pid: int | None = None,
        machine: str = "",
        tasks: tuple[str, ...] = (),
        started: float | None = None,
        nexusfile: str = "",
        run_id: str = "",
    ) -> None:
        self._init(pid, machine, tasks, started, nexusfile, run_id)

    def describe(self) -> str:
        """``run 20261201-1415-ab12 (deploy, pid 4242, started 14:15:02)``."""
        parts = [" ".join(self.tasks) or "(all tasks)"]
        if self.pid:
            parts.append(f"pid {self.pid}" + (f" on {self.machine}" if self.machine != os.uname().nodename else ""))
        if self.started:
            parts.append("started " + time.strftime("%H:%M:%S", time.localtime(self.started)))
        name = f"run {self.run_id}" if self.run_id else "another run"
        return f"{name} ({', '.join(parts)})"


def lock_path(state_folder: str, nexusfile: str) -> str:
    """The lock file of the project whose nexusfile is ``nexusfile``."""
    digest = hashlib.sha256(os.path.realpath(nexusfile).encode()).hexdigest()[:20]
    return os.path.join(state_folder, "locks", f"{digest}.lock")


class ProjectLock:
    """An exclusive lock on one project, held until :meth:`release` or the process ends."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: int | None = None

    def try_acquire(self) -> bool:
        """Take the lock if it is free (never blocks)."""
        if self.fd is None:
            os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def holder(self) -> Holder:
        """What the lock file says about its (last) holder."""
        try:
            with open(self.path, encoding="utf-8") as fh:
                data: dict[str, Any] = json.loads(fh.read() or "{}")
        except (OSError, ValueError):
            return Holder()
        return Holder(
            pid=int(data["pid"]) if str(data.get("pid", "")).isdigit() else None,
            machine=str(data.get("machine", "")),
            tasks=tuple(str(t) for t in data.get("tasks", ())),
            started=float(data["started"]) if isinstance(data.get("started"), (int, float)) else None,
            nexusfile=str(data.get("nexusfile", "")),
        )

    def describe_self(self, nexusfile: str, tasks: Sequence[str]) -> None:
        """Write who holds the lock now (this process), for whoever waits for it."""
        assert self.fd is not None
        data = {
            "pid": os.getpid(),
            "machine": os.uname().nodename,
            "tasks": list(tasks),
            "started": time.time(),
            "nexusfile": nexusfile,
        }
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, json.dumps(data).encode(), 0)

    def release(self) -> None:
        """Give the lock up (the process ending does the same)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


_HELD: list[ProjectLock] = []  # held until the process ends


def acquire_project(
    state_folder: str,
    nexusfile: str,
    tasks: Sequence[str],
    *,
    wait: bool = True,
    timeout: float | None = None,
    say: Callable[[str], None] = lambda _m: None,
    store: StateStore | None = None,
) -> ProjectLock:
    """Take the project's lock for this process, waiting for a running run if asked to.

    ``say`` gets one line when the lock is busy and we wait. Raises :class:`LockBusy`
    when ``wait`` is False and the lock is held, or when ``timeout`` seconds pass.
    The lock stays held until the process ends (or :meth:`ProjectLock.release`).
    """
    lock = ProjectLock(lock_path(state_folder, nexusfile))
    started = time.monotonic()
    if not lock.try_acquire():
        holder = _with_run_id(lock.holder(), store)
        if not wait or (timeout is not None and timeout <= 0):
            lock.release()
            raise LockBusy(holder, 0.0)
        limit = f" (up to {timeout:g}s)" if timeout is not None else ""
        say(
            f"nexus: waiting for {holder.describe()} of this project to finish{limit}; "
            "Ctrl+C to give up, --no-wait to fail at once"
        )
        deadline = started + timeout if timeout is not None else None
        while not lock.try_acquire():
            if deadline is not None and time.monotonic() >= deadline:
                lock.release()
                raise LockBusy(holder, time.monotonic() - started)
            time.sleep(POLL)
    lock.describe_self(nexusfile, tasks)
    _HELD.append(lock)
    return lock


def _with_run_id(holder: Holder, store: StateStore | None) -> Holder:
    """The holder with its run id, looked up in the state store by pid (when it has one)."""
    if store is None or not holder.pid:
        return holder
    try:
        row = store.db.execute(
            "SELECT id FROM runs WHERE pid = ? AND machine = ? AND status = 'running' ORDER BY started DESC LIMIT 1",
            (holder.pid, holder.machine or os.uname().nodename),
        ).fetchone()
    except Exception:  # noqa: BLE001 - the description is a courtesy
        return holder
    if row is None:
        return holder
    return Holder(holder.pid, holder.machine, holder.tasks, holder.started, holder.nexusfile, str(row[0]))


@contextmanager
def exclusive(path: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if needed) for the ``with`` block."""
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
