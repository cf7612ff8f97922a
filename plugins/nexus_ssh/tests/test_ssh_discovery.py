"""Discovered hosts over real SSH: an inventory file and ``discover("ssh_config")`` against the sshd bed."""

from __future__ import annotations

from pathlib import Path

import pytest
from nexus_core.testing import NexusProject
from nexus_core.testing.sshbed import USER_KEY, SshBed

from nexus_ssh.sources import host_aliases

pytestmark = pytest.mark.ssh

H1, H2, H3 = "127.0.0.2", "127.0.0.3", "127.0.0.4"


@pytest.fixture
def project(nexus_project: NexusProject, sshbed: SshBed) -> NexusProject:
    """A project that never reads ~/.ssh/config and never prompts."""
    nexus_project.env["NEXUS_SSH_CONFIG"] = ""
    nexus_project.env.pop("SSH_AUTH_SOCK", None)
    return nexus_project


def config_line(bed: SshBed) -> str:
    return f"config(ssh_identity={bed.key_path('ed25519')!r}, ssh_known_hosts_file={bed.known_hosts!r})\n"


def test_an_inventory_file_targets_the_bed_over_ssh(project: NexusProject, sshbed: SshBed) -> None:
    project.write(
        f"""
        user = "{USER_KEY}"
        port = {sshbed.port}

        [groups.web]
        hosts = ["{H1}", "{H2}"]
        vars = {{ greeting = "hello" }}

        [groups.db]
        hosts = ["{H3}"]
        tags = ["primary"]
        """,
        "inventory.toml",
    )
    project.write(
        "from nexus_core import config, host_var, hostname, inventory, run, task\n"
        + config_line(sshbed)
        + 'inventory("inventory.toml")\n\n'
        + '@task(on="web")\ndef greet():\n'
        + "    run(f\"echo {host_var('greeting')} from $(id -un) on \" + hostname())\n\n"
        + '@task(on="db")\ndef check():\n    run("echo db")\n'
    )
    out = project.run("run", "greet", "--format", "json", timeout=60)
    assert out.code == 0, out
    lines = sorted(e["line"] for e in out.of("command.output"))
    assert lines == [f"hello from {USER_KEY} on {H1}", f"hello from {USER_KEY} on {H2}"]
    only = project.run("run", "greet", "check", "-H", "tag:primary", "--format", "json", timeout=60)
    assert only.code == 0, only
    assert [e["host"] for e in only.of("command.output")] == [f"{H3}:{sshbed.port}"]


def test_ssh_config_hosts_are_discovered_and_reached_through_their_aliases(
    project: NexusProject, sshbed: SshBed
) -> None:
    ssh_config = project.write(
        f"""
        Host web-a
            HostName {H1}
            Port {sshbed.port}
            User {USER_KEY}
        Host web-b db-x
            HostName {H2}
            Port {sshbed.port}
            User {USER_KEY}
        Host *.internal !skip
            User nobody
        """,
        "ssh_config",
    )
    project.write(
        "from nexus_core import config, current_host, discover, hosts, run, task\n"
        + config_line(sshbed)
        + f'hosts("web", discover("ssh_config", pattern="web-*", file={str(ssh_config)!r}))\n\n'
        + '@task(on="web")\ndef where():\n'
        + '    run("echo " + current_host().facts["hostname"] + " $(id -un)")\n'
    )
    env = {"NEXUS_SSH_CONFIG": str(ssh_config)}
    out = project.run("run", "where", "--format", "json", env=env, timeout=60)
    assert out.code == 0, out
    assert sorted((e["host"], e["line"]) for e in out.of("command.output")) == [
        ("web-a", f"{H1} {USER_KEY}"),
        ("web-b", f"{H2} {USER_KEY}"),
    ]
    listed = project.run("hosts", "list", "--format", "json", env=env)
    assert [h["name"] for h in listed.json()["groups"][0]["hosts"]] == ["web-a", "web-b"]
    typo = project.run("validate", "--format", "json", env=env)
    assert typo.code == 0, typo


def test_ssh_config_filter_typo_gets_a_did_you_mean(project: NexusProject, sshbed: SshBed) -> None:
    project.write(
        "from nexus_core import discover, hosts, run, task\n"
        'hosts("web", discover("ssh_config", patern="web-*"))\n\n'
        '@task(on="web")\ndef t():\n    run("true")\n'
    )
    out = project.run("validate", "--format", "json")
    assert out.code == 2, out
    [problem] = out.json()["problems"]
    assert "has no filter 'patern'" in problem["message"] and problem["hint"] == "did you mean 'pattern'?"


def test_ssh_config_reads_the_users_own_config_by_default(
    nexus_project: NexusProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``discover("ssh_config", pattern="web-*")`` as the issue writes it: ``~/.ssh/config``."""
    monkeypatch.delenv("NEXUS_SSH_CONFIG", raising=False)
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text(
        "Host web-a\n  HostName 192.0.2.1\n  User deploy\n  Port 2222\n"
        "Host web-b db-1\n  HostName 192.0.2.2\n"
    )
    nexus_project.write(
        "from nexus_core import discover, hosts, run, task\n"
        'hosts("web", discover("ssh_config", pattern="web-*"))\n\n'
        '@task(on="web")\ndef t():\n    run("true")\n'
    )
    out = nexus_project.run("hosts", "list", "--format", "json", env={"HOME": str(home)})
    assert out.code == 0, out
    rows = {h["name"]: h for h in out.json()["groups"][0]["hosts"]}
    assert list(rows) == ["web-a", "web-b"]
    assert (
        rows["web-a"]["facts"]["hostname"] == "192.0.2.1" and rows["web-a"]["facts"]["ssh_user"] == "deploy"
    )
    assert (
        rows["web-a"]["facts"]["ssh_port"] == 2222
        and rows["web-a"]["source"] == "discover('ssh_config', pattern='web-*')"
    )


def test_host_aliases_skip_patterns_and_keep_file_order() -> None:
    text = "Host b a\n  User x\nHost *.lan !c d?\nhost = e\nMatch host f\n"
    assert host_aliases(text) == ["b", "a", "e"]
