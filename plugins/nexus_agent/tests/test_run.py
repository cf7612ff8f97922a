"""``nexus run`` on agents: selectors, streaming, sharding, failures, dry run and host lists."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from agentbed import Cluster
from nexus_core.testing import NexusProject
from tests.helpers import read_until, start_nexus, stopped

NEXUSFILE = """
    from nexus_core import (all_agents, any_of, hosts, prefer, run, shard_count, shard_end, shard_id, shard_items,
                            shard_start, tagged, task)

    hosts("fleet", all_agents(tag="linux"))

    @task(on=all_agents())
    def everywhere():
        run("echo hello from $NEXUS_WHO", env={"NEXUS_WHO": "an agent"})

    @task(on=tagged("beefy"))
    def heavy():
        run("echo heavy; echo warn >&2")

    @task(on=any_of(2, tag="linux"))
    def two():
        run("echo two")

    @task(on=prefer("fast"))
    def quick():
        run("echo quick")

    @task(on=prefer("nosuchtag"))
    def fallback():
        run("echo fallback")

    @task(on=tagged("gpu"))
    def gpu():
        run("nvidia-smi")

    @task(on=any_of(5, tag="linux"))
    def too_many():
        run("echo x")

    @task(on=["agent://a1"])
    def named():
        run("for i in 1 2 3; do echo tick $i; sleep 0.2; done")

    @task(on=["agent://a1"])
    def missing_binary():
        run("nexus-no-such-binary --version")

    @task(on=["agent://ghost"])
    def ghost():
        run("echo boo")

    @task(on=tagged("linux"), parallel="sharded", shards=5)
    def sharded():
        run(f"echo shard {shard_id()} of {shard_count()} items {shard_items(list(range(10)))}")
        run(f"echo range {shard_start(100)}-{shard_end(100)} of {shard_id()} {shard_end():.1f}")

    @task(on="fleet")
    def grouped():
        run("echo grouped")
