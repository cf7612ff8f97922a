"""``connection="bastion"``: an ``az network bastion tunnel`` per VM (a fake ``az`` relaying to
the real sshd of the SSH bed), commands run through it, tunnels stopped at the end."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from azurebed import write_fake_az
from nexus_core.testing import NexusProject
from nexus_core.testing.sshbed import USER_KEY, SshBed, shared_bed

from nexus_azure.testing import FakeAzure

BASTION = "/subscriptions/sub-1/resourceGroups/rg-net/providers/Microsoft.Network/bastionHosts/bas-1"


@pytest.fixture(scope="session")
def sshbed() -> SshBed:
    """The shared real-sshd bed (nexus_core.testing.sshbed)."""
    if os.geteuid() != 0:
        pytest.skip("the SSH test bed needs root (creates users, runs sshd)")
    return shared_bed(3)


@pytest.fixture
def project(nexus_project: NexusProject, fake: FakeAzure, sshbed: SshBed, certificate, tmp_path: Path):  # type: ignore[no-untyped-def]
    write_fake_az(tmp_path / "azbin")
    bed = sshbed.host(0)
    nexus_project.env.update(
        {
            "PATH": f"{tmp_path / 'azbin'}:{os.environ.get('PATH', '')}",
            "REQUESTS_CA_BUNDLE": certificate[0],
            "FAKE_BASTION_TARGET": f"{bed.address}:{bed.port}",
            "FAKE_AZ_LOG": str(tmp_path / "az.log"),
            "NEXUS_SSH_CONFIG": "",
        }
    )
    nexus_project.env.pop("SSH_AUTH_SOCK", None)
    cfg = {
        "azure_subscription": "sub-1",
        "azure_arm_endpoint": fake.endpoint,
        "azure_auth": "cli",
        "azure_bastion": BASTION,
        "ssh_user": USER_KEY,
        "ssh_identity": sshbed.key_path("ed25519"),
        "ssh_known_hosts_file": str(tmp_path / "known_hosts"),
        "ssh_host_key_verification": "accept_new",
    }
    args = ", ".join(f"{k}={v!r}" for k, v in cfg.items())
    nexus_project.write(
        "from nexus_core import config, discover, hosts, run, task\n"
        f"config({args})\n"
        'hosts("web", discover("azure", name=r"^web-[12]$", connection="bastion"))\n'
        "@task(on='web')\n"
        "def hello():\n"
        "    run('echo through-the-bastion as $(id -un)')\n"
    )
    return nexus_project


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")


@pytest.mark.ssh
def test_commands_run_through_a_bastion_tunnel_per_host(project: NexusProject, tmp_path: Path) -> None:
    out = project.run("run", "hello", "--format", "json")
    assert out.code == 0, out
    lines = [e["line"] for e in out.of("command.output")]
    assert lines == [f"through-the-bastion as {USER_KEY}"] * 2, out  # the bed's sshd ran it
    started = [line.split(" ", 1) for line in (tmp_path / "az.log").read_text().splitlines()]
    assert len(started) == 2
    for _pid, args in started:
        assert args.startswith(
            "network bastion tunnel --name bas-1 --resource-group rg-net --target-resource-id "
        )
        assert "/virtualMachines/web-" in args and "--resource-port 22 --port " in args
    for pid, _ in started:  # stopped when the run ended (bounded wait)
        for _ in range(50):
            if not _alive(int(pid)):
                break
            time.sleep(0.1)
        assert not _alive(int(pid)), f"tunnel {pid} still running"


def test_a_tunnel_that_cannot_start_says_why(project: NexusProject) -> None:
    project.env["FAKE_BASTION_FAIL"] = (
        "ERROR: Bastion Host SKU must be Standard and Native Client must be enabled."
    )
    out = project.run("hosts", "list")
    assert out.code == 3, out
    text = out.stdout + out.stderr
    assert "the bastion tunnel to web-" in text and "did not start" in text, out
    assert "az: ERROR: Bastion Host SKU must be Standard" in text and "Traceback" not in text, out
