"""Durable state over SSH: the host is asked what happened to a command after a crash."""

from __future__ import annotations

import os
import random
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from nexus_core.state.store import StateStore
from nexus_core.testing import NexusProject
from nexus_core.testing.sshbed import USER_KEY, SshBed
from tests.helpers import start_nexus, stopped, wait_for

pytestmark = [pytest.mark.ssh, pytest.mark.session_mode]  # session_mode: run again in exec mode (dev.py)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder the remote test user can write (the bed's hosts are this machine).

    Not under pytest's tmp_path: its parents are private to root.
    """
    path = Path(tempfile.mkdtemp(prefix="nexus-remote-logs-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def nexusfile(bed: SshBed, logs: Path, body: str) -> str:
    hosts = ", ".join(repr(h.address) for h in bed.hosts)
    return f"""
from nexus_core import config, hosts, hostname, run, task

config(ssh_user={USER_KEY!r}, ssh_identity={bed.key_path("ed25519")!r},
       ssh_known_hosts_file={bed.known_hosts!r}, ssh_port={bed.port}, interrupt_grace=0.3,
       terminate_grace=0.3)
hosts("web", {hosts})

def step(name, pause):
    # Prints before, during and after its pause: a kill of nexus meets it printing.
    run(f"echo {{name}} >> {logs}/log-{{hostname()}}; for t in 1 2 3; do echo {{name}} tick $t; "
        f"echo {{name}} warn $t >&2; sleep 0.01; done; sleep {{pause}}; echo {{name}} done")
{body}
"""


def lines(logs: Path, host: str) -> list[str]:
    path = logs / f"log-{host}"
    return path.read_text().split() if path.exists() else []


def run_env(project: NexusProject) -> dict[str, str]:
    return {"NEXUS_SSH_CONFIG": ""}


SLOW_MIDDLE = """
@task(on="web")
def deploy():
    step("one", 0)
    step("two", {pause})
    step("three", 0)
"""


def test_command_still_running_on_the_host_is_waited_for_not_restarted(nexus_project, sshbed, shared_dir):
    nexus_project.write(nexusfile(sshbed, shared_dir, SLOW_MIDDLE.format(pause=3)))
    proc = start_nexus(nexus_project, "run", "deploy", env=run_env(nexus_project))
    assert wait_for(lambda: all("two" in lines(shared_dir, h.address) for h in sshbed.hosts), timeout=20)
    proc.send_signal(signal.SIGKILL)  # the coordinator dies; "two" keeps running on every host
    proc.communicate(timeout=30)
    out = nexus_project.run("run", "deploy", "--resume", "--format", "json", env=run_env(nexus_project))
    assert out.code == 0, out
    probes = [e["message"] for e in out.of("log") if e.get("source") == "resume"]
    for host in sshbed.hosts:
        assert lines(shared_dir, host.address) == ["one", "two", "three"], (host.address, probes)
    assert probes and all("running" in m or "finished (exit code 0)" in m for m in probes), probes


def test_command_that_finished_while_nexus_was_down_is_not_run_again(nexus_project, sshbed, shared_dir):
    nexus_project.write(nexusfile(sshbed, shared_dir, SLOW_MIDDLE.format(pause=1)))
    proc = start_nexus(nexus_project, "run", "deploy", env=run_env(nexus_project))
    assert wait_for(lambda: all("two" in lines(shared_dir, h.address) for h in sshbed.hosts), timeout=20)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    time.sleep(1.5)  # "two" finishes on every host while nobody watches
    out = nexus_project.run("run", "deploy", "--resume", "--format", "json", env=run_env(nexus_project))
    assert out.code == 0, out
    for host in sshbed.hosts:
        assert lines(shared_dir, host.address) == ["one", "two", "three"]
    probes = [e["message"] for e in out.of("log") if e.get("source") == "resume"]
    assert len(probes) == 3 and all("finished (exit code 0)" in m for m in probes), probes


def test_command_that_never_reached_the_host_is_run(nexus_project, sshbed, shared_dir):
    nexus_project.write(nexusfile(sshbed, shared_dir, SLOW_MIDDLE.format(pause=1)))
    proc = start_nexus(nexus_project, "run", "deploy", env=run_env(nexus_project))
    assert wait_for(lambda: all("two" in lines(shared_dir, h.address) for h in sshbed.hosts), timeout=20)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    time.sleep(1.5)
    # As if the exec request had never arrived: the host has no status files for the run.
    # Only this run's folders: the bed user's home is shared with every other test process.
    state_db = Path(nexus_project.env["XDG_STATE_HOME"]) / "nexus" / "state.db"
    store = StateStore(str(state_db))
    (run_id,) = store.db.execute("SELECT id FROM runs").fetchone()
    store.close()
    home = Path(f"/var/lib/nexus-sshbed/home/{USER_KEY}/.cache/nexus/runs")
    for folder in home.glob(f"{run_id}@*"):
        shutil.rmtree(folder, ignore_errors=True)
    out = nexus_project.run("run", "deploy", "--resume", "--format", "json", env=run_env(nexus_project))
    assert out.code == 0, out
    probes = [e["message"] for e in out.of("log") if e.get("source") == "resume"]
    assert probes and all("never" in m for m in probes), probes
    for host in sshbed.hosts:
        assert lines(shared_dir, host.address) == ["one", "two", "two", "three"]


def test_sigint_lets_remote_commands_finish_then_stops_them_and_leaves_no_process(
    nexus_project, sshbed, shared_dir
):
    nexus_project.write(nexusfile(sshbed, shared_dir, SLOW_MIDDLE.format(pause=38.5)))
    proc = start_nexus(nexus_project, "run", "deploy", env=run_env(nexus_project))
    assert wait_for(lambda: all("two" in lines(shared_dir, h.address) for h in sshbed.hosts), timeout=20)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, (stdout, stderr)
    assert sshbed.wait_no_process(USER_KEY, "sleep 38.5", 10) == []
    assert "Interrupted" in stdout


def test_sigkill_at_random_points_on_many_hosts(nexus_project, sshbed, shared_dir):
    body = """
