"""The event bus's ``after`` hook and the state recorder's group commit (real SQLite)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nexus_core import events as ev
from nexus_core.state.recorder import StateRecorder
from nexus_core.state.store import StateStore

RUN = "20261202-000000-abcdef"


def test_after_runs_once_every_subscriber_has_the_event_and_outside_the_lock() -> None:
    bus = ev.EventBus(RUN)
    seen: list[str] = []
    free: list[bool] = []

    def deliver_meanwhile() -> None:
        got = bus._lock.acquire(timeout=2)
        free.append(got)
        if got:
            bus._lock.release()

    def after(event: ev.Event) -> None:
        seen.append("after:" + event.name)
        # Another thread can deliver while ``after`` runs: the bus's lock is not held.
        t = threading.Thread(target=deliver_meanwhile)
        t.start()
        t.join(5)

    bus.subscribe("first", lambda e: seen.append("first:" + e.name), after=after)
    bus.subscribe("second", lambda e: seen.append("second:" + e.name))
    bus.emit(ev.Log(RUN, level="info", message="hello"))
    assert seen == ["first:log", "second:log", "after:log"]
    assert free == [True]


def test_a_failing_after_drops_its_subscriber_not_the_run() -> None:
    said: list[str] = []
    bus = ev.EventBus(RUN, report=said.append)
    got: list[str] = []

    def after(event: ev.Event) -> None:
        raise OSError("disk full")

    bus.subscribe("state", lambda e: got.append(e.name), after=after)
    bus.emit(ev.Log(RUN, level="info", message="one"))
    bus.emit(ev.Log(RUN, level="info", message="two"))
    assert got == ["log"]  # dropped after the first failure
    assert len(said) == 1 and "'state' failed on log (OSError: disk full)" in said[0]


def _store(tmp_path: Path) -> StateStore:
    store = StateStore(str(tmp_path / "state.db"))
    store.begin_run(RUN, str(tmp_path / "nexusfile.py"), "hash", ["deploy"], {}, {})
    return store


def test_hosts_reaching_their_checkpoint_together_share_transactions(tmp_path: Path) -> None:
    store = _store(tmp_path)
    commits = [0]
    real = store.transaction

    @contextmanager
    def counted() -> Iterator[Any]:
        with real() as cur:
            yield cur
        commits[0] += 1

    store.transaction = counted  # type: ignore[method-assign]
    recorder = StateRecorder(store, RUN)
    bus = ev.EventBus(RUN)
    bus.subscribe("state", recorder, after=recorder.after)
    other = sqlite3.connect(str(tmp_path / "state.db"), timeout=30, check_same_thread=False)
    reading = threading.Lock()
    n = 40
    gate = threading.Barrier(n)
    missing: list[str] = []

    def host(i: int) -> None:
        name = f"web-{i}"
        gate.wait(10)
        bus.emit(ev.HostStart(RUN, task="deploy", host=name))
        bus.emit(ev.CommandStart(RUN, task="deploy", host=name, command="true", index=0))
        # The checkpoint is on disk before emit returns: another connection sees the host.
        with reading:
            row = other.execute("SELECT status FROM hosts WHERE run_id = ? AND host = ?", (RUN, name)).fetchone()
        if row is None or row[0] != "running":
            missing.append(name)

    threads = [threading.Thread(target=host, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not missing
    assert 1 <= commits[0] <= n  # never more than one per checkpoint; shared when they meet
    bus.emit(ev.HostStop(RUN, task="deploy", host="web-0", status="ok"))
    assert other.execute("SELECT status FROM hosts WHERE host = 'web-0'").fetchone()[0] == "ok"
    other.close()
    store.close()


def test_a_subscriber_naming_its_events_gets_only_those_and_so_does_its_after() -> None:
    bus = ev.EventBus(RUN)
    picky: list[str] = []
    after: list[str] = []
    everything: list[str] = []

    class Picky:
        subscribed_events = frozenset({"task.start"})

        def __call__(self, event: ev.Event) -> None:
            picky.append(event.name)

    class Listing:  # an attribute of another type (here a list) is not a filter
        subscribed_events = ["task.stop"]

        def __call__(self, event: ev.Event) -> None:
            everything.append(event.name)

    bus.subscribe("picky", Picky(), after=lambda e: after.append(e.name))
    bus.subscribe("all", Listing())
    bus.emit(ev.TaskStart(RUN, task="t", hosts=()))
    bus.emit(ev.TaskStop(RUN, task="t", hosts=(), status="ok"))
    assert picky == after == ["task.start"]
    assert everything == ["task.start", "task.stop"]


def test_the_recorder_names_every_event_it_writes_or_checkpoints_on() -> None:
    handled = {m[3:].replace("_", ".", 1) for m in dir(StateRecorder) if m.startswith("on_")}
    assert handled | StateRecorder.GROUP_COMMIT <= StateRecorder.subscribed_events
