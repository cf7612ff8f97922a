"""The events of cloud bursting: an instance started (with its price) and an instance gone.

Audit sinks record both (``nexus_core.audit.records``): ``cloud.instance.provisioned`` (provider,
instance id, region, size, price per hour) and ``cloud.instance.terminated`` (with its cost), in a
run and from ``nexus cloud scale``, ``terminate`` and ``reap``.
"""

from __future__ import annotations

from typing import ClassVar

from nexus_core.events import Event, event_type


@event_type
class CloudProvisioned(Event):
    """A cloud provider started an instance for this run (or for ``nexus cloud scale``)."""

    name: ClassVar[str] = "cloud.provisioned"
    provider: str
    instance: str
    agent: str
    instance_type: str = ""
    market: str = "on_demand"
    hourly_price: float | None = None
    region: str = ""


@event_type
class CloudTerminated(Event):
    """An instance was terminated (idle, scaled down, at the end of the run, reaped); ``cost``
    is what it cost from launch to now, in US dollars (None when its price is unknown)."""

    name: ClassVar[str] = "cloud.terminated"
    provider: str
    instance: str
    reason: str
    cost: float | None = None


#: The cloud events, for ``nexus_event_types``-style catalogues.
CLOUD_EVENTS = (CloudProvisioned, CloudTerminated)
