"""The plugin manager: policy-filtered entry points, built-ins, and typed access to hooks.

Built-ins register through the same hooks as third-party plugins. Entry points in the
``nexus`` group are filtered by policy *before* they are imported: a blocked plugin's
code never runs.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Collection, Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from nexus_core import hookspecs
from nexus_core._version import API_VERSION, __version__
from nexus_core.kinds import NAMED
from nexus_core.records import Record
from nexus_core.registry import PluginError, Registry, register

if TYPE_CHECKING:
    from importlib import metadata

    import click

    from nexus_core.events import Subscriber

ENTRY_POINT_GROUP = "nexus"
#: The core's own plugins: registered through the same hooks as third-party ones.
BUILTINS = (
    "nexus_core.builtins",
    "nexus_core.strategies",
)

__all__ = ["BUILTINS", "ENTRY_POINT_GROUP", "PluginError", "PluginInfo", "PluginManager", "Policy", "builtin_registry"]


class PluginInfo:
    """One installed plugin as ``nexus plugins`` shows it (filled in as it loads)."""

    __slots__ = (
        "name",
        "distribution",
        "version",
        "module",
        "allowed",
        "reason",
        "loaded",
        "hooks",
        "error",
        "builtin",
    )

    def __init__(
        self,
        name: str,
        distribution: str,
        version: str,
        module: str,
        allowed: bool,
        reason: str = "",
        loaded: bool = False,
        hooks: list[str] | None = None,
        error: str = "",
        builtin: bool = False,
    ) -> None:
        self.name = name
        self.distribution = distribution
        self.version = version
        self.module = module
        self.allowed = allowed
        self.reason = reason
        self.loaded = loaded
        self.hooks: list[str] = [] if hooks is None else hooks
        self.error = error
        self.builtin = builtin

    def __repr__(self) -> str:
        return f"PluginInfo({self.distribution!r}, {self.module!r}, loaded={self.loaded!r}, error={self.error!r})"

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


#: Top-level tables of the access policy (``nexus_core.policy``), which may share
#: ``/etc/nexus/policy.toml`` with the plugin allowlist.
ACCESS_SECTIONS = frozenset({"roles", "assign", "approvals", "change_windows", "require_dry_run", "testing"})


class Policy:
    """Which plugin distributions may be imported.

    ``NEXUS_LOAD_PLUGINS`` (comma-separated distribution names; set but empty = none) and
    the first policy file found (``$XDG_CONFIG_HOME/nexus/policy.toml``, then
    ``/etc/nexus/policy.toml``; ``NEXUS_POLICY_FILE`` overrides) each restrict; a plugin
    loads only when every configured source allows it. The system file's ``allow`` list
    applies even when a user's file or ``NEXUS_POLICY_FILE`` is read first (``outer``): those
    narrow it, never widen it. With none, every installed plugin loads. A policy file that
    cannot be used (missing when named by ``NEXUS_POLICY_FILE``, unreadable, invalid TOML, no
    ``allow`` list) allows nothing, and says why.
    """

    __slots__ = ("env_names", "allow", "source", "problems", "broken", "outer")

    def __init__(
        self,
        env_names: set[str] | None = None,
        allow: list[Any] | None = None,
        source: str = "",
        problems: list[str] | None = None,
        broken: bool = False,
    ) -> None:
        self.env_names = env_names
        self.allow = allow
        self.source = source
        self.problems: list[str] = [] if problems is None else problems
        self.broken = broken
        #: The system file's allowlist when another file was read first: it still applies.
        self.outer: Policy | None = None

    def __repr__(self) -> str:
        return f"Policy(env_names={self.env_names!r}, allow={self.allow!r}, source={self.source!r})"

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Policy:
        """Read the policy from the environment and the policy file."""
        environ = os.environ if environ is None else environ
        policy = cls()
        raw = environ.get("NEXUS_LOAD_PLUGINS")
        if raw is not None:
            policy.env_names = {_norm(n) for n in raw.split(",") if n.strip()}
        explicit = environ.get("NEXUS_POLICY_FILE")
        if explicit and not os.path.isfile(explicit):
            # Naming a policy that is not there must not open the door to every plugin.
            what = (
                "a folder, not a policy file"
                if os.path.isdir(explicit)
                else (
                    "something that is not a regular file" if os.path.exists(explicit) else "a file that does not exist"
                )
            )
            policy._refuse(explicit, f"NEXUS_POLICY_FILE names {what}")
            return policy
        chosen = ""
        for path in _policy_paths(environ):
            if os.path.isfile(path) and policy._read_file(path):
                chosen = path
                break
        if chosen and chosen != SYSTEM_POLICY and os.path.isfile(SYSTEM_POLICY):
            # the machine's limit holds whatever file a user or a job points at
            outer = cls()
            if outer._read_file(SYSTEM_POLICY):
                policy.outer = outer
                policy.problems.extend(outer.problems)
        return policy

    @property
    def restricts(self) -> bool:
        """True when ``NEXUS_LOAD_PLUGINS`` or a policy file limits what may load."""
        return self.env_names is not None or self.allow is not None or self.outer is not None

    def _refuse(self, path: str, why: str) -> None:
        self.source = path
        self.allow = []
        self.broken = True
        self.problems.append(f"plugin policy {path}: {why}; no plugin is loaded")

    def _read_file(self, path: str) -> bool:
        """Read the plugin allowlist of ``path``; False when the file is an access policy only.

        The same file may hold the access policy (roles, assignments, approvals: the
        ``[roles]``... tables of ``nexus_core.policy``): a file with those tables and no
        ``allow`` list does not restrict plugins, and the next file is looked at. Any other
        file without ``allow`` (a typo such as ``alow``) still allows nothing.
        """
        import tomllib

        from packaging.requirements import InvalidRequirement, Requirement

        self.source = path
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            # A broken policy must not open the door: allow nothing and say why.
            self._refuse(path, f"cannot be read ({exc})")
            return True
        if "allow" not in data and data and set(data) <= ACCESS_SECTIONS:
            return False
        unknown = sorted(set(data) - {"allow"} - ACCESS_SECTIONS)
        if unknown:
            self.problems.append(f"plugin policy {path}: unknown key(s) {', '.join(unknown)} (only 'allow' is read)")
        if "allow" not in data:
            self._refuse(path, 'has no allow list (write allow = ["nexus-ssh>=0.1,<1"], or allow = [] for none)')
            return True
        entries = data["allow"]
        if not isinstance(entries, list):
            self._refuse(path, "'allow' must be a list of requirement strings")
            return True
        self.allow = []
        for entry in entries:
            try:
                if not isinstance(entry, str):
                    raise InvalidRequirement(f"not a string ({type(entry).__name__})")
                self.allow.append(Requirement(entry))
            except InvalidRequirement as exc:
                self.problems.append(f"plugin policy {path}: ignoring allow entry {entry!r}: {exc}")
        return True

    def check(self, distribution: str, version: str) -> tuple[bool, str]:
        """Whether ``distribution`` at ``version`` may load, and why not."""
        if self.outer is not None:
            ok, why = self.outer.check(distribution, version)
            if not ok:
                return False, why
        name = _norm(distribution)
        if self.env_names is not None and name not in self.env_names:
            return False, "not in NEXUS_LOAD_PLUGINS"
        if self.broken:
            return False, f"the plugin policy {self.source} cannot be used"
        if self.allow is not None:
            for req in self.allow:
                if _norm(req.name) == name:
                    if req.specifier:
                        from packaging.version import InvalidVersion, Version

                        try:
                            ok = req.specifier.contains(Version(version), prereleases=True)
                        except InvalidVersion:
                            return False, f"version {version!r} is not a valid version; {self.source} requires {req}"
                        if not ok:
                            return False, f"version {version} not allowed by {self.source} ({req})"
                    return True, f"allowed by {self.source}"
            return False, f"not allowed by {self.source}"
        if self.env_names is not None:
            return True, "listed in NEXUS_LOAD_PLUGINS"
        return True, "no policy (all installed plugins load)"


#: The machine's policy file (root's): its ``allow`` list bounds every other policy file.
SYSTEM_POLICY = "/etc/nexus/policy.toml"


def _policy_paths(environ: Mapping[str, str]) -> list[str]:
    if environ.get("NEXUS_POLICY_FILE"):
        return [environ["NEXUS_POLICY_FILE"]]
    from nexus_core.state.paths import config_dir

    return [os.path.join(config_dir(environ), "policy.toml"), SYSTEM_POLICY]


def _norm(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


# --- manager -------------------------------------------------------------------------------


class PluginManager:
    """Loads built-ins and allowed entry points once, and answers typed questions about them.

    Problems found while loading are collected in ``errors`` (the CLI prints them once);
    problems found later (in ``commands`` or ``subscribers``) are also passed to ``report``.
    """

    def __init__(
        self, load_entry_points: bool = True, policy: Policy | None = None, report: Callable[[str], None] | None = None
    ) -> None:
        self.pm = pluggy.PluginManager("nexus")
        self.pm.add_hookspecs(hookspecs)
        self.policy = policy or Policy.from_environment()
        self.plugins: list[PluginInfo] = []
        self.errors: list[str] = list(self.policy.problems)
        self.report = report or (lambda msg: print(f"nexus: {msg}", file=sys.stderr, flush=True))
        self._dist_of: dict[str, str] = {}
        #: Hooks added by plugins (``nexus_addhooks``), with the distribution that added each.
        self.added_hooks: dict[str, str] = {}
        self._adding: str | None = None
        self._started = False
        self._commands: list[tuple[str, click.Command]] | None = None
        for module_name in BUILTINS:
            module = __import__(module_name, fromlist=["_"])
            self._register(
                module,
                PluginInfo(
                    name=module_name.rsplit(".", 1)[-1],
                    distribution="nexus-core",
                    version=__version__,
                    module=module_name,
                    allowed=True,
                    reason="built-in",
                    builtin=True,
                ),
            )
        if load_entry_points:
            self._load_entry_points()
        self._add_plugin_hooks()
        self._check_hook_names()
        self.registry = self._build_registry()
        self._started = True

    def _error(self, message: str, dist: str | None = None) -> None:
        """Record a problem; when it is a distribution's fault, show it on that plugin too."""
        self.errors.append(message)
        for info in self.plugins:
            if dist is not None and info.distribution == dist and not info.builtin:
                info.error = f"{info.error}; {message}" if info.error else message
        if self._started:
            self.report(message)

    # loading

    def _load_entry_points(self) -> None:
        # Under a policy, what a distribution's entry point imports is read from its own
        # metadata, never from the cache file (a file in the user's cache is not vetted).
        for ep in _entry_points(cached=not self.policy.restricts):
            dist_name, version = ep.distribution, ep.version
            allowed, reason = self.policy.check(dist_name, version)
            info = PluginInfo(
                name=ep.name, distribution=dist_name, version=version, module=ep.value, allowed=allowed, reason=reason
            )
            self.plugins.append(info)
            if not allowed:
                continue  # filtered before ep.load(): a blocked plugin's code never runs
            try:
                module = ep.load()
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - report any import failure by name
                info.error = f"import failed: {type(exc).__name__}: {exc}"
                self._error(f"plugin {dist_name} {version} ({ep.value}) failed to import: {type(exc).__name__}: {exc}")
                continue
            declared = getattr(module, "NEXUS_API_VERSION", None)
            if not _api_compatible(declared):
                what = (
                    "does not declare NEXUS_API_VERSION"
                    if declared is None
                    else f"targets plugin API version {declared!r}"
                )
                info.error = f"{what}; nexus-core {__version__} provides API version {API_VERSION}"
                self._error(
                    f"plugin {dist_name} {version} {what}; nexus-core {__version__} provides API "
                    f"version {API_VERSION}: upgrade or remove {dist_name}"
                )
                continue
            self.plugins.remove(info)
            self._register(module, info)

    def _register(self, module: ModuleType, info: PluginInfo) -> None:
        key = f"{info.distribution}:{info.module}"
        try:
            self.pm.register(module, name=key)
        except (ValueError, pluggy.PluginValidationError) as exc:
            # Invalid hook signatures, or the same module registered by two entry points.
            info.error = f"cannot register: {exc}"
            self._error(f"plugin {info.distribution} {info.version} ({info.module}) cannot be registered: {exc}")
            self.plugins.append(info)
            return
        info.loaded = True
        info.hooks = sorted(n for n in dir(module) if hasattr(getattr(module, n), "nexus_impl"))
        self._dist_of[key] = info.distribution
        self.plugins.append(info)

    def _add_plugin_hooks(self) -> None:
        """Let every plugin add hook specifications of its own (``nexus_addhooks``)."""
        for impl in self.pm.hook.nexus_addhooks.get_hookimpls():
            dist = self._dist_of.get(impl.plugin_name, impl.plugin_name)
            self._adding = dist
            try:
                impl.function(**{k: self for k in impl.argnames})
            except Exception as exc:  # noqa: BLE001 - plugin code
                self._error(f"plugin {dist} failed in nexus_addhooks: {type(exc).__name__}: {exc}", dist)
            finally:
                self._adding = None

    def add_hookspecs(self, module_or_class: ModuleType | type) -> None:
        """Add the ``@hookspec`` functions of ``module_or_class`` (from ``nexus_addhooks``).

        Hook names must start with ``nexus_`` and must not be Nexus's own hooks; a clash,
        or an implementation that does not match the new specification, is reported naming
        the distribution.
        """
        dist = self._adding or "?"
        names = [n for n in dir(module_or_class) if getattr(getattr(module_or_class, n), "nexus_spec", None)]
        for name in names:
            owner = self.added_hooks.get(name, "nexus-core" if name in hookspecs.FAMILIES else None)
            if owner is not None or not name.startswith("nexus_"):
                why = f"already defined by {owner}" if owner else "hook names start with nexus_"
                self._error(f"plugin {dist}: cannot add hook {name} ({why})", dist)
                return
        try:
            self.pm.add_hookspecs(module_or_class)
        except (ValueError, pluggy.PluginValidationError) as exc:
            self._error(f"plugin {dist}: hooks added by nexus_addhooks cannot be used: {exc}", dist)
            return
        for name in names:
            self.added_hooks[name] = dist

    def _check_hook_names(self) -> None:
        """Report implementations of hooks nobody specified (a typo, or a missing family plugin)."""
        known = [*hookspecs.FAMILIES, *self.added_hooks]
        for info in self.plugins:
            if not info.loaded:
                continue
            for name in list(info.hooks):
                if name not in known:
                    info.hooks.remove(name)
                    self._error(
                        f"plugin {info.distribution} {info.version} implements {name}, which is not a "
                        f"Nexus hook (known hooks: {', '.join(known)})",
                        info.distribution,
                    )

    # typed hook calls

    def _collect(self, hook: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call a hook on every plugin separately, so a failure is isolated and named."""
        out: list[tuple[str, Any]] = []
        caller = getattr(self.pm.hook, hook)
        for impl in caller.get_hookimpls():
            dist = self._dist_of.get(impl.plugin_name, impl.plugin_name)
            try:
                result = impl.function(**{k: kwargs[k] for k in impl.argnames})
                items = list(result or ())
            except Exception as exc:  # noqa: BLE001 - plugin code
                self._error(f"plugin {dist} failed in {hook}: {type(exc).__name__}: {exc}", dist)
                continue
            out.extend((dist, item) for item in items)
        return out

    def call(self, hook: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call a hook a plugin added (or any hook) on every plugin, each isolated.

        Returns ``(distribution, item)`` for every item of every implementation's result
        (results are sequences); an implementation that raises is reported by name and
        skipped. This is how a family of plugins calls the hooks it shares.
        """
        if not hasattr(self.pm.hook, hook):
            raise PluginError(f"no hook named {hook}")
        return self._collect(hook, **kwargs)

    def _build_registry(self) -> Registry:
        from nexus_core.options import Option

        reg = Registry()
        for info in self.plugins:
            if not info.builtin and not info.loaded:
                why = f"blocked by policy ({info.reason})" if not info.allowed else f"failed to load ({info.error})"
                reg.unavailable.setdefault(_norm(info.distribution), why)
        for kind in NAMED:
            for dist, item in self._collect(kind.hook):
                problem = register(reg, kind, dist, item)
                if problem:
                    self._error(problem, dist)
        # Options a strategy reads (rolling: batch...) are task options owned by its plugin;
        # they keep their place after the core's own scheduling options.
        strategy_options: dict[str, Option] = {}
        for name in reg.strategies:
            entry = reg.strategies.entry(name)
            for opt in entry.detail("task_options") or ():
                if isinstance(opt, Option) and opt.name not in reg.task_options:
                    reg.owners[f"nexus_task_options:{opt.name}"] = entry.distribution
                    strategy_options.setdefault(opt.name, opt)
        core = list(reg.task_options.items())
        at = next((i + 1 for i, (name, _) in enumerate(core) if name == "timeout"), len(core))
        reg.task_options = {**dict(core[:at]), **strategy_options, **dict(core[at:])}
        for hook, opt_target in (
            ("nexus_config_options", reg.config_options),
            ("nexus_task_options", reg.task_options),
        ):
            for dist, opt in self._collect(hook):
                if not isinstance(opt, Option):
                    self._error(
                        f"plugin {dist}: {hook} returned {opt!r}, which is not a nexus_core.options.Option", dist
                    )
                    continue
                # A plugin may refine a key another part documents; the last one loaded wins.
                reg.owners[f"{hook}:{opt.name}"] = dist
                opt_target[opt.name] = opt
        self._register_event_types(reg)
        return reg

    def check_registrations(self) -> None:
        """Import every class registered by name and report each broken one (``nexus plugins``).

        A start imports nothing of a registration; this is for the commands that show what
        is installed, so that a broken ``"module:Class"`` is seen before a plan needs it.
        """
        for kind in NAMED:
            table = self.registry.classes[kind.name]
            for name in table:
                problem = table.problem(name)
                if problem and problem not in self.errors:
                    self._error(problem, table.entry(name).distribution)

    def _register_event_types(self, reg: Registry) -> None:
        """Add the event classes of ``nexus_event_types`` to the catalogue (names are unique)."""
        from nexus_core.events import Event
        from nexus_core.kinds import TARGET, Registration

        for dist, cls in self._collect("nexus_event_types"):
            if isinstance(cls, Registration):  # "module:Class", imported when first asked for
                name = cls.name if TARGET.match(cls.target) else None
            else:
                name = getattr(cls, "name", None) if isinstance(cls, type) and issubclass(cls, Event) else None
            if not isinstance(name, str) or not name:
                self._error(
                    f"plugin {dist}: nexus_event_types returned {cls!r}, which is not a subclass of "
                    "nexus_core.events.Event with a name (nor a Registration of one)",
                    dist,
                )
                continue
            if name in reg.event_types:
                first = reg.owners.get(f"event:{name}", "nexus-core")
                self._error(
                    f"event {name!r} is declared twice: by {first} and by {dist}; "
                    "uninstall one of them or block it in the plugin policy",
                    dist,
                )
                continue
            reg.owners[f"event:{name}"] = dist
            reg.event_types.declare(name, cls)

    def commands(self, reserved: Collection[str] = ()) -> list[tuple[str, click.Command]]:
        """CLI commands added by plugins, with their distribution (collected once).

        A name in ``reserved`` (the built-in commands) or already added by another plugin is
        reported, naming both, and left out.
        """
        if self._commands is None:
            import click

            found: list[tuple[str, click.Command]] = []
            owners: dict[str, str] = {}
            for dist, cmd in self._collect("nexus_commands"):
                if not isinstance(cmd, click.Command) or not cmd.name:
                    self._error(
                        f"plugin {dist}: nexus_commands returned {cmd!r}, which is not a named click command", dist
                    )
                    continue
                if cmd.name in owners:
                    self._error(
                        f"command {cmd.name!r} is added twice: by {owners[cmd.name]} and by {dist}; "
                        "uninstall one of them or block it in the plugin policy",
                        dist,
                    )
                    continue
                owners[cmd.name] = dist
                found.append((dist, cmd))
            self._commands = found
            for dist, cmd in found:
                if cmd.name in reserved:
                    self._error(
                        f"plugin {dist} adds command {cmd.name!r}, which is a built-in nexus-core "
                        "command; the built-in one is used",
                        dist,
                    )
        return [(d, c) for d, c in self._commands if c.name not in reserved]

    def subscribers(self, config: Mapping[str, Any], options: Mapping[str, Any]) -> list[tuple[str, Subscriber]]:
        """Event subscribers from plugins for one run, each named after its distribution.

        When one distribution returns several subscribers, each name also carries the
        subscriber's own name, so that a failing one is reported (and dropped) alone.
        """
        found = self._collect("nexus_subscribers", config=config, options=options)
        per_dist: dict[str, int] = {}
        for dist, _ in found:
            per_dist[dist] = per_dist.get(dist, 0) + 1
        out: list[tuple[str, Subscriber]] = []
        for dist, sub in found:
            if not callable(sub):
                self._error(f"plugin {dist}: nexus_subscribers returned {sub!r}, which is not callable", dist)
                continue
            label = getattr(sub, "__qualname__", None) or type(sub).__qualname__
            out.append((f"{dist} ({label})" if per_dist[dist] > 1 else dist, sub))
        return out


def builtin_registry() -> Registry:
    """A registry with only the core's built-ins (no entry points): for tests and tools."""
    return PluginManager(load_entry_points=False).registry


def _dist_of(ep: metadata.EntryPoint) -> tuple[str, str]:
    """Name and version of the distribution that declares ``ep`` (``?`` when unknown)."""
    dist = ep.dist
    if dist is None:
        return "?", "?"
    name = dist.metadata["Name"] or ""
    if not name:
        # A METADATA file without a Name: fall back to the folder name (``name-1.0.dist-info``).
        folder = os.path.basename(str(getattr(dist, "_path", "")))
        name = folder.split("-", 1)[0] or "?"
    return str(name), str(dist.version or "?")


def _api_compatible(declared: object) -> bool:
    """True when a plugin's ``NEXUS_API_VERSION`` has the same major number as ours."""
    if isinstance(declared, bool) or not isinstance(declared, (int, str)):
        return False
    major = str(declared).strip().split(".", 1)[0]
    return major.isdigit() and int(major) == API_VERSION


class FoundEntryPoint(Record):
    """An entry point of the ``nexus`` group and the distribution that declares it."""

    __slots__ = ("name", "value", "distribution", "version")
    name: str
    value: str
    distribution: str
    version: str

    def __init__(self, name: str, value: str, distribution: str, version: str) -> None:
        self._init(name, value, distribution, version)

    def load(self) -> Any:
        """Import the module (and attribute, for ``module:attr``) the entry point names."""
        import importlib

        module_name, _, attr = self.value.split("[", 1)[0].partition(":")  # "mod:attr [extra]"
        found: Any = importlib.import_module(module_name.strip())
        for part in filter(None, attr.strip().split(".")):
            found = getattr(found, part)
        return found


#: Set to 0 to always ask importlib.metadata (no cache file is read or written).
CACHE_ENV = "NEXUS_PLUGIN_CACHE"


def _entry_points(cached: bool = True) -> list[FoundEntryPoint]:
    """The installed entry points of the ``nexus`` group.

    importlib.metadata finds them, but importing it costs about 15 ms, a tenth of a short
    run. What it found is kept in a cache file, valid while nothing installed changes: the
    key is every ``sys.path`` folder with its modification time and, in it, every
    ``*.dist-info``/``*.egg-info`` with the time of its ``entry_points.txt``. Installing,
    upgrading or removing a distribution, or editing its entry points, changes the key.
    ``cached=False`` neither reads nor writes the file.
    """
    import json
    import zlib

    key = _installed_key() if cached else None
    path = None
    if key is not None:
        from nexus_core.state.paths import cache_dir

        tag = zlib.crc32("\0".join([sys.prefix, *sys.path]).encode("utf-8", "surrogateescape"))
        path = os.path.join(cache_dir(), f"entry-points-{tag:08x}.json")
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
            if data.get("key") == key:
                return [FoundEntryPoint(*row) for row in data["entry_points"]]
        except (OSError, ValueError, TypeError, KeyError):
            pass
    from importlib import metadata

    found = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist_name, version = _dist_of(ep)
        found.append(FoundEntryPoint(ep.name, ep.value, dist_name, version))
    if path is not None:
        rows = [[e.name, e.value, e.distribution, e.version] for e in found]
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump({"key": key, "entry_points": rows}, fh)
            os.replace(tmp, path)
        except OSError:
            pass  # an unwritable cache only costs the next run the lookup
    return found


def _installed_key() -> list[Any] | None:
    """What the entry points depend on (see :func:`_entry_points`); None: do not cache."""
    import importlib.machinery

    if os.environ.get(CACHE_ENV, "1") == "0":
        return None
    for finder in sys.meta_path:
        # A finder that lists distributions of its own (not the path-based one): its
        # entry points cannot be keyed by folders, so always ask importlib.metadata.
        if hasattr(finder, "find_distributions") and finder is not importlib.machinery.PathFinder:
            return None
    key: list[Any] = []
    for entry in sys.path:
        folder = entry or os.getcwd()
        try:
            stat = os.stat(folder)
        except OSError:
            continue
        key.append([folder, stat.st_mtime_ns])
        try:
            with os.scandir(folder) as it:
                names = sorted(e.name for e in it if e.name.endswith((".dist-info", ".egg-info")))
        except OSError:
            continue  # a zip file or an unreadable folder: its own time is the key
        for name in names:
            try:
                when = os.stat(os.path.join(folder, name, "entry_points.txt")).st_mtime_ns
            except OSError:
                when = 0
            key.append([name, when])
    return key
