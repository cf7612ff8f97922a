"""Cloud bursting for real with the ``local`` provider: agents started as processes that join
the session's cluster with a certificate issued for each, through the real ``nexus`` CLI.

The whole loop: scale from zero when a task targets ``tagged("burst")``, scale up while shards
wait, scale down idle instances, terminate at the end with the cost recorded; manual
``nexus cloud scale``/``status``/``terminate``; an instance's own ``max_runtime``
self-destruct; ``nexus cloud reap`` after the coordinator process was killed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from agentbed import Cluster
from nexus_core.testing import NexusProject


@pytest.fixture
def burst(project: NexusProject, agent_cluster: Cluster) -> Iterator[NexusProject]:
    """The cluster's project; every local instance left is terminated afterwards."""
    yield project
    project.run("cloud", "terminate", "--all", "--provider", "local")


def status(project: NexusProject) -> list[dict[str, object]]:
    out = project.run("cloud", "status", "local", "--format", "json")
    assert out.code == 0, out
    return list(json.loads(out.stdout)["instances"])


def records(cluster: Cluster) -> list[dict[str, object]]:
    """The local instances' records (what ``list`` reads), without a CLI call."""
    folder = cluster.root / "state" / "cloud"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_for(check, seconds: float = 60, step: float = 0.3) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(step)
    raise AssertionError("the condition did not come true in time")


def test_the_whole_loop_in_a_run_scale_from_zero_up_idle_down_and_the_bill(burst: NexusProject) -> None:
    burst.write(
        """
        from nexus_core import cloud, run, shard_id, tagged, task

        cloud("local", count=(0, 2), idle_timeout=2, scale_up_wait=0.5, scale_up_queue=10,
              scale_down_cooldown=6, autoscale_interval=0.3, max_runtime=300, price=0.36)

        @task(on=tagged("burst"), parallel="sharded", shards=4)
        def crunch():
            run(f"sleep 2; echo shard {shard_id()} in $(basename $NEXUS_AGENT_DIR)")

        @task(deps=[crunch])
        def settle():
            run("sleep 10")
        """
    )
    trail = Path(burst.env["XDG_STATE_HOME"]) / "audit.log"
    config = Path(burst.env["XDG_CONFIG_HOME"]) / "nexus" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'[audit.sinks.trail]\ntype = "file"\npath = "{trail}"\n')
    out = burst.run("run", "settle", "-v", timeout=180)
    assert out.code == 0, out
    audited = [r for r in map(json.loads, trail.read_text().splitlines()) if "event" in r]
    started = [r for r in audited if r["event"] == "cloud.instance.provisioned"]
    ended = [r for r in audited if r["event"] == "cloud.instance.terminated"]
    assert len(started) == 2 and {r["instance_id"] for r in started} == {r["instance_id"] for r in ended}
    run_id = next(r["correlation_id"] for r in audited if r["event"] == "run.started")
    assert all(r["correlation_id"] == run_id and r["cost_per_hour"] == 0.36 for r in started), started
    assert all(r["cost"] is not None and r["currency"] == "USD" for r in ended), ended
    config.unlink()
    assert "cloud: started local instance" in out.stderr  # from zero, before the plan
    assert "cloud: local +1 (" in out.stderr and " waiting for " in out.stderr  # shards waited 0.5 s
    assert "(idle for 2 s)" in out.stderr  # and the idle ones went during settle
    assert "cloud: 2 instance(s) started, cost so far $" in out.stderr
    for i in range(4):
        assert f"shard {i} in local-" in out.stdout
    assert status(burst) == []  # nothing left running
    db = sqlite3.connect(Path(burst.env["XDG_STATE_HOME"]) / "nexus" / "state.db")
    rows = db.execute("SELECT agent, hourly_price, ended, cost FROM cloud_instances").fetchall()
    assert len(rows) == 2
    assert all(price == 0.36 and ended is not None and cost is not None for _, price, ended, cost in rows)


