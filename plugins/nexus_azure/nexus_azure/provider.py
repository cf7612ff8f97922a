"""``cloud("azure-vmss", ...)``: a VM Scale Set's capacity as a cloud provider.

The scale set named in the declaration is Nexus's to size: each of its instances counts as
one machine of the declaration (a uniform scale set has no per-instance tags to tell
them apart, and its own model, not Nexus, decides what boots on them). ``provision`` raises
the capacity by one and returns the instance that appeared; ``terminate`` deletes named
instances (the capacity drops with them); ``list`` reads the instances from ARM. Azure's
compute API reports no price: the declaration's ``price=`` is each instance's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from nexus_core.plugin import CloudContext, CloudError, CloudInstance, CloudProvider, CloudRequest

from nexus_azure import vmss
from nexus_azure.arm import Arm
from nexus_azure.discovery import VM
from nexus_azure.errors import CONFIG, AzureError

T = TypeVar("T")

#: Power states (from the instance view) -> the core's instance states.
_STATES = {
    "running": "running",
    "starting": "pending",
    "": "pending",
    "stopping": "stopping",
    "deallocating": "stopping",
    "stopped": "stopping",
    "deallocated": "stopping",
}


class VmssProvider(CloudProvider):
    """Scale set instances as cloud instances: capacity up by one per ``provision``."""

    def __init__(self, context: CloudContext) -> None:
        super().__init__(context)
        self._arm: Arm | None = None

    # --- helpers ---------------------------------------------------------------------------

    def _where(self) -> tuple[str, str, str | None]:
        s = self.context.settings
        group, scale_set = s.get("resource_group"), s.get("scale_set")
        if not group or not scale_set:
            missing = "resource_group" if not group else "scale_set"
            raise CloudError(
                f'cloud("azure-vmss") needs {missing}=...',
                'name the scale set: cloud("azure-vmss", resource_group="rg-app", scale_set="vmss-workers")',
                exit_code=CONFIG,
            )
        return str(group), str(scale_set), (str(s["subscription"]) if s.get("subscription") else None)

    def _config(self) -> dict[str, Any]:
        cfg = dict(self.context.config)
        sub = self.context.settings.get("subscription")
        if sub:
            cfg["azure_subscription"] = str(sub)
        return cfg

    def _arm_client(self) -> Arm:
        if self._arm is None:
            self._arm = Arm(self._config())
        return self._arm

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return fn(self._config(), *args, arm=self._arm_client(), **kwargs)
        except AzureError as exc:
            # azure-core already retried 429/5xx: the core retrying again would multiply attempts
            raise CloudError(exc.message, exc.hint, exit_code=exc.exit_code) from None

    def _instance(self, vm: VM) -> CloudInstance:
        launched = 0.0
        if vm.created:
            try:
                launched = datetime.fromisoformat(vm.created.replace("Z", "+00:00")).timestamp()
            except ValueError:
                launched = 0.0
        price = self.context.settings.get("price")
        return CloudInstance(
            id=vm.instance_id,
            # the agent name: `nexus agent start` in the model's custom data is named after the
            # host (ss-web000003), not after the instance (ss-web_3)
            name=vm.computer_name or vm.name,
            state=_STATES.get(vm.power_state, "pending"),
            instance_type=vm.size,
            launched=launched,
            hourly_price=float(price) if price is not None else None,
            tags=dict(vm.tags),
            address=vm.private_ips[0] if vm.private_ips else "",
            zone=",".join(vm.zones),
        )

    def _instances(self) -> list[VM]:
        group, scale_set, sub = self._where()
        return self._call(vmss.instances, group, scale_set, subscription=sub)

    # --- the interface -----------------------------------------------------------------------

    def provision(self, request: CloudRequest) -> CloudInstance:
        """Raise the capacity by one; return the instance Azure added."""
        group, scale_set, sub = self._where()
        before = self._instances()
        known = {vm.instance_id for vm in before}
        self._call(vmss.scale_vmss, group, scale_set, len(before) + 1, subscription=sub)
        new = [vm for vm in self._instances() if vm.instance_id not in known]
        if not new:
            raise CloudError(
                f"scale set {scale_set} took capacity {len(before) + 1} but no new instance appeared",
                "check the scale set's activity log (quota, image, subnet)",
                capacity=True,
            )
        return self._instance(max(new, key=lambda v: int(v.instance_id) if v.instance_id.isdigit() else 0))

    def list(self, tags: Mapping[str, str]) -> Sequence[CloudInstance]:
        """The scale set's instances carrying the non-``nexus:`` tags of ``tags``.

        The ``nexus:*`` ownership tags cannot be put on one instance of a uniform scale set:
        the whole scale set is the declaration's."""
        wanted = {k: v for k, v in tags.items() if not k.startswith("nexus:")}
        found = [self._instance(vm) for vm in self._instances()]
        return [i for i in found if all(i.tags.get(k) == v for k, v in wanted.items())]

    def terminate(self, ids: Sequence[str]) -> None:
        """Delete these instances (ids not in the scale set any more are skipped)."""
        group, scale_set, sub = self._where()
        present = {vm.instance_id for vm in self._instances()}
        gone = [str(i) for i in ids if str(i) in present]
        if gone:
            self._call(vmss.delete_instances, group, scale_set, gone, subscription=sub)

    def hourly_price(self, settings: Mapping[str, Any]) -> float | None:
        """Azure's compute API reports no price: None (the declaration's ``price=`` is used)."""
        return None

    def describe(self, settings: Mapping[str, Any]) -> str:
        """``instance of scale set S in RG``, for the dry run."""
        where = f"{settings.get('scale_set')} in {settings.get('resource_group')}"
        return f"instance of scale set {where} (azure-vmss)"
