"""``parallel="sharded"`` and the shard functions, on the local machine (agents: nexus-agent's tests)."""

from __future__ import annotations

from nexus_core.testing import NexusProject

NEXUSFILE = """
    from nexus_core import run, shard_count, shard_end, shard_id, shard_items, shard_start, task

    @task(parallel="sharded", shards=3)
    def work():
        run(f"echo {shard_id()}/{shard_count()} {shard_items(list(range(10)))} {shard_start(100)}-{shard_end(100)}")

    @task
    def plain():
        run(f"echo {shard_id()}/{shard_count()} {shard_items('abc')} {shard_start()}-{shard_end()}")

    @task(on=["h1.invalid", "h2.invalid"], parallel="sharded", shards=3)
    def too_many():
        run("true")
"""


def test_each_shard_runs_once_with_its_part(nexus_project: NexusProject) -> None:
    nexus_project.write(NEXUSFILE)
    out = nexus_project.run("run", "work", "plain", "--format", "json")
    assert out.code == 0, out
    lines = {e["host"]: e["line"] for e in out.of("command.output") if e["task"] == "work"}
    assert lines == {
        "shard-0": "0/3 [0, 1, 2] 0-33",
        "shard-1": "1/3 [3, 4, 5] 33-66",
        "shard-2": "2/3 [6, 7, 8, 9] 66-100",
    }
    (plain,) = [e["line"] for e in out.of("command.output") if e["task"] == "plain"]
    assert plain == "0/1 [a, b, c] 0.0-1.0"  # the shell ate the quotes


def test_more_shards_than_fixed_hosts_is_a_validation_error(nexus_project: NexusProject) -> None:
    nexus_project.write(NEXUSFILE)
    out = nexus_project.run("run", "too_many", "-n")
    assert out.code == 2, out
    assert "shards=3 is more than its 2 host(s)" in out.stderr


def test_parallel_takes_only_sharded(nexus_project: NexusProject) -> None:
    nexus_project.write("""
        from nexus_core import run, task

        @task(parallel="shardd")
        def work():
            run("true")
    """)
    out = nexus_project.run("validate")
    assert out.code == 2, out
    assert "sharded" in out.stderr


def test_a_shard_count_past_the_maximum_is_refused_at_once(nexus_project: NexusProject) -> None:
    # shards=10**9 passed validation on agents, then the planner made a billion shards (4 GB)
    nexus_project.write('from nexus_core import run, task\n\n@task(parallel="sharded", shards=10**9)\ndef x():\n'
                        '    run("true")\n')  # fmt: skip
    out = nexus_project.run("validate", timeout=30)
    assert out.code == 2 and "shards must be at most 100,000" in out.stderr, out
