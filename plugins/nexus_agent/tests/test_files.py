"""Files on agents through ``nexus run``: upload, template, download and artifacts handed on.

The agents of the session's cluster run on this machine, in the cluster's working folder
(relative paths start there, as for their commands), so what they wrote is checked here.
"""

from __future__ import annotations

from pathlib import Path

from agentbed import Cluster
from nexus_core.testing import NexusProject


def test_files_and_artifacts_move_to_and_from_agents(
    project: NexusProject, agent_cluster: Cluster, tmp_path: Path
) -> None:
    dest = tmp_path / "on-agent"
    dest.mkdir()
    out = f"art-{tmp_path.name}"  # relative: in the agents' working folder
    (project.root / "data.txt").write_text("payload\n")
    (project.root / "app.conf.j2").write_text("port={{ port }}\n")
    project.write(f"""
        from nexus_core import artifact, download, run, task, template, upload

        @task(on=["agent://a1"])
        def build():
            upload("data.txt", "{dest}/data.txt", mode=0o640)
            template("app.conf.j2", "{dest}/app.conf", vars={{"port": 8080}})
            run("mkdir -p {out} && cat {dest}/data.txt {dest}/app.conf > {out}/build.txt")
            artifact("{out}/build.txt")
            download("{dest}/app.conf", "fetched/app.conf")

        @task(on=["agent://a2"], deps=["build"])
        def wipe():
            run("rm {out}/build.txt")

        @task(on=["agent://a2"], deps=["wipe"])
        def use():
            run("cat {out}/build.txt")
    """)
    result = project.run("run", "use", "--format", "json")
    assert result.code == 0, result
    assert (dest / "data.txt").read_text() == "payload\n"
    assert (dest / "data.txt").stat().st_mode & 0o777 == 0o640
    assert (dest / "app.conf").read_text() == "port=8080\n"
    assert (project.root / "fetched" / "app.conf").read_text() == "port=8080\n"
    lines = [e["line"] for e in result.of("command.output") if e.get("task") == "use"]
    assert lines == ["payload", "port=8080"], lines  # delivered again to a2 after `wipe` removed it
    assert {e["host"] for e in result.of("command.stop") if e.get("task") == "use"} == {"a2"}
    again = project.run("run", "build", "--format", "json")  # the same bytes: nothing is sent again
    assert again.code == 0, again
    stops = {e["command"].split()[0]: e for e in again.of("command.stop") if e.get("task") == "build"}
    assert not stops["upload"].get("changed") and not stops["template"].get("changed"), stops
    (agent_cluster.work / out / "build.txt").unlink(missing_ok=True)


def test_files_on_a_shard_fail_clearly(project: NexusProject, tmp_path: Path) -> None:
    (project.root / "data.txt").write_text("payload\n")
    project.write(f"""
        from nexus_core import run, tagged, task, upload

        @task(on=tagged("linux"), parallel="sharded", shards=2)
        def spread():
            upload("data.txt", "{tmp_path}/data.txt")
    """)
    result = project.run("run", "spread")
    assert result.code != 0, result
    assert "is a shard" in result.stderr and "Traceback" not in result.stderr, result
