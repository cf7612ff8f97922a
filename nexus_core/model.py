"""The data model shared by the loader, validator, planner and engine: frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nexus_core.markers import Marker


@dataclass(frozen=True)
class Location:
    """A place in a user's file: path and 1-based line (0 when unknown)."""

    path: str
    line: int = 0

    def __str__(self) -> str:
        import os

        name = os.path.basename(self.path)
        return f"{name}:{self.line}" if self.line else name


@dataclass(frozen=True)
class Host:
    """One target machine. ``transport`` picks the executor (``local``, ``ssh``, ...)."""

    name: str
    user: str | None = None
    port: int | None = None
    transport: str = "ssh"
    source: str = ""

    @property
    def is_local(self) -> bool:
        """True for the machine Nexus runs on."""
        return self.transport == "local"

    @property
    def label(self) -> str:
        """Short name shown in output: the host name, with the port when one was given."""
        if self.port is None:
            return self.name
        return f"[{self.name}]:{self.port}" if ":" in self.name else f"{self.name}:{self.port}"

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON output."""
        return {"name": self.name, "user": self.user, "port": self.port, "transport": self.transport}


LOCAL = Host(name="local", transport="local", source="local")


@dataclass(frozen=True)
class Command:
    """One recorded ``run(...)`` operation, with every option resolved."""

    cmd: str
    sudo: bool = False
    user: str | None = None
    timeout: float = 60
    retries: int = 0
    retry_delay: float = 1
    continue_on_error: bool = False
    env: tuple[tuple[str, str], ...] = ()
    cwd: str | None = None
    line: int = 0
    #: Idempotence guards (see nexus_core.guards): skip when PATH exists / unless CMD succeeds...
    creates: str | None = None
    only_if: str | None = None
    unless: str | None = None
    #: Set by the engine at execution time: where the host records pid and exit code.
    marker: Marker | None = field(default=None, compare=False)

    def flags(self) -> list[str]:
        """The dry-run flags of this command, e.g. ``[sudo]``, ``[retries:5]``."""
        out: list[str] = []
        if self.sudo or self.user:
            out.append(f"sudo:{self.user}" if self.user else "sudo")
        if self.retries:
            out.append(f"retries:{self.retries}")
        if self.timeout != 60:
            out.append(f"timeout:{_fmt_seconds(self.timeout)}")
        if self.continue_on_error:
            out.append("continue-on-error")
        if self.cwd:
            out.append(f"cwd:{self.cwd}")
        if self.env:
            out.append("env:" + ",".join(k for k, _ in self.env))
        if self.creates:
            out.append(f"creates:{self.creates}")
        if self.only_if:
            out.append(f"only_if:{self.only_if}")
        if self.unless:
            out.append(f"unless:{self.unless}")
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON output."""
        return {
            "cmd": self.cmd,
            "sudo": self.sudo,
            "user": self.user,
            "timeout": self.timeout,
            "retries": self.retries,
            "retry_delay": self.retry_delay,
            "continue_on_error": self.continue_on_error,
            "env": dict(self.env),
            "cwd": self.cwd,
            "line": self.line,
            # guards only when set, so that plans without them keep their exact shape
            **{k: v for k, v in (("creates", self.creates), ("only_if", self.only_if), ("unless", self.unless)) if v},
        }


def _fmt_seconds(value: float) -> str:
    return f"{int(value)}s" if float(value).is_integer() else f"{value}s"


@dataclass(frozen=True)
class TaskDef:
    """A task as declared by ``@task``: its options as given, not yet resolved."""

    name: str
    func: Any
    location: Location
    deps: tuple[Any, ...] = ()
    on: Any = "local"
    strategy: str = "parallel"
    timeout: float | None = None
    doc: str = ""
    extra: tuple[tuple[str, Any], ...] = ()

    @property
    def summary(self) -> str:
        """First line of the docstring."""
        return self.doc.strip().splitlines()[0].strip() if self.doc.strip() else ""


@dataclass(frozen=True)
class HostGroup:
    """A named group from ``hosts(name, ...)``."""

    name: str
    members: tuple[str, ...]
    groups: tuple[str, ...]
    location: Location


@dataclass(frozen=True)
class Problem:
    """One validation problem: where, what, and how to fix it."""

    message: str
    location: Location | None = None
    hint: str = ""
    code: str = "invalid"

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON output."""
        return {
            "message": self.message,
            "file": self.location.path if self.location else None,
            "line": self.location.line if self.location else None,
            "hint": self.hint,
            "code": self.code,
        }


@dataclass
class Project:
    """A loaded nexusfile: tasks, groups and config in definition order (mutable while loading)."""

    path: str
    root: str
    tasks: dict[str, TaskDef] = field(default_factory=dict)
    groups: dict[str, HostGroup] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    config_locations: dict[str, Location] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    source_hash: str = ""
