"""Configuration files and environment defaults: where each effective setting comes from.

Settings are the ``config(...)`` keys (``ssh_user``, ``parallel_limit``, ``log_level``...)
plus defaults of CLI options that are not config keys (``format``, ``log_format``).
Precedence, highest first::

    command line > environment (NEXUS_<KEY>) > nexusfile config() > project file > user file > built-in

- user file: ``$XDG_CONFIG_HOME/nexus/config.toml`` (``~/.config/nexus/config.toml``);
- project file: ``.nexus/config.toml`` in the nexusfile's folder.

Both are flat TOML tables of ``key = value``. An unknown key, a wrong type or bad TOML is
an error naming the file and line (with a "did you mean"). Everything here is pure except
reading the files; the CLI applies the result.

Tables named in :data:`SECTIONS` (``[audit]``) are left to their own module
(``nexus_core.audit.config``), which also reads them from the system file
``/etc/nexus/config.toml``: what a platform team declares there, a user cannot switch off.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from nexus_core.options import Option, safe_repr, suggest
from nexus_core.records import Record

#: CLI options whose defaults the files and environment may set (they are not config() keys).
CLI_OPTIONS: dict[str, Option] = {
    o.name: o
    for o in [
        Option("format", (str,), "text", "output of commands: text or json", choices=("text", "json")),
        Option("log_format", (str,), "text", "format of the logs on stderr", choices=("text", "json")),
    ]
}


FILE_NAME = "config.toml"

#: Tables of the configuration files that their own module reads (``[audit.sinks.NAME]``...):
#: ignored by :func:`read_file`, never a "did you mean".
SECTIONS = ("audit",)

#: The machine-wide file a platform team owns (root-owned; users cannot edit or skip it).
SYSTEM_FILE = "/etc/nexus/config.toml"

#: A further machine-wide file (containers, tests): it only adds to :data:`SYSTEM_FILE`, so
#: setting it never hides what that file declares.
SYSTEM_FILE_ENV = "NEXUS_SYSTEM_CONFIG"


class SettingsError(Exception):
    """A configuration file or variable Nexus cannot use: where, what, and how to fix it."""

    def __init__(self, message: str, where: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.where = where
        self.hint = hint


class Setting(Record):
    """One effective value and where it came from (``source``: built-in, user file...)."""

    __slots__ = ("key", "value", "source", "where")
    key: str
    value: Any
    source: str
    where: str

    def __init__(self, key: str, value: Any, source: str, where: str = "") -> None:
        self._init(key, value, source, where)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for ``nexus config show --format json``."""
        return {"key": self.key, "value": self.value, "source": self.source, "where": self.where or None}


def user_file(env: Mapping[str, str] | None = None) -> str:
    """Path of the user's configuration file (it may not exist)."""
    from nexus_core.state.paths import config_dir

    return os.path.join(config_dir(env), FILE_NAME)


def system_files(env: Mapping[str, str] | None = None) -> list[str]:
    """The machine-wide files, in order: :data:`SYSTEM_FILE`, then ``$NEXUS_SYSTEM_CONFIG`` if set."""
    extra = (os.environ if env is None else env).get(SYSTEM_FILE_ENV, "")
    return [SYSTEM_FILE, *([extra] if extra and extra != SYSTEM_FILE else [])]


def section_files(section: str, root: str | None, env: Mapping[str, str] | None = None) -> list[str]:
    """The configuration files (system, user, project) that may declare table ``section``.

    Cheap on purpose (called before every run): a file counts when it exists and its text
    mentions ``section`` at all; nothing is parsed, so a run without such a table pays a
    few ``open`` calls and imports nothing more.
    """
    found = []
    marker = section.encode()
    for path in [*system_files(env), user_file(env), *([project_file(root)] if root else [])]:
        try:
            with open(path, "rb") as fh:
                if marker in fh.read():
                    found.append(path)
        except OSError:
            continue
    return found


def project_file(root: str) -> str:
    """Path of the project's configuration file in folder ``root`` (it may not exist)."""
    return os.path.join(root, ".nexus", FILE_NAME)


def env_name(key: str) -> str:
    """The environment variable that sets ``key``: ``NEXUS_SSH_USER`` for ``ssh_user``."""
    return "NEXUS_" + key.upper()


