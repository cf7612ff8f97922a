"""``nexus tui``: the dashboard of a run started elsewhere, read from its recorded state.

A :class:`StatePoller` thread reads the run's row in the state database and the new lines
of its run logs (``nexus logs``) every ``interval`` seconds, and hands them to the
dashboard's feed: a running pipeline is followed live, a finished one is shown as it
ended. Nothing is written: the dashboard is read-only here.
"""

from __future__ import annotations

import os
import threading
import zlib
from typing import TYPE_CHECKING, Any

from nexus_core import runlogs
from nexus_core.tui.feed import EventFeed
from nexus_core.tui.model import FileLines, Snapshot

if TYPE_CHECKING:
    from nexus_core.state.store import RunRecord, StateStore

#: Seconds between two looks at the state and the logs.
INTERVAL = 0.5
#: The longest a poller follows a run (then it shows the run as it was).
MAX_SECONDS = 7 * 86400


def _signature(record: RunRecord) -> tuple[Any, ...]:
    """What changes when the run moves on (so unchanged polls cost the screen nothing)."""
    return (
        record.status,
        record.ended,
        tuple(sorted((k, v.get("status"), v.get("ended")) for k, v in record.tasks.items())),
        tuple(sorted((k, v.get("status"), v.get("ended")) for k, v in record.hosts.items())),
        len(record.commands),
        tuple(sorted((k, v.get("status")) for k, v in record.commands.items())),
    )


class GzipTail:
    """The new complete lines of a growing run log (gzip, one member per flush or reopening).

    Each :meth:`read` reads only the bytes added since the last one and decompresses them
    with the stream's own state: following a log costs what it grows, not its size at every
    poll. (A gzip stream cannot be entered in the middle, so its lines are read once, in
    order; the screen then draws only those it shows.)
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.offset = 0
        self._inflate: Any = None
        self._partial = b""

    def read(self) -> list[str]:
        """Lines completed since the last call ('' lines included; a line being written waits)."""
        try:
            size = os.path.getsize(self.path)
            if size == self.offset:  # nothing new: not even opened
                return []
            if size < self.offset:  # rewritten: start again
                self.offset, self._inflate, self._partial = 0, None, b""
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except OSError:
            return []
        self.offset += len(data)
        out: list[bytes] = [self._partial]
        for _ in range(100_000):  # members: one per (re)opening of the file
            if not data:
                break
            if self._inflate is None:
                self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
            try:
                out.append(self._inflate.decompress(data))
            except zlib.error:  # damaged: what was read stands, the rest is skipped
                self._inflate, data = None, b""
                break
            if self._inflate.eof:
                data, self._inflate = self._inflate.unused_data, None
            else:
                data = b""
        *complete, self._partial = b"".join(out).split(b"\n")
        return [line.decode("utf-8", "replace") for line in complete]


class StatePoller:
    """Follows one recorded run: its state rows and its log files, into a feed."""

    def __init__(self, store: StateStore, run_id: str, logs_root: str, feed: EventFeed, interval: float = INTERVAL):
        self.store = store
        self.run_id = run_id
        self.logs_root = logs_root
        self.feed = feed
        self.interval = interval
        self._stop = threading.Event()
        self._tails: dict[str, GzipTail] = {}  # path -> what was read of it
        self._signature: tuple[Any, ...] = ()
        self._thread: threading.Thread | None = None
        #: Set once the run has ended and its last state was read.
        self.done = threading.Event()

    def poll(self) -> bool:
        """One look: new log lines, then the state when it changed; False once the run has ended."""
        for f in runlogs.run_files(self.logs_root, self.run_id):
            tail = self._tails.get(f.path)
            if tail is None:
                tail = self._tails[f.path] = GzipTail(f.path)
            lines = tail.read()
            if lines:
                self.feed(FileLines(f.task, f.host, tuple(lines)))
        record = self.store.get(self.run_id)
        if record is None:
            return False
        signature = _signature(record)
        if signature != self._signature:
            self._signature = signature
            self.feed(Snapshot(record))
        return record.status == "running" and record.alive

    def _loop(self) -> None:
        steps = int(MAX_SECONDS / max(self.interval, 0.01))
        try:
            for _ in range(steps):
                if not self.poll() or self._stop.wait(self.interval):
                    break
        except Exception as exc:  # noqa: BLE001 - a damaged or vanished database ends the following, said on screen
            from nexus_core.tui.model import Notice

            self.feed(Notice(f"stopped following the run: {type(exc).__name__}: {exc}"))
        finally:
            self.done.set()

    def start(self) -> None:
        """Follow the run in a thread until it ends (or :meth:`stop`)."""
        self._thread = threading.Thread(target=self._loop, name="nexus-tui-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following and wait for the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
