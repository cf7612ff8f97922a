"""The bounded hand-over between a run (or a poller) and the dashboard's screen.

The run's event bus calls :class:`EventFeed` as one more subscriber. A call only appends
under a lock and returns: the engine never waits for the screen. The screen takes what
piled up a few times a second (:meth:`EventFeed.drain`). When it falls behind, output lines
beyond ``max_lines`` are counted instead of kept (the screen says how many, and ``nexus
logs`` has them all); status events are never dropped, so the tree is always right.
"""

from __future__ import annotations

import threading
from typing import Any

from nexus_core import events as ev
from nexus_core.tui.model import Dropped

#: Output lines waiting for the screen before more are dropped.
MAX_PENDING_LINES = 20_000


class EventFeed:
    """Event subscriber and queue: :meth:`__call__` from any thread, :meth:`drain` from the screen."""

    def __init__(self, max_lines: int = MAX_PENDING_LINES) -> None:
        self.max_lines = max_lines
        self._lock = threading.Lock()
        self._items: list[Any] = []
        self._lines = 0
        self._dropped: dict[tuple[str, str], int] = {}
        #: Output lines dropped over the whole run.
        self.dropped = 0

    def __call__(self, item: Any, /) -> None:
        """Queue an event (or a snapshot, file lines, notice); never blocks for long, never raises."""
        with self._lock:
            if isinstance(item, ev.CommandOutput):
                if self._lines >= self.max_lines:
                    key = (item.task, item.host)
                    self._dropped[key] = self._dropped.get(key, 0) + 1
                    self.dropped += 1
                    return
                self._lines += 1
            self._items.append(item)

    def put(self, item: Any) -> None:
        """Same as calling the feed (for pollers and the run's end)."""
        self(item)

    def drain(self, limit: int | None = None) -> list[Any]:
        """What was queued (the first ``limit`` items at most), in order, then one :class:`Dropped`
        per task/host that lost lines; what is left stays queued (and counts against the bound)."""
        with self._lock:
            if limit is None or len(self._items) <= limit:
                items, self._items, self._lines = self._items, [], 0
            else:
                items, self._items = self._items[:limit], self._items[limit:]
                self._lines -= sum(1 for i in items if isinstance(i, ev.CommandOutput))
            dropped, self._dropped = self._dropped, {}
        items.extend(Dropped(task, host, n) for (task, host), n in dropped.items())
        return items
