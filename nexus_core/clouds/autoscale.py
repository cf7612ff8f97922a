"""The autoscaling policy: when to start instances and when to let idle ones go, without thrash.

:meth:`Autoscaler.decide` is a pure function of what the cluster reports (a :class:`Demand`)
and the clock, so the policy is tested without machines; :meth:`Autoscaler.step` applies a
decision through a :class:`~nexus_core.clouds.controller.Controller` (which still enforces
the hard cost limits on every start).

- **Up**: when commands have waited for a matching agent longer than ``scale_up_wait``
  seconds, or more than ``scale_up_queue`` of them wait: one instance per waiting command
  beyond what starting instances will absorb, within ``count`` (and the hard limits).
  ``count``'s minimum is kept at all times.
- **Down** (hysteresis): an instance is terminated only when it has been idle for
  ``idle_timeout`` seconds, nothing waits, and no scale-up happened in the last
  ``scale_down_cooldown`` seconds; never below ``count``'s minimum. An instance that has
  not joined yet is never idle, and idle time counts from the run's start at the earliest.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nexus_core.api import CloudDemand as Demand

if TYPE_CHECKING:
    from nexus_core.api import CloudInstance
    from nexus_core.clouds.controller import Controller


@dataclass(frozen=True)
class Decision:
    """Start ``start`` instances and terminate those named in ``stop`` (agent names)."""

    start: int = 0
    stop: tuple[str, ...] = ()
    why: str = ""


class Autoscaler:
    """Decides and applies scaling for one ``cloud(...)`` declaration."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = settings
        self.last_up = float("-inf")
        #: Idle time counts from here at the earliest (the run's start: an agent that was idle
        #: before the run had work to give is not idle for the run).
        self.started = float("-inf")

    def decide(self, demand: Demand, instances: Sequence[CloudInstance], now: float) -> Decision:
        """What to do now, given the demand and the live instances (pure; see the module doc)."""
        low, high = (int(v) for v in self.settings.get("count", (0, 10)))
        live = len(instances)
        joined = {i.name for i in instances if i.name in demand.idle_since}
        pending = live - len(joined)  # started, not joined yet: they will take work soon
        if live < low:
            return Decision(start=low - live, why=f"count minimum {low}")
        wait = float(self.settings.get("scale_up_wait", 30))
        depth = int(self.settings.get("scale_up_queue", 4))
        if demand.waiting and (demand.oldest_wait >= wait or demand.waiting > depth):
            wanted = min(high - live, demand.waiting - pending)
            if wanted > 0:
                why = f"{demand.waiting} command(s) waiting" + (
                    f" for {demand.oldest_wait:.0f} s" if demand.oldest_wait >= wait else f" (more than {depth})"
                )
                return Decision(start=wanted, why=why)
            return Decision()
        if demand.waiting:
            return Decision()
        cooldown = float(self.settings.get("scale_down_cooldown", 60))
        if now - self.last_up < cooldown:
            return Decision()
        idle_timeout = float(self.settings.get("idle_timeout", 300))
        idle = sorted(
            (since, name) for name, since in demand.idle_since.items() if since is not None and name in joined
        )
        stop = [name for since, name in idle if now - max(since, self.started) >= idle_timeout][: max(0, live - low)]
        if stop:
            return Decision(stop=tuple(stop), why=f"idle for {idle_timeout:g} s")
        return Decision()

    def step(self, controller: Controller, demand: Demand, now: float | None = None, **kwargs: Any) -> Decision:
        """Decide and apply once; returns the decision (starts stop early at a hard limit)."""
        now = time.time() if now is None else now
        instances = controller.instances()
        decision = self.decide(demand, instances, now)
        if decision.start:
            self.last_up = now
            for _ in range(decision.start):
                controller.provision(**kwargs)
        if decision.stop:
            names = set(decision.stop)
            controller.terminate([i for i in instances if i.name in names], "idle")
        return decision