def read_file(path: str, options: Mapping[str, Option], strict: bool = True) -> dict[str, tuple[Any, int]]:
    """The settings of one TOML file as ``{key: (value, line)}``; {} when it does not exist.

    ``strict=False`` ignores keys not in ``options`` (to read one key of a file).
    """
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise SettingsError(f"cannot read {path}: {exc.strerror or exc}", path) from None
    import tomllib  # only when there is a file

    try:
        text = raw.decode("utf-8")
        data = tomllib.loads(text)
    except UnicodeDecodeError:
        raise SettingsError(f"{path} is not UTF-8 text", path) from None
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        line = int(found.group(1)) if found else 0
        what = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise SettingsError(
            f"invalid TOML: {what}", _at(path, line), 'write key = value, e.g. ssh_user = "deploy"'
        ) from None
    lines = text.splitlines()
    out: dict[str, tuple[Any, int]] = {}
    for key, value in data.items():
        line = _line_of(lines, key)
        where = _at(path, line)
        spec = options.get(key)
        if spec is None and (not strict or (key in SECTIONS and isinstance(value, dict))):
            continue
        if spec is None and key in SECTIONS:  # `audit = 5`: a section given as a value
            raise SettingsError(f"{key} must be a table ([{key}.sinks.NAME] ...), not {safe_repr(value)}", where,
                                f"see docs/compliance.md for the [{key}] tables")  # fmt: skip
        if spec is None:
            close = suggest(key, options)
            hint = f"did you mean {close!r}?" if close else "known keys: " + ", ".join(sorted(options))
            if isinstance(value, dict):
                hint += " (the file is a flat list of key = value; tables are not used)"
            raise SettingsError(f"unknown key {key!r}", where, hint)
        why = spec.problem(value)
        if why:
            raise SettingsError(why, where, spec.hint())
        out[key] = (value, line)
    return out


def _at(path: str, line: int) -> str:
    return f"{path}:{line}" if line else path


def _line_of(lines: list[str], key: str) -> int:
    pattern = re.compile(rf"^\s*(?:{re.escape(key)}|\"{re.escape(key)}\"|'{re.escape(key)}')\s*=")
    return next((n for n, text in enumerate(lines, 1) if pattern.match(text)), 0)


def from_env(options: Mapping[str, Option], env: Mapping[str, str]) -> dict[str, tuple[Any, str]]:
    """Settings given as ``NEXUS_<KEY>`` variables, converted to each key's type."""
    out: dict[str, tuple[Any, str]] = {}
    for key, spec in options.items():
        name = env_name(key)
        if not spec.from_env or name not in env:
            continue
        value = convert(env[name], spec)
        why = spec.problem(value)
        if why:
            raise SettingsError(why, f"environment variable {name}", spec.hint())
        out[key] = (value, name)
    return out


def convert(text: str, spec: Option) -> Any:
    """An environment string as the option's type (the first of its types that fits)."""
    for typ in spec.types:
        if typ is bool:
            low = text.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
        elif typ is int:
            try:
                return int(text)
            except ValueError:
                continue
        elif typ is float:
            try:
                return float(text)
            except ValueError:
                continue
        elif typ is str:
            return text
    return text


class Layers(Record):
    """The user file, project file and environment, read and checked."""

    __slots__ = ("user_path", "user", "project_path", "project", "env")
    user_path: str
    user: dict[str, tuple[Any, int]]
    project_path: str
    project: dict[str, tuple[Any, int]]
    env: dict[str, tuple[Any, str]]

    def __init__(
        self,
        user_path: str,
        user: dict[str, tuple[Any, int]],
        project_path: str,
        project: dict[str, tuple[Any, int]],
        env: dict[str, tuple[Any, str]],
    ) -> None:
        self._init(user_path, user, project_path, project, env)


def read_layers(
    root: str | None, options: Mapping[str, Option], env: Mapping[str, str] | None = None, strict: bool = True
) -> Layers:
    """Read both files and the environment for ``options``; raise :class:`SettingsError`."""
    env = os.environ if env is None else env
    upath = user_file(env)
    ppath = project_file(root) if root else ""
    return Layers(
        upath,
        read_file(upath, options, strict),
        ppath,
        read_file(ppath, options, strict) if ppath else {},
        from_env(options, env),
    )