def test_a_deep_queue_of_shards_scales_up_mid_run_and_the_shards_move_to_the_new_agents(
    burst: NexusProject,
) -> None:
    # Each shard's first command waits (bounded) until three different agents have started a
    # shard: only agents that join after the plan can get there (Dask would keep the shards on
    # the one agent planned, dask#3264). Its second command must run where the first did.
    barrier = burst.root / "started-on"
    first = (
        f"me=$(basename $NEXUS_AGENT_DIR); echo $me >> {barrier}; "
        f"for i in $(seq 900); do [ $(sort -u {barrier} | wc -l) -ge 3 ] && break; sleep 0.1; done; "
        "echo shard SHARD first on $me"
    )
    burst.write(
        f"""
        from nexus_core import cloud, run, shard_id, tagged, task

        cloud("local", count=(0, 3), scale_up_wait=600, scale_up_queue=1, autoscale_interval=0.3,
              idle_timeout=600, scale_down_cooldown=600, max_runtime=300)

        @task(on=tagged("burst"), parallel="sharded", shards=4)
        def crunch():
            run({first!r}.replace("SHARD", str(shard_id())))
            run(f"echo shard {{shard_id()}} second on $(basename $NEXUS_AGENT_DIR)")
        """
    )
    out = burst.run("run", "crunch", "-v", timeout=240)
    assert out.code == 0, out
    planned = {line.rsplit("(", 1)[1].rstrip(")") for line in out.stderr.splitlines()
               if line.startswith("cloud: started local instance")}  # fmt: skip
    assert len(planned) == 1, out.stderr  # one instance before the plan (scale from zero)
    assert "cloud: local +" in out.stderr and "(more than 1)" in out.stderr, out.stderr  # the queue, not the wait
    where: dict[tuple[str, str], str] = {}
    for line in out.stdout.splitlines():
        words = line.split()
        if "shard" in words and "on" in words:
            i = words.index("shard")
            where[(words[i + 1], words[i + 2])] = words[i + 4]
    assert len(where) == 8, out.stdout
    agents = set(where.values())
    assert len(agents) == 3 and planned < agents, where  # two agents that joined mid-run took shards
    assert all(where[(n, "first")] == where[(n, "second")] for n in "0123"), where  # a shard stays put
    assert "cloud: 3 instance(s) started" in out.stderr and status(burst) == []


def test_nexus_resume_starts_the_runs_cloud_again(burst: NexusProject) -> None:
    marker = burst.root / "go"
    burst.write(
        f"""
        from nexus_core import cloud, run, shard_id, tagged, task

        cloud("local", count=(0, 1), scale_up_wait=0.5, autoscale_interval=0.3, max_runtime=300)

        @task(on=tagged("burst"), parallel="sharded", shards=2)
        def crunch():
            run(f"test -f {marker} && echo shard {{shard_id()}} done")
        """
    )
    failed = burst.run("run", "crunch", "--format", "json", timeout=180)
    assert failed.code == 1, failed
    found = re.search(r'"run_id": ?"([^"]+)"', failed.stdout)
    assert found, failed
    marker.touch()
    resumed = burst.run("resume", found.group(1), timeout=180)
    assert resumed.code == 0, resumed  # the shards found a burst agent: the cloud started again
    assert "cloud: started local instance" in resumed.stderr, resumed.stderr
    assert status(burst) == []


