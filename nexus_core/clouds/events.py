"""The events of cloud bursting: an instance started (with its price) and an instance gone.

``CloudProvisioned`` carries ``audit = "cloud.provisioned"``: audit sinks record every event
class with an ``audit`` name generically ("cloud instance provisioned, with its cost").
"""

from __future__ import annotations

from typing import ClassVar

from nexus_core.events import Event, event_type


@event_type
class CloudProvisioned(Event):
    """A cloud provider started an instance for this run (or for ``nexus cloud scale``)."""

    name: ClassVar[str] = "cloud.provisioned"
    audit: ClassVar[str] = "cloud.provisioned"
    provider: str
    instance: str
    agent: str
    instance_type: str = ""
    market: str = "on_demand"
    hourly_price: float | None = None


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
