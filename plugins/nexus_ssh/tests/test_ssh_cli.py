"""End to end: the real ``nexus`` CLI against the real-sshd test bed (nexus_core/testing/sshbed.py).

Every test runs ``python -m nexus_core`` in a subprocess (the ``nexus_project`` fixture) on a
nexusfile that points at the bed through ``config(ssh_...)`` and host strings; the user's
``~/.ssh`` is never read (``NEXUS_SSH_CONFIG=""``, or a config file the test writes).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from nexus_core.testing import NexusProject, Outcome
from nexus_core.testing.sshbed import USER_KEY, USER_NOSUDO, USER_PW, SshBed
from tests.helpers import start_nexus, stopped

pytestmark = pytest.mark.ssh

H1, H2, H3 = "127.0.0.2", "127.0.0.3", "127.0.0.4"
REFUSED = "127.0.0.9"  # a loopback address no bed sshd listens on


@pytest.fixture
def project(nexus_project: NexusProject, sshbed: SshBed) -> NexusProject:
    """A project that never reads ~/.ssh/config and never prompts."""
    nexus_project.env["NEXUS_SSH_CONFIG"] = ""
    nexus_project.env.pop("SSH_AUTH_SOCK", None)
    return nexus_project


def header(bed: SshBed, **config: Any) -> str:
    """The nexusfile's imports and a config() aimed at the bed (overridable; None drops a key)."""
    cfg: dict[str, Any] = {
        "ssh_user": USER_KEY,
        "ssh_identity": bed.key_path("ed25519"),
        "ssh_known_hosts_file": bed.known_hosts,
        "ssh_port": bed.port,
    }
    cfg.update(config)
    args = ", ".join(f"{k}={v!r}" for k, v in cfg.items() if v is not None)
    return f"from nexus_core import config, hosts, hostname, run, task\nconfig({args})\n"


def write(project: NexusProject, bed: SshBed, body: str, **config: Any) -> None:
    project.write(header(bed, **config) + _dedent(body))


def _dedent(text: str) -> str:
    import textwrap

    return textwrap.dedent(text).lstrip("\n")


def run(project: NexusProject, *args: str, **kw: Any) -> Outcome:
    return project.run(*args, timeout=60, **kw)


def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``check`` (bounded): sshd writes its log a moment after a client leaves."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def host_order(out: Outcome, task: str) -> list[str]:
    return [e["host"] for e in out.of("host.start") if e["task"] == task]


def host_status(out: Outcome, task: str) -> dict[str, str]:
    return {e["host"]: e["status"] for e in out.of("host.stop") if e["task"] == task}


def sessions(bed: SshBed) -> int:
    """Commands sshd started ("Starting session") over every bed host, from its log."""
    total = 0
    for path in {bed.log_path(h.address) for h in bed.hosts}:
        total += Path(path).read_text(errors="replace").count("Starting session:")
    return total


def wrong_known_hosts(bed: SshBed, path: Path, address: str) -> str:
    """A copy of the bed's known_hosts in which ``address`` has another ed25519 key (line 2)."""
    import paramiko

    other = paramiko.Ed25519Key.from_path(bed.key_path("ed25519"))  # any other ed25519 key
    name = f"[{address}]:{bed.port}"
    keep = [
        line for line in Path(bed.known_hosts).read_text().splitlines() if not line.startswith(name + " ")
    ]
    path.write_text(
        "\n".join([f"# hosts with a changed key\n{name} ssh-ed25519 {other.get_base64()}", *keep]) + "\n"
    )
    return name


# --- runs over several hosts -------------------------------------------------------------------


def test_run_on_three_hosts_reuses_one_connection_per_host(project: NexusProject, sshbed: SshBed) -> None:
    write(
        project,
        sshbed,
        f"""
        hosts("web", "{H1}", "{H2}", "{H3}")

        @task(on="web")
        def deploy():
            run("echo one")
            run("echo two on " + hostname())
            run("id -un")
        """,
    )
    before = {h: sshbed.connection_count(h) for h in (H1, H2, H3)}
    out = run(project, "run", "deploy")
    assert out.code == 0, out
    for h in (H1, H2, H3):
        assert re.search(rf"{re.escape(h)} \S+ ", out.stdout), out.stdout  # one summary line per host
        assert wait_until(lambda h=h: sshbed.connection_count(h) >= before[h] + 1)
        time.sleep(0.1)
        assert sshbed.connection_count(h) - before[h] == 1, "three commands, one connection"
    assert "Completed" in out.stdout
    js = run(project, "run", "deploy", "--format", "json")
    lines = [e["line"] for e in js.of("command.output")]
    assert lines.count(USER_KEY) == 3 and f"two on {H2}" in lines


def test_failure_lets_running_hosts_finish_and_starts_no_new_one(
    project: NexusProject, sshbed: SshBed
) -> None:
    write(
        project,
        sshbed,
        f"""
        hosts("web", "{H1}", "{H2}", "{H3}")

        @task(on="web")
        def deploy():
            if hostname() == "{H1}":
                run("echo failing; exit 7")
            else:
                run("sleep 1; echo finished")
        """,
        forks=2,
    )
    text = run(project, "run", "deploy")
    assert text.code == 1, text
    assert re.search(rf"{H1} .* exit code 7", text.stdout) and re.search(rf"{H2} \S+ ", text.stdout)
    assert re.search(rf"{H3} \S+ not started: another host failed", text.stdout), text.stdout
    assert (
        "Error: Command failed" in text.stderr and "Exit code: 7" in text.stderr and "failing" in text.stderr
    )

    assert not re.search(rf"{H3} \S+ \d", text.stdout), "H3 never started (no duration)"
    cont = run(project, "run", "deploy", "--format", "json", "--continue-on-error")
    assert cont.code == 1
    assert host_status(cont, "deploy") == {H1: "failed", H2: "ok", H3: "ok"}


def test_command_error_has_the_req_0132_shape(project: NexusProject, sshbed: SshBed) -> None:
    write(
        project,
        sshbed,
        f"""
        @task(on=["{H2}"])
        def deploy():
            run("echo stopping")
            run("echo copied")
            run("echo 'Job for myapp.service failed' >&2; exit 3")
        """,
    )
    out = run(project, "run", "deploy")
    assert out.code == 1, out
    err = out.stderr
    for piece in (
        "Error: Command failed",
        f"Host: {H2}",
        "Task: deploy",
        "Command: echo 'Job for myapp.service failed' >&2; exit 3",
        "Exit code: 3",
        "Output:",
        "Job for myapp.service failed",
        "Previous commands in this task succeeded:",
        "echo stopping",
        "echo copied",
        "Suggestions:",
    ):
        assert piece in err, (piece, err)


