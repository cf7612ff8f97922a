"""Deploy strategies and their failure paths over the real sshd bed, through the real CLI."""

from __future__ import annotations

import textwrap

import pytest
from nexus_core.testing import NexusProject, Outcome
from nexus_core.testing.sshbed import USER_KEY, SshBed

pytestmark = pytest.mark.ssh

H1, H2, H3 = "127.0.0.2", "127.0.0.3", "127.0.0.4"


@pytest.fixture
def project(nexus_project: NexusProject, sshbed: SshBed) -> NexusProject:
    """A project that never reads ~/.ssh/config and never prompts."""
    nexus_project.env["NEXUS_SSH_CONFIG"] = ""
    nexus_project.env.pop("SSH_AUTH_SOCK", None)
    return nexus_project


def write(project: NexusProject, bed: SshBed, body: str, **config: object) -> None:
    """A nexusfile aimed at the bed (its config() plus ``config``) with ``body`` after it."""
    cfg = {
        "ssh_user": USER_KEY,
        "ssh_identity": bed.key_path("ed25519"),
        "ssh_known_hosts_file": bed.known_hosts,
        "ssh_port": bed.port,
        **config,
    }
    args = ", ".join(f"{k}={v!r}" for k, v in cfg.items())
    head = f"from nexus_core import config, hosts, hostname, run, task\nconfig({args})\n"
    project.write(head + textwrap.dedent(body).lstrip("\n"))


def host_status(out: Outcome, task: str) -> dict[str, str]:
    return {e["host"]: e["status"] for e in out.of("host.stop") if e["task"] == task}


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
    import json
    import os
    import signal
    import subprocess
    import sys
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
        for _ in range(2000):  # until a host after the canary starts (after the 10 s wait)
            line = proc.stdout.readline()
            if not line or (line.startswith("{") and json.loads(line).get("event") == "command.start"
                            and json.loads(line).get("host") != H1):  # fmt: skip
                break
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