"""


def _run(project: NexusProject, *args: str):  # type: ignore[no-untyped-def]
    project.write(NEXUSFILE)
    return project.run("run", *args, "--format", "json")


def _hosts(out, task: str) -> set[str]:  # type: ignore[no-untyped-def]
    return {e["host"] for e in out.of("command.stop") if e.get("task") == task}


def test_selectors_pick_agents_by_tag_count_and_preference(project: NexusProject) -> None:
    out = _run(project, "everywhere", "heavy", "two", "quick", "fallback", "grouped")
    assert out.code == 0, out
    assert _hosts(out, "everywhere") == {"coord", "a1", "a2"}
    assert _hosts(out, "heavy") == {"a2"}
    assert _hosts(out, "two") == {"a1", "a2"}
    assert _hosts(out, "quick") == {"a1"}
    assert len(_hosts(out, "fallback")) == 1
    assert _hosts(out, "grouped") == {"a1", "a2"}
    lines = [e for e in out.of("command.output") if e.get("task") == "everywhere"]
    assert {e["line"] for e in lines} == {"hello from an agent"}, lines
    warn = [e for e in out.of("command.output") if e.get("task") == "heavy" and e.get("stream") == "stderr"]
    assert [e["line"] for e in warn] == ["warn"]


def test_no_agent_matching_fails_at_once_naming_the_agents(project: NexusProject) -> None:
    project.write(NEXUSFILE)
    out = project.run("run", "gpu")
    assert out.code == 3, out
    assert "tagged('gpu')" in out.stderr
    assert "a2 [linux, beefy]" in out.stderr and "coord [hub]" in out.stderr
    out = project.run("run", "too_many")
    assert out.code == 3, out
    assert "any_of(5, tag='linux') needs 5 agent(s), 2 match" in out.stderr


def test_output_streams_line_by_line(project: NexusProject) -> None:
    out = _run(project, "named")
    assert out.code == 0, out
    lines = [e for e in out.of("command.output") if e.get("task") == "named"]
    assert [e["line"] for e in lines] == ["tick 1", "tick 2", "tick 3"]
    assert {e["host"] for e in lines} == {"a1"}


def test_more_shards_than_agents_queue_and_each_runs_once(project: NexusProject) -> None:
    out = _run(project, "sharded")
    assert out.code == 0, out
    lines = sorted(e["line"] for e in out.of("command.output") if e.get("task") == "sharded")
    assert lines == [
        "range 0-20 of 0 0.2",
        "range 20-40 of 1 0.4",
        "range 40-60 of 2 0.6",
        "range 60-80 of 3 0.8",
        "range 80-100 of 4 1.0",
        "shard 0 of 5 items [0, 1]",
        "shard 1 of 5 items [2, 3]",
        "shard 2 of 5 items [4, 5]",
        "shard 3 of 5 items [6, 7]",
        "shard 4 of 5 items [8, 9]",
    ]


def test_a_missing_binary_fails_clearly(project: NexusProject) -> None:
    project.write(NEXUSFILE)
    out = project.run("run", "missing_binary")
    assert out.code == 1, out
    assert "not found" in out.stderr and "a1" in out.stderr


def test_an_unknown_agent_fails_at_once(project: NexusProject) -> None:
    project.write(NEXUSFILE)
    out = project.run("run", "ghost")
    assert out.code == 3, out
    assert "ghost" in out.stderr and "not in the cluster" in out.stderr
    assert "a1 [linux, fast]" in out.stderr


def test_an_agent_host_with_a_user_or_a_port_runs_nothing(project: NexusProject, tmp_path: Path) -> None:
    mark = tmp_path / "ran"
    project.write(
        f"""
        from nexus_core import run, task

        @task(on=["agent://nobody@a1", "agent://a2:22"])
        def as_nobody():
            run("id -un > {mark}")
        """
    )
    out = project.run("run", "as_nobody")
    assert out.code == 2 and not mark.exists(), out  # refused when planned, not run as the agent's user
    assert "nexusfile.py:3: task 'as_nobody'" in out.stderr, out
    assert "agent://nobody@a1: an agent host takes no user or port" in out.stderr, out
    assert "agent://a2:22: an agent host takes no user or port" in out.stderr
    assert 'run(..., user="NAME")' in out.stderr


def test_dry_run_shows_the_agents_each_task_would_use(project: NexusProject) -> None:
    project.write(NEXUSFILE)
    out = project.run("run", "-n", "heavy", "two")
    assert out.code == 0, out
    assert "a2" in out.stdout and "a1" in out.stdout
    # a sharded task's agents take its shards: they were listed as "not targeted by this run"
    sharded = project.run("run", "-n", "sharded")
    assert sharded.code == 0, sharded
    lines = [line for line in sharded.stdout.splitlines() if "(agent://a1" in line or "(agent://a2" in line]
    assert lines and all("takes this run's shards" in line for line in lines), sharded.stdout


def test_hosts_list_shows_agents_with_their_tags(project: NexusProject) -> None:
    project.write(NEXUSFILE)
    out = project.run("hosts", "list", "--format", "json")
    assert out.code == 0, out
    assert "a1" in out.stdout and "fast" in out.stdout
    # With their load and running commands, as the scheduler reports them.
    assert '"running"' in out.stdout and '"slots"' in out.stdout and '"cpu"' in out.stdout, out.stdout


def test_a_limit_names_agents_by_their_name(project: NexusProject) -> None:
    out = _run(project, "everywhere", "-H", "a1")
    assert out.code == 0, out
    assert _hosts(out, "everywhere") == {"a1"}


def test_exec_on_an_agent_ignores_a_task_whose_selector_finds_none(project: NexusProject) -> None:
    """`nexus exec agent://a1` failed with "Host discovery failed: tagged('gpu')" because
    another task of the project asks for agents nobody runs."""
    project.write("""
        from nexus_core import run, tagged, task

        @task(on=tagged("gpu"))
        def train():
            run("echo train")
    """)
    out = project.run("exec", "agent://a1", "--", "echo hi-from-a1")
    assert out.code == 0, out
    assert "hi-from-a1" in out.stdout, out


def test_the_cluster_comes_from_the_nexusfile(project: NexusProject, agent_cluster: Cluster, tmp_path: Path) -> None:
    address = agent_cluster.address
    project.write(f"""
        from nexus_core import config, run, tagged, task

        config(cluster="{address}")

        @task(on=tagged("beefy"))
        def heavy():
            run("echo heavy")
    """)
    # No NEXUS_CLUSTER (it would win: the environment comes before the nexusfile), and no info
    # file of a coordinator started here to fall back on: the address is the nexusfile's.
    project.env.pop("NEXUS_CLUSTER")
    out = project.run("run", "heavy", "--format", "json", env={"NEXUS_AGENT_STATE": str(tmp_path / "none")})
    assert out.code == 0, out
    assert _hosts(out, "heavy") == {"a2"}


def test_resume_asks_the_agent_what_became_of_a_running_command(project: NexusProject, tmp_path: Path) -> None:
    flag, marks = tmp_path / "go", tmp_path / "marks"
    project.write(f"""
        from nexus_core import run, task

        @task(on=["agent://a1"])
        def once():
            run("echo started; for n in $(seq 300); do [ -e {flag} ] && break; sleep 0.1; done; echo ran >> {marks}")
            run("echo second >> {marks}")
    """)
    with stopped(start_nexus(project, "run", "once", "-v", stderr=subprocess.STDOUT), first=flag.touch) as proc:
        read_until(proc, lambda line: "> started" in line)  # until the command runs on the agent
        proc.kill()  # Nexus goes; the command goes on on the agent, which records its end
        proc.communicate(timeout=30)
    for _ in range(300):  # bounded: 30 s
        if marks.exists():
            break
        time.sleep(0.1)
    out = project.run("resume", "--format", "json")
    assert out.code == 0, out
    assert marks.read_text().split() == ["ran", "second"]  # the first command did not run again
    logs = [e.get("message", "") for e in out.of("log")]
    assert any("once on a1: command #1 finished (exit code 0)" in m for m in logs), logs


def test_resume_reruns_only_the_unfinished_shards(project: NexusProject, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    flag = marks / "go"
    project.write(f"""
        from nexus_core import all_agents, run, shard_id, task

        @task(on=all_agents(), parallel="sharded", shards=3)
        def work():
            i = shard_id()
            wait = "" if i == 0 else "for n in $(seq 300); do [ -e {flag} ] && break; sleep 0.1; done; "
            run(f"{{wait}}echo done >> {marks}/shard-{{i}}")
    """)
    # On leaving: the flag lets the interrupted run's shards still on the agents end too.
    with stopped(start_nexus(project, "run", "work", "-v", stderr=subprocess.STDOUT), first=flag.touch) as proc:
        read_until(proc, lambda line: "[work shard-0]" in line and "✓" in line)  # shard 0 recorded as done
        # The state store records the shard just after the line is shown; shards 1 and 2
        # wait for the flag (30 s at most), so this pause only lets the record land.
        time.sleep(2)
        proc.kill()
        proc.communicate(timeout=30)
    out = project.run("resume")
    assert out.code == 0, out
    assert (marks / "shard-0").read_text().split() == ["done"]
    assert (marks / "shard-1").exists() and (marks / "shard-2").exists()


def test_the_least_loaded_agent_is_picked(project: NexusProject, agent_cluster: Cluster, tmp_path: Path) -> None:
    import json

    flag = tmp_path / "go"
    other = NexusProject(tmp_path / "busy", dict(project.env))  # a run of its own (its own project lock)
    other.root.mkdir()
    other.write(f"""
        from nexus_core import run, task

        @task(on=["agent://a1"])
        def busy():
            run("for n in $(seq 600); do [ -e {flag} ] && break; sleep 0.1; done")
    """)
    project.write("""
        from nexus_core import any_of, run, task

        @task(on=any_of(1, tag="linux"))
        def pick():
            run("echo picked")
    """)
    proc = subprocess.Popen(
        [sys.executable, "-m", "nexus_core", "run", "busy", "-q"],
        cwd=other.root,
        env={**os.environ, "NO_COLOR": "1", "CI": "1", **project.env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(300):  # bounded: until the scheduler reports a1's running command
            out = agent_cluster.nexus("agent", "status", "--format", "json")
            agents = {a["name"]: a for a in json.loads(out.stdout)["agents"]} if out.returncode == 0 else {}
            if agents.get("a1", {}).get("running"):
                break
            time.sleep(0.1)
        else:
            raise AssertionError("a1 never reported its running command")
        picked = project.run("run", "pick", "--format", "json")
        assert picked.code == 0, picked
        assert _hosts(picked, "pick") == {"a2"}  # a1 has one of its two slots taken
    finally:
        flag.touch()
        proc.wait(timeout=60)


def test_an_agent_runs_at_most_its_max_concurrent_tasks(project: NexusProject, tmp_path: Path) -> None:
    log = tmp_path / "log"
    project.write(f"""
        from nexus_core import run, tagged, task

        @task(on=tagged("beefy"), parallel="sharded", shards=6)
        def crowd():
            run("echo start >> {log}; sleep 0.4; echo end >> {log}")
    """)
    out = project.run("run", "crowd")
    assert out.code == 0, out
    running, most = 0, 0
    for line in log.read_text().split():  # in the order the commands wrote them
        running += 1 if line == "start" else -1
        most = max(most, running)
    assert log.read_text().split().count("start") == 6
    assert 1 <= most <= 2  # a2 was started with --max-concurrent-tasks 2
