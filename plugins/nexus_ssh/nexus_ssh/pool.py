"""Per-host connection pools: at most ``size`` connections, reused, idle ones closed.

A command checks a connection out for its whole duration (one command per connection at
a time), so ``size`` bounds both the connections a host sees and the parallel commands on
it. Dead connections are dropped at checkout; a connection whose channel cannot be opened
is marked broken by the executor and replaced. One sweeper thread per executor closes
connections idle longer than ``idle_timeout``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable

from nexus_ssh.connect import Connection


class PoolTimeout(Exception):
    """No connection became free before the deadline."""


class PoolCancelled(Exception):
    """A stop was requested while waiting for a connection."""


class HostPool:
    """Connections to one target (one :class:`~nexus_ssh.settings.ConnectSpec` pool key)."""

    def __init__(
        self,
        label: str,
        size: int,
        factory: Callable[[], Connection],
        on_close: Callable[[Connection, str], None],
    ) -> None:
        self.label = label
        self.size = max(1, size)
        self._factory = factory
        self._on_close = on_close
        self._idle: list[Connection] = []
        self._total = 0  # open + being opened
        self._cond = threading.Condition()
        self._closed = False
        #: Hosts of the run that still have commands to run through this pool: while there
        #: are any, the sweep keeps one idle connection however old (see :meth:`sweep`).
        self.pending: set[Hashable] = set()

    @property
    def available(self) -> int:
        """Idle connections plus room to open new ones."""
        with self._cond:
            return len(self._idle) + (self.size - self._total)

    @property
    def total(self) -> int:
        """Connections open or being opened."""
        return self._total

    def checkout(
        self,
        deadline: float | None,
        stopping: Callable[[], bool],
        factory: Callable[[], Connection] | None = None,
    ) -> Connection:
        """A live connection: an idle one (most recent first), a new one, or wait for one."""
        dead: list[Connection] = []
        try:
            with self._cond:
                for _ in range(1_000_000):
                    if self._closed:
                        raise PoolCancelled("pool closed")
                    while self._idle:
                        conn = self._idle.pop()
                        if conn.alive():
                            return conn
                        self._total -= 1
                        dead.append(conn)
                    if self._total < self.size:
                        self._total += 1
                        break
                    if stopping():
                        raise PoolCancelled("stop requested")
                    wait = 0.2
                    if deadline is not None:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            raise PoolTimeout(f"no free connection to {self.label} (pool size {self.size})")
                        wait = min(wait, left)
                    self._cond.wait(wait)
        finally:
            for conn in dead:
                self._on_close(conn, "stale")
        try:
            return (factory or self._factory)()
        except BaseException:
            with self._cond:
                self._total -= 1
                self._cond.notify()
            raise

    def checkin(self, conn: Connection) -> None:
        """Give a connection back; a broken one is closed and its slot freed."""
        conn.last_used = time.monotonic()
        if conn.broken or not conn.alive() or self._closed:
            with self._cond:
                self._total -= 1
                self._cond.notify()
            self._on_close(conn, "broken" if conn.broken else "closed")
            return
        with self._cond:
            self._idle.append(conn)
            self._cond.notify()

    def discard(self, conn: Connection, reason: str) -> None:
        """Close a checked-out connection that must not be reused."""
        conn.broken = True
        with self._cond:
            self._total -= 1
            self._cond.notify()
        self._on_close(conn, reason)

    def sweep(self, idle_timeout: float, now: float | None = None) -> int:
        """Close idle connections unused for ``idle_timeout`` s (or dead); return how many.

        While :attr:`pending` names a host, the most recently used idle connection stays: a
        host that finished a task early waits for the fleet's slowest before the next one,
        and at 1,000 hosts on a loaded client that wait passed the 60 s default, so every
        such host logged in again for the next task, all at once."""
        now = time.monotonic() if now is None else now
        with self._cond:
            keep = max(self._idle, key=lambda c: c.last_used) if self.pending and self._idle else None
            old = [
                c
                for c in self._idle
                if not c.alive() or (c is not keep and now - c.last_used >= idle_timeout)
            ]
            self._idle = [c for c in self._idle if c not in old]
            self._total -= len(old)
            if old:
                self._cond.notify_all()
        for conn in old:
            self._on_close(conn, "idle")
        return len(old)

    def close(self) -> None:
        """Close every idle connection and refuse new checkouts."""
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._total -= len(idle)
            self._cond.notify_all()
        for conn in idle:
            self._on_close(conn, "executor closed")
