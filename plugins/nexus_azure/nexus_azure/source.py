"""``discover("azure", **filters)``: Azure VMs (or a scale set's instances) as Nexus hosts.

Each host carries the facts ``azure_id`` (the ARM resource ID), ``location``, ``size``,
``zones``, ``power_state``, ``resource_group``, ``subscription``, ``private_ips``,
``public_ips`` and ``azure_tags``; its Nexus tags are ``KEY=VALUE`` for each Azure tag
(``-H tag:env=prod``). Running VMs are targeted; the others are listed, not targeted.

How commands reach it (``connection=`` or ``azure_connection``): ``run_command`` (the
``azure`` transport, no inbound port), ``ssh`` (nexus-ssh to the ``ip=`` private or public
address) or ``bastion`` (nexus-ssh to ``127.0.0.1:PORT``, an ``az network bastion tunnel``
per running VM, opened here and stopped when the process ends).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping, Sequence
from typing import Any

from nexus_core.plugin import DiscoveredHost, DiscoveryError, HostSource, HostSourceContext

from nexus_azure.arm import Arm
from nexus_azure.discovery import VM, FilterError, Filters, find
from nexus_azure.errors import CONFIG, AzureError

_TAG_SAFE = re.compile(r"[^A-Za-z0-9_.:=/-]")


class AzureSource(HostSource):
    """Virtual machines of Azure subscriptions, from Resource Graph and ARM."""

    def __init__(self, context: HostSourceContext, arm: Arm | None = None) -> None:
        super().__init__(context)
        self._arm = arm

    @property
    def arm(self) -> Arm:
        """The ARM clients (made on first use)."""
        if self._arm is None:
            self._arm = Arm(self.context.config)
        return self._arm

    def check(self, filters: Mapping[str, Any]) -> list[str]:
        """Filter values that cannot work (a bad regular expression...), without asking Azure."""
        try:
            Filters.parse(filters)
        except FilterError as exc:
            return [str(exc)]
        return []

    def discover(self, filters: Mapping[str, Any]) -> Sequence[DiscoveredHost]:
        """The VMs ``filters`` select; raises :class:`DiscoveryError` with the fix."""
        try:
            wanted = Filters.parse(filters)
        except FilterError as exc:
            raise DiscoveryError(
                str(exc), "see docs/plugins/azure.md for the filters", exit_code=CONFIG
            ) from exc
        connection = str(
            filters.get("connection") or self.context.config.get("azure_connection") or "run_command"
        )
        bastion = _bastion_ready(self.context.config) if connection == "bastion" else ""
        lag_value = self.context.config.get("azure_graph_lag")
        lag = float(lag_value) if isinstance(lag_value, (int, float)) else 30.0
        try:
            vms = find(self.arm, self.context.config, wanted, lag)
        except AzureError as exc:
            raise DiscoveryError(exc.message, exc.hint, exit_code=exc.exit_code) from exc
        late = [vm.name for vm in vms if vm.via == "arm"]
        if late:
            self.context.warn(f"azure: {', '.join(late)} not in Resource Graph yet: found through ARM")
        ip = str(filters.get("ip") or "private")
        user = filters.get("user")
        ports = _tunnels(vms, bastion) if bastion else {}
        return [_host(vm, connection, ip, user, ports.get(vm.id)) for vm in vms]


def _bastion_ready(config: Mapping[str, Any]) -> str:
    """The ``azure_bastion`` setting, once the Azure CLI is known to be installed."""
    if shutil.which("az") is None:
        raise DiscoveryError(
            "connection='bastion' needs the Azure CLI (az), which is not installed here",
            "install it (https://aka.ms/azure-cli) with its bastion and ssh extensions, or use "
            "connection='run_command' (no inbound port needed) or 'ssh'",
            exit_code=CONFIG,
        )
    setting = config.get("azure_bastion")
    if not setting:
        raise DiscoveryError(
            "connection='bastion' needs config(azure_bastion=...): which Azure Bastion to tunnel through",
            "set azure_bastion to the bastion's resource ID (or its name, when it is in the VMs' "
            "resource group)",
            exit_code=CONFIG,
        )
    return str(setting)


def _tunnels(vms: Sequence[VM], setting: str) -> dict[str, int]:
    """A bastion tunnel per running VM, opened side by side: VM id -> local port on 127.0.0.1."""
    from concurrent.futures import ThreadPoolExecutor

    from nexus_azure.bastion import bastion_of, open_tunnel

    running = [vm for vm in vms if vm.power_state == "running"]
    if not running:
        return {}

    def one(vm: VM) -> int:
        name, group = bastion_of(setting, vm.resource_group)
        return open_tunnel(name, group, vm.id).port

    try:
        with ThreadPoolExecutor(max_workers=min(8, len(running))) as pool:
            return dict(zip((vm.id for vm in running), pool.map(one, running), strict=True))
    except AzureError as exc:
        raise DiscoveryError(exc.message, exc.hint, exit_code=exc.exit_code) from exc


def facts_of(vm: VM) -> dict[str, Any]:
    """The facts of a discovered VM (plain data)."""
    facts: dict[str, Any] = {
        "azure_id": vm.id,
        "subscription": vm.subscription,
        "resource_group": vm.resource_group,
        "location": vm.location,
        "size": vm.size,
        "zones": list(vm.zones),
        "power_state": vm.power_state,
        "private_ips": list(vm.private_ips),
        "public_ips": list(vm.public_ips),
        "azure_tags": dict(vm.tags),
        "azure_found_via": vm.via,
    }
    if vm.scale_set:
        facts["scale_set"] = vm.scale_set
        facts["instance_id"] = vm.instance_id
    return facts


def _host(vm: VM, connection: str, ip: str, user: Any, tunnel: int | None = None) -> DiscoveredHost:
    facts = facts_of(vm)
    running = vm.power_state == "running"
    name = _TAG_SAFE.sub("-", vm.name).replace("=", "-").replace("/", "-").replace(":", "-")
    where: dict[str, Any]  # how to reach it: address, and port, user, transport, targeted
    if connection == "bastion":
        if tunnel is not None:
            facts["bastion_tunnel"] = f"127.0.0.1:{tunnel}"
        where = {"address": "127.0.0.1" if tunnel is not None else name, "port": tunnel}
        where["user"] = str(user) if user else None
    elif connection == "ssh":
        pool = vm.public_ips if ip == "public" else vm.private_ips
        address = pool[0] if pool else ""
        if not address:
            facts["note"] = f"no {ip} IP address: not targeted"
        where = {"address": address or name, "user": str(user) if user else None}
        where["targeted"] = (None if address else False) if running else None
    else:
        where = {"address": name, "transport": "azure"}
    return DiscoveredHost(
        **where,
        tags=tuple(_TAG_SAFE.sub("_", f"{k}={v}" if v else k) for k, v in sorted(vm.tags.items())),
        os=vm.os.lower(),
        online=running,
        addresses=(*vm.private_ips, *vm.public_ips),
        facts=facts,
        name=name,
    )
