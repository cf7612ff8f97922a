"""VM Scale Sets: list instances, delete some of them, set the capacity.

``scale_vmss`` is what a cloud-provider hook calls to scale a scale set (``nexus cloud
scale azure-vmss=N``); each function blocks until ARM's long-running operation ends and
raises :class:`~nexus_azure.errors.AzureError` with the fix when it fails.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from nexus_azure.arm import COMPUTE_API, Arm, subscriptions
from nexus_azure.discovery import VM, scale_set_vms
from nexus_azure.errors import CONFIG, AzureError

#: Seconds a scale or delete operation is waited for at most.
OPERATION_TIMEOUT = 1800.0


def _arm(config: Mapping[str, Any], arm: Arm | None) -> Arm:
    return arm if arm is not None else Arm(config)


def _sub(config: Mapping[str, Any], subscription: str | None) -> str:
    return subscription or subscriptions(config)[0]


def instances(
    config: Mapping[str, Any],
    resource_group: str,
    scale_set: str,
    *,
    subscription: str | None = None,
    arm: Arm | None = None,
) -> list[VM]:
    """The instances of ``scale_set``, with power state and tags."""
    a = _arm(config, arm)
    return scale_set_vms(a, _sub(config, subscription), resource_group, scale_set)


def capacity(
    config: Mapping[str, Any],
    resource_group: str,
    scale_set: str,
    *,
    subscription: str | None = None,
    arm: Arm | None = None,
) -> int:
    """The scale set's current capacity (``sku.capacity``)."""
    a = _arm(config, arm)
    sub = _sub(config, subscription)
    compute = a.compute(sub)
    doc = a.call(
        sub,
        f"get scale set {scale_set}",
        lambda: compute.virtual_machine_scale_sets.get(resource_group, scale_set, api_version=COMPUTE_API),
    )
    return int(doc.sku.capacity or 0)


def scale_vmss(
    config: Mapping[str, Any],
    resource_group: str,
    scale_set: str,
    count: int,
    *,
    subscription: str | None = None,
    arm: Arm | None = None,
) -> int:
    """Set the capacity of ``scale_set`` to ``count``, wait until Azure is done; return the new capacity."""
    if not isinstance(count, int) or count < 0:
        raise AzureError(f"a scale set's capacity is a whole number >= 0, not {count!r}", exit_code=CONFIG)
    a = _arm(config, arm)
    sub = _sub(config, subscription)
    compute = a.compute(sub)
    update = {"sku": {"capacity": count}}

    def go() -> Any:
        poller = compute.virtual_machine_scale_sets.begin_update(
            resource_group, scale_set, update, api_version=COMPUTE_API
        )
        return poller.result(timeout=OPERATION_TIMEOUT)

    doc = a.call(sub, f"scale {scale_set} to {count}", go)
    return int(getattr(getattr(doc, "sku", None), "capacity", count) or count)


def delete_instances(
    config: Mapping[str, Any],
    resource_group: str,
    scale_set: str,
    instance_ids: Sequence[str],
    *,
    subscription: str | None = None,
    arm: Arm | None = None,
) -> None:
    """Delete the instances ``instance_ids`` of ``scale_set`` (the capacity drops with them)."""
    ids = [str(i) for i in instance_ids]
    if not ids:
        raise AzureError("no instance to delete was named", exit_code=CONFIG)
    a = _arm(config, arm)
    sub = _sub(config, subscription)
    compute = a.compute(sub)

    def go() -> None:
        poller = compute.virtual_machine_scale_sets.begin_delete_instances(
            resource_group, scale_set, {"instanceIds": ids}, api_version=COMPUTE_API
        )
        poller.result(timeout=OPERATION_TIMEOUT)

    a.call(sub, f"delete instances {', '.join(ids)} of {scale_set}", go)
