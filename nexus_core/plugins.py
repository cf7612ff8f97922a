"""The plugin manager: policy-filtered entry points, built-ins, and typed access to hooks.

Built-ins register through the same hooks as third-party plugins. Entry points in the
``nexus`` group are filtered by policy *before* they are imported: a blocked plugin's
code never runs.
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from nexus_core import hookspecs
from nexus_core._version import API_VERSION, __version__
from nexus_core.registry import Registry

if TYPE_CHECKING:
    import click

    from nexus_core.events import Subscriber

ENTRY_POINT_GROUP = "nexus"
BUILTINS = (
    "nexus_core.executors.local",
    "nexus_core.strategies",
    "nexus_core.preflight",
)


class PluginError(Exception):
    """A plugin could not be loaded or registered something invalid; names the distribution."""


@dataclass
class PluginInfo:
    """One installed plugin as ``nexus plugins`` shows it."""

    name: str
    distribution: str
    version: str
    module: str
    allowed: bool
    reason: str = ""
    loaded: bool = False
    hooks: list[str] = field(default_factory=list)
    error: str = ""
    builtin: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for ``--format json``."""
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "allowed": self.allowed,
            "reason": self.reason,
            "loaded": self.loaded,
            "hooks": self.hooks,
            "error": self.error,
            "builtin": self.builtin,
        }


# --- policy --------------------------------------------------------------------------------


@dataclass
class Policy:
    """Which plugin distributions may be imported.

    ``NEXUS_LOAD_PLUGINS`` (comma-separated distribution names; set but empty = none) and
    the first policy file found (``$XDG_CONFIG_HOME/nexus/policy.toml``, then
    ``/etc/nexus/policy.toml``; ``NEXUS_POLICY_FILE`` overrides) each restrict; a plugin
    loads only when every configured source allows it.
    """

    env_names: set[str] | None = None
    allow: list[Any] | None = None
    source: str = ""
    problems: list[str] = field(default_factory=list)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Policy:
        """Read the policy from the environment and the policy file."""
        environ = os.environ if environ is None else environ
        policy = cls()
        raw = environ.get("NEXUS_LOAD_PLUGINS")
        if raw is not None:
            policy.env_names = {_norm(n) for n in raw.split(",") if n.strip()}
        for path in _policy_paths(environ):
            if os.path.isfile(path):
                policy._read_file(path)
                break
        return policy

    def _read_file(self, path: str) -> None:
        from packaging.requirements import InvalidRequirement, Requirement

        self.source = path
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            # A broken policy must not open the door: allow nothing and say why.
            self.allow = []
            self.problems.append(f"{path}: cannot read the plugin policy ({exc}); no plugin is loaded")
            return
        entries = data.get("allow", [])
        if not isinstance(entries, list):
            self.allow = []
            self.problems.append(f"{path}: 'allow' must be a list of requirements; no plugin is loaded")
            return
        self.allow = []
        for entry in entries:
            try:
                self.allow.append(Requirement(str(entry)))
            except InvalidRequirement as exc:
                self.problems.append(f"{path}: ignoring allow entry {entry!r}: {exc}")

    def check(self, distribution: str, version: str) -> tuple[bool, str]:
        """Whether ``distribution`` at ``version`` may load, and why not."""
        name = _norm(distribution)
        if self.env_names is not None and name not in self.env_names:
            return False, "not in NEXUS_LOAD_PLUGINS"
        if self.allow is not None:
            for req in self.allow:
                if _norm(req.name) == name:
                    if req.specifier and not req.specifier.contains(version, prereleases=True):
                        return False, f"version {version} not allowed by {self.source} ({req})"
                    return True, f"allowed by {self.source}"
            return False, f"not allowed by {self.source}"
        if self.env_names is not None:
            return True, "listed in NEXUS_LOAD_PLUGINS"
        return True, "no policy (all installed plugins load)"


def _policy_paths(environ: Mapping[str, str]) -> list[str]:
    if environ.get("NEXUS_POLICY_FILE"):
        return [environ["NEXUS_POLICY_FILE"]]
    xdg = environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return [os.path.join(xdg, "nexus", "policy.toml"), "/etc/nexus/policy.toml"]