def effective(
    options: Mapping[str, Option],
    layers: Layers,
    nexusfile: Mapping[str, Any] | None = None,
    nexusfile_lines: Mapping[str, str] | None = None,
) -> list[Setting]:
    """Every key's effective value and its source, lowest layer first overridden by higher ones."""
    out: list[Setting] = []
    for key in sorted(options):
        found = Setting(key, options[key].default, "built-in")
        if key in layers.user:
            value, line = layers.user[key]
            found = Setting(key, value, "user file", _at(layers.user_path, line))
        if key in layers.project:
            value, line = layers.project[key]
            found = Setting(key, value, "project file", _at(layers.project_path, line))
        if nexusfile is not None and key in nexusfile:
            found = Setting(key, nexusfile[key], "nexusfile", (nexusfile_lines or {}).get(key, ""))
        if key in layers.env:
            value, name = layers.env[key]
            found = Setting(key, value, "environment", name)
        out.append(found)
    return out


def file_defaults(layers: Layers) -> dict[str, tuple[Any, str, int]]:
    """What the files set, project over user: ``{key: (value, path, line)}`` (below the nexusfile)."""
    out: dict[str, tuple[Any, str, int]] = {}
    for path, values in ((layers.user_path, layers.user), (layers.project_path, layers.project)):
        for key, (value, line) in values.items():
            out[key] = (value, path, line)
    return out


def cli_default(key: str, root: str | None, env: Mapping[str, str] | None = None) -> Any:
    """The default of CLI option ``key`` (``format``...) from the environment and files.

    Problems are ignored here (the built-in default applies): commands that load the
    nexusfile report them with their file and line.
    """
    spec = CLI_OPTIONS[key]
    try:
        layers = read_layers(root, {key: spec}, env, strict=False)
    except SettingsError:
        return spec.default
    for source in (layers.env, layers.project, layers.user):
        if key in source:
            return source[key][0]
    return spec.default


def apply(project: Any, config_options: Mapping[str, Option], env: Mapping[str, str] | None = None) -> Layers:
    """Fill ``project.config`` from the files (below the nexusfile) and the environment (above it).

    Values keep their origin in ``project.config_locations`` so that a later validation
    problem points at the file and line. Raises :class:`SettingsError`.
    """
    from nexus_core.model import Location

    layers = read_layers(project.root, {**CLI_OPTIONS, **config_options}, env)
    for key, (value, path, line) in file_defaults(layers).items():
        if key in config_options and key not in project.config:
            project.config[key] = value
            project.config_locations[key] = Location(path, line)
    for key, (value, name) in layers.env.items():
        if key in config_options:
            project.config[key] = value
            project.config_locations[key] = Location(name)
    return layers


def settings_text(settings: list[Setting], layers: Layers) -> str:
    """``nexus config show`` for people: key, value, source (with file:line or variable)."""
    width = max(len(s.key) for s in settings)
    vwidth = min(30, max(len(_show(s.value)) for s in settings))
    lines = [
        f"{s.key:<{width}}  {_show(s.value):<{vwidth}}  {s.source}" + (f" ({s.where})" if s.where else "")
        for s in settings
    ]
    user = layers.user_path + ("" if layers.user else " (not found or empty)")
    project = (layers.project_path or "(no project)") + ("" if layers.project else " (not found or empty)")
    lines += ["", f"user file:    {user}", f"project file: {project}",
              "precedence:   command line > environment (NEXUS_<KEY>) > nexusfile config() > project file "
              "> user file > built-in"]  # fmt: skip
    return "\n".join(lines)


def _show(value: Any) -> str:
    import json

    return "(unset)" if value is None else json.dumps(value) if not isinstance(value, str) else value


def show(config_path: str | None, config_options: Mapping[str, Option], fmt: str) -> str:
    """``nexus config show``: every effective setting with its source, as text or JSON.

    The nexusfile layer is included when a nexusfile is found (it is loaded, as for
    ``nexus list``). Raises :class:`SettingsError` for a bad file or variable.
    """
    import json

    from nexus_core.loader import NexusfileNotFound, find_nexusfile, load_project

    try:
        path: str | None = find_nexusfile(config_path)
    except NexusfileNotFound:
        path = None
    project = load_project(path) if path else None
    options = {**config_options, **CLI_OPTIONS}
    layers = read_layers(project.root if project else None, options)
    where = {k: str(loc) for k, loc in project.config_locations.items()} if project else {}
    settings = effective(options, layers, project.config if project else None, where)
    if fmt == "json":
        return json.dumps(
            {
                "settings": [s.to_dict() for s in settings],
                "nexusfile": path,
                "user_file": layers.user_path,
                "project_file": layers.project_path or None,
            }
        )
    return settings_text(settings, layers)