def test_an_exit_status_past_255_is_reported_as_the_process_exits(
    project: NexusProject, sshbed: SshBed
) -> None:
    # dash keeps `exit 300` as 300 in $? (the wrapper's trap saw 300); the process exits 44, as
    # on the local machine and with plain ssh
    write(project, sshbed, f'\n@task(on=["{H1}"])\ndef bad():\n    run("exit 300")\n')
    out = run(project, "run", "bad", "--format", "json")
    assert out.code == 1, out
    stops = [e for e in out.events if e.get("event") == "command.stop"]
    assert stops and stops[-1]["exit_code"] == 44, stops


def test_a_command_whose_shell_is_killed_names_the_signal_in_session_mode(
    project: NexusProject, sshbed: SshBed
) -> None:
    write(project, sshbed, f'\n@task(on=["{H1}"])\ndef bad():\n    run("echo hi; kill -9 $$")\n')
    out = run(project, "run", "bad")
    assert out.code == 1, out
    mode = os.environ.get("NEXUS_SSH_SESSION_MODE", "shell")
    said = "killed by signal 9" if mode != "exec" else "killed by a signal"
    assert said in out.stdout + out.stderr, out


# --- connection errors, exit 3 ---------------------------------------------------------------------


def test_refused_port_exits_3_with_host_reason_and_suggestions(project: NexusProject, sshbed: SshBed) -> None:
    write(
        project,
        sshbed,
        f"""
        @task(on=["{H1}", "{REFUSED}"])
        def deploy():
            run("echo hi")
        """,
    )
    out = run(project, "run", "deploy")
    assert out.code == 3, out
    err = out.stderr
    assert "Error: SSH connection failed" in err and f"Host: {REFUSED}" in err
    assert f"Reason: Connection refused ({REFUSED} port {sshbed.port})" in err
    assert "Suggestions:" in err and f"nc -zv {REFUSED} {sshbed.port}" in err
    assert re.search(rf"{re.escape(H1)} \S+ ", out.stdout), "the host that connected is listed too"
    js = run(project, "run", "deploy", "--format", "json")
    assert js.code == 3 and host_status(js, "deploy") == {H1: "ok", REFUSED: "unreachable"}
    # One round of connection attempts to the host, not three: no clean-up (prune, status file)
    # tries it again after its command could not reach it.
    # Each attempt of that round is an event (attempt 1, 2, 3).
    starts = [e for e in js.of("ssh.connect.start") if e.get("host", "").startswith(REFUSED)]
    assert [e["attempt"] for e in starts] == [1, 2, 3], starts
    assert len([e for e in js.events if e.get("event") == "ssh.error" and REFUSED in e.get("host", "")]) == 1


def test_auth_failure_exits_3_and_says_what_was_tried(project: NexusProject, sshbed: SshBed) -> None:
    write(
        project,
        sshbed,
        f"""
        @task(on=["{USER_PW}@{H1}"])
        def deploy():
            run("echo hi")
        """,
    )
    out = run(project, "run", "deploy")
    assert out.code == 3, out
    assert "Error: SSH connection failed" in out.stderr
    assert f"Reason: Authentication failed for {USER_PW}@{H1}" in out.stderr
    assert "id_ed25519" in out.stderr and "ssh_identity" in out.stderr


def test_changed_host_key_stops_that_host_loudly(
    project: NexusProject, sshbed: SshBed, tmp_path: Path
) -> None:
    kh = tmp_path / "known_hosts"
    name = wrong_known_hosts(sshbed, kh, H2)
    write(
        project,
        sshbed,
        f"""
        @task(on=["{H1}", "{H2}"])
        def deploy():
            run("echo hi")
        """,
        ssh_known_hosts_file=str(kh),
    )
    out = run(project, "run", "deploy", "--continue-on-error")
    assert out.code == 3, out
    err = out.stderr
    assert "Error: SSH host key changed - possible man-in-the-middle attack" in err
    assert f"HOST KEY CHANGED for {name}" in err and f"Host: {H2}" in err
    assert err.count("SHA256:") == 2 and "Expected: ssh-ed25519" in err and "Got:" in err
    assert f"{kh} line 2" in err and f"ssh-keygen -R '{name}' -f {kh}" in err
    assert re.search(rf"{re.escape(H1)} \S+ ", out.stdout)
    js = run(project, "run", "deploy", "--format", "json", "--continue-on-error")
    assert host_status(js, "deploy") == {H1: "ok", H2: "unreachable"}


# --- timeouts, exit 4 ------------------------------------------------------------------------------


def test_timeout_exits_4_and_kills_the_remote_process(project: NexusProject, sshbed: SshBed) -> None:
    write(
        project,
        sshbed,
        f"""
        @task(on=["{H3}"])
        def slow():
            run("echo started; sleep 53", timeout=1)
        """,
        ssh_user=None,
    )
    project.write(project.nexusfile.read_text().replace(f'"{H3}"', f'"{USER_NOSUDO}@{H3}"'))
    out = run(project, "run", "slow")
    assert out.code == 4, out
    assert "Error: Command timed out" in out.stderr and "Timeout: 1s" in out.stderr
    assert "Partial output:" in out.stderr and "started" in out.stderr
    assert "remote process group" in out.stderr
    assert sshbed.wait_no_process(USER_NOSUDO, "sleep 53", timeout=5) == []


# --- sudo ------------------------------------------------------------------------------------------


def test_sudo_with_and_without_rights(project: NexusProject, sshbed: SshBed) -> None:
    write(
        project,
        sshbed,
        f"""
        @task(on=["{USER_KEY}@{H1}"])
        def allowed():
            run("id -u", sudo=True)

        @task(on=["{USER_NOSUDO}@{H1}"])
        def denied():
            run("id -u", sudo=True)
        """,
    )
    ok = run(project, "run", "allowed", "--format", "json")
    assert ok.code == 0, ok
    assert [e["line"] for e in ok.of("command.output")] == ["0"]
    no = run(project, "run", "denied")
    assert no.code == 1, no
    assert "Error: Command failed" in no.stderr
    assert "asked for a password (or this user may not use sudo" in no.stderr
    assert "If the user is not in sudoers" in no.stderr

    pre = run(project, "preflight", "allowed", "denied")
    assert pre.code == 1, pre  # sudo is neither a connection nor a configuration problem
    assert f"{H1} - NOPASSWD confirmed" in pre.stdout
    assert f"Sudo not available for user '{USER_NOSUDO}'" in pre.stdout
    assert "Add to sudoers" in pre.stdout and "--skip-sudo-check" in pre.stdout
    skipped = run(project, "preflight", "denied", "--skip-sudo-check")
    assert skipped.code == 0, skipped and "Sudo Access" not in skipped.stdout


