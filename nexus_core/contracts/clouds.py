"""The contract of cloud providers (``nexus_cloud_providers``): re-exported by ``nexus_core.api``.

Imported on first use, so that a run that does not use this kind of plugin does not build
its classes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from nexus_core.model import EMPTY
from nexus_core.options import Option

if TYPE_CHECKING:
    pass


class CloudError(Exception):
    """A cloud provider call failed: the message says what, ``hint`` how to fix it.

    ``retryable`` marks a failure worth another try (a timeout, a 5xx, a throttle): the core
    retries those with backoff and counts them against the provider's circuit breaker.
    ``capacity`` marks "no capacity or price for this request" (spot capacity, a sold-out
    location) so that the caller can fall back. ``exit_code`` is 3 (the provider cannot be
    reached or refuses) unless it says otherwise (2 for a configuration mistake such as a
    missing credential).
    """

    def __init__(
        self,
        message: str,
        hint: str = "",
        *,
        retryable: bool = False,
        capacity: bool = False,
        exit_code: int = 3,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.retryable = retryable
        self.capacity = capacity
        self.exit_code = exit_code


@dataclass(frozen=True)
class CloudInstance:
    """One machine a provider runs for Nexus, as ``list`` reports it.

    ``id`` is the provider's identifier (``i-0abc...``, a server id, a pid); ``name`` the
    agent name it joins the cluster under; ``state`` one of ``pending``, ``running``,
    ``stopping``, ``terminated``; ``launched`` seconds since the epoch; ``hourly_price`` in
    US dollars (None when unknown); ``tags`` every tag/label on the resource (the core's
    ``nexus:*`` tags included); ``market`` ``spot`` or ``on_demand``.
    """

    id: str
    name: str
    state: str
    instance_type: str = ""
    launched: float = 0.0
    hourly_price: float | None = None
    tags: Mapping[str, str] = field(default=EMPTY)
    address: str = ""
    market: str = "on_demand"
    zone: str = ""

    @property
    def live(self) -> bool:
        """True while the instance runs or is about to (it costs money)."""
        return self.state in ("pending", "running")

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (``nexus cloud status --format json``)."""
        return {
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "instance_type": self.instance_type,
            "launched": self.launched,
            "hourly_price": self.hourly_price,
            "tags": dict(self.tags),
            "address": self.address,
            "market": self.market,
            "zone": self.zone,
        }


@dataclass(frozen=True)
class CloudRequest:
    """What the core asks a provider to start: one instance.

    ``settings``: the ``cloud(...)`` declaration's values (the common ones and the
    provider's own, defaults filled in). ``tags``: put every one of them on the instance
    and on everything created with it (volumes, network interfaces). ``name``: the agent
    name the instance joins under. ``bootstrap``: a shell script that installs
    ``nexus-agent``, writes the certificate issued for this instance and joins the cluster
    (empty when no agent cluster is configured); a provider runs it at boot (user data,
    cloud-init) or, for local processes, uses ``credentials``/``cluster`` directly.
    ``max_runtime``: seconds after which the instance must stop and go away by itself (a
    shutdown that terminates), whatever happens to the coordinator.
    """

    name: str
    settings: Mapping[str, Any]
    tags: Mapping[str, str]
    bootstrap: str = ""
    cluster: str = ""
    credentials: Mapping[str, str] = field(default=EMPTY)
    max_runtime: float = 3600.0


@dataclass(frozen=True)
class CloudDemand:
    """What the agent cluster says about the agents a cloud serves, at one moment.

    ``waiting``: commands queued for an agent with the cloud's tags and not running;
    ``oldest_wait``: seconds the longest of them has waited; ``idle_since``: for each
    joined agent (by name), the time (seconds since the epoch) since which it runs nothing
    (None while it is busy). The autoscaler (``nexus_core.clouds.autoscale``) decides from it.
    """

    waiting: int = 0
    oldest_wait: float = 0.0
    idle_since: Mapping[str, float | None] = field(default=EMPTY)


