"""What the loaded plugins (built-ins included) provide, looked up by name.

Classes are registered by name, most of them as ``"module:Class"`` strings
(:class:`nexus_core.kinds.Registration`): the name and the details the core needs up front
are known at start-up, the module is imported the first time the class is asked for.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from nexus_core.events import CATALOGUE, Event
from nexus_core.kinds import KINDS, TARGET, Kind, Registration, kind
from nexus_core.options import CONFIG_OPTIONS, TASK_OPTIONS, Option
from nexus_core.packages import TRANSPORTS as TRANSPORT_PACKAGES  # noqa: F401 - the old name

if TYPE_CHECKING:
    from nexus_core.api import AuditSink, CloudProvider, Executor, HostSource, PreflightCheck, SecretBackend, Strategy

T = TypeVar("T")

_MISSING = object()


class PluginError(Exception):
    """A plugin could not be loaded or registered something invalid; names the distribution."""


class EventTypes(MutableMapping[str, type[Event]]):
    """The event catalogue by name: the core's classes, and plugins' classes imported on first use.

    A plugin may declare an event as ``Registration("acme.deployed", "nexus_acme.events:Deployed")``:
    the name is known (and checked for duplicates) at start-up, the module is imported the first
    time the class is asked for.
    """

    def __init__(self, classes: Mapping[str, type[Event] | Registration] = ()) -> None:  # type: ignore[assignment]
        self._items: dict[str, type[Event] | Registration] = dict(classes)

    def declare(self, name: str, item: type[Event] | Registration) -> None:
        """Add ``item`` (a class, or a registration imported on first use) as event ``name``."""
        self._items[name] = item

    def __getitem__(self, name: str) -> type[Event]:
        item = self._items[name]
        if isinstance(item, type):
            return item
        try:
            loaded = _import_target(item.target)
        except (ImportError, AttributeError) as exc:
            raise PluginError(f"event {name!r} ({item.target}) cannot be imported: {exc}") from exc
        if not (isinstance(loaded, type) and issubclass(loaded, Event) and getattr(loaded, "name", None) == name):
            raise PluginError(
                f"event {name!r} ({item.target}) is not a subclass of nexus_core.events.Event named {name!r}"
            )
        self._items[name] = loaded
        return loaded

    def __setitem__(self, name: str, cls: type[Event]) -> None:
        self._items[name] = cls

    def __delitem__(self, name: str) -> None:
        del self._items[name]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


class Entry:
    """One registered name: where its class lives, who registered it, what the core knows up front.

    ``cls`` is set once the class is imported, ``error`` when it cannot be.
    """

    __slots__ = ("kind", "name", "target", "distribution", "details", "cls", "error")

    def __init__(
        self,
        kind: Kind,
        name: str,
        target: str,
        distribution: str,
        details: Mapping[str, Any],
        cls: type | None = None,
        error: str = "",
    ) -> None:
        self.kind = kind
        self.name = name
        self.target = target
        self.distribution = distribution
        self.details = details
        self.cls = cls
        self.error = error

    def __repr__(self) -> str:
        return f"Entry({self.kind.name!r}, {self.name!r}, {self.target!r}, {self.distribution!r})"

    def detail(self, key: str) -> Any:
        """A registration detail, or the kind's default for it."""
        return self.details.get(key, self.kind.details.get(key))