# --- jump hosts, ~/.ssh/config, CLI overrides -----------------------------------------------------


def test_jump_host(project: NexusProject, sshbed: SshBed) -> None:
    assert sshbed.bastion is not None
    write(
        project,
        sshbed,
        f"""
        @task(on=["{H2}"])
        def deploy():
            run("echo through the bastion")
        """,
        ssh_jump=f"{USER_KEY}@{sshbed.bastion.address}:{sshbed.port}",
    )
    before = sshbed.connection_count(sshbed.bastion.address)
    out = run(project, "run", "deploy", "--format", "json")
    assert out.code == 0, out
    assert [e["line"] for e in out.of("command.output")] == ["through the bastion"]
    assert wait_until(lambda: sshbed.connection_count(sshbed.bastion.address) > before)
    pre = run(project, "preflight", "deploy")
    assert pre.code == 0, pre
    assert f"via {sshbed.bastion.address}" in pre.stdout


def test_ssh_config_alias(project: NexusProject, sshbed: SshBed, tmp_path: Path) -> None:
    """Hosts named by ~/.ssh/config aliases: HostName, Port, User, IdentityFile, known hosts from there."""
    cfg = sshbed.write_ssh_config(tmp_path / "ssh_config")
    project.write(
        """
        from nexus_core import hosts, run, task
        hosts("web", "bed1", "bed2")

        @task(on="web")
        def deploy():
            run("echo alias ok")
        """
    )
    out = run(project, "run", "deploy", "--format", "json", env={"NEXUS_SSH_CONFIG": cfg})
    assert out.code == 0, out
    assert host_status(out, "deploy") == {"bed1": "ok", "bed2": "ok"}
    pre = run(project, "preflight", "deploy", env={"NEXUS_SSH_CONFIG": cfg})
    assert pre.code == 0, pre
    assert f"bed1 - {H1} port {sshbed.port} open" in pre.stdout


def test_cli_user_identity_and_hosts_override(project: NexusProject, sshbed: SshBed) -> None:
    write(
        project,
        sshbed,
        f"""
        hosts("web", "{H1}", "{H2}")
        hosts("other", "{USER_NOSUDO}@{H3}")

        @task(on="web")
        def whoami():
            run("id -un")

        @task(on="other")
        def whoami_other():
            run("id -un")
        """,
        ssh_user=None,
        ssh_identity=None,
    )
    # without -u / -i the user is root (not allowed on the bed) and no key is given
    assert run(project, "run", "whoami").code == 3
    key = sshbed.key_path("rsa")
    out = run(project, "run", "whoami", "-u", USER_NOSUDO, "-i", key, "--format", "json")
    assert out.code == 0, out
    assert [e["line"] for e in out.of("command.output")] == [USER_NOSUDO, USER_NOSUDO]
    assert any("id_rsa" in e["auth"] for e in out.of("ssh.connect"))
    # -H narrows each task to its own matching hosts (it no longer replaces them)
    only = run(project, "run", "whoami", "whoami_other", "-u", USER_KEY, "-i", key, "-H", H2, "-H", H3,
               "--format", "json")  # fmt: skip
    assert only.code == 0, only
    assert host_order(only, "whoami") == [H2] and host_order(only, "whoami_other") == [H3]
    lines = {e["host"]: e["line"] for e in only.of("command.output")}
    assert lines == {H2: USER_KEY, H3: USER_NOSUDO}  # user@host beats -u


# --- strategies -------------------------------------------------------------------------------------


ROLLING = f"""
hosts("web", "{H1}", "{H2}", "{H3}")

@task(on="web", strategy="rolling", batch=1)
def deploy():
    run("test " + hostname() + " != FAIL_ON")
"""


def test_rolling_goes_in_order_and_stops_at_the_first_failing_batch(
    project: NexusProject, sshbed: SshBed
) -> None:
    write(project, sshbed, ROLLING.replace("FAIL_ON", "none"))
    ok = run(project, "run", "deploy", "--format", "json")
    assert ok.code == 0, ok
    assert host_order(ok, "deploy") == [H1, H2, H3]
    starts = [e for e in ok.events if e.get("event") in ("host.start", "host.stop")]
    assert [(e["event"], e["host"]) for e in starts] == [
        (ev, h) for h in (H1, H2, H3) for ev in ("host.start", "host.stop")
    ], "one batch after the other"
    write(project, sshbed, ROLLING.replace("FAIL_ON", H2))
    bad = run(project, "run", "deploy", "--format", "json")
    assert bad.code == 1, bad
    assert host_order(bad, "deploy") == [H1, H2]
    assert host_status(bad, "deploy") == {H1: "ok", H2: "failed", H3: "skipped"}
    reasons = {e["host"]: e["reason"] for e in bad.of("host.stop")}
    assert reasons[H3] == "not started: batch 2 failed"


def test_a_rolling_stop_over_max_fail_percentage_names_the_threshold(
    project: NexusProject, sshbed: SshBed
) -> None:
    """The first two batches fail; 1 of 3 is within 40 %, 2 of 3 is not: the reason is the
    threshold, not "batch 2 failed" (batch 1 failed too)."""
    body = ROLLING.replace("batch=1)", "batch=1, max_fail_percentage=40)")
    write(
        project,
        sshbed,
        body.replace('run("test " + hostname() + " != FAIL_ON")', f'run("test " + hostname() + " = {H3}")'),
    )
    bad = run(project, "run", "deploy", "--format", "json")
    assert bad.code == 1, bad
    assert host_status(bad, "deploy") == {H1: "failed", H2: "failed", H3: "skipped"}
    reasons = {e["host"]: e["reason"] for e in bad.of("host.stop")}
    assert reasons[H3] == "not started: 2 of 3 hosts failed (67%), over max_fail_percentage=40", reasons


def test_canary_first_then_the_rest(project: NexusProject, sshbed: SshBed) -> None:
    body = f"""
        hosts("web", "{H1}", "{H2}", "{H3}")

        @task(on="web", strategy="canary", canary_hosts=1, canary_wait=0.3)
        def deploy():
            run("test " + hostname() + " != FAIL_ON")
        """
    write(project, sshbed, body.replace("FAIL_ON", "none"))
    ok = run(project, "run", "deploy", "--format", "json")
    assert ok.code == 0, ok
    order = [(e["event"], e["host"]) for e in ok.events if e.get("event") in ("host.start", "host.stop")]
    assert order[:2] == [("host.start", H1), ("host.stop", H1)], "the canary ends before the others start"
    assert {h for _, h in order[2:]} == {H2, H3}
    write(project, sshbed, body.replace("FAIL_ON", H1))
    bad = run(project, "run", "deploy", "--format", "json")
    assert bad.code == 1
    assert host_order(bad, "deploy") == [H1]  # the rest never start
    assert host_status(bad, "deploy") == {H1: "failed", H2: "skipped", H3: "skipped"}
    assert {e["reason"] for e in bad.of("host.stop") if e["status"] == "skipped"} == {
        "not started: a canary host failed"
    }


