"""Executor capabilities: declared as data, and respected by the engine."""

from __future__ import annotations

import threading
from pathlib import Path

from nexus_core import events as ev
from nexus_core.api import Cancel, Capabilities, CommandResult, Executor, OutputCallback, unsupported_files
from nexus_core.engine import Engine, RunOptions
from nexus_core.executors.local import LocalExecutor
from nexus_core.loader import load_project
from nexus_core.model import Command, Host
from nexus_core.plan import build_plan
from nexus_core.plugins import builtin_registry

NEXUSFILE = """
from nexus_core import run, task

@task
def a():
    run("sleep 0.2")

@task
def b():
    run("sleep 0.2")

@task
def c():
    run("sleep 0.2")
"""


class _Counting(LocalExecutor):
    """The local executor, declaring one command at a time per host and counting overlaps."""

    capabilities = Capabilities(commands_per_host=1)
    lock = threading.Lock()
    running = 0
    most = 0

    def run(
        self, host: Host, command: Command, on_output: OutputCallback, cancel: Cancel, timeout: float
    ) -> CommandResult:
        cls = type(self)
        with cls.lock:
            cls.running += 1
            cls.most = max(cls.most, cls.running)
        try:
            return super().run(host, command, on_output, cancel, timeout)
        finally:
            with cls.lock:
                cls.running -= 1


def _run(tmp_path: Path, executor: type[Executor]) -> int:
    (tmp_path / "nexusfile.py").write_text(NEXUSFILE, encoding="utf-8")
    registry = builtin_registry()
    registry.executors["local"] = executor
    plan = build_plan(load_project(str(tmp_path / "nexusfile.py")), registry)
    options = RunOptions(parallel_limit=3, markers=False)
    result = Engine(plan, registry, ev.EventBus(options.run_id), options).run()
    return len(result.names("ok"))


def test_defaults_match_the_local_executor() -> None:
    caps = Capabilities()
    assert caps.commands_per_host is None and caps.streams_output and not caps.file_transfer
    # stdin (secret(..., to=...)) and connection (call(fn)) are opt-in
    assert not caps.stdin and not caps.connection
    # it copies files on this machine, writes a command's stdin, and call(fn) gets a local connection
    assert LocalExecutor.capabilities == Capabilities(file_transfer=True, stdin=True, connection=True)
    assert Executor.capabilities == caps
    assert all(caps.can_cancel(level) for level in (Cancel.STOP, Cancel.INTERRUPT, Cancel.TERMINATE, Cancel.KILL))
    assert not Capabilities(cancel_levels=frozenset({Cancel.KILL})).can_cancel(Cancel.INTERRUPT)


def test_engine_runs_no_more_commands_per_host_than_declared(tmp_path: Path) -> None:
    _Counting.most = 0
    assert _run(tmp_path, _Counting) == 3  # three independent tasks on the one local host
    assert _Counting.most == 1


def test_without_a_declared_limit_tasks_share_the_host(tmp_path: Path) -> None:
    # Each task holds its command until the other two have started: only concurrent runs pass.
    barrier = threading.Barrier(3, timeout=20)

    class Meeting(LocalExecutor):
        def run(
            self, host: Host, command: Command, on_output: OutputCallback, cancel: Cancel, timeout: float
        ) -> CommandResult:
            barrier.wait()
            return super().run(host, command, on_output, cancel, timeout)

    assert _run(tmp_path, Meeting) == 3


def test_file_operations_are_refused_by_name_on_an_executor_without_file_transfer() -> None:
    class Runner(LocalExecutor):
        name = "runner"
        capabilities = Capabilities()

    message = unsupported_files(Runner)
    assert message is not None
    assert "'runner' transport cannot copy files" in message and "ssh" in message

    class Copier(LocalExecutor):
        name = "copier"
        capabilities = Capabilities(file_transfer=True)

    assert unsupported_files(Copier) is None
