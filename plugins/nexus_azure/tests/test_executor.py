"""The ``azure`` executor: the core's conformance suite through managed run commands, and
the action Run Command's limits (one script per VM, 4 KB of output, no exit code of its own)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from azurebed import make_arm, standard_vms, vm_env
from nexus_core.plugin import Cancel, Command, ExecutorContext, Host
from nexus_core.testing.conformance import ExecutorConformance

from nexus_azure.executor import AzureExecutor, script_for
from nexus_azure.testing import FakeAzure, FakeVM


@pytest.fixture(scope="module")
def shared_fake(
    certificate: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FakeAzure]:
    """One fake Azure for the module (the conformance cases run many commands)."""
    vms = [*standard_vms(), FakeVM("old-agent", managed=False, private_ips=("10.0.0.20",))]
    env = vm_env(tmp_path_factory.mktemp("vm-home"))
    with FakeAzure(vms, *certificate, script_env=env) as server:
        yield server


def vm_host(server: FakeAzure, name: str) -> Host:
    vm = next(v for v in server.vms if v.name == name)
    return Host(name, transport="azure", facts={"azure_id": vm.id, "location": vm.location})


def executor_for(server: FakeAzure, certificate: tuple[str, str], tmp: Any, **config: Any) -> AzureExecutor:
    arm = make_arm(server, certificate, **config)
    ctx = ExecutorContext(config=arm.config, root=str(tmp), emit=lambda e: None, run_id="t")
    return AzureExecutor(ctx, arm)


class TestAzureExecutorConformance(ExecutorConformance):
    @pytest.fixture
    def make_executor(self, shared_fake: FakeAzure, certificate, tmp_path):  # type: ignore[no-untyped-def]
        made: list[AzureExecutor] = []

        def make() -> AzureExecutor:
            made.append(executor_for(shared_fake, certificate, tmp_path))
            return made[-1]

        yield make
        for executor in made:
            executor.close()

    @pytest.fixture
    def host(self, shared_fake: FakeAzure) -> Host:
        return vm_host(shared_fake, "web-1")


def run(executor: AzureExecutor, host: Host, command: Command | str, timeout: float = 20) -> tuple[Any, list]:
    lines: list[tuple[str, str]] = []
    cmd = Command(command, timeout=timeout) if isinstance(command, str) else command
    result = executor.run(
        host, cmd, lambda s, line: lines.append((s, line)), executor.context.cancel, timeout
    )
    return result, lines


def test_run_commands_are_deleted_after_use(shared_fake: FakeAzure, certificate, tmp_path):  # type: ignore[no-untyped-def]
    ex = executor_for(shared_fake, certificate, tmp_path)
    before = shared_fake.count("DELETE", "/runCommands/")
    result, lines = run(ex, vm_host(shared_fake, "web-2"), "echo hi")
    assert result.ok and lines == [("stdout", "hi")]
    assert shared_fake.count("DELETE", "/runCommands/") == before + 1
    put = [
        b for m, p, b in shared_fake.requests if m == "PUT" and "/virtualMachines/web-2/runCommands/" in p
    ][-1]
    assert put["properties"]["asyncExecution"] is True and put["properties"]["timeoutInSeconds"] == 20


def test_action_run_command_limits(shared_fake: FakeAzure, certificate, tmp_path):  # type: ignore[no-untyped-def]
    ex = executor_for(shared_fake, certificate, tmp_path, azure_run_command="action")
    host = vm_host(shared_fake, "web-2")
    result, lines = run(ex, host, "echo out; echo err >&2; exit 3")
    assert (result.status, result.exit_code) == ("failed", 3), result
    assert lines == [("stdout", "out"), ("stderr", "err")]
    result, lines = run(ex, host, "seq 1 5000")  # ~24 KB: Azure keeps the last 4 KB
    assert result.ok, result
    out = [line for s, line in lines if s == "stdout"]
    assert out[-1] == "5000" and "1" not in out and len(out) < 1000
    assert any("last 4 KB" in line for s, line in lines if s == "stderr")


def test_action_commands_for_one_vm_queue(shared_fake: FakeAzure, certificate, tmp_path):  # type: ignore[no-untyped-def]
    ex = executor_for(shared_fake, certificate, tmp_path, azure_run_command="action")
    host = vm_host(shared_fake, "db-1")
    results: dict[int, Any] = {}

    def one(i: int) -> None:
        results[i] = run(ex, host, f"sleep 0.3; echo {i}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == [0, 1, 2]
    for i, (result, lines) in results.items():
        assert result.ok and lines == [("stdout", str(i))], (result, lines)
    conflicts = [p for m, p, _ in shared_fake.requests if m == "POST" and "db-1/runCommand" in p]
    assert len(conflicts) == 3  # none refused: this run's commands waited for each other


def test_a_vm_refusing_managed_run_commands_falls_back(shared_fake: FakeAzure, certificate, tmp_path):  # type: ignore[no-untyped-def]
    ex = executor_for(shared_fake, certificate, tmp_path)
    host = vm_host(shared_fake, "old-agent")
    result, lines = run(ex, host, "echo fine")
    assert result.ok, result
    assert ("stdout", "fine") in lines
    assert any("refuses managed run commands" in line for _, line in lines)
    result, lines = run(ex, host, "echo again")
    assert result.ok and lines == [("stdout", "again")]  # remembered: no second attempt, no note


def test_a_stopped_vm_is_an_error_not_a_fallback(shared_fake: FakeAzure, certificate, tmp_path):  # type: ignore[no-untyped-def]
    ex = executor_for(shared_fake, certificate, tmp_path)
    result, _ = run(ex, vm_host(shared_fake, "web-old"), "echo no")
    assert result.status == "error" and "deallocated" in result.reason, result


def test_a_host_without_facts_is_found_by_name(shared_fake: FakeAzure, certificate, tmp_path):  # type: ignore[no-untyped-def]
    ex = executor_for(shared_fake, certificate, tmp_path, azure_graph_lag=0)
    result, lines = run(ex, Host("db-1", transport="azure"), "echo by-name")
    assert result.ok and lines == [("stdout", "by-name")], result
    result, _ = run(ex, Host("nope", transport="azure"), "echo x")
    assert result.status == "error" and "no VM named 'nope'" in result.reason


def test_the_action_script_reports_its_exit_code_last():
    script = script_for(Command("exit 4", timeout=9), action=True)
    assert "timeout -s KILL 9" in script and script.rstrip().endswith('"$nexus_rc"')


def test_cancel_before_start(shared_fake: FakeAzure, certificate, tmp_path):  # type: ignore[no-untyped-def]
    ex = executor_for(shared_fake, certificate, tmp_path)
    ex.context.cancel.raise_to(Cancel.INTERRUPT)
    result, _ = run(ex, vm_host(shared_fake, "web-1"), "echo x")
    assert result.status == "interrupted"


def test_windows_vms_are_refused_with_the_fix(shared_fake: FakeAzure, certificate, tmp_path):  # type: ignore[no-untyped-def]
    ex = executor_for(shared_fake, certificate, tmp_path)
    vm = next(v for v in shared_fake.vms if v.name == "win-1")
    host = Host("win-1", transport="azure", facts={"azure_id": vm.id, "os": "windows"})
    result, _ = run(ex, host, "echo x")
    assert result.status == "error" and "Windows VM" in result.reason and 'os="linux"' in result.hint
