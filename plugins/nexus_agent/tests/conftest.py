"""One agent cluster for the whole test session: a coordinator and two agents on 127.0.0.1.

Started through the real CLI (``nexus agent init``, ``cert``, ``start``) with mutual TLS,
shared by every test (starting Dask processes costs seconds), stopped at the end with
``nexus agent stop``; any process still there after that is killed by its pid.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

from agentbed import AGENTS, Cluster, free_port, kill  # noqa: E402
from nexus_core.testing import NexusProject  # noqa: E402


@pytest.fixture(scope="session")
def agent_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A coordinator (``coord``, tag ``hub``) and the agents of :data:`AGENTS`, all with TLS."""
    root = tmp_path_factory.mktemp("cluster")
    port = free_port()
    env = {
        "NEXUS_AGENT_DIR": str(root / "certs"),
        "NEXUS_AGENT_STATE": str(root / "state"),
        "NEXUS_CLUSTER": f"tls://127.0.0.1:{port}",
    }
    made = Cluster(f"tls://127.0.0.1:{port}", root, env)
    out = made.nexus("agent", "init", "--name", "coord")
    assert out.returncode == 0, out.stderr
    for name in AGENTS:
        out = made.nexus("agent", "cert", name)
        assert out.returncode == 0, out.stderr
    try:
        out = made.nexus(
            "agent", "start", "--coordinator", "--name", "coord", "--port", str(port), "--tags", "hub",
            "--max-concurrent-tasks", "2",
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "nexus_core",
                    "agent",
                    "start",
                    "--name",
                    name,
                    "--tags",
                    tags,
                    "--join",
                    f"127.0.0.1:{port}",
                    "--max-concurrent-tasks",
                    "2",
                ],
                # The agents (not the coordinator, not the CLI) obey this policy while a test
                # writes it (test_policy_agent): absent, nothing is enforced.
                env={**os.environ, **env, "NEXUS_POLICY": str(root / "agent-policy.toml")},
                cwd=str(made.work),  # relative paths of their commands and files start here
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for name, tags in AGENTS.items()
        ]
        for proc in procs:
            _, err = proc.communicate(timeout=90)
            assert proc.returncode == 0, err
        made.wait_agents({"coord", *AGENTS})
        yield made
    finally:
        left = made.pids()
        made.nexus("agent", "stop", timeout=60)
        for pid in left.values():
            kill(pid)


@pytest.fixture
def project(nexus_project: NexusProject, agent_cluster: Cluster) -> NexusProject:
    """A project whose ``nexus`` reaches the session's cluster."""
    nexus_project.env.update(agent_cluster.env)
    return nexus_project
