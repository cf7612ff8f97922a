"""One agent cluster for the whole test session: a coordinator and two agents on 127.0.0.1.

Started through the real CLI (``nexus agent init``, ``cert``, ``start``) with mutual TLS,
shared by every test (starting Dask processes costs seconds), stopped at the end with
``nexus agent stop``; any process still there after that is killed by its pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from nexus_core.testing import NexusProject

#: The agents of the session's cluster and their tags.
AGENTS = {"a1": "linux,fast", "a2": "linux,beefy"}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nexus(env: dict[str, str], *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """Run the real ``nexus`` CLI with ``env`` added to this process's environment."""
    return subprocess.run(
        [sys.executable, "-m", "nexus_core", *args],
        env={**os.environ, "NO_COLOR": "1", "CI": "1", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class Cluster:
    """The session's cluster: its address, its folders and the environment that reaches it."""

    address: str
    root: Path
    env: dict[str, str] = field(default_factory=dict)

    def nexus(self, *args: str, timeout: float = 90, **extra: str) -> subprocess.CompletedProcess[str]:
        """``nexus ARGS`` against this cluster."""
        return nexus({**self.env, **extra}, *args, timeout=timeout)

    def pids(self) -> dict[str, int]:
        """The pid of each running agent started here, by name."""
        found = {}
        for path in (self.root / "state").glob("*.pid"):
            try:
                found[path.stem] = int(path.read_text().strip())
            except (OSError, ValueError):
                continue
        return found

    def start(self, name: str, *args: str) -> subprocess.CompletedProcess[str]:
        """``nexus agent start --name NAME --join ...`` (an agent of this cluster)."""
        return self.nexus("agent", "start", "--name", name, "--join", self.address.removeprefix("tls://"), *args)

    def wait_agents(self, names: set[str], present: bool = True, seconds: float = 30) -> None:
        """Wait until the scheduler lists (or no longer lists) every agent of ``names``."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            out = self.nexus("agent", "status", "--format", "json")
            if out.returncode == 0:
                listed = {a["name"] for a in json.loads(out.stdout)["agents"]}
                if (names <= listed) if present else not (names & listed):
                    return
            time.sleep(0.5)
        raise AssertionError(f"agents {names} {'did not join' if present else 'are still listed'}")


def _kill(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)


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
                env={**os.environ, **env},
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
            _kill(pid)


@pytest.fixture
def project(nexus_project: NexusProject, agent_cluster: Cluster) -> NexusProject:
    """A project whose ``nexus`` reaches the session's cluster."""
    nexus_project.env.update(agent_cluster.env)
    return nexus_project
