"""Agents that die, drain, or lose their coordinator: runs fail clearly or move the work on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Collection, Iterator
from pathlib import Path

import pytest
from agentbed import Cluster, free_port, nexus
from nexus_core.testing import NexusProject
from tests.helpers import read_until, start_nexus, stopped

#: Extra agents of this module (killed or drained by its tests): name -> tags.
VICTIMS = {"v1": "shardy", "v2": "shardy", "v3": "drainme", "v4": "movable", "v5": "movable", "v6": "movable"}


@pytest.fixture(scope="module")
def victims(agent_cluster: Cluster) -> Iterator[dict[str, int]]:
    """Start the :data:`VICTIMS` (one command at a time each); their pids by name."""
    for name in VICTIMS:
        assert agent_cluster.nexus("agent", "cert", name).returncode == 0
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "nexus_core", "agent", "start", "--name", name, "--tags", tags,
             "--join", agent_cluster.address.removeprefix("tls://"), "--max-concurrent-tasks", "1"],
            env={**os.environ, **agent_cluster.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, tags in VICTIMS.items()
    ]  # fmt: skip
    try:
        for proc in procs:
            _, err = proc.communicate(timeout=90)
            assert proc.returncode == 0, err
        agent_cluster.wait_agents(set(VICTIMS))
        yield {n: p for n, p in agent_cluster.pids().items() if n in VICTIMS}
    finally:
        pids = agent_cluster.pids()
        agent_cluster.nexus("agent", "stop", *[n for n in VICTIMS if n in pids], timeout=60)


def _wait_file(path: Path, seconds: float = 30) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a killed agent may stay a zombie: its parent is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def _run_killing_agent(
    project: NexusProject, pid_file: Path, args: tuple[str, ...], agents: Collection[int] | None = None
) -> tuple[subprocess.Popen[str], str, str, int]:
    """``nexus ARGS`` in the background; once ``pid_file`` names the agent running a command
    (one of ``agents``, when given), SIGKILL it and wait for the run (90 s at most). Returns
    the finished process, its stdout and stderr, and the killed pid."""
    with stopped(start_nexus(project, *args)) as proc:
        pid = int(_wait_file(pid_file).splitlines()[0])
        if agents is not None:
            assert pid in agents
        os.kill(pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=90)
    return proc, out, err, pid


def test_a_shard_whose_agent_is_killed_runs_again_on_another(
    project: NexusProject, victims: dict[str, int], tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    project.write(f"""
        from nexus_core import run, shard_id, tagged, task

        @task(on=tagged("shardy"), parallel="sharded", shards=2)
        def work():
            run(f"echo $PPID >> {marks}/shard-{{shard_id()}}.pid; sleep 2; echo done {{shard_id()}}")
    """)
    proc, out, err, _ = _run_killing_agent(
        project, marks / "shard-0.pid", ("run", "work", "--format", "json"), victims.values()
    )
    assert proc.returncode == 0, err
    assert "done 0" in out and "done 1" in out
    assert "was lost; running again on" in out
    # a warning of the run, not only an output line (-v would be needed to see it in text mode)
    assert any('"event": "log"' in line and "was lost; running again on" in line for line in out.splitlines()), out
    ran = (marks / "shard-0.pid").read_text().split()
    assert len(ran) == 2 and ran[0] != ran[1]


def test_an_agent_lost_mid_command_fails_the_run_clearly(
    project: NexusProject, victims: dict[str, int], agent_cluster: Cluster
) -> None:
    alive = [n for n, pid in agent_cluster.pids().items() if n in ("v1", "v2") and _alive(pid)]
    name = alive[0]
    pid = agent_cluster.pids()[name]
    project.write(f"""
        from nexus_core import run, task

        @task(on=["agent://{name}"])
        def slow():
            run("echo started; sleep 3; echo finished")
    """)
    with stopped(start_nexus(project, "run", "slow", "-v")) as proc:
        read_until(proc, lambda line: "> started" in line)  # its output, not the command line shown first
        os.kill(pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    assert f"agent {name} was lost while the command ran" in err
    assert "Traceback" not in err
    # the advice looks at the cluster (nexus preflight does not check agents)
    assert "nexus agent status" in err and "nexus preflight" not in err, err


def test_an_idempotent_task_whose_agent_is_lost_moves_to_another(
    project: NexusProject, victims: dict[str, int], tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    project.write(f"""
        from nexus_core import any_of, run, task

        @task(on=any_of(1, tag="movable"))
        def work():
            run("echo $PPID >> {marks}/first")
            run("echo $PPID >> {marks}/second; sleep 3; echo finished")
    """)
    proc, out, err, lost = _run_killing_agent(
        project, marks / "second", ("run", "work", "--format", "json"), victims.values()
    )
    assert proc.returncode == 0, err
    assert "was lost; running again on" in out and "finished" in out
    first, second = (marks / "first").read_text().split(), (marks / "second").read_text().split()
    # The task's first command ran again on the new agent before the one that was cut off.
    assert len(first) == 2 and first[0] == str(lost) and first[1] != first[0], first
    assert second == first, second


def test_a_task_not_idempotent_whose_agent_is_lost_fails_saying_what_ran(
    project: NexusProject, victims: dict[str, int], tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    project.write(f"""
        from nexus_core import any_of, run, task

        @task(on=any_of(1, tag="movable"), idempotent=False)
        def once():
            run("echo first step")
            run("echo $PPID >> {marks}/pid; sleep 3; echo finished")
            run("echo never")
    """)
    proc, out, err, _ = _run_killing_agent(project, marks / "pid", ("run", "once", "-v"))
    assert proc.returncode == 3, out + err
    assert "was lost while the command ran (it did not finish)" in err, err
    assert "not run again on another agent: the task is not idempotent" in err, err
    assert "echo first step" in err, err  # what ran before the loss
    assert (marks / "pid").read_text().count("\n") == 1  # never moved
    assert "Traceback" not in err


def test_a_draining_agent_takes_no_new_commands(
    project: NexusProject, victims: dict[str, int], agent_cluster: Cluster
) -> None:
    out = agent_cluster.nexus("agent", "drain", "v3")
    assert out.returncode == 0, out.stderr
    project.write("""
        from nexus_core import run, tagged, task

        @task(on=tagged("drainme"))
        def drained():
            run("echo never")

        @task(on=["agent://v3"])
        def pinned():
            run("echo never")
    """)
    out = project.run("run", "drained")
    assert out.code == 3, out
    assert "draining: v3" in out.stderr
    out = project.run("run", "pinned")
    assert out.code == 3, out
    assert "v3" in out.stderr and "is draining" in out.stderr
    assert "nexus agent drain v3 --off" in out.stderr and "agent start" not in out.stderr, out
    back = agent_cluster.nexus("agent", "drain", "v3", "--off")  # the drain undone: it works again
    assert back.returncode == 0 and "takes new commands again" in back.stdout, back.stderr
    project.write("""
        from nexus_core import run, task

        @task(on=["agent://v3"])
        def pinned():
            run("echo again")
    """)
    out = project.run("run", "pinned")
    assert out.code == 0, out


def test_an_unreachable_coordinator_fails_the_run_at_once(project: NexusProject) -> None:
    port = free_port()  # nothing listens there: as after the coordinator stopped
    project.write("""
        from nexus_core import all_agents, run, task

        @task(on=all_agents())
        def hello():
            run("echo hello")
    """)
    out = project.run("run", "hello", env={"NEXUS_CLUSTER": f"tls://127.0.0.1:{port}"})
    assert out.code == 3, out
    assert f"127.0.0.1:{port}" in out.stderr and "cannot connect" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_a_stopped_coordinator_fails_the_run_at_once(tmp_path: Path) -> None:
    port = free_port()
    env = {
        "NEXUS_AGENT_DIR": str(tmp_path / "certs"),
        "NEXUS_AGENT_STATE": str(tmp_path / "state"),
        "NEXUS_CLUSTER": f"tls://127.0.0.1:{port}",
    }
    assert nexus(env, "agent", "init", "--name", "solo").returncode == 0
    project = NexusProject(tmp_path, env)
    project.write("""
        from nexus_core import all_agents, run, task

        @task(on=all_agents())
        def hello():
            run("echo hello")
    """)
    try:
        out = nexus(env, "agent", "start", "--coordinator", "--name", "solo", "--port", str(port))
        assert out.returncode == 0, out.stderr
        assert project.run("run", "hello").code == 0
    finally:
        nexus(env, "agent", "stop", timeout=60)
    out = project.run("run", "hello")
    assert out.code == 3, out
    assert f"127.0.0.1:{port}" in out.stderr and "cannot connect" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_agents_rejoin_a_restarted_coordinator(tmp_path: Path) -> None:
    port = free_port()
    env = {
        "NEXUS_AGENT_DIR": str(tmp_path / "certs"),
        "NEXUS_AGENT_STATE": str(tmp_path / "state"),
        "NEXUS_CLUSTER": f"tls://127.0.0.1:{port}",
    }
    cluster = Cluster(env["NEXUS_CLUSTER"], tmp_path, env)
    assert nexus(env, "agent", "init", "--name", "hub").returncode == 0
    assert nexus(env, "agent", "cert", "w1").returncode == 0
    try:
        start = ("agent", "start", "--coordinator", "--no-agent", "--name", "hub", "--port", str(port))
        assert nexus(env, *start).returncode == 0
        assert cluster.start("w1").returncode == 0
        cluster.wait_agents({"w1"})
        out = nexus(env, "agent", "restart", "hub")  # stop, then start with the same settings
        assert out.returncode == 0, out.stderr
        assert "stopped agent hub" in out.stdout and "started coordinator hub" in out.stdout
        cluster.wait_agents({"w1"}, seconds=60)
    finally:
        nexus(env, "agent", "stop", timeout=60)


def test_a_pipeline_cut_by_a_coordinator_restart_fails_clearly_and_resumes(tmp_path: Path) -> None:
    """The coordinator restarts while a command runs: the run fails saying so, the agent
    rejoins by itself (the command goes on there meanwhile), and ``nexus resume`` finishes
    the pipeline: the command the run lost sight of ended on the agent, so the resume asks
    it and does not run it again (as for any command whose connection was lost)."""
    port = free_port()
    env = {
        "NEXUS_AGENT_DIR": str(tmp_path / "certs"),
        "NEXUS_AGENT_STATE": str(tmp_path / "state"),
        "NEXUS_CLUSTER": f"tls://127.0.0.1:{port}",
    }
    cluster = Cluster(env["NEXUS_CLUSTER"], tmp_path, env)
    flag, marks = tmp_path / "go", tmp_path / "marks"
    assert cluster.nexus("agent", "init", "--name", "hub").returncode == 0
    assert cluster.nexus("agent", "cert", "w1").returncode == 0
    project = NexusProject(tmp_path / "project", env)
    project.root.mkdir()
    project.write(f"""
        from nexus_core import run, task

        @task(on=["agent://w1"])
        def long():
            run("echo started; for n in $(seq 300); do [ -e {flag} ] && break; sleep 0.1; done; echo ran >> {marks}")
            run("echo after >> {marks}")
    """)
    try:
        start = ("agent", "start", "--coordinator", "--no-agent", "--name", "hub", "--port", str(port),
                 "--agent-timeout", "10")  # fmt: skip
        assert cluster.nexus(*start).returncode == 0
        assert cluster.start("w1").returncode == 0
        cluster.wait_agents({"w1"})
        with stopped(start_nexus(project, "run", "long", "-v")) as proc:
            read_until(proc, lambda line: "> started" in line)
            out = cluster.nexus("agent", "restart", "hub")
            assert out.returncode == 0, out.stderr
            _, err = proc.communicate(timeout=60)
        assert proc.returncode == 3, err
        assert "coordinator" in err and "Traceback" not in err, err
        cluster.wait_agents({"w1"}, seconds=60)
        flag.touch()  # the command still running on w1 ends now, while no run waits for it
        _wait_file(marks)
        run_id = project.run("pipelines", "--format", "json").json()["runs"][0]["id"]
        resumed = project.run("resume", run_id)  # a failed run is resumed by its id
        assert resumed.code == 0, resumed
        assert marks.read_text().split() == ["ran", "after"]
        # An agent that stops answering without closing its connection (a hung machine, a power
        # cut) is dropped once it has missed its heartbeats for the timeout (Dask: 10 at least).
        pid = cluster.pids()["w1"]
        os.kill(pid, signal.SIGSTOP)
        try:
            cluster.wait_agents({"w1"}, present=False, seconds=40)
        finally:
            os.kill(pid, signal.SIGKILL)
    finally:
        flag.touch()
        cluster.nexus("agent", "stop", timeout=60)


def test_a_stopped_agent_stops_its_running_commands(
    project: NexusProject, agent_cluster: Cluster, tmp_path: Path
) -> None:
    """`nexus agent stop` left the command running alone (its task moved on and ran it again
    beside it; its output and end were lost): the agent stops its commands with itself."""
    assert agent_cluster.nexus("agent", "cert", "stopme").returncode == 0
    assert agent_cluster.start("stopme", "--tags", "stopme").returncode == 0
    done = tmp_path / "finished"
    try:
        project.write(f"""
            from nexus_core import run, task

            @task(on=["agent://stopme"])
            def slow():
                run("echo started; sleep 31.7; echo finished > {done}")
        """)
        with stopped(start_nexus(project, "run", "slow", "-v")) as proc:
            read_until(proc, lambda line: "> started" in line)
            out = agent_cluster.nexus("agent", "stop", "stopme", timeout=60)
            assert out.returncode == 0, out
            rest, err = proc.communicate(timeout=60)
        assert proc.returncode == 3, rest + err
        left = subprocess.run(["pgrep", "-f", "sleep 31.7"], capture_output=True, text=True, check=False)
        assert left.stdout.strip() == "", left.stdout
        time.sleep(0.5)
        assert not done.exists()
    finally:
        if "stopme" in agent_cluster.pids():
            agent_cluster.nexus("agent", "stop", "stopme", timeout=60)
