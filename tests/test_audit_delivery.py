"""Delivery to audit sinks without a run: each sink's bounded queue and thread, in order, and the
failure policy when a sink falls behind (no timings: a sink blocked on an event)."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from nexus_core.api import AuditSink, AuditSinkContext
from nexus_core.audit.config import SinkConfig
from nexus_core.audit.delivery import SinkProblem, SinkWorker
from nexus_core.audit.records import Hashed, hmac_value


class Blocked(AuditSink):
    """Takes records only once ``release`` is set; remembers what it got."""

    name = "blocked"

    def __init__(self) -> None:
        super().__init__(AuditSinkContext("slow", {}))
        self.release = threading.Event()
        self.entered = threading.Event()
        self.got: list[Mapping[str, Any]] = []
        self.closed = False

    def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        self.entered.set()
        assert self.release.wait(30), "the test never released the sink"
        self.got.extend(records)

    def close(self) -> None:
        self.closed = True


def test_a_stuck_sink_never_blocks_the_caller_and_a_full_queue_fails_it_once():
    sink = Blocked()
    problems: list[SinkProblem] = []
    worker = SinkWorker(SinkConfig("slow", "blocked", required=True, queue_size=3), sink, b"salt", problems.append)
    worker.start()
    worker.put({"n": 0})
    assert sink.entered.wait(30)  # the thread holds record 0 inside write(): the queue is empty
    for n in range(1, 9):
        worker.put({"n": n})  # returns at once although the sink is stuck
    assert worker.queue.qsize() == 3 and worker.dropped == 5
    assert len(problems) == 1 and "queue of 3 records is full" in problems[0].reason and problems[0].sink.required
    sink.release.set()
    worker.finish(deadline=time.monotonic() + 30)
    assert sink.closed
    # What was taken before the failure is delivered in order; nothing after it is written.
    assert [r["n"] for r in sink.got] == [0]


def test_records_keep_their_order_and_matchable_values_are_hmacd_per_sink():
    sink = Blocked()
    sink.release.set()
    worker = SinkWorker(SinkConfig("s", "blocked", queue_size=100), sink, b"pepper", lambda p: None)
    worker.start()
    for n in range(50):
        worker.put({"n": n, "value": Hashed("hunter2")})
    worker.finish(deadline=time.monotonic() + 30)
    assert [r["n"] for r in sink.got] == list(range(50))
    assert {r["value"] for r in sink.got} == {hmac_value(b"pepper", "hunter2")}
    assert "hunter2" not in repr(sink.got)


def test_an_event_class_that_declares_a_code_is_audited_field_by_field():
    from nexus_ssh.events import SshConnect, SshError

    from nexus_core.audit.records import Actor, of_event
    from nexus_core.events import CommandOutput

    actor = Actor("alice", "10.0.1.50")
    rec = of_event(SshConnect("run-1", host="web-1", duration=0.25, auth="publickey", port=2222, ts=0.0), actor)
    assert rec == {"timestamp": "1970-01-01T00:00:00.000Z", "event": "auth.success", "user": "alice",
                   "source_ip": "10.0.1.50", "host": "web-1", "duration_ms": 250, "auth": "publickey", "port": 2222,
                   "correlation_id": "run-1"}  # fmt: skip
    failed = of_event(SshError("run-1", host="web-2", reason="authentication failed"), actor)
    assert failed is not None and failed["event"] == "auth.failure" and failed["reason"] == "authentication failed"
    assert of_event(CommandOutput("run-1", task="t", host="h", stream="stdout", line="x"), actor) is None
