"""The agent side without a cluster: slots shared by every command, and a cancel before the start."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nexus_agent import runner


@pytest.fixture
def one_slot() -> Iterator[None]:
    saved = runner._GATE[0], runner._GATE_SIZE[0]
    runner._GATE[0] = None
    runner.set_slots(1)
    yield
    runner._GATE[0], runner._GATE_SIZE[0] = saved


def _spec(cmd_id: str, cmd: str) -> dict[str, Any]:
    return {"id": cmd_id, "topic": "t", "cmd": cmd, "timeout": 30}


def _wait_for(path: Path, cmd_id: str) -> None:
    """Until the command has written ``path`` and the agent has it as running."""
    for _ in range(600):
        if path.exists() and cmd_id in runner.RUNNING:
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def test_a_command_waits_for_a_slot_and_a_cancel_there_keeps_it_from_starting(one_slot: None, tmp_path: Path) -> None:
    started, release, never = tmp_path / "started", tmp_path / "release", tmp_path / "never"
    results: dict[str, dict[str, Any]] = {}
    first = threading.Thread(
        target=lambda: results.__setitem__(
            "first",
            runner.run_command(_spec("first", f"touch {started}; while [ ! -e {release} ]; do sleep 0.05; done")),
        )
    )
    first.start()
    _wait_for(started, "first")
    second = threading.Thread(
        target=lambda: results.__setitem__("second", runner.run_command(_spec("second", f"touch {never}")))
    )
    second.start()
    assert runner.signal_command("second", 2) is False  # waiting for the slot: marked, not signalled
    second.join(30)
    release.touch()
    first.join(30)
    assert results["second"]["status"] == "interrupted" and "not started" in results["second"]["reason"]
    assert not never.exists()
    assert results["first"]["status"] == "ok"


def test_a_signalled_running_command_is_interrupted_not_failed(one_slot: None, tmp_path: Path) -> None:
    started = tmp_path / "started"
    results: list[dict[str, Any]] = []
    t = threading.Thread(target=lambda: results.append(runner.run_command(_spec("sig", f"touch {started}; sleep 30"))))
    t.start()
    _wait_for(started, "sig")
    assert runner.signal_command("sig", 15) is True
    t.join(30)
    assert results[0]["status"] == "interrupted"
    assert "sig" not in runner.RUNNING


class _Events:
    """What a relayed command sends through its worker (the agent's events), in order."""

    name = "rec"

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def log_event(self, topic: str, msg: dict[str, Any]) -> None:
        self.sent.append(msg)


def test_a_relayed_command_sends_its_start_once_before_its_lines_and_the_rest_with_its_result() -> None:
    events = _Events()
    spec = _spec("quick", "echo one; echo two >&2; echo three")
    sender = runner.relayed_sender(spec, events)
    result = runner.run_command(spec, sender=sender)
    messages = [*events.sent, sender.rest()]  # the relay sends the rest with the result
    assert result["status"] == "ok"
    assert sum(1 for m in messages if m.get("start")) == 1
    first_lines = next(i for i, m in enumerate(messages) if m.get("lines"))
    assert next(i for i, m in enumerate(messages) if m.get("start")) <= first_lines
    lines = [tuple(pair) for m in messages for pair in m.get("lines", ())]
    # Each stream in its order (the two pipes are read as their data comes).
    assert [line for stream, line in lines if stream == "stdout"] == ["one", "three"]
    assert [line for stream, line in lines if stream == "stderr"] == ["two"]
    assert result["lines"] == 3


def test_a_relayed_command_that_runs_on_says_it_started_while_it_runs(tmp_path: Path) -> None:
    events = _Events()
    release = tmp_path / "release"
    spec = _spec("long", f"while [ ! -e {release} ]; do sleep 0.05; done; echo done")
    sender = runner.relayed_sender(spec, events)
    results: list[dict[str, Any]] = []
    t = threading.Thread(target=lambda: results.append(runner.run_command(spec, sender=sender)))
    t.start()
    try:
        for _ in range(600):
            if any(m.get("start") for m in events.sent):
                break
            time.sleep(0.05)
        assert [m for m in events.sent if m.get("start")] == [{"id": "long", "start": True, "agent": "rec"}]
    finally:
        release.touch()
        t.join(30)
    assert results[0]["status"] == "ok"
    assert "start" not in sender.rest()
    assert [pair for m in [*events.sent, sender.rest()] for pair in m.get("lines", ())] == [["stdout", "done"]]


def test_relayed_commands_reuse_a_bounded_pool_of_daemon_threads() -> None:
    """Every job runs, a failing job does not lose its thread, and no more threads than the limit start."""
    from nexus_agent.relay import _Pool

    pool = _Pool(2)
    done: list[int] = []
    names: set[str] = set()
    release = threading.Event()
    lock = threading.Lock()

    def job(i: int) -> None:
        release.wait(30)
        with lock:
            done.append(i)
            names.add(threading.current_thread().name + str(threading.get_ident()))
            assert threading.current_thread().daemon
        if i == 0:
            raise RuntimeError("a failing job")

    for i in range(6):
        pool.submit(job, i)
    assert pool.threads == 2  # the other four wait in the queue
    release.set()
    for _ in range(3000):  # bounded: 30 s
        with lock:
            if len(done) == 6:
                break
        time.sleep(0.01)
    assert sorted(done) == list(range(6))
    assert len(names) <= 2 and pool.threads == 2
