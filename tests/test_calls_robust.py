"""``wait_for`` and ``call()`` attempts (nexus_core.calls.execute) on the local executor, directly.

The deadline cases probe a condition on time (``date`` against a moment the test picks), so
they do not depend on how fast a background process starts; each takes a second or two.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nexus_core import calls
from nexus_core.api import Cancel, CommandResult, ExecutorContext
from nexus_core.calls import Call, WaitFor
from nexus_core.executors.local import LocalExecutor
from nexus_core.model import LOCAL, Command
from tests.helpers import Out


@pytest.fixture
def executor(tmp_path: Path) -> Iterator[LocalExecutor]:
    ex = LocalExecutor(ExecutorContext(config={}, root=str(tmp_path), emit=lambda _e: None, run_id="calls"))
    yield ex
    ex.close()


def in_worker(executor: LocalExecutor, op: Command, cancel: Cancel | None = None) -> CommandResult:
    """``calls.execute`` in a thread of its own, as the engine runs every operation."""
    found: list[CommandResult] = []
    worker = threading.Thread(
        target=lambda: found.append(calls.execute(executor, LOCAL, op, Out(), cancel or Cancel(), 0.0))
    )
    worker.start()
    worker.join(30)
    assert found, "the attempt did not finish"
    return found[0]


def true_from(seconds: float) -> str:
    """A command that fails until ``seconds`` from now, then succeeds."""
    return f"test $(date +%s%N) -ge {time.time_ns() + int(seconds * 1e9)}"


def test_wait_for_probes_until_its_timeout_not_one_interval_before(executor):
    # Probes at 0, 0.6, 1.2 and 1.5 s: the condition turns true at 1.4 s, after the third.
    # Stopping when a whole interval no longer fits (at 1.2 s) missed it.
    result = in_worker(executor, WaitFor(true_from(1.4), timeout=1.5, interval=0.6))
    assert result.ok, result
    assert result.duration >= 1.4


def test_wait_for_that_times_out_says_how_long_it_waited_and_how_often_it_tried(executor, tmp_path):
    started = time.monotonic()
    result = in_worker(executor, WaitFor("echo . >> probes; echo not yet; exit 3", timeout=1.0, interval=0.4))
    took = time.monotonic() - started
    assert result.status == "timeout", result
    said = r"wait_for: still failing after (\d+\.\d)s \((\d+) attempts, last: exit code 3\)"
    found = re.fullmatch(said, result.reason)
    assert found, result.reason
    assert 1.0 <= result.duration <= took and found[1] == f"{result.duration:.1f}"  # the real wait: to the timeout
    probes = (tmp_path / "probes").read_text().split()
    assert int(found[2]) == len(probes) >= 3  # at 0, 0.4, 0.8 and 1.0 s (the last pause: what was left)
    assert result.tail == ("not yet",)


def test_wait_for_stops_at_once_when_the_run_is_stopping(executor):
    cancel = Cancel()
    threading.Timer(0.3, lambda: cancel.raise_to(Cancel.STOP)).start()
    result = in_worker(executor, WaitFor("false", timeout=30, interval=5), cancel)
    assert result.status == "interrupted" and result.duration < 5, result


def kbint(c):
    raise KeyboardInterrupt()


def sysexit(c):
    raise SystemExit(3)


def op_of(fn) -> Call:
    return Call(cmd=f"call {fn.__name__}()", timeout=0, func=fn, function=f"{__name__}.{fn.__name__}")


def test_a_keyboard_interrupt_the_function_raises_fails_the_operation(executor):
    result = in_worker(executor, op_of(kbint))
    assert result.status == "failed" and not result.retryable, result
    assert result.reason == "kbint() raised KeyboardInterrupt"
    assert "raised KeyboardInterrupt itself" in result.hint  # shown under the reason
    assert any("in kbint" in line for line in result.tail)  # where, in the user's code


def test_a_system_exit_the_function_raises_fails_the_operation(executor):
    result = in_worker(executor, op_of(sysexit))
    assert result.status == "failed" and result.reason == "sysexit() raised SystemExit: 3", result


def test_a_keyboard_interrupt_while_the_run_stops_is_the_run_stopping(executor):
    cancel = Cancel()
    cancel.raise_to(Cancel.STOP)
    result = in_worker(executor, op_of(kbint), cancel)
    assert result.status == "interrupted", result


def test_a_keyboard_interrupt_in_the_main_thread_is_not_taken_for_the_function(executor):
    # Python delivers a real Ctrl+C to the main thread only: there it must stop the program.
    with pytest.raises(KeyboardInterrupt):
        calls.execute(executor, LOCAL, op_of(kbint), Out(), Cancel(), 0.0)
