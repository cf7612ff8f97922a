"""``nexus exec`` on the real-sshd bed through the real CLI: groups from a nexusfile, patterns without
one, folded output, failing and refused hosts, sudo, JSON."""

from __future__ import annotations

from typing import Any

import pytest
from nexus_core.testing import NexusProject, Outcome
from nexus_core.testing.sshbed import USER_KEY, SshBed
from test_ssh_cli import H1, H2, H3, REFUSED, header

pytestmark = [pytest.mark.ssh, pytest.mark.session_mode]  # session_mode: run again in exec mode (dev.py)

GROUPS = """
hosts("web", "{h1}", "{h2}")
hosts("db", "{h3}")
hosts("all", groups=["web", "db"])

@task
def build():
    run("true")
"""


@pytest.fixture
def project(nexus_project: NexusProject, sshbed: SshBed) -> NexusProject:
    """A project that never reads ~/.ssh/config and never prompts."""
    nexus_project.env["NEXUS_SSH_CONFIG"] = ""
    nexus_project.env.pop("SSH_AUTH_SOCK", None)
    return nexus_project


def grouped(project: NexusProject, bed: SshBed, **config: Any) -> None:
    project.write(header(bed, **config) + GROUPS.format(h1=H1, h2=H2, h3=H3))


def ex(project: NexusProject, *args: str, **kw: Any) -> Outcome:
    return project.run("exec", *args, timeout=60, **kw)


def test_group_from_the_nexusfile_with_identical_output_folded(project: NexusProject, sshbed: SshBed):
    grouped(project, sshbed)
    out = ex(project, "web", "--", "echo", "hello;", "whoami")
    assert out.code == 0, out
    assert out.stdout.splitlines() == [f"{H1}, {H2} (2 hosts) | rc=0 >>", "hello", USER_KEY]


def test_different_outputs_are_shown_per_host_in_target_order(project: NexusProject, sshbed: SshBed):
    grouped(project, sshbed)
    out = ex(project, "all", "--", "hostname -I 2>/dev/null; echo $SSH_CONNECTION | cut -d' ' -f3")
    assert out.code == 0, out
    headers = [line for line in out.stdout.splitlines() if ">>" in line]
    assert headers == [f"{h} | rc=0 >>" for h in (H1, H2, H3)], out


def test_pattern_without_a_nexusfile_with_user_identity_and_known_hosts_from_env(
    project: NexusProject, sshbed: SshBed
):
    assert not project.nexusfile.exists()
    env = {"NEXUS_SSH_KNOWN_HOSTS_FILE": sshbed.known_hosts}
    target = f"{H1}:{sshbed.port},{USER_KEY}@{H2}:{sshbed.port}"
    out = ex(project, target, "-u", USER_KEY, "-i", sshbed.key_path("ed25519"), "--", "id -un", env=env)
    assert out.code == 0, out
    assert out.stdout.splitlines() == [
        f"{H1}:{sshbed.port}, {H2}:{sshbed.port} (2 hosts) | rc=0 >>",
        USER_KEY,
    ]


def test_known_hosts_from_the_user_config_file(project: NexusProject, sshbed: SshBed):
    config = project.root.parent / ".xdg" / "config" / "nexus" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        f'ssh_known_hosts_file = "{sshbed.known_hosts}"\nssh_port = {sshbed.port}\nssh_user = "{USER_KEY}"\n'
        f'ssh_identity = "{sshbed.key_path("ed25519")}"\n'
    )
    out = ex(project, H3, "--", "echo", "ok")
    assert out.code == 0, out
    assert out.stdout.splitlines() == [f"{H3} | rc=0 >>", "ok"]


def test_a_failing_host_exits_1_and_the_others_are_still_shown(project: NexusProject, sshbed: SshBed):
    grouped(project, sshbed)
    script = f"echo hi; test \"$(echo $SSH_CONNECTION | cut -d' ' -f3)\" != {H2}"
    out = ex(project, "web", "--", script)
    assert out.code == 1, out
    lines = out.stdout.splitlines()
    assert f"{H1} | rc=0 >>" in lines and f"{H2} | FAILED | rc=1 >>" in lines, out
    assert lines.count("hi") == 2


def test_a_refused_host_exits_3_and_the_others_are_still_shown(project: NexusProject, sshbed: SshBed):
    grouped(project, sshbed)
    out = ex(project, f"web,{REFUSED}", "--", "echo", "up")
    assert out.code == 3, out
    lines = out.stdout.splitlines()
    assert lines[:2] == [f"{H1}, {H2} (2 hosts) | rc=0 >>", "up"], out
    assert f"{REFUSED} | UNREACHABLE >>" in lines
    assert "refused" in out.stdout.lower()


def test_sudo_runs_as_root(project: NexusProject, sshbed: SshBed):
    grouped(project, sshbed)
    out = ex(project, "db", "--sudo", "--", "id -u")
    assert out.code == 0, out
    assert out.stdout.splitlines() == [f"{H3} | rc=0 >>", "0"]


