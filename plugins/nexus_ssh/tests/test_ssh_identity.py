"""Two logins to one machine are two hosts: run, kill, resume, and each user's work runs once."""

from __future__ import annotations

import json
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from nexus_core.state.store import StateStore
from nexus_core.testing import NexusProject
from nexus_core.testing.sshbed import USER_KEY, USER_NOSUDO, SshBed
from tests.helpers import start_nexus, wait_for

pytestmark = pytest.mark.ssh


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder both remote test users can write (not under pytest's root-only tmp_path)."""
    path = Path(tempfile.mkdtemp(prefix="nexus-identity-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def nexusfile(bed: SshBed, logs: Path, pause: float) -> str:
    address = bed.hosts[0].address
    on = [f"{USER_KEY}@{address}:{bed.port}", f"{USER_NOSUDO}@{address}:{bed.port}"]
    return f"""
from nexus_core import config, current_host, run, task

config(ssh_identity={bed.key_path("ed25519")!r}, ssh_known_hosts_file={bed.known_hosts!r},
       interrupt_grace=0.3, terminate_grace=0.3)

def step(name, pause):
    # The file is named after the user the command really runs as, the line after the planned one.
    run(f"echo {{name}}-{{current_host().user}} >> {logs}/log-$(id -un); sleep {{pause}}")

@task(on={on!r})
def deploy():
    step("one", 0)
    step("two", {pause})
    step("three", 0)
"""


def lines(logs: Path, user: str) -> list[str]:
    path = logs / f"log-{user}"
    return path.read_text().split() if path.exists() else []


def test_two_users_on_one_host_are_run_killed_and_resumed_separately(
    nexus_project: NexusProject, sshbed: SshBed, shared_dir: Path
) -> None:
    nexus_project.write(nexusfile(sshbed, shared_dir, pause=2))
    env = {"NEXUS_SSH_CONFIG": ""}
    address, port = sshbed.hosts[0].address, sshbed.port
    labels = {user: f"{user}@{address}:{port}" for user in (USER_KEY, USER_NOSUDO)}

    plan = nexus_project.run("run", "deploy", "-n", "--format", "json", env=env)
    assert plan.code == 0, plan
    planned = [h["label"] for h in json.loads(plan.stdout.splitlines()[-1])["plan"]["hosts"]]
    assert sorted(planned) == sorted(labels.values()), plan

    proc = start_nexus(nexus_project, "run", "deploy", env=env)
    both_busy = wait_for(
        lambda: all(any(w.startswith("two") for w in lines(shared_dir, u)) for u in labels), 30
    )
    assert both_busy, (lines(shared_dir, USER_KEY), lines(shared_dir, USER_NOSUDO))
    proc.send_signal(signal.SIGKILL)  # the coordinator dies while "two" runs for both users
    proc.communicate(timeout=30)

    out = nexus_project.run("run", "deploy", "--resume", "--format", "json", env=env)
    assert out.code == 0, out
    for user in labels:
        assert lines(shared_dir, user) == [f"one-{user}", f"two-{user}", f"three-{user}"], user
    assert {e["host"] for e in out.of("host.stop")} == set(labels.values())
    # Each login's own status file was asked about its own "two", under its own label.
    probes = [e["message"] for e in out.of("log") if e.get("source") == "resume"]
    for label in labels.values():
        assert any(f"on {label}: command #2" in m for m in probes), probes
    assert {e["host"] for e in out.of("command.stop")} == set(labels.values())

    state_db = Path(nexus_project.env["XDG_STATE_HOME"]) / "nexus" / "state.db"
    store = StateStore(str(state_db))
    try:
        (record,) = store.runs()
        assert record.status == "ok" and record.resumes == 1
        assert {h for _, h in record.hosts} == set(labels.values())
        assert all(row["status"] == "ok" for row in record.hosts.values())
        for label in labels.values():
            assert [record.commands[("deploy", label, i)]["status"] for i in range(3)] == ["ok"] * 3
        assert store.integrity() == []
    finally:
        store.close()
    runs = nexus_project.run("pipelines", "--format", "json")
    assert runs.code == 0 and runs.json()["runs"][0]["status"] == "ok", runs


def test_two_users_on_one_host_appear_separately_in_the_output(
    nexus_project: NexusProject, sshbed: SshBed, shared_dir: Path
) -> None:
    nexus_project.write(nexusfile(sshbed, shared_dir, pause=0))
    out = nexus_project.run("run", "deploy", env={"NEXUS_SSH_CONFIG": ""})
    assert out.code == 0, out
    address, port = sshbed.hosts[0].address, sshbed.port
    for user in (USER_KEY, USER_NOSUDO):
        assert f"{user}@{address}:{port}" in out.stdout, out
        assert lines(shared_dir, user) == [f"one-{user}", f"two-{user}", f"three-{user}"]
