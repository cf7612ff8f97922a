"""Clients of Azure Resource Manager, shared by discovery, Run Command and scale sets.

One :class:`Arm` per configuration and process. HTTP goes through the official SDK
(``azure-mgmt-compute``, ``azure-mgmt-resourcegraph``) against ``azure_arm_endpoint``:

* retries are azure-core's ``RetryPolicy`` (``azure_api_attempts``): no answer, 5xx, and
  429 after the ``Retry-After`` the service sent (throttling is ARM's normal answer to
  bursts, per subscription and per tenant);
* a ``limits`` moving window (``azure_api_rate``) per subscription paces every HTTP
  attempt, polls of long-running operations included (a pipeline policy);
* a ``pybreaker`` breaker per subscription: once a subscription failed for want of an
  answer, the other hosts and groups of the run fail at once with the same message
  instead of each waiting out the retries again. Configuration errors (401, 403, 404)
  never open it.

The API versions are pinned (:data:`COMPUTE_API`, :data:`GRAPH_API`) rather than left
to the SDK release: the fake Azure of the tests speaks exactly these.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from nexus_azure.auth import credential, token_error
from nexus_azure.errors import CONFIG, CONNECTION, AzureError

if TYPE_CHECKING:
    import pybreaker

#: ARM API version of Microsoft.Compute (VMs, scale sets, run commands).
COMPUTE_API = "2024-07-01"
#: ARM API version of Microsoft.ResourceGraph.
GRAPH_API = "2021-03-01"
DEFAULT_ENDPOINT = "https://management.azure.com"

T = TypeVar("T")

_LOCK = threading.Lock()
_BREAKERS: dict[str, pybreaker.CircuitBreaker] = {}
_LIMITER: list[Any] = []
#: Consecutive failures that open a subscription's breaker, and seconds it stays open.
BREAKER_FAILS = 3
BREAKER_RESET = 60.0


def reset_state() -> None:
    """Forget breakers and rate windows (tests; a long-lived process after a fix)."""
    with _LOCK:
        _BREAKERS.clear()
        _LIMITER.clear()


def subscriptions(config: Mapping[str, Any], wanted: Any = None) -> list[str]:
    """The subscriptions to use: ``wanted``, else ``azure_subscription``, else AZURE_SUBSCRIPTION_ID."""
    value = wanted if wanted not in (None, "", [], ()) else config.get("azure_subscription")
    if value in (None, "", [], ()):
        value = os.environ.get("AZURE_SUBSCRIPTION_ID")
    if not value:
        raise AzureError(
            "no Azure subscription is set",
            hint='add config(azure_subscription="SUBSCRIPTION-ID"), set AZURE_SUBSCRIPTION_ID, or pass '
            'discover("azure", subscription=...)',
            exit_code=CONFIG,
        )
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _transient(exc: BaseException) -> bool:
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError

    if isinstance(exc, ClientAuthenticationError):
        return False
    if isinstance(exc, ServiceRequestError):
        return True
    if isinstance(exc, HttpResponseError):
        status = exc.status_code or 0
        return status == 429 or status >= 500 or status == 0
    return isinstance(exc, OSError)


def _breaker(key: str) -> pybreaker.CircuitBreaker:
    import pybreaker

    with _LOCK:
        found = _BREAKERS.get(key)
        if found is None:
            found = _BREAKERS[key] = pybreaker.CircuitBreaker(
                fail_max=BREAKER_FAILS,
                reset_timeout=BREAKER_RESET,
                exclude=[lambda e: not _transient(e)],
                name=f"azure:{key}",
                throw_new_error_on_trip=False,
            )
        return found


def _rate_policy(rate: str, key: str) -> Any:
    """A pipeline policy that waits for the subscription's rate window before each HTTP attempt."""
    from azure.core.pipeline.policies import SansIOHTTPPolicy
    from limits import parse
    from limits.storage import MemoryStorage
    from limits.strategies import MovingWindowRateLimiter

    item = parse(rate)
    with _LOCK:
        if not _LIMITER:
            _LIMITER.append(MovingWindowRateLimiter(MemoryStorage()))
        limiter = _LIMITER[0]

    class RatePolicy(SansIOHTTPPolicy):  # type: ignore[type-arg]
        def on_request(self, request: Any) -> None:
            for _ in range(10_000):  # bounded: a 1/minute rate waits ~1 minute at most
                if limiter.hit(item, "azure", key):
                    return
                time.sleep(0.02)

    return RatePolicy()