def test_manual_scale_status_and_terminate(burst: NexusProject, agent_cluster: Cluster) -> None:
    burst.write('from nexus_core import cloud\ncloud("local", tags=["burst", "manual"], max_concurrent_tasks=2)\n')
    out = burst.run("cloud", "scale", "local=2")
    assert out.code == 0 and "local: 0 -> 2 instance(s), started local-" in out.stdout, out
    names = {str(r["name"]) for r in records(agent_cluster)}
    assert len(names) == 2
    agent_cluster.wait_agents(names)
    rows = status(burst)
    assert {r["run"] for r in rows} == {"manual"} and all(r["joined"] for r in rows)
    agents = json.loads(agent_cluster.nexus("agent", "status", "--format", "json").stdout)["agents"]
    tags = {a["name"]: a["tags"] for a in agents if a["name"] in names}
    assert all(t == ["burst", "manual"] for t in tags.values()), tags
    # the certificate issued for each instance is not left behind on the coordinator's machine
    assert not [n for n in names if (agent_cluster.root / "certs" / f"{n}.pem").exists()]
    gone = burst.run("cloud", "terminate", "--all")
    assert gone.code == 0 and gone.stdout.count("terminated local-") == 2, gone
    agent_cluster.wait_agents(names, present=False)
    assert status(burst) == []


def test_an_instance_destructs_itself_after_max_runtime(burst: NexusProject, agent_cluster: Cluster) -> None:
    burst.write('from nexus_core import cloud\ncloud("local", max_runtime=4)\n')
    assert burst.run("cloud", "scale", "local=1").code == 0
    (row,) = records(agent_cluster)
    wait_for(lambda: records(agent_cluster) == [], seconds=40)  # nobody terminated it
    wait_for(lambda: not alive(int(str(row["pid"]))), seconds=20)
    agent_cluster.wait_agents({str(row["name"])}, present=False)


def test_reap_after_the_coordinator_process_was_killed(burst: NexusProject, agent_cluster: Cluster) -> None:
    burst.write(
        """
        from nexus_core import cloud, run, tagged, task

        cloud("local", count=(0, 1), max_runtime=300)

        @task(on=tagged("burst"))
        def long():
            run("sleep 60")
        """
    )
    env = {**os.environ, "NO_COLOR": "1", "CI": "1", **burst.env}
    env.pop("NEXUS_CONFIG", None)
    proc = subprocess.Popen([sys.executable, "-m", "nexus_core", "run", "long"], cwd=burst.root, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_for(lambda: len(records(agent_cluster)) == 1, seconds=90)
        (row,) = records(agent_cluster)
        agent_cluster.wait_agents({str(row["name"])})
        assert burst.run("cloud", "reap").stdout.strip() == "nothing to reap"  # its run is alive
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = burst.run("cloud", "reap")
    assert out.code == 0 and f"terminated {row['id']}" in out.stdout and "its run" not in out.stderr, out
    agent_cluster.wait_agents({str(row["name"])}, present=False)


def test_a_dry_run_of_a_burst_task_from_zero_shows_it_waiting_for_the_clouds_instances(burst: NexusProject) -> None:
    """No agent has the tag yet (the normal case before a burst run): the dry run and
    --list-hosts show the task as waiting for the instances the cloud starts with the run, and
    the rest of the plan, instead of failing with "no agent matches tagged('burst')"."""
    burst.write(
        """
        from nexus_core import cloud, hosts, run, tagged, task

        cloud("local", count=(0, 2), max_runtime=300, price=0.36)

        @task
        def build():
            run("echo built")

        @task(on=tagged("burst"), deps=[build], parallel="sharded", shards=4)
        def crunch():
            run("echo crunch")

        hosts("mixed", "local", tagged("burst"))

        @task(on="mixed")
        def mixed():
            run("echo mixed")
        """
    )
    for args in (("-n",), ("-n", "--scale", "local=2"), ("--list-hosts",)):
        out = burst.run("run", "crunch", *args)
        assert out.code == 0, (args, out)
        assert "no agent matches" not in out.stdout + out.stderr
        assert "runs on the instances cloud('local') starts with the run" in out.stdout, (args, out)
    assert "echo built" in burst.run("run", "crunch", "-n").stdout
    both = burst.run("run", "mixed", "-n")  # hosts written out besides the cloud's: planned, not waiting
    assert both.code == 0 and "echo mixed" in both.stdout and "starts with the run" not in both.stdout, both
    assert status(burst) == []  # a dry run starts nothing
