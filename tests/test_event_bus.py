"""The event bus under many emitting threads: one order, one deliverer at a time, no loss."""

from __future__ import annotations

import threading

import pytest

from nexus_core import events as ev

RUN = "20261202-000000-abcdef"
THREADS = 40
EACH = 50


def _log(text: str) -> ev.Log:
    return ev.Log(RUN, level="info", message=text)


def test_every_subscriber_sees_every_event_once_in_one_order() -> None:
    bus = ev.EventBus(RUN)
    first: list[str] = []
    second: list[str] = []
    inside = [0]
    overlaps: list[int] = []

    def one_at_a_time(sink: list[str]) -> ev.Subscriber:
        def deliver(event: ev.Event) -> None:
            inside[0] += 1
            if inside[0] != 1:
                overlaps.append(inside[0])
            assert isinstance(event, ev.Log)
            sink.append(event.message)
            inside[0] -= 1

        return deliver

    bus.subscribe("first", one_at_a_time(first))
    bus.subscribe("second", one_at_a_time(second))
    delivered_before_return: list[bool] = []
    start = threading.Barrier(THREADS)

    def emitter(n: int) -> None:
        start.wait(timeout=10)
        for i in range(EACH):
            text = f"{n}-{i}"
            bus.emit(_log(text))
            delivered_before_return.append(text in first and text in second)

    threads = [threading.Thread(target=emitter, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert overlaps == []
    assert first == second  # one order for every subscriber
    assert sorted(first) == sorted(f"{n}-{i}" for n in range(THREADS) for i in range(EACH))
    assert all(delivered_before_return) and len(delivered_before_return) == THREADS * EACH
    for n in range(THREADS):  # each thread's events in the order it emitted them
        mine = [m for m in first if m.startswith(f"{n}-")]
        assert mine == [f"{n}-{i}" for i in range(EACH)]


def test_a_subscriber_may_emit_while_it_is_called() -> None:
    bus = ev.EventBus(RUN)
    seen: list[str] = []

    def echo(event: ev.Event) -> None:
        assert isinstance(event, ev.Log)
        seen.append(event.message)
        if event.message == "outer":
            bus.emit(_log("nested"))

    bus.subscribe("echo", echo)
    bus.emit(_log("outer"))
    assert seen == ["outer", "nested"]


def test_an_interrupted_deliverer_hands_the_queue_to_a_waiting_emitter() -> None:
    bus = ev.EventBus(RUN)
    bus.RECHECK = 0.2  # how soon a waiting emitter looks again (30 s in a run)
    seen: list[str] = []
    in_first = threading.Event()
    queued = threading.Event()

    def slow(event: ev.Event) -> None:
        assert isinstance(event, ev.Log)
        if event.message == "first":
            in_first.set()
            assert queued.wait(10)
            raise KeyboardInterrupt  # a BaseException: not a subscriber failure
        seen.append(event.message)

    bus.subscribe("slow", slow)
    errors: list[BaseException] = []

    def first() -> None:
        try:
            bus.emit(_log("first"))
        except BaseException as exc:
            errors.append(exc)

    t1 = threading.Thread(target=first)
    t1.start()
    assert in_first.wait(10)
    t2 = threading.Thread(target=lambda: bus.emit(_log("second")))
    t2.start()
    for _ in range(200):  # the second event is queued behind the first
        if bus._queue:
            break
        threading.Event().wait(0.01)
    queued.set()
    t1.join(10)
    t2.join(10)
    assert not t1.is_alive() and not t2.is_alive()
    assert [type(e) for e in errors] == [KeyboardInterrupt]
    assert seen == ["second"]
    assert bus._combiner is None


@pytest.mark.parametrize("failing", ["first", "second"])
def test_a_failing_subscriber_is_dropped_and_the_others_go_on(failing: str) -> None:
    reports: list[str] = []
    bus = ev.EventBus(RUN, report=reports.append)
    got: dict[str, list[str]] = {"first": [], "second": []}

    def make(name: str) -> ev.Subscriber:
        def deliver(event: ev.Event) -> None:
            assert isinstance(event, ev.Log)
            if name == failing:
                raise RuntimeError("boom")
            got[name].append(event.message)

        return deliver

    bus.subscribe("first", make("first"))
    bus.subscribe("second", make("second"))
    for text in ("a", "b"):
        bus.emit(_log(text))
    other = "second" if failing == "first" else "first"
    assert got[other] == ["a", "b"] and got[failing] == []
    assert len(reports) == 1 and f"'{failing}' failed on log (RuntimeError: boom)" in reports[0]
