"""The agent test bed: the session cluster's handle and helpers to run the real ``nexus`` CLI."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

#: The agents of the session's cluster and their tags.
AGENTS = {"a1": "linux,fast", "a2": "linux,beefy"}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nexus(
    env: dict[str, str], *args: str, timeout: float = 90, cwd: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real ``nexus`` CLI with ``env`` added to this process's environment (in ``cwd``)."""
    return subprocess.run(
        [sys.executable, "-m", "nexus_core", *args],
        env={**os.environ, "NO_COLOR": "1", "CI": "1", **env},
        cwd=cwd,
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

    @property
    def work(self) -> Path:
        """The agents' working folder (where they were started): relative paths of their
        commands and files start there."""
        folder = self.root / "work"
        folder.mkdir(exist_ok=True)
        return folder

    def nexus(self, *args: str, timeout: float = 90, **extra: str) -> subprocess.CompletedProcess[str]:
        """``nexus ARGS`` against this cluster (from the agents' working folder)."""
        return nexus({**self.env, **extra}, *args, timeout=timeout, cwd=str(self.work))

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


def kill(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