class Arm:
    """SDK clients and calls for one configuration (``config``); use from many threads."""

    def __init__(self, config: Mapping[str, Any], cred: Any = None) -> None:
        self.config = config
        self.endpoint = str(config.get("azure_arm_endpoint") or DEFAULT_ENDPOINT).rstrip("/")
        self.method = str(config.get("azure_auth") or "default")
        self._cred = cred
        self._compute: dict[str, Any] = {}
        self._graph: Any = None
        self._lock = threading.Lock()
        #: More keyword arguments for the SDK clients (``connection_verify=CA_FILE``...).
        self.extra: dict[str, Any] = {}

    @property
    def poll_interval(self) -> float:
        """Seconds between two polls (``azure_poll_interval``)."""
        return float(self.config.get("azure_poll_interval") or 2)

    def credential(self) -> Any:
        """The token credential (made on first use)."""
        if self._cred is None:
            self._cred = credential(self.config)
        return self._cred

    def _kwargs(self, key: str) -> dict[str, Any]:
        timeout = float(self.config.get("azure_timeout") or 30)
        attempts = int(self.config.get("azure_api_attempts") or 4)
        return {
            "base_url": self.endpoint,
            "credential_scopes": [f"{self.endpoint}/.default"],
            "retry_total": attempts - 1,
            "retry_backoff_factor": 0.5,
            "retry_backoff_max": 30,
            "connection_timeout": timeout,
            "read_timeout": timeout,
            "polling_interval": self.poll_interval,
            "per_retry_policies": [_rate_policy(str(self.config.get("azure_api_rate") or "20/second"), key)],
            "logging_enable": False,
            **self.extra,
        }

    def compute(self, subscription: str) -> Any:
        """The ``ComputeManagementClient`` of ``subscription``."""
        with self._lock:
            found = self._compute.get(subscription)
            if found is None:
                from azure.mgmt.compute import ComputeManagementClient

                found = ComputeManagementClient(self.credential(), subscription, **self._kwargs(subscription))
                self._compute[subscription] = found
            return found

    def graph(self) -> Any:
        """The ``ResourceGraphClient``."""
        with self._lock:
            if self._graph is None:
                from azure.mgmt.resourcegraph import ResourceGraphClient

                self._graph = ResourceGraphClient(self.credential(), **self._kwargs("graph"))
            return self._graph

    def call(self, key: str, what: str, fn: Callable[[], T]) -> T:
        """``fn()`` through ``key``'s breaker; SDK and credential errors become :class:`AzureError`."""
        import pybreaker

        try:
            return _breaker(key).call(fn)
        except pybreaker.CircuitBreakerError:
            raise AzureError(
                f"{what}: Azure (subscription {key}) failed repeatedly; not asked again for "
                f"{BREAKER_RESET:.0f}s",
                hint="check https://status.azure.com and your network; the run can be resumed later",
                exit_code=CONNECTION,
            ) from None
        except AzureError:
            raise
        except Exception as exc:
            raise self.error(exc, what) from exc

    def error(self, exc: BaseException, what: str) -> AzureError:
        """The :class:`AzureError` for an exception of the SDK or the credential."""
        from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError

        if isinstance(exc, ClientAuthenticationError) and getattr(exc, "response", None) is None:
            return token_error(exc, self.method)
        if isinstance(exc, HttpResponseError):
            return http_error(exc, what)
        if isinstance(exc, ServiceRequestError):
            return AzureError(
                f"{what}: Azure Resource Manager at {self.endpoint} does not answer: {_first_line(exc)}",
                hint="check your network, proxy and azure_arm_endpoint",
                exit_code=CONNECTION,
            )
        return AzureError(f"{what}: {type(exc).__name__}: {_first_line(exc)}", exit_code=CONNECTION)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def http_error(exc: Any, what: str) -> AzureError:
    """An :class:`AzureError` for an ``HttpResponseError``: status, ARM error code and message."""
    status = int(exc.status_code or 0)
    err = getattr(exc, "error", None)
    code = getattr(err, "code", None) or ""
    message = getattr(err, "message", None) or _first_line(exc)
    detail = f"{code}: {message}" if code else message
    if status == 401:
        return AzureError(
            f"{what}: Azure refused the token (401 {detail})",
            hint="sign in again (az login) or check azure_tenant_id / the service principal",
            exit_code=CONFIG,
        )
    if status == 403:
        return AzureError(
            f"{what}: permission denied (403 {detail})",
            hint="grant the identity a role on the scope: Reader to discover VMs, Virtual Machine "
            "Contributor to run commands and manage scale sets",
            exit_code=CONFIG,
        )
    if status == 404:
        return AzureError(
            f"{what}: not found (404 {detail})",
            hint="check the name, resource group and subscription",
            exit_code=CONFIG,
        )
    if status == 429:
        return AzureError(
            f"{what}: Azure kept throttling the requests (429 {detail})",
            hint="lower azure_api_rate or the run's parallelism, or try again later",
            exit_code=CONNECTION,
        )
    return AzureError(
        f"{what}: Azure answered {status} {detail}", exit_code=CONNECTION if status >= 500 else CONFIG
    )


def parse_id(resource_id: str) -> dict[str, str]:
    """``/subscriptions/S/resourceGroups/G/providers/P/T/N[/T2/N2...]`` as a dict of its parts."""
    parts = [p for p in resource_id.split("/") if p]
    out: dict[str, str] = {}
    for i in range(0, len(parts) - 1, 2):
        out[parts[i].lower()] = parts[i + 1]
    return out


def names(values: Any) -> Sequence[str]:
    """A string or a list of strings as a tuple of strings (None: empty)."""
    if values in (None, ""):
        return ()
    if isinstance(values, str):
        return (values,)
    return tuple(str(v) for v in values)
