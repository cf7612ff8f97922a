"""Input generators for each benchmarked tool.

Every generator writes its tool's own files (nexusfile, inventory + playbook, deploy file,
Fabric script, Makefile, tasks.py, shell script) into a fresh folder and returns an
:class:`Invocation`: the command line to time, its environment, and how to check that the
tool really ran every command (exit code, expected output, SSH sessions seen by sshd).

Remote workloads all share one shape: ``commands`` run one after the other on every host of
``hosts``, hosts in parallel. Local workloads are a DAG of ``true`` tasks.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Target:
    """The SSH bed as every tool sees it: user, key, known_hosts, port, addresses."""

    user: str
    key: str
    known_hosts: str
    port: int
    addresses: tuple[str, ...]

    def take(self, n: int) -> list[str]:
        """The first ``n`` host addresses."""
        if n > len(self.addresses):
            raise ValueError(f"the bed has {len(self.addresses)} hosts, {n} asked for")
        return list(self.addresses[:n])


@dataclasses.dataclass
class Invocation:
    """One tool run: what to execute and how to tell it worked.

    ``expect_stdout``: (substring, minimum count) that stdout must show; None: not checked.
    ``expect_sessions``: minimum SSH exec sessions sshd must log (None: local workload).
    ``cold``: called before a run that must not reuse anything left by an earlier run
    (e.g. a fresh ControlPersist folder for Ansible). ``cleanup``: called once at the end.
    """

    tool: str
    argv: list[str]
    cwd: str
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    expect_stdout: tuple[str, int] | None = None
    expect_sessions: int | None = None
    expect_hosts: Sequence[str] = ()
    cold: Callable[[], None] | None = None
    cleanup: Callable[[], None] | None = None
    note: str = ""

    def full_env(self) -> dict[str, str]:
        """The environment the tool runs with: ours plus the invocation's."""
        env = dict(os.environ)
        env.update(self.env)
        return env


def fresh_dir(root: Path, name: str) -> Path:
    """An empty folder ``root/name`` (emptied if it exists)."""
    import shutil

    path = root / name
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def diamond_dag(n_tasks: int = 200, width: int = 22) -> dict[str, list[str]]:
    """A lattice of diamonds: one top task, layers of ``width`` tasks, one bottom task.

    Every task of a layer depends on two neighbours of the layer above (``j`` and ``j+1``
    modulo the width), so the graph is a mesh of diamonds. Returns ``{task: [deps]}`` in a
    topological order; the last task is the one to ask for.
    """
    if n_tasks < 3:
        raise ValueError("a diamond needs at least 3 tasks")
    dag: dict[str, list[str]] = {"t0": []}
    prev = ["t0"]
    i = 1
    middle = n_tasks - 2
    while middle > 0:
        w = min(width, middle)
        layer = []
        for j in range(w):
            name = f"t{i}"
            deps = sorted({prev[j % len(prev)], prev[(j + 1) % len(prev)]}, key=lambda s: int(s[1:]))
            dag[name] = deps
            layer.append(name)
            i += 1
        middle -= w
        prev = layer
    dag[f"t{i}"] = list(prev)
    return dag


from bench.workloads import ansible, fabric, invoke, make, nexus, pyinfra, shell  # noqa: E402

__all__ = [
    "Invocation",
    "Target",
    "ansible",
    "diamond_dag",
    "fabric",
    "fresh_dir",
    "invoke",
    "make",
    "nexus",
    "pyinfra",
    "shell",
]
