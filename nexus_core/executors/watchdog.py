"""A single thread that enforces deadlines and cancellation on running process groups."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from dataclasses import dataclass

from nexus_core.api import Cancel

#: Seconds between SIGTERM and SIGKILL when a command times out.
TIMEOUT_KILL_GRACE = 2.0

_LEVEL_SIGNALS = {Cancel.INTERRUPT: signal.SIGINT, Cancel.TERMINATE: signal.SIGTERM, Cancel.KILL: signal.SIGKILL}


@dataclass
class Watched:
    """One running process group and what has been done to it."""

    pgid: int
    deadline: float
    timed_out: bool = False
    kill_at: float | None = None
    level_sent: int = 0
    signalled: bool = False
    done: bool = False
    #: Whose cancel levels it follows (the command's own; None: the watchdog's, the run's).
    cancel: Cancel | None = None


class Watchdog:
    """Kills process groups whose deadline passed and forwards cancel levels as signals."""

    def __init__(self, cancel: Cancel) -> None:
        self._cancel = cancel
        self._cond = threading.Condition()
        self._items: dict[int, Watched] = {}
        self._thread: threading.Thread | None = None
        self._closed = False
        self._due = float("inf")  # when the thread wakes up next on its own
        cancel.listeners.append(self._wake)

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def add(self, pgid: int, timeout: float, cancel: Cancel | None = None) -> Watched:
        """Watch process group ``pgid`` for ``timeout`` seconds (0 = no limit), signalling it
        as ``cancel`` (default: the run's) rises: a resume's probes, given a cancel of their
        own, must not die of the run's stop they help with."""
        item = Watched(pgid, time.monotonic() + timeout if timeout > 0 else float("inf"))
        if cancel is not None and cancel is not self._cancel:
            item.cancel = cancel
            cancel.listeners.append(self._wake)
        with self._cond:
            self._items[id(item)] = item
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="nexus-watchdog", daemon=True)
                self._thread.start()
            elif item.deadline < self._due:  # otherwise the thread is awake by then anyway
                self._cond.notify_all()
        if (item.cancel or self._cancel).level:
            self._wake()
        return item

    def remove(self, item: Watched) -> None:
        """Stop watching (the process has been reaped)."""
        with self._cond:
            item.done = True
            self._items.pop(id(item), None)
        if item.cancel is not None:  # its own cancel (see add) no longer wakes the thread for it
            with contextlib.suppress(ValueError):
                item.cancel.listeners.remove(self._wake)

    def close(self) -> None:
        """Stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cond:
                if self._closed:
                    return
                now = time.monotonic()
                run_level = self._cancel.level
                due = float("inf")
                for item in list(self._items.values()):
                    level = run_level if item.cancel is None else item.cancel.level
                    if level > item.level_sent:
                        if level in _LEVEL_SIGNALS:
                            _signal(item.pgid, _LEVEL_SIGNALS[level])
                            item.signalled = True
                        item.level_sent = level
                    if not item.timed_out and now >= item.deadline:
                        item.timed_out = True
                        item.kill_at = now + TIMEOUT_KILL_GRACE
                        _signal(item.pgid, signal.SIGTERM)
                        _signal(item.pgid, signal.SIGCONT)
                    if item.kill_at is not None and now >= item.kill_at:
                        _signal(item.pgid, signal.SIGKILL)
                        item.kill_at = None
                    for t in (
                        item.deadline if not item.timed_out else float("inf"),
                        item.kill_at if item.kill_at is not None else float("inf"),
                    ):
                        due = min(due, t)
                self._due = due
                wait = None if due == float("inf") else max(0.0, due - now)
                self._cond.wait(wait if wait is None else min(wait, 3600))


def _signal(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
