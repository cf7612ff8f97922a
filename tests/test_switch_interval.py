"""A run with many hosts at once raises the interpreter's switch interval, and gives it back."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from nexus_core import events as ev
from nexus_core.api import Cancel, CommandResult, Executor, OutputCallback
from nexus_core.engine import (
    BUSY_SWITCH_INTERVAL,
    MANY_HOSTS,
    MAX_SWITCH_INTERVAL,
    Engine,
    RunOptions,
    busy_switch_interval,
    switch_interval_for,
)
from nexus_core.loader import load_project
from nexus_core.model import Command, Host
from nexus_core.plan import build_plan
from nexus_core.plugins import builtin_registry


class _Probe(Executor):
    """Runs nothing: notes the switch interval each command saw."""

    seen: list[float] = []
    lock = threading.Lock()

    def run(
        self, host: Host, command: Command, on_output: OutputCallback, cancel: Cancel, timeout: float
    ) -> CommandResult:
        with self.lock:
            self.seen.append(sys.getswitchinterval())
        return CommandResult("ok", 0)


def _run(tmp_path: Path, n_hosts: int, forks: int) -> list[float]:
    names = ", ".join(f'"probe://h{i}"' for i in range(n_hosts))
    (tmp_path / "nexusfile.py").write_text(
        f"from nexus_core import hosts, run, task\n\nhosts('many', {names})\n\n"
        "@task(on='many')\ndef t():\n    run('true')\n",
        encoding="utf-8",
    )
    registry = builtin_registry()
    registry.executors["probe"] = _Probe
    plan = build_plan(load_project(str(tmp_path / "nexusfile.py")), registry)
    options = RunOptions(parallel_limit=forks, forks=forks, markers=False)
    _Probe.seen = []
    result = Engine(plan, registry, ev.EventBus(options.run_id), options).run()
    assert result.status == "ok", result
    return list(_Probe.seen)


def test_a_run_of_many_hosts_at_once_raises_the_switch_interval_and_restores_it(tmp_path: Path) -> None:
    before = sys.getswitchinterval()
    seen = _run(tmp_path, MANY_HOSTS, forks=MANY_HOSTS)
    assert len(seen) == MANY_HOSTS
    assert seen == [pytest.approx(BUSY_SWITCH_INTERVAL)] * MANY_HOSTS
    assert sys.getswitchinterval() == before


def test_few_hosts_at_once_leave_the_switch_interval_alone(tmp_path: Path) -> None:
    before = sys.getswitchinterval()
    # Many hosts, but forks keeps them to a few at once.
    seen = _run(tmp_path, MANY_HOSTS, forks=4)
    assert set(seen) == {before}
    assert sys.getswitchinterval() == before


def test_the_interval_grows_with_the_hosts_at_once_up_to_a_bound() -> None:
    assert switch_interval_for(MANY_HOSTS - 1) == 0.0
    assert switch_interval_for(MANY_HOSTS) == BUSY_SWITCH_INTERVAL
    assert switch_interval_for(200) == BUSY_SWITCH_INTERVAL
    assert switch_interval_for(1000) == pytest.approx(0.25, abs=1e-4)
    assert switch_interval_for(100_000) == MAX_SWITCH_INTERVAL


def test_a_value_changed_during_the_run_is_kept() -> None:
    before = sys.getswitchinterval()
    try:
        with busy_switch_interval(MANY_HOSTS):
            assert sys.getswitchinterval() == pytest.approx(BUSY_SWITCH_INTERVAL)
            sys.setswitchinterval(0.2)  # someone else's choice: not undone
        assert sys.getswitchinterval() == pytest.approx(0.2, abs=1e-4)
        with busy_switch_interval(MANY_HOSTS):  # already at least as long: unchanged
            assert sys.getswitchinterval() == pytest.approx(0.2, abs=1e-4)
        assert sys.getswitchinterval() == pytest.approx(0.2, abs=1e-4)
        with busy_switch_interval(1000):  # longer than 0.2 s for 1,000 hosts at once
            assert sys.getswitchinterval() == pytest.approx(0.25, abs=1e-4)
        assert sys.getswitchinterval() == pytest.approx(0.2, abs=1e-4)
    finally:
        sys.setswitchinterval(before)