@task(on="web")
def prepare():
    for i in range(3):
        step(f"p{i}", 0.05)

@task(on="web", deps=[prepare], strategy="rolling", batch=1)
def deploy():
    for i in range(2):
        step(f"d{i}", 0.1)

@task(deps=[deploy])
def report():
    run("true")
"""
    nexus_project.write(nexusfile(sshbed, shared_dir, body))
    expected = ["p0", "p1", "p2", "d0", "d1"]
    rng = random.Random(11)
    iterations = int(os.environ.get("NEXUS_KILL_ITERATIONS_SSH", "4"))
    state_db = Path(nexus_project.env["XDG_STATE_HOME"]) / "nexus" / "state.db"
    for it in range(iterations):
        for f in shared_dir.iterdir():
            f.unlink()
        proc = start_nexus(nexus_project, "run", "report", "--no-resume", env=run_env(nexus_project))
        time.sleep(rng.uniform(0.3, 2.0))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        finished = False
        if state_db.exists():
            store = StateStore(str(state_db))
            assert store.integrity() == [], f"iteration {it}"
            row = store.db.execute("SELECT status FROM runs").fetchone()
            finished = row is not None and row["status"] == "ok"  # the kill came after the run ended
            store.close()
        if not finished:
            out = nexus_project.run("run", "report", "--resume", env=run_env(nexus_project))
            assert out.code == 0, (it, out)
        for host in sshbed.hosts:
            assert sorted(lines(shared_dir, host.address)) == sorted(expected), (it, host.address)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{state_db}{suffix}").unlink(missing_ok=True)


MIGRATION = """
@task(on="web")
def migrate():
    run(f"echo start >> {logs}/log-{{hostname()}}; echo begun; sleep 2; echo finished-while-away; "
        f"echo done >> {logs}/log-{{hostname()}}")
