"""Pacing new SSH connections: a process-wide rate, a cap per jump host and a cap in all.

sshd drops handshakes when too many connections are unauthenticated at once
(``MaxStartups``, OpenSSH's default ``10:30:100``: from 10 on, 30 % of new ones are
dropped, rising to all at 100). A run over hundreds of hosts opens every connection at the
same moment, and a fleet behind one jump host sends every one of them to that one sshd.
Two knobs keep that in bounds:

- ``ssh_connect_rate`` (default ``"200/second"``): new TCP connections this process starts,
  over a moving window (the ``limits`` package); an integer N is N a second. ``0``, ``"0"``
  or ``""`` turns it off; a count of 0 in ``"N/period"`` is refused (it would start none).
- ``ssh_jump_concurrency`` (default 8): connections being opened (TCP, key exchange, login
  to the jump host and to the target) at once through one jump host; below the 10 of
  ``MaxStartups 10:30:100``, so a jump host with sshd's defaults never drops one of ours.
- ``ssh_connect_concurrency`` (default 128): connections being opened at once by this
  process, whatever their route: the client's CPU is shared by the handshakes under way, so
  a thousand at once would all be slow and many would time out.

Figures behind the defaults are in docs/decisions.md (Scale). Waiting is cancel-aware: the
caller's ``sleep(seconds) -> bool`` returns False when a stop was requested.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

#: Default of ``ssh_connect_rate``: well above what one client completes (about 70 logins a
#: second on the 2-core bench machine, idle), so it only bounds the burst of a large fleet.
DEFAULT_RATE = "200/second"
#: Default of ``ssh_jump_concurrency``: under the 10 unauthenticated connections from which
#: sshd's default ``MaxStartups 10:30:100`` starts dropping handshakes.
DEFAULT_JUMP_CONCURRENCY = 8
#: At most this many free turns' start times are kept (see :meth:`Pacer._rate_turn`).
_STAMPS = 10_000
#: Default of ``ssh_connect_concurrency``: connections being opened at once by this process.
#: A key exchange and login cost the client CPU; with a thousand under way at once each got a
#: thousandth of it and many passed ``ssh_connect_timeout`` (then retried: more work still).
#: 128 in flight is under 2 s of the client's time each on the 2-core bench machine, and
#: enough to keep a high-latency link busy (128 logins per 5 round trips of 300 ms: 85 a
#: second, more than one client completes).
DEFAULT_CONNECT_CONCURRENCY = 128
#: Bound on the waits of one connection (each at most 5 s): never an endless loop.
_MAX_WAITS = 10_000
#: How often a connection queued for a turn looks whether the run is stopping. Every look
#: is a wake-up wanting the GIL: 900 queued connections looking twice a second starved the
#: threads doing the work (a stop is still seen within 2 s; running commands get 10).
_LINE_POLL = 2.0
#: A connection the rate makes wait longer than this many seconds is announced (once a run):
#: a rate such as ``"1/day"`` must not look like a hang.
WAIT_WARNING = 3.0


class PacingCancelled(Exception):
    """A stop was requested while a connection waited for its turn."""


def rate_text(value: Any) -> str:
    """``ssh_connect_rate`` as a ``limits`` rate: "" for no limit (None, "", 0, "0"),
    ``"N/second"`` for an integer N (or its digits, as ``NEXUS_SSH_CONNECT_RATE=50`` gives),
    else the text as written (``"200/second"``, ``"1000/minute"``)."""
    if value in (None, "", 0, "0"):
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value}/second"
    text = str(value).strip()
    if text.isdigit():
        return "" if int(text) == 0 else f"{int(text)}/second"
    return text


def rate_problem(value: Any) -> str | None:
    """Why ``value`` is not a valid ``ssh_connect_rate`` (None when it is).

    A count of 0 in ``N/period`` is refused: it would let no connection start, and the run
    would wait for ever; "no limit" is ``0`` or ``"0"`` alone.
    """
    fix = "write 0 or '0' for no limit, or a rate such as '20/second'"
    if isinstance(value, int) and not isinstance(value, bool) and value < 0:
        return f"ssh_connect_rate must not be negative, not {value!r}: {fix}"
    text = rate_text(value)
    if not text:
        return None
    from limits import parse_many

    try:
        items = parse_many(text)
    except ValueError:
        return (
            f"ssh_connect_rate must read like '200/second' or '1000/minute' (an integer N: N a "
            f"second; 0 or '0': no limit), not {value!r}"
        )
    if any(item.amount <= 0 for item in items):
        return f"ssh_connect_rate {value!r} lets no connection start (a count of 0 per period): {fix}"
    return None


def wait_text(seconds: float) -> str:
    """A wait for a message: ``12s``, ``4m 10s``, ``23h 59m``."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def _log_warning(message: str) -> None:
    """Say ``message`` as a warning on the ``nexus`` logger (stderr: ``nexus: WARNING: ...``)."""
    import logging

    logging.getLogger("nexus").warning(message)


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