def _import_target(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    found: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        found = getattr(found, part)
    return found


def load_base(k: Kind) -> type:
    """The interface class of a kind (``nexus_core.api.Executor`` for executors)."""
    base = _import_target(k.base)
    assert isinstance(base, type)
    return base


class Classes(MutableMapping[str, type[T]], Generic[T]):
    """The classes of one kind by name, each imported on first access.

    ``name in classes`` and iteration never import anything; ``classes[name]`` imports the
    class's module and checks it, raising :class:`PluginError` (naming the plugin and its
    distribution) when the registration is broken. Assigning ``classes[name] = cls`` adds an
    already-imported class (tests and tools).
    """

    def __init__(self, k: Kind) -> None:
        self.kind = k
        self._entries: dict[str, Entry] = {}

    def add(self, entry: Entry) -> None:
        """Register ``entry`` under its name (the caller has refused duplicates)."""
        self._entries[entry.name] = entry

    def entry(self, name: str) -> Entry:
        """The registration of ``name`` (KeyError when nobody registered it)."""
        return self._entries[name]

    def problem(self, name: str) -> str:
        """Why ``name`` cannot be used ('' when its class loads); imports it if needed."""
        try:
            self[name]
        except PluginError as exc:
            return str(exc)
        return ""

    def ordered(self, key: str) -> list[str]:
        """Names sorted by a numeric registration detail (stable: ties keep registration order)."""
        return sorted(self._entries, key=lambda n: self._entries[n].detail(key))

    def __getitem__(self, name: str) -> type[T]:
        entry = self._entries[name]
        if entry.cls is None:
            if entry.error:
                raise PluginError(entry.error)
            try:
                entry.cls = _load(entry)
            except PluginError as exc:
                entry.error = str(exc)
                raise
        return entry.cls

    def __setitem__(self, name: str, cls: type[T]) -> None:
        self._entries[name] = Entry(
            self.kind, name, f"{cls.__module__}:{cls.__qualname__}", "?", _details_of(self.kind, cls), cls
        )

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries


def _details_of(k: Kind, cls: type) -> dict[str, Any]:
    """The registration details of a class registered directly (read from its attributes)."""
    return {key: getattr(cls, key, default) for key, default in k.details.items()}


def _load(entry: Entry) -> type:
    """Import and check the class of a lazy registration; PluginError names the plugin."""
    k = entry.kind
    who = f"{k.name} {entry.name!r} of plugin {entry.distribution} ({entry.target})"
    try:
        found = _import_target(entry.target)
    except ModuleNotFoundError as exc:
        raise PluginError(f"{who} cannot be loaded: no module named {exc.name!r}") from None
    except AttributeError:
        raise PluginError(f"{who} cannot be loaded: module {entry.target.partition(':')[0]!r} has no "
                          f"{entry.target.partition(':')[2]!r}") from None  # fmt: skip
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - plugin code: report, never a traceback
        raise PluginError(f"{who} cannot be loaded: {type(exc).__name__}: {exc}") from None
    base = load_base(k)
    if not (isinstance(found, type) and issubclass(found, base)):
        raise PluginError(f"{who} is not a subclass of nexus_core.api.{k.base_name}")
    for key, value in (("name", entry.name), *((key, entry.detail(key)) for key in k.details)):
        own = _own_attribute(found, base, key)
        if own is _MISSING:
            setattr(found, key, value)  # the registration is where these are written
        elif own != value:
            raise PluginError(f"{who}: the class says {key}={own!r}, its registration {key}={value!r}")
    return found


def _own_attribute(cls: type, base: type, key: str) -> Any:
    """``cls.key`` when a class between ``cls`` and ``base`` defines it, else ``_MISSING``."""
    for klass in cls.__mro__:
        if klass in base.__mro__:
            break
        if key in vars(klass):
            return vars(klass)[key]
    return _MISSING


class Registry:
    """Executors, strategies, checks and options by name, with the distribution of each.

    ``classes`` holds one :class:`Classes` table per kind of :data:`nexus_core.kinds.KINDS`
    that registers classes by name. ``unavailable`` maps distributions that are installed
    but not loaded (blocked by policy, failed to import) to why, for messages about a name
    nobody provides. ``event_types``: every event a run can emit, by name: the core's, then
    those of ``nexus_event_types``.
    """

    def __init__(
        self,
        classes: dict[str, Classes[Any]] | None = None,
        config_options: dict[str, Option] | None = None,
        task_options: dict[str, Option] | None = None,
        owners: dict[str, str] | None = None,
        unavailable: dict[str, str] | None = None,
        event_types: EventTypes | None = None,
    ) -> None:
        self.classes: dict[str, Classes[Any]] = (
            {k.name: Classes[Any](k) for k in KINDS if k.by_name} if classes is None else classes
        )
        self.config_options: dict[str, Option] = dict(CONFIG_OPTIONS) if config_options is None else config_options
        self.task_options: dict[str, Option] = dict(TASK_OPTIONS) if task_options is None else task_options
        self.owners: dict[str, str] = {} if owners is None else owners
        self.unavailable: dict[str, str] = {} if unavailable is None else unavailable
        self.event_types: EventTypes = (
            EventTypes({c.name: c for c in CATALOGUE}) if event_types is None else event_types
        )

    @property
    def executors(self) -> Classes[Executor]:
        """Executor classes by transport name."""
        return self.classes["executor"]

    @property
    def strategies(self) -> Classes[Strategy]:
        """Strategy classes by name."""
        return self.classes["strategy"]

    @property
    def checks(self) -> Classes[PreflightCheck]:
        """Pre-flight check classes by name."""
        return self.classes["pre-flight check"]

    @property
    def secret_backends(self) -> Classes[SecretBackend]:
        """Secret backend classes by the prefix references use (``local``, ``vault``)."""
        return self.classes["secret backend"]

    @property
    def host_sources(self) -> Classes[HostSource]:
        """Host source classes by name (what ``discover("NAME")`` refers to)."""
        return self.classes["host source"]

    @property
    def audit_sinks(self) -> Classes[AuditSink]:
        """Audit sink classes by type name (what ``type = "NAME"`` of ``[audit.sinks.X]`` refers to)."""
        return self.classes["audit sink"]

    @property
    def cloud_providers(self) -> Classes[CloudProvider]:
        """Cloud provider classes by name (what ``cloud("NAME", ...)`` refers to)."""
        return self.classes["cloud provider"]

    def strategy(self, name: str) -> Strategy:
        """A fresh instance of the named strategy."""
        return self.strategies[name]()

    def missing(self, kind_name: str, name: str, provides: str) -> tuple[str, str]:
        """Why ``name`` of a kind is not available, and how to fix it: ``(why, hint)``.

        ``why`` is empty when no installed distribution provides it, else says why the
        known provider is not loaded: ``"nexus-ssh is installed but blocked by policy
        (...)"``. ``provides`` names the thing in the hint (``"the 'ssh' transport"``).
        """
        k = kind(kind_name)
        package = k.package_for(name)
        if package is None:
            from nexus_core.options import suggest

            known = [*self.classes[k.name], *k.packages]  # installed, and provided by a known package
            close = suggest(name, [n for n in dict.fromkeys(known) if n != name])
            if close:
                return "", f"did you mean {close!r}? Else install a plugin providing {provides}"
            return "", f"install a plugin providing {provides} (then check `nexus plugins`)"
        why = self.unavailable.get(_norm(package))
        if why is not None:
            return (
                f"{package} is installed but {why}",
                f"see `nexus plugins`; allow {package} in NEXUS_LOAD_PLUGINS and the plugin policy",
            )
        return "", f"pip install {package} (then check `nexus plugins`)"


def _norm(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def register(registry: Registry, k: Kind, distribution: str, item: Any) -> str:
    """Add one item a registration hook returned; '' when accepted, else why not."""
    table = registry.classes[k.name]
    if isinstance(item, Registration):
        if not isinstance(item.name, str) or not item.name:
            return f"plugin {distribution}: {k.hook} returned a registration without a name ({item.target!r})"
        if not isinstance(item.target, str) or not _valid_target(item.target):
            return (
                f"plugin {distribution}: {k.name} {item.name!r} names its class as {item.target!r}; "
                'write "package.module:Class"'
            )
        unknown = sorted(set(item.details) - set(k.details))
        if unknown:
            known = ", ".join(k.details) or "none"
            return f"plugin {distribution}: {k.name} {item.name!r} has unknown details {unknown} (known: {known})"
        entry = Entry(k, item.name, item.target, distribution, dict(item.details))
    else:
        base = load_base(k)
        if not (isinstance(item, type) and issubclass(item, base)):
            return (
                f"plugin {distribution}: {k.hook} returned {item!r}, "
                f"which is not a subclass of nexus_core.api.{k.base_name} nor a Registration"
            )
        name = getattr(item, "name", None)
        if not isinstance(name, str) or not name:
            return f"plugin {distribution}: {k.name} {item.__qualname__} has no name"
        entry = Entry(k, name, f"{item.__module__}:{item.__qualname__}", distribution, _details_of(k, item), item)
    key = f"{k.name}:{entry.name}"
    if key in registry.owners:
        return (
            f"{k.name} {entry.name!r} is registered twice: by {registry.owners[key]} and by {distribution}; "
            f"uninstall one of them or block it in the plugin policy"
        )
    registry.owners[key] = distribution
    table.add(entry)
    return ""


def _valid_target(target: str) -> bool:
    return bool(TARGET.match(target))