"""


@pytest.mark.parametrize("wait_before_resume", [False, True])
def test_a_remote_command_running_at_a_kill_is_never_started_again(
    nexus_project, sshbed, shared_dir, wait_before_resume
):
    """kill -9 while the command sleeps between two output lines: it finishes on each host, once."""
    nexus_project.write(nexusfile(sshbed, shared_dir, MIGRATION.format(logs=shared_dir)))
    proc = start_nexus(nexus_project, "run", "migrate", "-v", env=run_env(nexus_project))
    assert wait_for(lambda: all("start" in lines(shared_dir, h.address) for h in sshbed.hosts), timeout=20)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    if wait_before_resume:  # it finishes while nobody watches; resume shows its output
        assert wait_for(lambda: all("done" in lines(shared_dir, h.address) for h in sshbed.hosts), timeout=20)
    out = start_nexus(nexus_project, "run", "migrate", "--resume", "-v", env=run_env(nexus_project))
    stdout, stderr = out.communicate(timeout=60)
    assert out.returncode == 0, (stdout, stderr)
    for host in sshbed.hosts:
        assert lines(shared_dir, host.address) == ["start", "done"], host.address
    assert stdout.count("finished-while-away") >= len(sshbed.hosts), stdout


def test_remote_output_streams_while_a_spooled_command_runs(nexus_project, sshbed, shared_dir):
    """Output of a long command is shown while it runs, not only at its end."""
    body = f"""
@task(on="web")
def slow():
    run(f"echo first; echo first-err >&2; sleep 1; touch {shared_dir}/seen-{{hostname()}}; sleep 30")
"""
    nexus_project.write(nexusfile(sshbed, shared_dir, body))
    proc = start_nexus(nexus_project, "run", "slow", "-v", env=run_env(nexus_project))
    assert wait_for(lambda: (shared_dir / f"seen-{sshbed.hosts[0].address}").exists(), timeout=20)
    proc.send_signal(signal.SIGINT)
    stdout, _ = proc.communicate(timeout=30)
    # No replay comes for an interrupted command: what is shown was followed while it ran.
    assert stdout.count("> first-err\n") == len(sshbed.hosts), stdout
    assert stdout.count("> first\n") == len(sshbed.hosts), stdout


@pytest.mark.slow
def test_sigkill_soak_on_many_hosts(nexus_project, sshbed, shared_dir, monkeypatch):
    monkeypatch.setenv("NEXUS_KILL_ITERATIONS_SSH", "20")
    test_sigkill_at_random_points_on_many_hosts(nexus_project, sshbed, shared_dir)


def test_a_runs_status_folder_on_the_host_is_its_users_alone(nexus_project, sshbed, shared_dir):
    """The spools hold what commands print (a sudo command's output, a secret before it is
    masked): the run's folder on the host was 0755 in a 0755 home, readable by every user."""
    import json
    import stat

    nexus_project.write(nexusfile(sshbed, shared_dir, SLOW_MIDDLE.format(pause=2)))
    proc = start_nexus(nexus_project, "run", "deploy", "--format", "json", env=run_env(nexus_project))
    with stopped(proc):
        assert proc.stdout is not None
        run_id = json.loads(proc.stdout.readline())["run_id"]
        assert wait_for(lambda: all("two" in lines(shared_dir, h.address) for h in sshbed.hosts), timeout=20)
        home = Path(f"/var/lib/nexus-sshbed/home/{USER_KEY}/.cache/nexus/runs")
        folders = list(home.glob(f"{run_id}@*"))
        assert len(folders) == len(sshbed.hosts), folders
        modes = [oct(stat.S_IMODE(f.stat().st_mode)) for f in folders]
        assert modes == ["0o700"] * len(folders), modes
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_a_command_ignoring_term_at_the_resume_is_killed_on_the_host(nexus_project, sshbed, shared_dir):
    """SIGTERM at the resume's timeout ended the command's wrapper, not the command: the resume
    said "was stopped" and the command ran on. Its process group is asked and killed now."""
    body = f"""
@task(on="web")
def trapped():
    run("trap '' INT TERM; echo A >> {shared_dir}/log-$(hostname); sleep 31.9; echo B >> {shared_dir}/log-x",
        timeout=3)
"""
    nexus_project.write(nexusfile(sshbed, shared_dir, body))
    with stopped(start_nexus(nexus_project, "run", "trapped", env=run_env(nexus_project))) as proc:
        assert wait_for(lambda: len(list(shared_dir.glob("log-*"))) >= 1, timeout=20)
        time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    out = nexus_project.run("resume", env=run_env(nexus_project), timeout=90)
    assert out.code == 4, out
    assert sshbed.wait_no_process(USER_KEY, "sleep 31.9", 10) == []
    assert not (shared_dir / "log-x").exists()
