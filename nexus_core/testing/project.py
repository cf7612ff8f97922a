"""Run the real ``nexus`` CLI on a temporary project: :class:`NexusProject` and its :class:`Outcome`.

Standard library only; the ``nexus_project`` fixture (:mod:`nexus_core.testing.fixtures`)
makes one per test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Variables of the caller's environment a project never inherits (they would change what runs).
ISOLATED_VARIABLES = (
    "NEXUS_CONFIG",
    "NEXUS_LOAD_PLUGINS",
    "NEXUS_POLICY_FILE",
    "FORCE_COLOR",
    # a developer's own secret keys never reach a test's nexus
    "NEXUS_MASTER_KEY",
    "NEXUS_KEYFILE",
    "NEXUS_PASSPHRASE",
    "NEXUS_SECRETS_FILE",
)


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
        events = parse_events(proc.stdout) if wants_json(args) else []
        return Outcome(proc.returncode, proc.stdout, proc.stderr, tuple(args), events)


def wants_json(args: Sequence[str]) -> bool:
    """True when ``args`` ask for JSON output: ``--format json`` or ``--format=json``.

    Looking for the word ``json`` among the arguments missed ``--format=json`` (one argument),
    which left :attr:`Outcome.events` empty without a word.
    """
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg == "--format=json" or (arg == "--format" and i + 1 < len(args) and args[i + 1] == "json"):
            return True
    return False


def parse_events(stdout: str) -> list[dict[str, Any]]:
    """The JSON objects of ``stdout``, one per line (other lines are skipped)."""
    events: list[dict[str, Any]] = []
    for line in stdout.splitlines():
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            events.append(value)
    return events