def _norm(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(".", "-")


# --- manager -------------------------------------------------------------------------------


class PluginManager:
    """Loads built-ins and allowed entry points once, and answers typed questions about them."""

    def __init__(self, load_entry_points: bool = True, policy: Policy | None = None) -> None:
        self.pm = pluggy.PluginManager("nexus")
        self.pm.add_hookspecs(hookspecs)
        self.policy = policy or Policy.from_environment()
        self.plugins: list[PluginInfo] = []
        self.errors: list[str] = list(self.policy.problems)
        self._dist_of: dict[str, str] = {}
        for module_name in BUILTINS:
            module = __import__(module_name, fromlist=["_"])
            self._register(module, PluginInfo(
                name=module_name.rsplit(".", 1)[-1], distribution="nexus-core", version=__version__,
                module=module_name, allowed=True, reason="built-in", builtin=True))
        if load_entry_points:
            self._load_entry_points()
        self.registry = self._build_registry()

    # loading

    def _load_entry_points(self) -> None:
        for ep in _entry_points():
            dist = ep.dist
            dist_name = dist.metadata["Name"] if dist is not None else "?"
            version = dist.version if dist is not None else "?"
            allowed, reason = self.policy.check(dist_name, version)
            info = PluginInfo(name=ep.name, distribution=dist_name, version=version,
                              module=ep.value, allowed=allowed, reason=reason)
            self.plugins.append(info)
            if not allowed:
                continue
            try:
                module = ep.load()
            except Exception as exc:  # noqa: BLE001 - report any import failure by name
                info.error = f"import failed: {type(exc).__name__}: {exc}"
                self.errors.append(f"plugin {dist_name} ({ep.value}) failed to import: "
                                   f"{type(exc).__name__}: {exc}")
                continue
            declared = getattr(module, "NEXUS_API_VERSION", None)
            if declared != API_VERSION:
                info.error = f"targets plugin API {declared}, this nexus-core has {API_VERSION}"
                what = "does not declare NEXUS_API_VERSION" if declared is None else \
                    f"targets plugin API version {declared}"
                self.errors.append(
                    f"plugin {dist_name} {version} {what}; nexus-core {__version__} provides API "
                    f"version {API_VERSION}: upgrade or remove {dist_name}")
                continue
            self.plugins.remove(info)
            self._register(module, info)

    def _register(self, module: ModuleType, info: PluginInfo) -> None:
        self.pm.register(module, name=f"{info.distribution}:{info.module}")
        info.loaded = True
        info.hooks = sorted(
            n for n in dir(module) if n.startswith("nexus_") and hasattr(getattr(module, n), "nexus_impl")
        )
        self._dist_of[f"{info.distribution}:{info.module}"] = info.distribution
        self.plugins.append(info)

    # typed hook calls

    def _collect(self, hook: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call a hook on every plugin separately, so a failure is isolated and named."""
        out: list[tuple[str, Any]] = []
        caller = getattr(self.pm.hook, hook)
        for impl in caller.get_hookimpls():
            dist = self._dist_of.get(impl.plugin_name, impl.plugin_name)
            try:
                result = impl.function(**{k: kwargs[k] for k in impl.argnames})
            except Exception as exc:  # noqa: BLE001 - plugin code
                self.errors.append(f"plugin {dist} failed in {hook}: {type(exc).__name__}: {exc}")
                continue
            for item in result or ():
                out.append((dist, item))
        return out

    def _build_registry(self) -> Registry:
        reg = Registry()
        for kind, hook, target in (
            ("executor", "nexus_executors", reg.executors),
            ("strategy", "nexus_strategies", reg.strategies),
            ("pre-flight check", "nexus_preflight_checks", reg.checks),
        ):
            for dist, cls in self._collect(hook):
                name = getattr(cls, "name", None)
                if not isinstance(name, str):
                    self.errors.append(f"plugin {dist}: {kind} {cls!r} has no name")
                    continue
                key = f"{kind}:{name}"
                if key in reg.owners:
                    self.errors.append(
                        f"{kind} {name!r} is registered twice: by {reg.owners[key]} and by {dist}; "
                        f"uninstall one of them or block it in the plugin policy")
                    continue
                reg.owners[key] = dist
                target[name] = cls
        for hook, opt_target in (("nexus_config_options", reg.config_options),
                                 ("nexus_task_options", reg.task_options)):
            for dist, opt in self._collect(hook):
                # A plugin may refine a key the core documents (e.g. nexus-ssh's ssh_* keys).
                reg.owners[f"{hook}:{opt.name}"] = dist
                opt_target[opt.name] = opt
        return reg

    def commands(self) -> list[tuple[str, click.Command]]:
        """CLI commands added by plugins, with their distribution."""
        return self._collect("nexus_commands")

    def subscribers(self, config: Mapping[str, Any], options: Mapping[str, Any]) -> list[tuple[str, Subscriber]]:
        """Event subscribers from plugins for one run, each with its distribution name."""
        return self._collect("nexus_subscribers", config=config, options=options)

    def report_errors(self, write: Any = None) -> None:
        """Print plugin loading errors (once) on stderr."""
        write = write or (lambda m: print(m, file=sys.stderr))
        for msg in self.errors:
            write(f"nexus: {msg}")


def _entry_points() -> Iterable[metadata.EntryPoint]:
    return metadata.entry_points(group=ENTRY_POINT_GROUP)


def installed_plugins() -> list[PluginInfo]:
    """Every installed plugin and whether policy allows it (imports only allowed ones)."""
    return PluginManager().plugins