@dataclass(frozen=True)
class CloudContext:
    """What a cloud provider gets when it is created (once per command or run).

    ``config``: the nexusfile's ``config(...)`` values as the user set them. ``settings``: the
    ``cloud(...)`` declaration for this provider (defaults filled in). ``root``: the project
    folder. ``warn``: one line the user should see that does not stop the work (a fallback
    taken, a rate limit waited out).
    """

    config: Mapping[str, Any]
    settings: Mapping[str, Any]
    root: str = "."
    warn: Callable[[str], None] = field(default=lambda _message: None)


class CloudCluster(ABC):
    """The agent cluster cloud instances join, as the core's cloud controller needs it.

    An agent transport offers one: its executor class has a static method
    ``cloud_cluster(config) -> CloudCluster | None`` (nexus-agent's ``agent`` executor does),
    so that the core issues certificates and reads demand without knowing the cluster's
    implementation. ``address`` is the coordinator's (``tls://HOST:PORT``).
    """

    address: str = ""

    @abstractmethod
    def credentials(self, name: str) -> Mapping[str, str]:
        """The files an instance called ``name`` needs to join (file name -> content): the
        cluster's CA certificate and a certificate and key issued for that instance."""

    @abstractmethod
    def demand(self, tags: Sequence[str]) -> CloudDemand:
        """Waiting commands and idle agents among the agents carrying every tag of ``tags``."""

    @abstractmethod
    def agents(self) -> Mapping[str, tuple[str, ...]]:
        """The agents in the cluster now: name -> tags."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the connection."""


class CloudProvider(ABC):
    """Starts, lists and terminates machines that join the agent cluster: ``cloud("NAME", ...)``.

    Keep it about *what* machines exist: the core decides how many (``nexus cloud scale``,
    the autoscaler), enforces ``max_instances`` and ``max_hourly_cost`` before every
    ``provision`` call, tags every resource with the owning cluster and run, retries calls
    that raise a ``retryable`` :class:`CloudError` (tenacity), rate-limits them (``limits``)
    and stops asking a provider that keeps failing (``pybreaker``). A provider only talks to
    its API. Calls come from one thread at a time.
    """

    #: What ``cloud("NAME")`` refers to; set from the registration.
    name: ClassVar[str]
    #: The provider's own ``cloud(NAME, ...)`` parameters beyond the common ones, as
    #: :class:`Option` (an unknown one is a validation error, without importing the provider).
    settings: ClassVar[tuple[Option, ...]] = ()

    def __init__(self, context: CloudContext) -> None:
        self.context = context

    @abstractmethod
    def provision(self, request: CloudRequest) -> CloudInstance:
        """Start one instance with ``request.tags`` on it and return it (``pending`` is fine).

        Raise :class:`CloudError` (``capacity=True`` when the provider has no capacity or the
        price is over the limit, after any fallback the settings allow)."""

    @abstractmethod
    def list(self, tags: Mapping[str, str]) -> Sequence[CloudInstance]:
        """The instances carrying every tag of ``tags`` that are not terminated (read only)."""

    @abstractmethod
    def terminate(self, ids: Sequence[str]) -> None:
        """Terminate these instances (unknown or already gone ids are not an error)."""

    def hourly_price(self, settings: Mapping[str, Any]) -> float | None:
        """The price of one instance of these settings per hour in US dollars, from the
        provider's own figures (spot price history, server-type prices); None when unknown.
        Read only. Default: None (then ``config(cloud_prices={...})`` must give it)."""
        return None

    def describe(self, settings: Mapping[str, Any]) -> str:
        """One line saying what one instance would be (``t3.micro spot in eu-west-1``), for
        the dry run. Read only, no network needed."""
        kind = settings.get("instance_type") or settings.get("server_type") or "instance"
        return f"{kind} ({self.name})"

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients and connections; called once when the command or run ends."""