class Gate:
    """A counting semaphore whose waiters are handed a slot one by one, first come first served.

    ``threading.Semaphore`` keeps its waiters on one condition: each release wakes one of
    them, which must then take the condition's lock that every other waiter (and every one
    timing out to look for a stop) takes too. With a thousand connections queued that lock
    was the queue: 313 threads were found waiting on it in a 1,000-host run. Here each waiter
    blocks on a lock of its own, which the slot's leaver releases: one wake-up per turn.
    """

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._free = slots
        self._mutex = threading.Lock()
        self._waiters: deque[threading.Lock] = deque()

    def enter(self, sleep: Callable[[float], bool]) -> None:
        """Take a slot, waiting for one (and looking every ``_LINE_POLL`` s whether the run is
        stopping: ``sleep(0)`` False raises :class:`PacingCancelled`)."""
        with self._mutex:
            if self._free > 0:
                self._free -= 1
                return
            mine = threading.Lock()
            mine.acquire()
            self._waiters.append(mine)
        for _ in range(_MAX_WAITS):
            if mine.acquire(timeout=_LINE_POLL):  # released by leave(): the slot is ours
                return
            if not sleep(0):
                with self._mutex:
                    try:
                        self._waiters.remove(mine)
                        handed = False
                    except ValueError:  # a slot was handed to us meanwhile: pass it on
                        handed = True
                if handed:
                    self.leave()
                raise PacingCancelled()
        with self._mutex:
            try:
                self._waiters.remove(mine)
            except ValueError:
                self.leave_locked()
        raise PacingCancelled()

    def leave(self) -> None:
        """Give the slot back: to the longest waiter if any."""
        with self._mutex:
            self.leave_locked()

    def leave_locked(self) -> None:
        """:meth:`leave` with ``_mutex`` already held."""
        if self._waiters:
            self._waiters.popleft().release()
        else:
            self._free += 1


