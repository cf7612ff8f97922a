"""The cluster panel's data: the agents a run uses and how busy they are, asked every few seconds.

The core knows no cluster. It knows the host source that selectors ask (``all_agents()``,
``any_of()``...: :data:`nexus_core.targets.SOURCE`), which a plugin provides (nexus-agent).
That source's :meth:`~nexus_core.plugin.HostSource.discover` answers, with no filter, every
agent that takes work, each with its load as facts (``running``, ``slots``, ``cpu``,
``memory``): the dashboard asks it in a thread of its own, never in the screen's loop, and
shows the answer as a :class:`ClusterView`. Without that plugin, or in a run that uses no
agent, there is no cluster and the panel shows the run's hosts as before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nexus_core.registry import Registry
    from nexus_core.tui.feed import EventFeed

#: Seconds between two questions to the cluster.
INTERVAL = 2.0
#: The most questions a watcher asks (then the panel keeps the last answer): a week at 2 s.
MAX_POLLS = 7 * 86400 // 2


@dataclass(frozen=True)
class Member:
    """One agent of the cluster: commands running, slots, CPU (percent), memory (bytes), tags."""

    name: str
    running: int = 0
    slots: int = 1
    cpu: float = 0.0
    memory: int = 0
    tags: tuple[str, ...] = ()

    @property
    def load(self) -> float:
        """Running commands per slot (1.0: every slot busy)."""
        return self.running / max(self.slots, 1)


@dataclass(frozen=True)
class ClusterView:
    """What the cluster said (a feed item): its agents, or why it could not say."""

    source: str
    members: tuple[Member, ...] = ()
    error: str = ""


def members_of(found: Iterable[Any]) -> tuple[Member, ...]:
    """:class:`Member` rows from a host source's ``DiscoveredHost`` answers (load facts read leniently)."""

    def num(facts: Mapping[str, Any], key: str, default: float = 0) -> float:
        value = facts.get(key, default)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float(default)

    out = []
    for h in found:
        facts = h.facts or {}
        out.append(
            Member(
                name=str(h.name or h.address),
                running=int(num(facts, "running")),
                slots=int(num(facts, "slots", 1)) or 1,
                cpu=num(facts, "cpu"),
                memory=int(num(facts, "memory")),
                tags=tuple(h.tags),
            )
        )
    return tuple(sorted(out, key=lambda m: m.name))


def uses_agents(transports: Iterable[str]) -> bool:
    """True when some of the run's hosts run on agents (their transport is the agent source's name)."""
    from nexus_core.targets import SOURCE

    return any(t == SOURCE for t in transports)


def agent_lister(
    registry: Registry, config: Mapping[str, Any], root: str, transports: Iterable[str]
) -> Callable[[], tuple[Member, ...]] | None:
    """A function asking the agents' host source for every agent and its load; None when the run
    (the transports of its hosts) uses no agent or no plugin provides that source."""
    from nexus_core.targets import SOURCE

    if not uses_agents(transports) or SOURCE not in registry.host_sources:
        return None
    made: list[Any] = []

    def ask() -> tuple[Member, ...]:
        if not made:
            from nexus_core.api import HostSourceContext

            made.append(registry.host_sources[SOURCE](HostSourceContext(config=dict(config), root=root)))
        return members_of(made[0].discover({}))

    return ask


class ClusterWatcher:
    """Asks ``lister`` every ``interval`` seconds in a thread and feeds each answer as a :class:`ClusterView`."""

    def __init__(
        self, lister: Callable[[], tuple[Member, ...]], feed: EventFeed, source: str = "", interval: float = INTERVAL
    ) -> None:
        from nexus_core.targets import SOURCE

        self.lister = lister
        self.feed = feed
        self.source = source or SOURCE
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: ClusterView | None = None

    def poll(self) -> ClusterView:
        """Ask once; the answer goes to the feed when it differs from the last one."""
        try:
            view = ClusterView(self.source, self.lister())
        except Exception as exc:  # noqa: BLE001 - a cluster that cannot answer is shown, never raised
            message = getattr(exc, "message", "") or str(exc)
            view = ClusterView(self.source, self._last.members if self._last else (), f"{message}")
        if view != self._last:
            self._last = view
            self.feed(view)
        return view

    def _loop(self) -> None:
        for _ in range(MAX_POLLS):
            self.poll()
            if self._stop.wait(self.interval):
                break

    def start(self) -> None:
        """Ask in a thread until :meth:`stop`."""
        self._thread = threading.Thread(target=self._loop, name="nexus-tui-cluster", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop asking (waits a little for the thread)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
