"""The core's side of every provider call: hard limits, ownership tags, retries, rate limit, breaker.

A :class:`Controller` wraps one :class:`~nexus_core.api.CloudProvider` for one command or
run. Before **every** ``provision`` call it lists the instances this cluster owns at that
provider afresh and refuses when one more would pass ``max_instances`` (or the declared
``count`` maximum) or ``max_hourly_cost`` (prices from the provider, else the declared
``price``; an unknown price with a cost limit set is refused too: a limit that cannot be
checked is not a limit). Every request carries the ``nexus:*`` tags: managed, cluster,
run, owner (machine and pid of the process that started it) and provider.

Calls go through a process-wide rate limit (``limits``, ``config(cloud_api_rate=...)``,
default ``10/second``), are retried with backoff when the provider says the failure is
transient (``CloudError(retryable=True)``, tenacity, 4 attempts), and pass a circuit
breaker per provider (``pybreaker``): after 3 failed calls in a row the provider is not
asked again for 60 s, and the user is told once.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from nexus_core.api import CloudError, CloudInstance, CloudProvider, CloudRequest
from nexus_core.clouds import (
    MANUAL,
    TAG_AGENT_TAGS,
    TAG_CLUSTER,
    TAG_MANAGED,
    TAG_OWNER,
    TAG_PROVIDER,
    TAG_RUN,
)
from nexus_core.clouds.events import CloudProvisioned, CloudTerminated

if TYPE_CHECKING:
    import pybreaker
    from limits.strategies import MovingWindowRateLimiter

    from nexus_core.events import Event

T = TypeVar("T")

DEFAULT_RATE = "10/second"
ATTEMPTS = 4
#: Seconds a provider call may take before a note says that Nexus is still waiting for it.
SLOW_CALL = 15.0
BREAKER_FAILURES = 3
BREAKER_RESET = 60.0

_LOCK = threading.Lock()
_LIMITER: list[MovingWindowRateLimiter] = []
_BREAKERS: dict[str, pybreaker.CircuitBreaker] = {}
_SAID: set[str] = set()
_LAST_STAMP = [0]


def _stamp() -> int:
    """A millisecond clock reading that never repeats in this process (instance names must differ
    even when a fast provider starts two within the same millisecond)."""
    with _LOCK:
        stamp = max(int(time.time() * 1000) % 10**10, _LAST_STAMP[0] + 1)
        _LAST_STAMP[0] = stamp
        return stamp


def reset_state() -> None:
    """Forget breakers and rate windows (tests, a long-lived process after a fix)."""
    with _LOCK:
        _LIMITER.clear()
        _BREAKERS.clear()
        _SAID.clear()


def owner_tag() -> str:
    """``MACHINE:PID`` of this process: who to ask whether an instance's owner still lives."""
    return f"{os.uname().nodename}:{os.getpid()}"


def owner_alive(owner: str) -> bool | None:
    """Whether the process named by an owner tag runs (None: another machine, cannot tell)."""
    machine, _, pid = owner.rpartition(":")
    if machine != os.uname().nodename or not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cost_of(instance: CloudInstance, now: float | None = None) -> float | None:
    """US dollars an instance has cost from its launch to ``now`` (None: price unknown)."""
    if instance.hourly_price is None or not instance.launched:
        return None
    hours = max(0.0, (now or time.time()) - instance.launched) / 3600
    return round(instance.hourly_price * hours, 6)


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, CloudError) and exc.retryable


def _breaker(provider: str) -> pybreaker.CircuitBreaker:
    import pybreaker

    with _LOCK:
        found = _BREAKERS.get(provider)
        if found is None:
            found = pybreaker.CircuitBreaker(
                fail_max=BREAKER_FAILURES,
                reset_timeout=BREAKER_RESET,
                exclude=[lambda exc: not _transient(exc)],
                name=f"cloud provider {provider}",
                throw_new_error_on_trip=False,
            )
            _BREAKERS[provider] = found
        return found