def test_json_one_object_per_host_with_status_and_output(project: NexusProject, sshbed: SshBed):
    grouped(project, sshbed)
    out = ex(project, f"all,!db,{REFUSED}", "-p", "1", "--format", "json", "--", "echo hello")
    assert out.code == 3, out
    hosts = {e["host"]: e for e in out.of("exec.host")}
    assert list(hosts) == [H1, H2, REFUSED]
    assert hosts[H1]["status"] == hosts[H2]["status"] == "ok"
    assert hosts[H1]["stdout"] == "hello\n" and hosts[H1]["exit_code"] == 0
    assert hosts[REFUSED]["status"] == "unreachable" and hosts[REFUSED]["reason"]
    (summary,) = out.of("exec.summary")
    assert summary["exit_code"] == 3 and summary["counts"] == {"ok": 2, "unreachable": 1}


def test_c_points_at_a_nexusfile_elsewhere(project: NexusProject, sshbed: SshBed):
    grouped(project, sshbed)
    elsewhere = project.root.parent
    out = project.run(
        "exec", "-c", str(project.nexusfile), "db", "--", "echo", "there", timeout=60, cwd=elsewhere
    )
    assert out.code == 0, out
    assert out.stdout.splitlines() == [f"{H3} | rc=0 >>", "there"]


def test_hosts_refused_alike_are_one_group_though_each_reason_names_its_address(
    project: NexusProject, sshbed: SshBed
):
    grouped(project, sshbed)
    refused = [f"127.0.0.{i}:{sshbed.port}" for i in (30, 31, 32)]  # nothing listens there
    out = ex(project, ",".join(refused), "--", "true")
    assert out.code == 3, out
    lines = out.stdout.splitlines()
    assert lines[0] == f"{', '.join(refused)} (3 hosts) | UNREACHABLE >>", out
    assert lines[1].startswith(f"Connection refused (<host> port {sshbed.port})") and len(lines) == 2, out


@pytest.mark.parametrize("verbose", [False, True])
def test_interrupted_hosts_are_one_group_and_their_escapes_stay_inert(
    project: NexusProject, sshbed: SshBed, verbose: bool
):
    """Each host's reason names its own remote process group (``interrupted (SIGINT); remote
    process group 340 sent SIGINT``); the output's escapes are shown, never obeyed."""
    import re
    import signal

    from tests.helpers import start_nexus, stopped, wait_for

    grouped(project, sshbed)
    nasty = "printf 'a\\033]0;pwned\\007\\033[2Jb\\n'; sleep 41.5"
    proc = start_nexus(
        project, "exec", *(["-v"] if verbose else []), "all", "--", nasty, env={"FORCE_COLOR": "1"}
    )
    with stopped(proc):
        assert wait_for(lambda: len(sshbed.processes_matching(USER_KEY, "sleep 41.5")) >= 3, timeout=30)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    plain = re.sub(r"\x1b\[[0-9;]*m", "", stdout)
    headers = [line for line in plain.splitlines() if "INTERRUPTED" in line]
    assert headers == [f"{H1}, {H2}, {H3} (3 hosts) | INTERRUPTED" + ("" if verbose else " >>")], stdout
    assert "a^[]0;pwned^G^[[2Jb" in plain, stdout
    assert not re.search(r"\x1b(?!\[[0-9;]*m)|\x07|\x9b", stdout + stderr), repr(stdout + stderr)


def test_hosts_with_unknown_keys_are_one_group(project: NexusProject, sshbed: SshBed, tmp_path: Any):
    """``Host key not known for [ADDRESS]:PORT (KIND SHA256:...)``: one group, the address generic."""
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    grouped(project, sshbed, ssh_known_hosts_file=str(empty), ssh_host_key_verification="strict")
    out = ex(project, "all", "--", "true")
    assert out.code == 3, out
    lines = out.stdout.splitlines()
    assert lines[0] == f"{H1}, {H2}, {H3} (3 hosts) | UNREACHABLE >>" and len(lines) == 2, out
    assert lines[1].startswith(f"Host key not known for [<host>]:{sshbed.port} ("), out


def test_retried_connections_are_warnings_as_in_nexus_run(project: NexusProject, sshbed: SshBed):
    """A server that drops the handshake (sshd's ``Exceeded MaxStartups``): each retry is a
    warning on stderr (with --format json: a ``log`` object, as ``nexus run`` prints)."""
    from test_ssh_pacing import fake_server

    with fake_server(["127.0.0.213"], "drop") as server:
        project.write(header(sshbed, ssh_port=server.port) + GROUPS.format(h1=H1, h2=H2, h3=H3))
        out = ex(project, "127.0.0.213", "--", "true")
        as_json = ex(project, "127.0.0.213", "--format", "json", "--", "true")
    assert out.code == 3, out
    for n in (1, 2):
        assert (
            f"127.0.0.213:{server.port}: connection attempt {n}/3 failed (The server dropped" in out.stderr
        ), out
    assert "lower the rate (ssh_connect_rate)" in out.stderr, out
    assert as_json.code == 3, as_json
    logs = [e for e in as_json.of("log") if "connection attempt" in e["message"]]
    assert len(logs) == 2 and all(e["level"] == "warning" for e in logs), as_json
    assert [e["status"] for e in as_json.of("exec.host")] == ["unreachable"], as_json