def test_dry_run_states_strategy_and_order_and_executes_nothing(
    project: NexusProject, sshbed: SshBed
) -> None:
    write(
        project,
        sshbed,
        f"""
        hosts("web", "{H1}", "{H2}", "{H3}")

        @task(on="web", strategy="rolling", batch=2)
        def deploy():
            run("touch /tmp/nexus-dry-run-must-not-exist", sudo=True)

        @task(on="web", strategy="canary", canary_hosts=1, canary_wait=30, deps=[deploy])
        def verify():
            run("echo verify")
        """,
    )
    marker = Path("/tmp/nexus-dry-run-must-not-exist")
    marker.unlink(missing_ok=True)
    before = sessions(sshbed)
    out = run(project, "run", "verify", "--dry-run")
    assert out.code == 0, out
    text = out.stdout
    assert "DRY RUN MODE" in text
    assert "PRE-FLIGHT CHECKS" in text and text.index("PRE-FLIGHT CHECKS") < text.index("EXECUTION PLAN")
    assert "Host Connectivity [3/3]" in text and "SSH Authentication [3/3]" in text
    assert "not checked: a dry run executes nothing" in text
    assert f"deploy [{H1}, {H2}, {H3}] (rolling, 2 at a time)" in text
    assert f"order: [{H1}, {H2}] -> [{H3}]" in text
    assert "canary, 1 host first, then the rest after 30s" in text
    assert f"order: [{H1}] -> [{H2}, {H3}]" in text
    assert "Strategy:  deploy uses rolling, 2 at a time" in text
    js = run(project, "run", "verify", "-n", "--format", "json")
    plan = js.json()["plan"]
    assert plan["tasks"]["deploy"]["batches"] == [[H1, H2], [H3]]
    assert plan["tasks"]["verify"]["batches"] == [[H1], [H2, H3]]
    assert plan["tasks"]["verify"]["strategy"] == "canary"
    time.sleep(0.2)
    assert sessions(sshbed) == before, "a dry run starts no command on any host"
    assert not marker.exists()


# --- pre-flight ----------------------------------------------------------------------------------


PREFLIGHT = f"""
hosts("web", "{H1}", "{H2}", "{USER_NOSUDO}@{H3}", "{REFUSED}")

@task(on="web")
def deploy():
    run("systemctl restart myapp", sudo=True)
"""


def test_preflight_all_pass(project: NexusProject, sshbed: SshBed) -> None:
    write(project, sshbed, f'hosts("web", "{H1}", "{H2}")\n' + PREFLIGHT.split("\n", 2)[2])
    before = sessions(sshbed)
    out = run(project, "preflight", "deploy")
    assert out.code == 0, out
    text = out.stdout
    assert text.startswith("Pre-flight checks for: deploy")
    assert "Configuration" in text and "Host Connectivity [2/2]" in text
    assert re.search(rf"{re.escape(H1)} - port {sshbed.port} open, SSH-2.0-OpenSSH_\S+ .*\(\d+ms\)", text), (
        text
    )
    assert "SSH Authentication [2/2]" in text and "key: " in text and "id_ed25519" in text
    assert "Sudo Access [2/2]" in text and f"{H2} - NOPASSWD confirmed" in text
    assert re.search(r"All pre-flight checks passed \(\d+ checks in ", text)
    time.sleep(0.1)
    assert sessions(sshbed) - before == 2, "preflight runs sudo -n true, once per host, and nothing else"


def test_preflight_failures_force_and_json(project: NexusProject, sshbed: SshBed) -> None:
    write(project, sshbed, PREFLIGHT)
    out = run(project, "preflight", "deploy", "--timeout", "2", "--parallel", "2")
    assert out.code == 3, out
    text = out.stdout
    assert "Host Connectivity [3/4]" in text and f"{REFUSED} - Connection refused" in text
    assert "SSH Authentication [3/3]" in text and f"{REFUSED} - skipped - host unreachable" in text
    assert "Sudo Access [2/3]" in text
    assert "Pre-flight checks failed (2 errors)" in text and "Errors:" in text
    assert f"1. {REFUSED}: Connection refused" in text and "Verify the host is reachable" in text
    assert f"2. {H3}: Sudo not available for user '{USER_NOSUDO}'" in text
    assert "Run with --force" in text

    forced = run(project, "preflight", "deploy", "--force")
    assert forced.code == 0, forced
    assert f"Unavailable hosts (skipped by --force): {REFUSED}, {H3}" in forced.stdout or (
        f"Unavailable hosts (skipped by --force): {H3}, {REFUSED}" in forced.stdout
    )
    assert f"nexus run deploy -H {H1},{H2}" in forced.stdout

    js = run(project, "preflight", "deploy", "--format", "json")
    assert js.code == 3
    doc = js.json()
    assert doc["passed"] is False and doc["exit_code"] == 3
    assert {(e["host"], e["category"]) for e in doc["errors"]} == {
        (REFUSED, "Host Connectivity"),
        (H3, "Sudo Access"),
    }
    assert doc["unavailable_hosts"] and set(doc["available_hosts"]) == {H1, H2}
    statuses = {(c["category"], c["host"]): c["status"] for c in doc["checks"]}
    assert statuses[("SSH Authentication", REFUSED)] == "skipped"

    quick = run(project, "preflight", "deploy", "--skip-connectivity", "--skip-auth", "--skip-sudo-check")
    assert quick.code == 0, quick
    assert "Host Connectivity" not in quick.stdout and "SSH Authentication" not in quick.stdout
    no_conn = run(
        project, "preflight", "deploy", "--skip-connectivity", "--skip-sudo-check", "--format", "json"
    )
    assert no_conn.code == 3
    assert [e["host"] for e in no_conn.json()["errors"]] == [REFUSED]
    assert no_conn.json()["errors"][0]["category"] == "SSH Authentication"


def test_preflight_auth_failure_and_changed_key(
    project: NexusProject, sshbed: SshBed, tmp_path: Path
) -> None:
    kh = tmp_path / "known_hosts"
    wrong_known_hosts(sshbed, kh, H2)
    write(
        project,
        sshbed,
        f"""
        @task(on=["{USER_PW}@{H1}", "{H2}", "{H3}"])
        def deploy():
            run("echo hi")
        """,
        ssh_known_hosts_file=str(kh),
    )
    out = run(project, "preflight", "deploy")
    assert out.code == 3, out
    assert f"{H1} - Authentication failed for {USER_PW}@{H1}" in out.stdout
    assert f"{H2} - HOST KEY CHANGED" in out.stdout and "SHA256:" in out.stdout
    assert f"{H3} - {USER_KEY} accepted" in out.stdout
    dry = run(project, "run", "deploy", "--dry-run")
    assert dry.code == 3, "a dry run whose pre-flight fails exits like preflight"
    assert "HOST KEY CHANGED" in dry.stdout and "EXECUTION PLAN" in dry.stdout


