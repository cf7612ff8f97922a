"""Where audit sinks are declared, and each sink's salt.

Sinks are tables of the configuration files::

    [audit.sinks.central]
    type = "syslog"           # the sink's type: file, syslog, splunk, azure_log_analytics, a plugin's
    required = true           # the run does not start (or starts no new work) when it cannot write
    address = "tcp://logs.example.com:601"

Files are read in this order: the system files (``/etc/nexus/config.toml``, then
``$NEXUS_SYSTEM_CONFIG`` which only adds), the user file, the project file. A sink a
system file declares is mandatory: a user or project file cannot redefine or remove it
(declaring the same name is an error); between the user and the project file, the project's
table replaces the user's of the same name.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nexus_core.options import Option, suggest
from nexus_core.settings import SettingsError, section_files, system_files

#: Keys every sink's table accepts; the core reads them, the sink never sees them.
COMMON: dict[str, Option] = {
    o.name: o
    for o in [
        Option("type", (str,), None, 'the sink type: "file", "syslog", "splunk", "azure_log_analytics" or a plugin\'s'),
        Option("required", (bool,), False, "true: the run does not start, or starts no new work, when it cannot write"),
        Option("queue_size", (int,), 10000, "records waiting for the sink before new ones are dropped", minimum=1),
        Option("flush_timeout", (float, int), 30.0, "seconds the end of a run waits for the sink", minimum=0),
        Option("salt", (str,), None, "the secret that HMACs matchable values (default: a generated salt file)"),
        Option("salt_file", (str,), None, "a file holding the salt (default: ~/.config/nexus/audit/NAME.salt)"),
    ]
}


class AuditConfigError(SettingsError):
    """A sink declaration Nexus cannot use: where, what, and how to fix it."""


@dataclass(frozen=True)
class SinkConfig:
    """One declared sink: its name, type, failure policy and own options, and where it was declared."""

    name: str
    type: str
    required: bool = False
    queue_size: int = 10000
    flush_timeout: float = 30.0
    salt: str | None = None
    salt_file: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    where: str = ""
    system: bool = False

    def describe(self) -> str:
        """``'central' (syslog, required)`` for messages."""
        policy = "required" if self.required else "optional"
        return f"'{self.name}' ({self.type}, {policy})"


def load(root: str | None = None, env: Mapping[str, str] | None = None) -> list[SinkConfig]:
    """Every declared sink, system ones first; raise :class:`AuditConfigError` for a bad declaration."""
    env = os.environ if env is None else env
    system = set(system_files(env))
    sinks: dict[str, SinkConfig] = {}
    for path in section_files("audit", root, env):
        for sink in _read(path, path in system):
            before = sinks.get(sink.name)
            if before is not None and before.system and not sink.system:
                raise AuditConfigError(
                    f"audit sink {sink.name!r} is declared by the system file {before.where}; "
                    "a user or project file cannot redefine it",
                    sink.where,
                    "give your own sink another name (the system one stays in force)",
                )
            sinks[sink.name] = sink
    return list(sinks.values())


def configured(root: str | None = None, env: Mapping[str, str] | None = None) -> bool:
    """True when some file may declare a sink (cheap: files are not parsed)."""
    return bool(section_files("audit", root, env))


def _read(path: str, system: bool) -> list[SinkConfig]:
    import tomllib

    try:
        with open(path, "rb") as fh:
            text = fh.read().decode("utf-8")
        data = tomllib.loads(text)
    except OSError as exc:
        raise AuditConfigError(f"cannot read {path}: {exc.strerror or exc}", path) from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise AuditConfigError(f"invalid TOML: {exc}", path, "fix the file's syntax") from None
    audit = data.get("audit")
    if audit is None:
        return []
    lines = text.splitlines()
    if not isinstance(audit, dict):
        raise AuditConfigError("audit must be a table ([audit.sinks.NAME])", path, "see docs/compliance.md")
    for key in audit:
        if key != "sinks":
            raise AuditConfigError(f"unknown key audit.{key}", _where(path, lines, f"audit.{key}"),
                                   "the [audit] table holds sinks only: [audit.sinks.NAME]")  # fmt: skip
    tables = audit.get("sinks", {})
    if not isinstance(tables, dict):
        raise AuditConfigError("audit.sinks must be a table of sinks", path, "write [audit.sinks.NAME] tables")
    out = []
    for name, table in tables.items():
        where = _where(path, lines, f"audit.sinks.{name}")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise AuditConfigError(f"bad sink name {name!r}", where, "use letters, digits, '-', '_' or '.'")
        if not isinstance(table, dict):
            raise AuditConfigError(f"audit.sinks.{name} must be a table", where, f"write [audit.sinks.{name}]")
        common: dict[str, Any] = {}
        for key, spec in COMMON.items():
            value = table.get(key, spec.default)
            why = spec.problem(value)
            if why:
                raise AuditConfigError(f"audit sink {name!r}: {why}", where, spec.help)
            common[key] = value
        if not common["type"]:
            raise AuditConfigError(f"audit sink {name!r} has no type", where,
                                   'add type = "file" (or "syslog", "splunk", "azure_log_analytics")')  # fmt: skip
        options = {k: v for k, v in table.items() if k not in COMMON}
        out.append(SinkConfig(name, common["type"], common["required"], int(common["queue_size"]),
                              float(common["flush_timeout"]), common["salt"], common["salt_file"], options,
                              where, system))  # fmt: skip
    return out


def _where(path: str, lines: list[str], table: str) -> str:
    pattern = re.compile(r"^\s*\[\s*" + r"\s*\.\s*".join(re.escape(p) for p in table.split(".")) + r"\s*\]")
    line = next((n for n, text in enumerate(lines, 1) if pattern.match(text)), 0)
    return f"{path}:{line}" if line else path


def check_options(sink: SinkConfig, options: tuple[Option, ...]) -> dict[str, Any]:
    """The sink's own keys checked against ``options``, defaults filled in; raise :class:`AuditConfigError`."""
    specs = {o.name: o for o in options}
    out: dict[str, Any] = {}
    for key, value in sink.options.items():
        spec = specs.get(key)
        if spec is None:
            close = suggest(key, {**specs, **COMMON})
            known = ", ".join(sorted([*specs, *COMMON]))
            raise AuditConfigError(f"audit sink {sink.name!r} ({sink.type}): unknown key {key!r}", sink.where,
                                   f"did you mean {close!r}?" if close else f"known keys: {known}")  # fmt: skip
        why = spec.problem(value)
        if why:
            raise AuditConfigError(f"audit sink {sink.name!r}: {why}", sink.where, spec.help)
        out[key] = value
    for spec in options:
        out.setdefault(spec.name, spec.default)
    return out


