"""VM Scale Sets: instances discovered, run on (managed and action Run Command), deleted, scaled."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from azurebed import make_arm, vm_env
from nexus_core.plugin import Command, ExecutorContext, Host

from nexus_azure import vmss
from nexus_azure.arm import COMPUTE_API
from nexus_azure.discovery import Filters, find
from nexus_azure.errors import AzureError
from nexus_azure.executor import AzureExecutor
from nexus_azure.source import facts_of
from nexus_azure.testing import FakeAzure, FakeVM


@pytest.fixture
def scale_set(certificate: tuple[str, str], tmp_path: Path) -> Iterator[FakeAzure]:
    vms = [
        FakeVM(
            f"ss-web_{i}",
            scale_set="ss-web",
            instance_id=str(i),
            private_ips=(f"10.1.0.{i + 4}",),
            tags={"env": "prod"},
            managed=i != 2,
        )
        for i in range(3)
    ]
    vms.append(FakeVM("web-1"))
    with FakeAzure(vms, *certificate, script_env=vm_env(tmp_path / "home")) as server:
        yield server


def test_instances_are_discovered_with_their_scale_set(scale_set: FakeAzure, certificate):  # type: ignore[no-untyped-def]
    arm = make_arm(scale_set, certificate)
    found = find(arm, arm.config, Filters.parse({"scale_set": "ss-web", "resource_group": "rg-app"}), 30)
    assert [v.name for v in found] == ["ss-web_0", "ss-web_1", "ss-web_2"]
    facts = facts_of(found[1])
    assert (facts["scale_set"], facts["instance_id"], facts["power_state"]) == ("ss-web", "1", "running")
    assert facts["azure_id"].endswith("/virtualMachineScaleSets/ss-web/virtualMachines/1")
    # a plain discovery lists standalone VMs only
    assert [v.name for v in find(arm, arm.config, Filters(), 30)] == ["web-1"]


def test_commands_run_on_instances(scale_set: FakeAzure, certificate, tmp_path):  # type: ignore[no-untyped-def]
    arm = make_arm(scale_set, certificate)
    ex = AzureExecutor(
        ExecutorContext(config=arm.config, root=str(tmp_path), emit=lambda e: None, run_id="t"), arm
    )
    found = find(arm, arm.config, Filters.parse({"scale_set": "ss-web", "resource_group": "rg-app"}), 30)
    for vm in found:
        host = Host(vm.name, transport="azure", facts=facts_of(vm))
        lines: list[tuple[str, str]] = []
        result = ex.run(
            host,
            Command("echo on $0; exit 5", timeout=20),
            lambda s, x, got=lines: got.append((s, x)),
            ex.context.cancel,
            20,
        )
        assert (result.status, result.exit_code) == ("failed", 5), (vm.name, result, lines)
    assert scale_set.count("PUT", "/virtualMachineScaleSets/ss-web/virtualMachines/0/runCommands/") == 1
    # instance 2 refuses managed run commands: the action API of scale set instances
    assert scale_set.count("POST", "/virtualMachineScaleSets/ss-web/virtualMachines/2/runCommand") == 1


def test_delete_instances_and_scale(scale_set: FakeAzure, certificate):  # type: ignore[no-untyped-def]
    arm = make_arm(scale_set, certificate)
    assert vmss.capacity(arm.config, "rg-app", "ss-web", arm=arm) == 3
    vmss.delete_instances(arm.config, "rg-app", "ss-web", ["1"], arm=arm)
    assert [v.instance_id for v in vmss.instances(arm.config, "rg-app", "ss-web", arm=arm)] == ["0", "2"]
    assert scale_set.deleted[-1].endswith("/virtualMachines/1")
    assert vmss.scale_vmss(arm.config, "rg-app", "ss-web", 4, arm=arm) == 4
    assert len(vmss.instances(arm.config, "rg-app", "ss-web", arm=arm)) == 4
    assert vmss.capacity(arm.config, "rg-app", "ss-web", arm=arm) == 4
    with pytest.raises(AzureError, match="whole number"):
        vmss.scale_vmss(arm.config, "rg-app", "ss-web", -1, arm=arm)
    with pytest.raises(AzureError, match="not found") as info:
        vmss.scale_vmss(arm.config, "rg-app", "nope", 2, arm=arm)
    assert info.value.exit_code == 2
    assert scale_set.api_versions["compute"] == {COMPUTE_API}  # the pinned version, polls included