def test_preflight_local_files(project: NexusProject, sshbed: SshBed) -> None:
    (project.root / "build").mkdir()
    project.write(
        """
        from nexus_core import run, task

        @task
        def build():
            run("ls", cwd="build")
            run("ls", cwd="dist")
        """
    )
    out = run(project, "preflight", "build")
    assert out.code == 0, out
    assert "Local Files" in out.stdout and "build/ exists (cwd of build)" in out.stdout
    assert "dist/ does not exist (cwd of build)" in out.stdout and "Warnings:" in out.stdout


# --- host keys: scan / verify ---------------------------------------------------------------------


def test_hosts_scan_add_and_verify(project: NexusProject, sshbed: SshBed, tmp_path: Path) -> None:
    kh = tmp_path / "kh" / "known_hosts"
    write(
        project,
        sshbed,
        f"""
        hosts("web", "{H1}", "{H2}")

        @task(on="web")
        def deploy():
            run("echo hi")
        """,
        ssh_known_hosts_file=str(kh),
    )
    unknown = run(project, "hosts", "verify")
    assert unknown.code == 3, unknown
    assert f"not in {kh}" in unknown.stdout and "nexus hosts scan --add" in unknown.stdout
    assert run(project, "run", "deploy").code == 3, "strict: unknown hosts are refused"

    scan = run(project, "hosts", "scan")
    assert scan.code == 0, scan
    assert re.search(rf"{re.escape(H1)}  ssh-ed25519  SHA256:\S+  new", scan.stdout), scan.stdout
    assert "ssh-rsa" in scan.stdout and not kh.exists()

    trail = tmp_path / "audit.log"  # what --add changes is audited (config.changed)
    user_conf = Path(project.env["XDG_CONFIG_HOME"]) / "nexus" / "config.toml"
    user_conf.parent.mkdir(parents=True, exist_ok=True)
    user_conf.write_text(f'[audit.sinks.trail]\ntype = "file"\npath = "{trail}"\n', encoding="utf-8")
    added = run(project, "hosts", "scan", "--add")
    assert added.code == 0, added
    assert f"Added 4 keys to {kh}" in added.stdout
    assert kh.read_text().count(f"[{H1}]:{sshbed.port} ") == 2
    changes = [
        r for r in map(json.loads, trail.read_text().splitlines()) if r.get("event") == "config.changed"
    ]
    assert [(r["change_type"], r["target"]) for r in changes] == [("hosts scan --add", str(kh))], changes
    assert (
        len(changes[0]["diff"]["known_hosts"]["added"]) == 4
        and "SHA256:" in changes[0]["diff"]["known_hosts"]["added"][0]
    )

    ok = run(project, "hosts", "verify", "--format", "json")
    assert ok.code == 0, ok
    assert ok.json()["passed"] is True and {h["host"] for h in ok.json()["hosts"]} == {H1, H2}
    assert run(project, "run", "deploy").code == 0


def test_hosts_verify_changed_key(project: NexusProject, sshbed: SshBed, tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"
    name = wrong_known_hosts(sshbed, kh, H2)
    write(
        project,
        sshbed,
        f'@task(on=["{H1}", "{H2}"])\ndef deploy():\n    run("echo hi")\n',
        ssh_known_hosts_file=str(kh),
    )
    out = run(project, "hosts", "verify")
    assert out.code == 3, out
    assert re.search(
        rf"{re.escape(H1)}  ssh-ed25519  SHA256:\S+  matches {re.escape(str(kh))}:\d+", out.stdout
    )
    assert f"{H2}  ssh-ed25519" in out.stdout and "CHANGED" in out.stdout
    assert f"HOST KEY CHANGED for {name}" in out.stderr and f"{kh} line 2" in out.stderr
    assert out.stderr.count("SHA256:") == 2
    scan = run(project, "hosts", "scan", "--add", H2)
    assert scan.code == 3 and "changed" in scan.stdout
    assert kh.read_text().count(f"{name} ssh-ed25519") == 1, "a changed key is never replaced"
    explicit = run(project, "hosts", "verify", f"{H1}:{sshbed.port}")
    assert explicit.code == 0, explicit


# --- many hosts: open files -----------------------------------------------------------------------


def _nexus_with_nofile(
    project: NexusProject, soft: int, hard: int, *args: str
) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NEXUS_CONFIG", "NEXUS_LOAD_PLUGINS", "NEXUS_POLICY_FILE")
    }
    env.update({"NO_COLOR": "1", "CI": "1", **project.env})
    return subprocess.run(
        [sys.executable, "-m", "nexus_core", *args],
        cwd=project.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=limit,
        check=False,
    )


def test_open_files_limit_is_raised_or_warned_about(project: NexusProject, sshbed: SshBed) -> None:
    write(
        project,
        sshbed,
        f"""
        hosts("web", "{H1}", "{H2}", "{H3}")

        @task(on="web")
        def remote():
            run("true")

        @task(deps=[remote])
        def local_limit():
            run("ulimit -n")
        """,
        ssh_pool_size=40,
    )
    # 3 hosts x 40 connections > 100: with room under the hard limit, the soft limit goes up.
    raised = _nexus_with_nofile(project, 100, 4096, "run", "local_limit", "--format", "json")
    assert raised.returncode == 0, raised.stderr
    lines = [json.loads(x) for x in raised.stdout.splitlines() if x.startswith("{")]
    seen = [e["line"] for e in lines if e.get("event") == "command.output"]
    assert seen and int(seen[0]) > 100, seen
    # Hard limit too low: a clear warning with the fix, and the run goes on.
    low = _nexus_with_nofile(project, 100, 100, "run", "local_limit")
    assert low.returncode == 0, low.stderr
    assert "open files" in low.stderr and "ulimit -n" in low.stderr and "ssh_pool_size" in low.stderr
    pre = _nexus_with_nofile(project, 100, 100, "preflight", "remote")
    assert "Resources" in pre.stdout and "open files limit 100" in pre.stdout


# --- a host that dies or hangs mid-run ---------------------------------------------------------------