def audit_dir(env: Mapping[str, str] | None = None) -> str:
    """``~/.config/nexus/audit``: generated salts and the file sink's signing key (0700)."""
    from nexus_core.state.paths import config_dir

    return os.path.join(config_dir(env), "audit")


def salt_of(sink: SinkConfig, env: Mapping[str, str] | None = None, create: bool = True) -> bytes:
    """The sink's HMAC salt: ``salt``, else ``salt_file``, else a generated file (0600) in :func:`audit_dir`."""
    if sink.salt:
        return sink.salt.encode()
    path = sink.salt_file or os.path.join(audit_dir(env), f"{sink.name}.salt")
    try:
        with open(path, "rb") as fh:
            value = fh.read().strip()
        if value:
            return value
    except FileNotFoundError:
        if not create or sink.salt_file:
            raise AuditConfigError(f"the salt file {path} of audit sink {sink.name!r} does not exist",
                                   sink.where or path,
                                   "create it (a long random line, mode 0600) or set salt_file") from None  # fmt: skip
    except OSError as exc:
        raise AuditConfigError(f"cannot read the salt file {path} of audit sink {sink.name!r}: "
                               f"{exc.strerror or exc}", sink.where or path,
                               "run as a user allowed to read it") from None  # fmt: skip
    value = secrets.token_hex(32).encode()
    write_private(path, value + b"\n")
    return value


def write_private(path: str, data: bytes) -> None:
    """Write ``data`` to a new file readable by its owner only (0600; its folder 0700)."""
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)


__all__ = [
    "COMMON",
    "AuditConfigError",
    "SinkConfig",
    "audit_dir",
    "check_options",
    "configured",
    "load",
    "salt_of",
    "write_private",
]
