"""An opt-in pytest plugin for plugin authors: run the real ``nexus`` CLI on a temporary nexusfile.

Enable it with ``-p nexus_core.testing`` (or ``pytest_plugins = ["nexus_core.testing"]``)::

    def test_my_executor(nexus_project):
        nexus_project.write('''
            from nexus_core import task, run
            @task
            def hello():
                run("echo hi")
        ''')
        result = nexus_project.run("run", "hello", "--format", "json")
        assert result.code == 0
        assert result.task_status("hello") == "ok"

The project is isolated from the caller's environment: its own XDG folders (so no user
policy file applies), and ``NEXUS_CONFIG``, ``NEXUS_LOAD_PLUGINS`` and ``NEXUS_POLICY_FILE``
are not inherited. Use :meth:`NexusProject.policy` to test your plugin under a policy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

#: Variables of the caller's environment a project never inherits (they would change what runs).
ISOLATED_VARIABLES = ("NEXUS_CONFIG", "NEXUS_LOAD_PLUGINS", "NEXUS_POLICY_FILE", "FORCE_COLOR")


@dataclass
class Outcome:
    """What one ``nexus`` invocation did: exit code, stdout, stderr, and events when JSON."""

    code: int
    stdout: str
    stderr: str
    args: tuple[str, ...] = ()
    events: list[dict[str, Any]] = field(default_factory=list)

    def task_status(self, task: str) -> str | None:
        """Status of ``task`` from its ``task.stop`` event (JSON runs only)."""
        for e in self.events:
            if e.get("event") == "task.stop" and e.get("task") == task:
                return str(e["status"])
        return None

    def of(self, name: str) -> list[dict[str, Any]]:
        """All events named ``name``."""
        return [e for e in self.events if e.get("event") == name]

    def json(self) -> Any:
        """stdout parsed as one JSON document (``nexus plugins --format json`` and the like)."""
        return json.loads(self.stdout)

    def __str__(self) -> str:
        return f"nexus {' '.join(self.args)} -> {self.code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"

    # ``assert result.code == 0, result`` shows repr() cut to 240 characters: start with the
    # command and exit code, end with stderr, so both survive the cut.
    __repr__ = __str__


class NexusProject:
    """A temporary project folder with a nexusfile, and a runner for the real CLI."""

    def __init__(self, root: Path, env: Mapping[str, str] | None = None) -> None:
        self.root = root
        self.env = dict(env or {})

    @property
    def nexusfile(self) -> Path:
        """Path of the project's nexusfile.py."""
        return self.root / "nexusfile.py"

    def write(self, source: str, name: str = "nexusfile.py") -> Path:
        """Write a file (dedented) into the project; returns its path."""
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source).lstrip("\n"), encoding="utf-8")
        return path

    def policy(self, allow: list[str]) -> Path:
        """Write the project's plugin policy file (``allow = [...]``) and return its path."""
        path = (
            Path(self.env["XDG_CONFIG_HOME"]) / "nexus" / "policy.toml"
            if "XDG_CONFIG_HOME" in self.env
            else self.root / "policy.toml"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("allow = [" + ", ".join(json.dumps(a) for a in allow) + "]\n", encoding="utf-8")
        self.env["NEXUS_POLICY_FILE"] = str(path)
        return path

    def run(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        timeout: float = 120,
        cwd: Path | None = None,
        input: str | None = None,
    ) -> Outcome:
        """Run ``nexus ARGS`` in a subprocess from the project folder and capture everything.

        ``env`` adds to (or overrides) the project's environment for this call only.
        """
        inherited = {k: v for k, v in os.environ.items() if k not in ISOLATED_VARIABLES}
        full_env = {**inherited, "NO_COLOR": "1", "CI": "1", **self.env, **(env or {})}
        proc = subprocess.run(
            [sys.executable, "-m", "nexus_core", *args],
            cwd=cwd or self.root,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            check=False,
        )
        events = []
        if "json" in args:
            for line in proc.stdout.splitlines():
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
        return Outcome(proc.returncode, proc.stdout, proc.stderr, tuple(args), events)


@pytest.fixture
def nexus_project(tmp_path: Path) -> Iterator[NexusProject]:
    """A :class:`NexusProject` in a fresh temporary folder, with isolated XDG folders."""
    xdg = tmp_path / ".xdg"
    env = {
        "XDG_STATE_HOME": str(xdg / "state"),
        "XDG_CONFIG_HOME": str(xdg / "config"),
        "XDG_DATA_HOME": str(xdg / "data"),
        "XDG_CACHE_HOME": str(xdg / "cache"),
    }
    project = tmp_path / "project"
    project.mkdir()
    yield NexusProject(project, env)