def _sshd_tree(bed: SshBed) -> list[int]:
    """The bed's listening sshd processes and every sshd below them (the sessions)."""
    found: list[int] = []
    todo = list(bed.sshd_pids())
    for _ in range(10_000):
        if not todo:
            break
        pid = todo.pop()
        found.append(pid)
        children = subprocess.run(
            ["ps", "-o", "pid=,comm=", "--ppid", str(pid)], capture_output=True, text=True
        )
        rows = (line.strip().partition(" ") for line in children.stdout.splitlines())
        todo += [int(p) for p, _, comm in rows if "sshd" in comm]
    return found


@pytest.mark.parametrize("how", ["hang", "die"])
def test_a_host_that_hangs_or_dies_mid_run_is_a_connection_failure_within_seconds(
    project: NexusProject, how: str
) -> None:
    import signal

    with SshBed(1, port=0, bastion=False) as bed:
        address = bed.hosts[0].address
        write(
            project,
            bed,
            f"""
            @task(on=["{address}"])
            def work():
                run("echo started; sleep 47", timeout=6)
            """,
        )
        stopped: list[int] = []
        proc = subprocess.Popen(
            [sys.executable, "-m", "nexus_core", "run", "work"],
            cwd=project.root,
            env={**os.environ, **project.env, "NO_COLOR": "1", "CI": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert wait_until(lambda: bed.processes_matching(USER_KEY, "sleep 47") != [], timeout=30)
            stopped = _sshd_tree(bed)
            sig = signal.SIGSTOP if how == "hang" else signal.SIGKILL
            for pid in stopped:
                os.kill(pid, sig)
            t0 = time.monotonic()
            stdout, stderr = proc.communicate(timeout=60)
            elapsed = time.monotonic() - t0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
            for pid in stopped:
                with_suppress(lambda pid=pid: os.kill(pid, signal.SIGCONT))
            for pid in bed.processes_matching(USER_KEY, "sleep 47"):
                with_suppress(lambda pid=pid: os.kill(pid, signal.SIGKILL))
        assert proc.returncode == 3, (stdout, stderr)
        assert elapsed < 15, (elapsed, stdout, stderr)  # not 21-30 s of silent reconnects
        text = stdout + stderr
        assert ("stopped answering" if how == "hang" else "was lost") in text, text


def _lost_under_a_command_then_resumed(
    project: NexusProject, bed: SshBed, pause: str, kill: Callable[[], None], said: str
) -> None:
    """A run whose first command (``sleep PAUSE`` between two lines of a log) loses something
    under it (``kill``): the run exits 3 saying ``said``, the command ends on the host once,
    and the resume asks the host instead of starting it again, then runs the second."""
    import shutil
    import tempfile

    shared = Path(tempfile.mkdtemp(prefix="nexus-lost-"))
    shared.chmod(0o777)  # the bed's login user writes there
    address = bed.hosts[0].address
    log = shared / "log"
    write(
        project,
        bed,
        f"""
        @task(on=["{address}"])
        def work():
            run("echo A >> {log}; sleep {pause}; echo B >> {log}", retries=2)
            run("echo second >> {log}")
        """,
    )
    with stopped(start_nexus(project, "run", "work", "--format", "json")) as proc:
        assert wait_until(lambda: log.exists() and log.read_text() == "A\n", timeout=30)
        kill()
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 3 and said in stdout + stderr, (stdout, stderr)
    run_id = json.loads(stdout.splitlines()[0])["run_id"]
    assert wait_until(lambda: log.read_text() == "A\nB\n", timeout=30)  # it ended on the host, once
    resumed = project.run("resume", run_id, timeout=120)
    assert resumed.code == 0, resumed
    assert log.read_text().split() == ["A", "B", "second"]
    shutil.rmtree(shared, ignore_errors=True)


def test_a_command_whose_connection_was_lost_is_not_run_again_by_resume(project: NexusProject) -> None:
    """The connection dies (its sshd killed), the command goes on and ends on the host: the
    resume asks the host instead of starting it a second time."""
    import signal

    with SshBed(1, port=0, bastion=False) as bed:

        def kill() -> None:
            listeners = set(bed.sshd_pids())
            for pid in [p for p in _sshd_tree(bed) if p not in listeners]:  # the sessions, not the server
                with_suppress(lambda pid=pid: os.kill(pid, signal.SIGKILL))

        _lost_under_a_command_then_resumed(project, bed, "2.71", kill, "was lost")


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


def test_a_command_whose_session_shell_was_killed_is_not_run_again_by_resume(
    project: NexusProject, sshbed: SshBed
) -> None:
    """The session shell dies under a command (killed on the host, the connection fine): the
    command goes on in its own session and ends. The run says so and keeps the host's status
    files, and the resume asks the host instead of starting the command a second time (it
    was reported as an error, retried, and its status files removed at the run's end)."""
    import signal

    def kill() -> None:
        found = sshbed.processes_matching(USER_KEY, "sleep 2.73")  # the sleep and its shells
        sleeps = [p for p in found if Path(f"/proc/{p}/cmdline").read_bytes().startswith(b"sleep\0")]
        assert len(sleeps) == 1, found
        shell = _parent(_parent(sleeps[0]))  # sleep <- the command's sh <- the session shell
        assert Path(f"/proc/{shell}/cmdline").read_bytes().split(b"\0")[0] == b"/bin/sh"
        os.kill(shell, signal.SIGKILL)

    _lost_under_a_command_then_resumed(project, sshbed, "2.73", kill, "remote shell session ended")


def with_suppress(action: Callable[[], object]) -> None:
    with contextlib.suppress(OSError):
        action()


def test_multi_line_background_jobs_and_timeouts_on_a_host(project: NexusProject, sshbed: SshBed) -> None:
    write(
        project,
        sshbed,
        f'''
        @task(on=["{H1}"])
        def script():
            run("""
        echo first
        false
        echo never
        """)

        @task(on=["{H1}"])
        def daemon():
            run("sleep 20.29 & echo started", timeout=5)

        @task(on=["{H1}"])
        def slow():
            run("sleep 31.7", timeout=2)
        ''',
    )
    out = run(project, "run", "script", "--format", "json")
    assert out.code == 1, out
    assert [e["line"] for e in out.of("command.output")] == ["first"]
    out = run(project, "run", "daemon", "--format", "json")
    assert out.code == 0, out
    assert [e["line"] for e in out.of("command.output")] == ["started"]
    out = run(project, "run", "slow", "--format", "json")
    assert out.code == 4, out
    assert "timed out after 2s" in out.stdout, out
    for pid in sshbed.processes_matching(USER_KEY, "sleep 20.29"):
        with_suppress(lambda pid=pid: os.kill(pid, 9))


def test_remote_cwd_is_used_and_shown_in_the_failure_report(project: NexusProject, sshbed: SshBed) -> None:
    write(
        project,
        sshbed,
        f"""
        @task(on=["{H1}"])
        def where():
            run("pwd", cwd="/tmp")
            run("pwd", cwd="no-such-folder-here")
        """,
    )
    out = run(project, "run", "where", "-v")
    assert out.code == 1, out
    assert "> /tmp" in out.stdout, out
    assert "Working directory: no-such-folder-here" in out.stderr, out
    assert "no-such-folder-here" in out.stderr.split("Output:")[-1], out  # the shell's message


RAW_ESCAPE = re.compile(r"\x1b(?!\[[0-9;]*m)|\x07|\x9b")


def test_hosts_refused_alike_are_one_error_and_one_outcome_line(
    project: NexusProject, sshbed: SshBed
) -> None:
    """60 hosts (more than the tree names one by one) where nothing listens: each reason names
    its own address and port, yet they are one error block and one outcome line."""
    port = sshbed.port
    many = [f"127.0.0.{i}:{port}" for i in range(20, 80)]
    write(project, sshbed, f"@task(on={many!r})\ndef t():\n    run('true')\n", forks=len(many))
    out = run(project, "run", "t")
    assert out.code == 3, out
    assert out.stderr.count("Error: ") == 1, out
    shown = re.search(r"\n  Hosts: (.*)\n", out.stderr)
    assert shown and sorted(shown[1].split(", ")) == sorted(many), out
    first = shown[1].split(", ")[0]
    assert f"(same error on 60 hosts: {first}, " in out.stderr and ", +50 more)" in out.stderr, out
    assert f"Reason: Connection refused ({first.split(':')[0]} port {port})" in out.stderr, out  # the first's
    outcomes = [line for line in out.stdout.splitlines() if "Connection refused" in line]
    assert len(outcomes) == 1, out
    assert f"60 hosts unreachable: Connection refused (<host> port {port})" in outcomes[0], out
    # their retries alike are said once per attempt, not 120 lines
    assert out.stderr.count("connection attempt 1/3 failed") == 1, out
    assert out.stderr.count("connection attempt 2/3 failed") == 1, out
    as_json = run(project, "run", "t", "--format", "json")
    [stop] = as_json.of("task.stop")  # its reason: the one failure, with how many hosts had it
    assert stop["reason"].startswith(f"Connection refused (<host> port {port})"), stop
    assert stop["reason"].endswith(", +57 more)") and stop["reason"].count("Connection refused") == 1, stop


def test_timeouts_alike_but_for_the_remote_process_group_are_one_error(
    project: NexusProject, sshbed: SshBed
) -> None:
    """Each host's reason names its own remote process group; the output's escapes stay inert."""
    nasty = r"printf 'a\\033]0;pwned\\007\\033[2Jb\\n'; sleep 30"
    task = f'@task(on="web")\ndef slow():\n    run("{nasty}", timeout=1)\n'
    write(project, sshbed, f'hosts("web", "{H1}", "{H2}", "{H3}")\n' + task)
    out = run(project, "run", "slow", env={"FORCE_COLOR": "1", "NO_COLOR": ""})
    assert out.code == 4, out
    assert out.stderr.count("Error: ") == 1, out
    assert "Command timed out (same error on 3 hosts: " in out.stderr, out
    shown = re.search(r"\n  Hosts: (.*)\n", out.stderr)
    assert shown and sorted(shown[1].split(", ")) == [H1, H2, H3], out
    assert re.search(r"remote process group \d+ sent SIGTERM/KILL", out.stderr), out  # the first host's
    assert "a^[]0;pwned^G^[[2Jb" in out.stderr, out  # the Partial output tail, shown, not obeyed
    verbose = run(project, "run", "slow", "-v", env={"FORCE_COLOR": "1", "NO_COLOR": ""})
    assert verbose.code == 4 and "a^[]0;pwned^G^[[2Jb" in verbose.stdout, verbose
    for text in (out.stdout, out.stderr, verbose.stdout, verbose.stderr):
        assert not RAW_ESCAPE.search(text), repr(text)


# --- strategies' failure paths (a trial of rollouts over the bed) ---------------------------------


def test_a_rolling_tolerance_that_allows_no_failure_starts_no_host_of_the_batch_after_one(
    project: NexusProject, sshbed: SshBed
) -> None:
    """max_fail_percentage=30 of 3 hosts tolerates no failure (1 of 3 is 33 %). With forks=1 a
    batch of 3 starts its hosts one after the other: once the first failed, the threshold is
    crossed and the other two must not start (they did, as if the tolerance had no limit)."""
    write(
        project,
        sshbed,
        f"""
        hosts("web", "{H1}", "{H2}", "{H3}")

        @task(on="web", strategy="rolling", batch=3, max_fail_percentage=30)
        def deploy():
            run("test " + hostname() + " != {H1}")
        """,
        forks=1,
    )
    out = project.run("run", "deploy", "--format", "json", timeout=60)
    assert out.code == 1, out
    assert host_status(out, "deploy") == {H1: "failed", H2: "skipped", H3: "skipped"}, out
    assert [e["host"] for e in out.of("host.start")] == [H1]


def test_a_rolling_tolerance_stops_the_batch_at_the_failure_that_crosses_it(
    project: NexusProject, sshbed: SshBed
) -> None:
    """max_fail_percentage=34 of 3 hosts tolerates one failure: the second failure crosses it,
    and the batch's host not started yet must not start (it did: only the batch's end was checked)."""
    write(
        project,
        sshbed,
        f"""
        hosts("web", "{H1}", "{H2}", "{H3}")

        @task(on="web", strategy="rolling", batch=3, max_fail_percentage=34)
        def deploy():
            run("test " + hostname() + " = {H3}")
        """,
        forks=1,
    )
    out = project.run("run", "deploy", "--format", "json", timeout=60)
    assert out.code == 1, out
    assert host_status(out, "deploy") == {H1: "failed", H2: "failed", H3: "skipped"}, out
    # left out inside the batch, it names the threshold as a host left out at a batch's end does
    reasons = {e["host"]: e["reason"] for e in out.of("host.stop")}
    assert reasons[H3] == "not started: 2 of 3 hosts failed (67%), over max_fail_percentage=34", reasons


def test_hosts_a_rollout_left_out_are_named_with_v_and_counted_with_q(
    project: NexusProject, sshbed: SshBed
) -> None:
    """-v and -q never mentioned the hosts a stopped rollout did not start."""
    write(
        project,
        sshbed,
        f"""
        hosts("web", "{H1}", "{H2}", "{H3}")

        @task(on="web", strategy="rolling", batch=1)
        def deploy():
            run("test " + hostname() + " != {H1}")
        """,
    )
    verbose = project.run("run", "deploy", "-v", timeout=60)
    assert verbose.code == 1, verbose
    for host in (H2, H3):
        assert any(
            host in line and "not started: batch 1 failed" in line for line in verbose.stdout.splitlines()
        ), verbose
    quiet = project.run("run", "deploy", "-q", timeout=60)
    assert quiet.code == 1 and "2 hosts not started" in quiet.stdout, quiet


def test_a_resumed_canary_rollout_does_not_wait_a_second_time(project: NexusProject, sshbed: SshBed) -> None:
    """Ctrl+C while the hosts after the canary run, then `nexus resume`: the canary wait was
    made again before the rest continued (ten minutes with canary_wait=600)."""
    import signal
    import uuid

    go = f"/tmp/nexus-canary-go-{uuid.uuid4().hex}"
    write(
        project,
        sshbed,
        f"""
        hosts("web", "{H1}", "{H2}", "{H3}")

        @task(on="web", strategy="canary", canary_hosts=1, canary_wait=10)
        def deploy():
            run("test " + hostname() + " = {H1} || test -f {go} || sleep 60")
        """,
    )
    env = {**os.environ, **project.env, "NO_COLOR": "1", "CI": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nexus_core", "run", "deploy", "--format", "json"],
        cwd=project.root, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        seen: list[str] = []
        for _ in range(2000):  # until a host after the canary starts (after the 10 s wait)
            line = proc.stdout.readline()
            seen.append(line)
            if not line or (line.startswith("{") and json.loads(line).get("event") == "command.start"
                            and json.loads(line).get("host") != H1):  # fmt: skip
                break
        # the wait is said (a CI log does not fall silent for canary_wait seconds)
        assert any('"event": "task.wait"' in x and '"seconds": 10' in x for x in seen), seen
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, proc.returncode
    try:
        with open(go, "w"):
            pass
        os.chmod(go, 0o644)
        resumed = project.run("resume", "--format", "json", timeout=120)
    finally:
        os.unlink(go)
    assert resumed.code == 0, resumed
    began = resumed.of("pipeline.start")[0]["ts"]
    rest = [e["ts"] for e in resumed.of("host.start") if e["host"] in (H2, H3)]
    assert rest and min(rest) - began < 10, (min(rest) - began, resumed)  # the 10 s wait was not made again


def test_a_resumed_canary_rollout_whose_rest_never_began_waits_after_the_canary(
    project: NexusProject, sshbed: SshBed
) -> None:
    """The canary failed, so the rest never started: resumed once it is fixed, the canary wait
    is made before the rest (the hosts' 'not started' records counted as begun, and the
    rest started at once)."""
    import uuid

    fail = f"/tmp/nexus-canary-fail-{uuid.uuid4().hex}"
    with open(fail, "w"):
        pass
    os.chmod(fail, 0o666)
    write(
        project,
        sshbed,
        f"""
        hosts("web", "{H1}", "{H2}")

        @task(on="web", strategy="canary", canary_hosts=1, canary_wait=1.5)
        def deploy():
            run("test ! -e {fail}")
        """,
    )
    try:
        failed = run(project, "run", "deploy", "--format", "json")
        assert failed.code == 1, failed
        assert host_status(failed, "deploy") == {H1: "failed", H2: "skipped"}
    finally:
        os.unlink(fail)
    resumed = run(project, "resume", "--format", "json")
    assert resumed.code == 0, resumed
    assert [e["seconds"] for e in resumed.of("task.wait")] == [1.5], resumed.of("task.wait")
    assert host_order(resumed, "deploy") == [H1, H2]


def test_preflight_checks_the_free_space_the_uploads_need(project: NexusProject, sshbed: SshBed) -> None:
    """The PRD's pre-flight categories name the remote disk space for uploads and
    `--skip-disk-check`: there was no such check (and `--format quiet` was refused)."""
    import shutil
    import tempfile

    from nexus_core.testing.tmpfs import small_tmpfs

    tmp_path = Path(tempfile.mkdtemp(prefix="nexus-disk-", dir="/tmp"))  # the login user can look in it
    tmp_path.chmod(0o755)
    try:
        with small_tmpfs(tmp_path / "small") as small:
            (project.root / "big.bin").write_bytes(b"x" * (3 << 20))
            (project.root / "small.txt").write_text("hello\n")
            write(
                project,
                sshbed,
                f"""
                from nexus_core import upload

                @task(on=["{H1}"])
                def fill():
                    upload("big.bin", "{small}/deeper/big.bin")

                @task(on=["{H1}"])
                def fits():
                    upload("small.txt", "{tmp_path}/not-yet/small.txt")
                """,
            )
            full = run(project, "preflight", "fill")
            assert full.code == 1, full  # neither a connection nor a configuration problem
            assert "Disk Space" in full.stdout and f"{H1}: " in full.stdout, full
            assert f"free on {small}, the uploads to {small}/deeper need 3.0 MB" in full.stdout, full
            assert "--skip-disk-check" in full.stdout
            assert not (small / "deeper").exists(), "a check creates nothing"
            as_json = run(project, "preflight", "fill", "--format", "json")
            assert as_json.code == 1, as_json
            assert json.loads(as_json.stdout)["errors"][0]["category"] == "Disk Space", as_json
            quiet = run(project, "preflight", "fill", "--format", "quiet")
            assert quiet.code == 1 and quiet.stdout == "", quiet
            assert "Pre-flight checks failed (1 error):" in quiet.stderr, quiet
            assert "uploads to" in quiet.stderr, quiet
            skipped = run(project, "preflight", "fill", "--skip-disk-check")
            assert skipped.code == 0 and "Disk Space" not in skipped.stdout, skipped
            fits = run(project, "preflight", "fits")
            assert fits.code == 0 and "(uploads: 0.0 MB)" in fits.stdout, fits
            assert run(project, "preflight", "fits", "--format", "quiet").stdout == ""
            dry = run(project, "run", "fill", "-n")
            said = "not checked: a dry run executes nothing on hosts (`nexus preflight TASK` runs df)"
            assert said in dry.stdout, dry
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def test_log_level_info_names_each_connection(project: NexusProject, sshbed: SshBed) -> None:
    """--log-level info logs connections (REQ: info is task start/complete and connections)."""
    write(
        project,
        sshbed,
        f"""
        @task(on=["{H1}", "{REFUSED}"])
        def t():
            run("true")
        """,
        ssh_connect_timeout=3,
    )
    out = run(project, "run", "t", "--log-level", "info")
    assert out.code == 3, out
    assert re.search(rf"nexus: INFO: connected to {re.escape(H1)}:\d+ in \d+\.\d+s", out.stderr), out
    assert f"nexus: WARNING: connection to {REFUSED}" in out.stderr, out
