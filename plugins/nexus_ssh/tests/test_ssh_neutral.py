"""What nexus-ssh declares to the core, seen through the real CLI over the sshd bed.

SSH events (declared by the plugin) name the host with its port; identical connection
failures on several hosts share one error block; ``-i`` naming a missing key file stops
before any connection with exit 2.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from nexus_core.testing import NexusProject, Outcome
from nexus_core.testing.sshbed import USER_KEY, SshBed

pytestmark = pytest.mark.ssh

H1 = "127.0.0.2"
REFUSED = ("127.0.0.9", "127.0.0.10")  # loopback addresses no bed sshd listens on


@pytest.fixture
def project(nexus_project: NexusProject, sshbed: SshBed) -> NexusProject:
    """A project that never reads ~/.ssh/config and never prompts."""
    nexus_project.env["NEXUS_SSH_CONFIG"] = ""
    nexus_project.env.pop("SSH_AUTH_SOCK", None)
    return nexus_project


def write(project: NexusProject, bed: SshBed, hosts: list[str]) -> None:
    project.write(
        "from nexus_core import config, run, task\n"
        f"config(ssh_user={USER_KEY!r}, ssh_identity={bed.key_path('ed25519')!r}, "
        f"ssh_known_hosts_file={bed.known_hosts!r}, ssh_port={bed.port!r})\n\n"
        f"@task(on={hosts!r})\n"
        "def deploy():\n"
        '    run("echo hi")\n'
    )


def run(project: NexusProject, *args: str, **kw: Any) -> Outcome:
    return project.run(*args, timeout=60, **kw)


def test_ssh_events_name_the_host_with_its_port(project: NexusProject, sshbed: SshBed) -> None:
    assert sshbed.port != 22
    write(project, sshbed, [H1])
    out = run(project, "run", "deploy", "--format", "json")
    assert out.code == 0, out
    label = f"{H1}:{sshbed.port}"
    for name in (
        "ssh.connect.start",
        "ssh.connect",
        "ssh.pool.checkout",
        "ssh.pool.checkin",
        "ssh.disconnect",
    ):
        found = out.of(name)
        assert found, (name, out)
        assert {(e["host"], e["port"]) for e in found} == {(label, sshbed.port)}, name
    assert list(out.of("ssh.connect")[0]) == ["event", "run_id", "ts", "host", "duration", "auth", "port"]
    assert {e["host"] for e in out.of("command.stop")} == {H1}  # the task's own events keep the label


def test_the_same_connection_error_on_two_hosts_is_reported_once(
    project: NexusProject, sshbed: SshBed
) -> None:
    write(project, sshbed, list(REFUSED))
    out = run(project, "run", "deploy", "--continue-on-error")
    assert out.code == 3, out
    err = out.stderr
    assert err.count("Error: SSH connection failed") == 1, err
    # hosts in the order they failed; the details are the first one's
    head = re.search(r"Error: SSH connection failed \(same error on 2 hosts: (\S+), (\S+)\)\n", err)
    assert head and {head[1], head[2]} == set(REFUSED), err
    assert f"Hosts: {head[1]}, {head[2]}\n" in err
    assert f"Reason: Connection refused ({head[1]} port {sshbed.port})" in err
    assert f"nc -zv {head[1]} {sshbed.port}" in err


def test_identity_naming_a_missing_key_stops_before_connecting(
    project: NexusProject, sshbed: SshBed, tmp_path: Any
) -> None:
    write(project, sshbed, [H1])
    missing = tmp_path / "id_missing"
    out = run(project, "run", "deploy", "-i", str(missing), "--format", "json")
    assert out.code == 2, out
    assert out.of("ssh.connect.start") == [] and out.of("pipeline.start") == []
    problem = out.json()["problems"][0]
    assert problem["message"] == f"--identity: key file {missing} does not exist"
    assert "-i ~/.ssh/id_ed25519" in problem["hint"]