def _wait_for_rate(rate: str, key: str) -> None:
    from limits import parse
    from limits.storage import MemoryStorage
    from limits.strategies import MovingWindowRateLimiter

    from nexus_core.options import rate_problem

    problem = rate_problem(rate)
    if problem:
        raise CloudError(problem, 'write config(cloud_api_rate="10/second") (COUNT/PERIOD, COUNT >= 1)', exit_code=2)
    item = parse(rate)
    with _LOCK:
        if not _LIMITER:
            _LIMITER.append(MovingWindowRateLimiter(MemoryStorage()))
        limiter = _LIMITER[0]
    for _ in range(1000):
        if limiter.hit(item, "nexus-cloud", key):
            return
        stats = limiter.get_window_stats(item, "nexus-cloud", key)
        time.sleep(min(max(stats.reset_time - time.time(), 0.01), 5.0))
    raise CloudError(f"the rate limit cloud_api_rate={rate!r} never freed a slot", "raise cloud_api_rate")


class Controller:
    """One provider for one command or run, behind the cost limits and the call guards.

    ``settings``: the resolved ``cloud(...)`` declaration (nexus_core.clouds.resolved).
    ``cluster``: the agent cluster's address (the ``nexus:cluster`` tag). ``run_id``: the
    run that owns what it starts (``manual`` for ``nexus cloud scale``). ``credentials``:
    files an instance needs to join (the certificate issued for it), by agent name.
    ``emit``: where the cloud events go (the run's bus). ``warn``: one line for the user.
    """

    def __init__(
        self,
        provider: CloudProvider,
        settings: Mapping[str, Any],
        *,
        cluster: str = "",
        run_id: str = MANUAL,
        credentials: Callable[[str], Mapping[str, str]] | None = None,
        emit: Callable[[Event], None] | None = None,
        warn: Callable[[str], None] | None = None,
        rate: str = DEFAULT_RATE,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.provider = provider
        self.name = provider.name
        self.settings = dict(settings)
        self.cluster = cluster
        self.run_id = run_id
        self.credentials = credentials
        self._emit = emit
        self._warn = warn or (lambda _m: None)
        self.rate = rate
        self._sleep = sleep
        self._price: tuple[float | None] | None = None
        self.started: list[CloudInstance] = []
        self.costs: dict[str, float | None] = {}

    # --- guarded calls -------------------------------------------------------------------------

    def call(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` rate-limited, retried when transient, behind the provider's breaker."""
        import pybreaker
        from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

        def attempts() -> T:
            retrying = Retrying(
                retry=retry_if_exception(_transient),
                stop=stop_after_attempt(ATTEMPTS),
                wait=wait_exponential(multiplier=0.2, max=5),
                sleep=self._sleep,
                reraise=True,
            )
            for attempt in retrying:
                with attempt:
                    _wait_for_rate(self.rate, self.name)
                    try:
                        return fn(*args)
                    except CloudError:
                        raise
                    except Exception as exc:  # a provider bug or an SDK error: say which
                        raise CloudError(
                            f"cloud provider {self.name!r} failed to {what}: {type(exc).__name__}: {exc}"
                        ) from exc
            raise AssertionError("unreachable")  # pragma: no cover

        # A provider that does not answer (its SDK retrying timeouts, a rate limit waited out) is
        # said while it lasts, not only when it ends: a minute of silence reads as a hang.
        started = time.monotonic()
        stop = threading.Event()

        def say_waiting() -> None:
            while not stop.wait(SLOW_CALL if time.monotonic() - started < SLOW_CALL else 60):
                self._warn(f"nexus: still waiting for {self.name} to {what} ({time.monotonic() - started:.0f} s)")

        watcher = threading.Thread(target=say_waiting, name=f"nexus-cloud-wait-{self.name}", daemon=True)
        watcher.start()
        try:
            return _breaker(self.name).call(attempts)
        except pybreaker.CircuitBreakerError:
            message = (
                f"cloud provider {self.name!r} keeps failing: not asked again for {BREAKER_RESET:g} s "
                f"({BREAKER_FAILURES} failed calls in a row)"
            )
            with _LOCK:
                first = self.name not in _SAID
                _SAID.add(self.name)
            if first:
                self._warn(f"nexus: {message}")
            raise CloudError(message, "check the provider's status page and your quota, then try again") from None
        finally:
            stop.set()

    # --- what exists ---------------------------------------------------------------------------

    def cluster_tags(self) -> dict[str, str]:
        """The tags every instance of this cluster at this provider carries."""
        return {TAG_MANAGED: "true", TAG_CLUSTER: self.cluster or "local", TAG_PROVIDER: self.name}

    def request_tags(self) -> dict[str, str]:
        """Every tag a new instance gets: the cluster's, the run's, the owner's and the user's."""
        tags = {str(k): str(v) for k, v in (self.settings.get("resource_tags") or {}).items()}
        tags.update(self.cluster_tags())
        tags[TAG_RUN] = self.run_id
        tags[TAG_OWNER] = owner_tag()
        tags[TAG_AGENT_TAGS] = ",".join(self.settings.get("tags") or ())
        return tags

    def instances(self, run_only: bool = False) -> list[CloudInstance]:
        """Live instances of this cluster at this provider (only this run's with ``run_only``)."""
        wanted = self.cluster_tags()
        if run_only:
            wanted[TAG_RUN] = self.run_id
        found = self.call("list instances", self.provider.list, wanted)
        return [i for i in found if i.live]

    def hourly_price(self) -> float | None:
        """One instance's price per hour: the provider's figure, else the declared ``price``."""
        if self._price is None:
            reported = self.call("look up prices", self.provider.hourly_price, self.settings)
            declared = self.settings.get("price")
            self._price = (reported if reported is not None else (float(declared) if declared is not None else None),)
        return self._price[0]

    # --- limits --------------------------------------------------------------------------------

    def refusal(self, live: Sequence[CloudInstance]) -> str | None:
        """Why one more instance may not start now (None: it may): the hard limits."""
        limit = self.settings.get("max_instances")
        top = int(self.settings.get("count", (0, 10))[1])
        if limit is not None and len(live) + 1 > int(limit):
            return f"max_instances={limit} reached ({len(live)} running)"
        if len(live) + 1 > top:
            return f"count maximum {top} reached ({len(live)} running)"
        budget = self.settings.get("max_hourly_cost")
        if budget is not None:
            price = self.hourly_price()
            if price is None:
                return (
                    f"max_hourly_cost={budget} is set but {self.name!r} reports no price for these settings "
                    "(declare price=... in cloud(...))"
                )
            spend = sum(i.hourly_price if i.hourly_price is not None else price for i in live)
            if spend + price > float(budget) + 1e-9:
                return f"max_hourly_cost=${budget}/h would be passed (${spend:.4f}/h running + ${price:.4f}/h)"
        return None

    # --- changes -------------------------------------------------------------------------------

    def provision(self, bootstrap: Callable[[str, Mapping[str, str]], str] | None = None) -> CloudInstance:
        """Start one instance after checking the hard limits; raise CloudError when refused."""
        live = self.instances()
        why = self.refusal(live)
        if why is not None:
            raise CloudError(f"not starting another {self.name!r} instance: {why}", exit_code=1)
        name = f"{self.name}-{_stamp():010d}-{os.getpid() % 1000:03d}"
        creds = dict(self.credentials(name)) if self.credentials is not None else {}
        request = CloudRequest(
            name=name,
            settings=self.settings,
            tags=self.request_tags(),
            bootstrap=bootstrap(name, creds) if bootstrap is not None else "",
            cluster=self.cluster,
            credentials=creds,
            max_runtime=float(self.settings.get("max_runtime") or 3600),
        )
        instance = self.call("start an instance", self.provider.provision, request)
        if instance.hourly_price is None:  # its cost and audit record need one (asked once per controller)
            try:
                price = self.hourly_price()
            except CloudError:  # the machine runs: a price list that cannot be read costs only the figure
                price = None  # and is not asked again (no budget here: refusal() never asked it)
                self._price = (None,)
            if price is not None:
                from dataclasses import replace

                instance = replace(instance, hourly_price=price)
        self.started.append(instance)
        if self._emit is not None:
            self._emit(
                CloudProvisioned(
                    self.run_id,
                    provider=self.name,
                    instance=instance.id,
                    agent=instance.name,
                    instance_type=instance.instance_type,
                    market=instance.market,
                    hourly_price=instance.hourly_price,
                    region=_region(instance, self.settings),
                )
            )
        return instance

    def terminate(self, instances: Sequence[CloudInstance], reason: str) -> None:
        """Terminate these instances and record what each cost."""
        if not instances:
            return
        self.call("terminate instances", self.provider.terminate, [i.id for i in instances])
        now = time.time()
        for i in instances:
            self.costs[i.id] = cost_of(i, now)
            if self._emit is not None:
                self._emit(CloudTerminated(self.run_id, provider=self.name, instance=i.id, reason=reason,
                                           cost=self.costs[i.id]))  # fmt: skip

    def scale_to(self, count: int, bootstrap: Callable[[str, Mapping[str, str]], str] | None = None) -> ScaleResult:
        """Start or terminate instances until ``count`` live ones remain (starting stops at a limit)."""
        live = self.instances()
        result = ScaleResult(before=len(live))
        if len(live) > count:
            extra = sorted(live, key=lambda i: i.launched, reverse=True)[: len(live) - count]
            self.terminate(extra, "scaled down")
            result.stopped.extend(extra)
            return result
        for _ in range(count - len(live)):
            try:
                result.started.append(self.provision(bootstrap))
            except CloudError as exc:
                result.refused = exc.message
                result.error = exc
                break
        return result


class ScaleResult:
    """What one :meth:`Controller.scale_to` did."""

    def __init__(self, before: int) -> None:
        self.before = before
        self.started: list[CloudInstance] = []
        self.stopped: list[CloudInstance] = []
        self.refused = ""
        self.error: CloudError | None = None


def bootstrap_script(
    name: str,
    credentials: Mapping[str, str],
    *,
    cluster: str,
    tags: Sequence[str],
    max_runtime: float,
    package: str = "nexus-agent",
) -> str:
    """The boot script (cloud-init user data) of an instance: a self-destruct first, then
    ``pip install nexus-agent``, the certificate issued for it, and ``nexus agent start``.

    ``shutdown -h +MINUTES`` runs before anything else, so an instance whose coordinator died
    (or whose bootstrap failed) still goes away after ``max_runtime``; providers make a
    shutdown terminate (AWS: instance-initiated shutdown behaviour ``terminate``).
    """
    import shlex

    minutes = max(1, int((max_runtime + 59) // 60))
    join = cluster.removeprefix("tls://")
    lines = [
        "#!/bin/sh",
        "# written by Nexus: self-destruct, install nexus-agent, join the cluster",
        f"shutdown -h +{minutes} 'nexus: max_runtime reached' || (sleep {int(max_runtime)} && poweroff) &",
        "set -e",
        'export HOME="${HOME:-/root}"',
        "python3 -m venv /opt/nexus && /opt/nexus/bin/pip install -q " + shlex.quote(package),
        "mkdir -p /root/.config/nexus/agent && chmod 700 /root/.config/nexus/agent",
    ]
    for filename, content in sorted(credentials.items()):
        path = f"/root/.config/nexus/agent/{filename}"
        lines.append(f"cat > {shlex.quote(path)} <<'NEXUS_EOF'\n{content.rstrip()}\nNEXUS_EOF")
        lines.append(f"chmod 600 {shlex.quote(path)}")
    start = ["/opt/nexus/bin/nexus", "agent", "start", "--name", name, "--cert", name, "--host", "0.0.0.0"]
    if tags:
        start += ["--tags", ",".join(tags)]
    if join:
        start += ["--join", join]
    lines.append(" ".join(shlex.quote(w) for w in start))
    return "\n".join(lines) + "\n"


def _region(instance: CloudInstance, settings: Mapping[str, Any]) -> str:
    """Where an instance runs, for its audit record: the region or location it was started in
    (a provider's setting), else its zone as the provider reports it, else ""."""
    for key in ("region", "location"):
        value = settings.get(key)
        if isinstance(value, str) and value:
            return value
    return instance.zone