class Pacer:
    """Hands out turns to open connections: the rate limit first, then the jump host's cap."""

    def __init__(self, options: Mapping[str, Any], warn: Callable[[str], None] | None = None) -> None:
        self.rate = rate_text(options.get("ssh_connect_rate", DEFAULT_RATE))
        #: Says a warning (default: the ``nexus`` logger); called at most once, see :meth:`_waiting`.
        self._warn = warn or _log_warning
        self._warned = False
        cap = options.get("ssh_jump_concurrency", DEFAULT_JUMP_CONCURRENCY)
        self.jump_concurrency = max(0, int(cap if cap is not None else DEFAULT_JUMP_CONCURRENCY))
        opening = options.get("ssh_connect_concurrency", DEFAULT_CONNECT_CONCURRENCY)
        self.connect_concurrency = max(
            0, int(opening if opening is not None else DEFAULT_CONNECT_CONCURRENCY)
        )
        self._opening = Gate(self.connect_concurrency) if self.connect_concurrency > 0 else None
        self._lock = threading.Lock()
        self._line = threading.Lock()  # held by the one connection watching a full window
        #: Connections that may start before the limiter is needed (see :meth:`_rate_turn`).
        self._free = _free_hits(self.rate)
        #: When each of those started (``time.time()``; 0.0: not yet written), for the limiter
        #: to count only the ones still inside its window. Kept for at most _STAMPS of them.
        self._stamps = [0.0] * (self._free if self._free <= _STAMPS else 0)
        self._limiter: Any = None
        self._item: Any = None
        self._caps: dict[str, Gate] = {}
        #: Hands out turn numbers without a lock (``next`` on it is atomic): the first
        #: ``_free`` turns go at once. A lock here made a fleet's connections queue behind
        #: each other at the start of a run, each hand-over waiting for the GIL.
        self._tickets = itertools.count()

    def _rate_turn(self, sleep: Callable[[float], bool]) -> None:
        """Wait until the rate allows one more connection.

        Until this process has started fewer connections than the smallest amount the rate
        names, no window can be full: those go at once, and ``limits`` (whose import brings
        ``asyncio`` and its storage back ends: ~40 ms of a small run's start) is imported only
        by the connection that reaches it. The limiter then counts, as made at that moment,
        the earlier ones that started within its window (all of them when their times were
        not kept): at most one window more cautious than their real times, never less.
        Counting every earlier one made the connections past the free ones wait a whole
        window even when most had started long before: 0.4 s of a 250-host run's 4 s here.
        """
        if not self.rate:
            return
        ticket = next(self._tickets)
        if ticket < self._free:
            if ticket < len(self._stamps):
                self._stamps[ticket] = time.time()  # one list store: atomic, no lock
            return
        with self._lock:
            if self._limiter is None:
                from limits import parse
                from limits.storage import MemoryStorage
                from limits.strategies import MovingWindowRateLimiter

                self._item = parse(self.rate)
                self._limiter = MovingWindowRateLimiter(MemoryStorage())
                window, now = self._item.get_expiry(), time.time()
                recent = self._free
                if self._stamps:  # 0.0: its connection had its turn but not yet its time
                    recent = sum(1 for t in self._stamps if not t or now - t < window)
                for _ in range(recent):
                    self._limiter.hit(self._item, "nexus-ssh-connect")
            limiter, item = self._limiter, self._item
        if limiter.hit(item, "nexus-ssh-connect"):
            return
        # The window is full: wait in line. One connection at a time watches the limiter and
        # sleeps until the window moves; the others block on the line, each woken once when
        # its turn comes (and every ``_LINE_POLL`` s to see whether the run is stopping). When
        # every waiting connection watched the limiter itself, all of them woke at each window
        # reset for one to get through: 800 paced connections of a 1,000-host run made about
        # 300,000 wake-ups, each a GIL hand-over.
        for _ in range(_MAX_WAITS):
            if self._line.acquire(timeout=_LINE_POLL):
                break
            if not sleep(0):
                raise PacingCancelled()
        else:
            raise PacingCancelled()
        try:
            for _ in range(_MAX_WAITS):
                if limiter.hit(item, "nexus-ssh-connect"):
                    break
                stats = limiter.get_window_stats(item, "nexus-ssh-connect")
                wait = stats.reset_time - time.time()
                if wait > WAIT_WARNING:
                    self._waiting(wait)
                if not sleep(min(max(wait, 0.005), 5.0)):
                    raise PacingCancelled()
        finally:
            self._line.release()

    def _waiting(self, seconds: float) -> None:
        """Tell the user, once, that the rate holds the next connection back ``seconds`` s."""
        with self._lock:
            if self._warned:
                return
            self._warned = True
        self._warn(
            f"waiting for ssh_connect_rate ({self.rate}): next connection in {wait_text(seconds)} "
            "(raise the rate, e.g. ssh_connect_rate='200/second', or set it to '0' for no limit)"
        )

    @contextmanager
    def turn(self, jump: str, sleep: Callable[[float], bool]) -> Iterator[None]:
        """Hold one of ``jump``'s slots ("" = no jump host) and one of the process's, then wait
        for the rate limit; the slots are kept until the connection is open (or failed)."""
        held: list[Gate] = []
        try:
            if jump and self.jump_concurrency > 0:
                with self._lock:
                    gate = self._caps.get(jump)
                    if gate is None:
                        gate = self._caps[jump] = Gate(self.jump_concurrency)
                gate.enter(sleep)
                held.append(gate)
            if self._opening is not None:
                self._opening.enter(sleep)
                held.append(self._opening)
            self._rate_turn(sleep)
            yield
        finally:
            for gate in reversed(held):
                gate.leave()
