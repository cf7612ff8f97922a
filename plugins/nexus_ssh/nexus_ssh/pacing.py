"""Pacing new SSH connections: a process-wide rate and a cap per jump host.

sshd drops handshakes when too many connections are unauthenticated at once
(``MaxStartups``, OpenSSH's default ``10:30:100``: from 10 on, 30 % of new ones are
dropped, rising to all at 100). A run over hundreds of hosts opens every connection at the
same moment, and a fleet behind one jump host sends every one of them to that one sshd.
Two knobs keep that in bounds:

- ``ssh_connect_rate`` (default ``"200/second"``): new TCP connections this process starts,
  over a moving window (the ``limits`` package). ``"0"`` or ``""`` turns it off.
- ``ssh_jump_concurrency`` (default 8): connections being opened (TCP, key exchange, login
  to the jump host and to the target) at once through one jump host; below the 10 of
  ``MaxStartups 10:30:100``, so a jump host with sshd's defaults never drops one of ours.

Figures behind the defaults are in docs/decisions.md (Scale). Waiting is cancel-aware: the
caller's ``sleep(seconds) -> bool`` returns False when a stop was requested.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

#: Default of ``ssh_connect_rate``: well above what one client completes (about 70 logins a
#: second on the 2-core bench machine, idle), so it only bounds the burst of a large fleet.
DEFAULT_RATE = "200/second"
#: Default of ``ssh_jump_concurrency``: under the 10 unauthenticated connections from which
#: sshd's default ``MaxStartups 10:30:100`` starts dropping handshakes.
DEFAULT_JUMP_CONCURRENCY = 8
#: Bound on the waits of one connection (each at most 5 s): never an endless loop.
_MAX_WAITS = 10_000


class PacingCancelled(Exception):
    """A stop was requested while a connection waited for its turn."""


def rate_problem(value: Any) -> str | None:
    """Why ``value`` is not a valid ``ssh_connect_rate`` (None when it is)."""
    if value in (None, "", 0, "0"):
        return None
    from limits import parse

    try:
        parse(str(value))
    except ValueError:
        return f"ssh_connect_rate must read like '200/second' ('0': no limit), not {value!r}"
    return None


def _free_hits(rate: str) -> int:
    """Connections that can start before any window of ``rate`` is full: the smallest amount
    it names, less one (``"200/second"``: 199; ``"10/second;100/minute"``: 9). 0 when ``rate``
    is empty or its amounts cannot be read without ``limits`` (which then judges every one)."""
    amounts = []
    for part in rate.replace(",", ";").split(";"):
        head = part.strip().split("/")[0].split(" per ")[0].strip()
        if not head.isdigit():
            return 0
        amounts.append(int(head))
    return max(0, min(amounts) - 1) if amounts else 0


class Pacer:
    """Hands out turns to open connections: the rate limit first, then the jump host's cap."""

    def __init__(self, options: Mapping[str, Any]) -> None:
        rate = options.get("ssh_connect_rate", DEFAULT_RATE)
        self.rate = "" if rate in (None, "", 0, "0") else str(rate)
        cap = options.get("ssh_jump_concurrency", DEFAULT_JUMP_CONCURRENCY)
        self.jump_concurrency = max(0, int(cap if cap is not None else DEFAULT_JUMP_CONCURRENCY))
        self._lock = threading.Lock()
        #: Connections that may start before the limiter is needed (see :meth:`_rate_turn`).
        self._free = _free_hits(self.rate)
        self._limiter: Any = None
        self._item: Any = None
        self._caps: dict[str, threading.BoundedSemaphore] = {}
        #: Hands out turn numbers without a lock (``next`` on it is atomic): the first
        #: ``_free`` turns go at once. A lock here made a fleet's connections queue behind
        #: each other at the start of a run, each hand-over waiting for the GIL.
        self._tickets = itertools.count()
        #: Seconds connections spent waiting for the rate limit and for a jump host's cap.
        self.waited_rate = 0.0
        self.waited_jump = 0.0

    def _rate_turn(self, sleep: Callable[[float], bool]) -> None:
        """Wait until the rate allows one more connection.

        Until this process has started fewer connections than the smallest amount the rate
        names, no window can be full: those go at once, and ``limits`` (whose import brings
        ``asyncio`` and its storage back ends: ~40 ms of a small run's start) is imported only
        by the connection that reaches it. The limiter then counts the earlier ones as made
        at that moment: at most one window more cautious than their real times, never less.
        """
        if not self.rate:
            return
        if next(self._tickets) < self._free:
            return
        with self._lock:
            if self._limiter is None:
                from limits import parse
                from limits.storage import MemoryStorage
                from limits.strategies import MovingWindowRateLimiter

                self._item = parse(self.rate)
                self._limiter = MovingWindowRateLimiter(MemoryStorage())
                for _ in range(self._free):  # every free turn was taken before this one
                    self._limiter.hit(self._item, "nexus-ssh-connect")
            limiter, item = self._limiter, self._item
        t0 = time.monotonic()
        for _ in range(_MAX_WAITS):
            if limiter.hit(item, "nexus-ssh-connect"):
                break
            stats = limiter.get_window_stats(item, "nexus-ssh-connect")
            if not sleep(min(max(stats.reset_time - time.time(), 0.005), 5.0)):
                raise PacingCancelled()
        waited = time.monotonic() - t0
        if waited > 0.001:
            with self._lock:
                self.waited_rate += waited

    @contextmanager
    def turn(self, jump: str, sleep: Callable[[float], bool]) -> Iterator[None]:
        """Wait for the rate limit, and hold one of ``jump``'s slots ("" = no jump host) meanwhile."""
        sem: threading.BoundedSemaphore | None = None
        if jump and self.jump_concurrency > 0:
            with self._lock:
                sem = self._caps.get(jump)
                if sem is None:
                    sem = self._caps[jump] = threading.BoundedSemaphore(self.jump_concurrency)
            t0 = time.monotonic()
            for _ in range(_MAX_WAITS):
                if sem.acquire(timeout=0.1):
                    break
                if not sleep(0):
                    raise PacingCancelled()
            else:
                raise PacingCancelled()
            waited = time.monotonic() - t0
            if waited > 0.001:
                with self._lock:
                    self.waited_jump += waited
        try:
            self._rate_turn(sleep)
            yield
        finally:
            if sem is not None:
                sem.release()
