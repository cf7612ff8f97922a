"""``cloud("azure-vmss", ...)``: scale set capacity through the real ``nexus cloud`` commands."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from azurebed import vm_env, write_fake_az
from nexus_core.testing import NexusProject
from nexus_core.testing.servers import agent_ca as make_agent_ca

from nexus_azure.testing import FakeAzure, FakeVM


@pytest.fixture
def scale_set(certificate: tuple[str, str], tmp_path: Path):  # type: ignore[no-untyped-def]
    vms = [
        FakeVM(f"ss-web_{i}", scale_set="ss-web", instance_id=str(i), tags={"env": "prod"}) for i in range(2)
    ]
    with FakeAzure(vms, *certificate, script_env=vm_env(tmp_path / "home")) as server:
        yield server


@pytest.fixture(scope="session")
def agent_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cluster CA (``nexus agent init``): the core issues a certificate per new instance."""
    return make_agent_ca(tmp_path_factory.mktemp("agent-ca"))


def declare(  # type: ignore[no-untyped-def]
    project: NexusProject,
    fake: FakeAzure,
    tmp_path: Path,
    certificate,
    agent_ca: Path,
    extra: str = "",
    scale_set: str = "ss-web",
) -> None:
    write_fake_az(tmp_path / "azbin")
    project.env["NEXUS_AGENT_DIR"] = str(agent_ca)
    project.env["NEXUS_CLUSTER"] = "tls://127.0.0.1:9"  # nothing listens: the cluster's view answers at once
    project.env["PATH"] = f"{tmp_path / 'azbin'}:{os.environ.get('PATH', '')}"
    project.env["REQUESTS_CA_BUNDLE"] = certificate[0]
    project.write(
        "from nexus_core import cloud, config\n"
        f'config(azure_subscription="sub-1", azure_arm_endpoint={fake.endpoint!r}, azure_auth="cli",'
        " azure_poll_interval=0.05)\n"
        f'cloud("azure-vmss", resource_group="rg-app", scale_set={scale_set!r}{extra})\n'
    )


def test_scale_status_and_terminate_through_the_cli(  # type: ignore[no-untyped-def]
    nexus_project: NexusProject, scale_set: FakeAzure, tmp_path: Path, certificate, agent_ca
) -> None:
    declare(nexus_project, scale_set, tmp_path, certificate, agent_ca, ", price=0.05")
    out = nexus_project.run("cloud", "scale", "azure-vmss=4")
    assert out.code == 0 and "azure-vmss: 2 -> 4" in out.stdout, out
    assert scale_set.capacity["rg-app/ss-web"] == 4
    status = nexus_project.run("cloud", "status", "--format", "json")
    assert status.code == 0, status
    rows = json.loads(status.stdout)["instances"]
    assert sorted(r["id"] for r in rows) == ["0", "1", "2", "3"]
    assert {r["hourly_price"] for r in rows} == {0.05}  # Azure reports none: the declared price
    out = nexus_project.run("cloud", "scale", "azure-vmss=1")
    assert out.code == 0, out
    assert scale_set.capacity["rg-app/ss-web"] == 1 and len(scale_set.deleted) == 3
    assert nexus_project.run("cloud", "terminate", "--all").code == 0
    assert scale_set.capacity["rg-app/ss-web"] == 0


def test_instances_are_named_as_the_agents_on_them_are(  # type: ignore[no-untyped-def]
    nexus_project: NexusProject, scale_set: FakeAzure, tmp_path: Path, certificate, agent_ca
) -> None:
    """`nexus agent start` in the model's custom data names the agent after the host (Azure's
    computer name), so that is the name a run waits for and the autoscaler idles."""
    declare(nexus_project, scale_set, tmp_path, certificate, agent_ca, ", price=0.05")
    out = nexus_project.run("cloud", "scale", "azure-vmss=3")
    assert out.code == 0 and "started ss-web000002" in out.stdout, out
    rows = json.loads(nexus_project.run("cloud", "status", "--format", "json").stdout)["instances"]
    assert sorted(r["name"] for r in rows) == ["ss-web000000", "ss-web000001", "ss-web000002"]
    out = nexus_project.run("cloud", "terminate", "ss-web000001")
    assert out.code == 0 and scale_set.capacity["rg-app/ss-web"] == 2, out


def test_a_missing_scale_set_is_a_clear_error(  # type: ignore[no-untyped-def]
    nexus_project: NexusProject, scale_set: FakeAzure, tmp_path: Path, certificate, agent_ca
) -> None:
    declare(nexus_project, scale_set, tmp_path, certificate, agent_ca, scale_set="nope")
    out = nexus_project.run("cloud", "scale", "azure-vmss=1")
    assert out.code == 2 and "not found" in out.stderr and "Traceback" not in out.stderr, out
