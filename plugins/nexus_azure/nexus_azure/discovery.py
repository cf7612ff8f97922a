"""Finding virtual machines: Resource Graph first, ARM for what the graph has not seen yet.

Resource Graph answers one query for every subscription, with pages of up to 1000 rows
linked by ``$skipToken`` (every page is read). It can lag behind ARM by minutes after a VM
is created, so the VMs ARM lists that the graph did not return and that were created
within ``azure_graph_lag`` minutes are added (without IP addresses: those need the
network API). Scale set instances come from ARM (``virtualMachineScaleSets/S/virtualMachines``).

The KQL narrows the rows on the server; every filter is applied again here to what
comes back, so ARM's rows and the graph's obey the same rules.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from nexus_azure.arm import COMPUTE_API, GRAPH_API, Arm, names, parse_id, subscriptions
from nexus_azure.errors import CONFIG, AzureError

#: Rows per Resource Graph page (the service's maximum).
PAGE = 1000
#: Pages read at most (a million VMs): the loop is bounded.
MAX_PAGES = 1000


@dataclass(frozen=True)
class VM:
    """What discovery knows about one VM (or scale set instance)."""

    id: str
    name: str
    resource_group: str
    subscription: str
    location: str
    power_state: str  # "running", "stopped", "deallocated", ... ("" when unknown)
    os: str = ""
    size: str = ""
    zones: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    private_ips: tuple[str, ...] = ()
    public_ips: tuple[str, ...] = ()
    created: str = ""
    scale_set: str = ""
    instance_id: str = ""
    via: str = "graph"
    #: Its host name (``osProfile.computerName``; "" when unknown): what an agent there is
    #: named by default.
    computer_name: str = ""


class FilterError(ValueError):
    """A filter value that cannot work; the message names the filter."""


@dataclass(frozen=True)
class Filters:
    """Checked filter values of ``discover("azure", ...)``."""

    subscription: tuple[str, ...] = ()
    resource_group: tuple[str, ...] = ()
    tags: Mapping[str, str | None] = field(default_factory=dict)
    name: re.Pattern[str] | None = None
    power_state: tuple[str, ...] = ()
    location: tuple[str, ...] = ()
    os: str = ""
    scale_set: str = ""

    @classmethod
    def parse(cls, values: Mapping[str, Any]) -> Filters:
        """Check ``values``; raises :class:`FilterError`."""
        tags = values.get("tags") or {}
        if not isinstance(tags, Mapping) or not all(
            isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in tags.items()
        ):
            raise FilterError(
                f"tags= takes a dict of tag names to values (or None for any value), not {tags!r}"
            )
        pattern = values.get("name")
        regex = None
        if pattern:
            try:
                regex = re.compile(str(pattern))
            except re.error as exc:
                raise FilterError(f"name={pattern!r} is not a valid regular expression: {exc}") from exc
        scale_set = str(values.get("scale_set") or "")
        groups = tuple(names(values.get("resource_group")))
        if scale_set and len(groups) != 1:
            raise FilterError(f"scale_set={scale_set!r} needs resource_group= (the one its scale set is in)")
        return cls(
            subscription=tuple(names(values.get("subscription"))),
            resource_group=groups,
            tags=dict(tags),
            name=regex,
            power_state=tuple(
                s.lower().removeprefix("powerstate/") for s in names(values.get("power_state"))
            ),
            location=tuple(x.lower().replace(" ", "") for x in names(values.get("location"))),
            os=str(values.get("os") or "").lower(),
            scale_set=scale_set,
        )

    def matches(self, vm: VM) -> bool:
        """True when ``vm`` passes every filter."""
        if self.resource_group and vm.resource_group.lower() not in {g.lower() for g in self.resource_group}:
            return False
        if self.location and vm.location.lower() not in self.location:
            return False
        if self.power_state and vm.power_state not in self.power_state:
            return False
        if self.os and vm.os.lower() != self.os:
            return False
        if self.name is not None and not self.name.search(vm.name):
            return False
        lowered = {k.lower(): v for k, v in vm.tags.items()}
        for k, v in self.tags.items():
            if k.lower() not in lowered or (v is not None and lowered[k.lower()] != v):
                return False
        return True


def _kql_str(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def kql(f: Filters) -> str:
    """The Resource Graph query for ``f``: VMs with size, OS, power state, zones and IPs."""
    where = ["type =~ 'microsoft.compute/virtualmachines'"]
    if f.resource_group:
        where.append("resourceGroup in~ (" + ", ".join(_kql_str(g) for g in f.resource_group) + ")")
    if f.location:
        where.append("location in~ (" + ", ".join(_kql_str(x) for x in f.location) + ")")
    for k, v in f.tags.items():
        where.append(
            f"isnotnull(tags[{_kql_str(k)}])" if v is None else f"tags[{_kql_str(k)}] =~ {_kql_str(v)}"
        )
    lines = [
        "Resources",
        *(f"| where {w}" for w in where),
        "| project id, name, resourceGroup, subscriptionId, location, tags, zones,",
        "    size = tostring(properties.hardwareProfile.vmSize),",
        "    os = tostring(properties.storageProfile.osDisk.osType),",
        "    powerState = tostring(properties.extended.instanceView.powerState.code),",
        "    timeCreated = tostring(properties.timeCreated),",
        "    nics = properties.networkProfile.networkInterfaces",
        "| mv-expand nic = nics",
        "| extend nicId = tolower(tostring(nic.id))",
        "| join kind=leftouter (Resources | where type =~ 'microsoft.network/networkinterfaces'",
        "    | mv-expand ipconfig = properties.ipConfigurations",
        "    | project nicId = tolower(id), privateIp = tostring(ipconfig.properties.privateIPAddress),",
        "        publicIpId = tolower(tostring(ipconfig.properties.publicIPAddress.id))) on nicId",
        "| join kind=leftouter (Resources | where type =~ 'microsoft.network/publicipaddresses'",
        "    | project publicIpId = tolower(id), publicIp = tostring(properties.ipAddress)) on publicIpId",
        "| summarize privateIps = make_set(privateIp), publicIps = make_set(publicIp)",
        "    by id, name, resourceGroup, subscriptionId, location, tags = tostring(tags),",
        "    zones = tostring(zones), size, os, powerState, timeCreated",
        "| order by name asc",
    ]
    return "\n".join(lines)


def _json(value: Any, empty: Any) -> Any:
    if isinstance(value, str):
        if not value:
            return empty
        try:
            return json.loads(value)
        except ValueError:
            return empty
    return value if value is not None else empty


def _ips(value: Any) -> tuple[str, ...]:
    return tuple(sorted({str(v) for v in _json(value, []) or [] if v}))


def from_row(row: Mapping[str, Any]) -> VM:
    """A :class:`VM` from one row of :func:`kql`'s result."""
    tags = _json(row.get("tags"), {}) or {}
    zones = _json(row.get("zones"), []) or []
    power = str(row.get("powerState") or "").lower().removeprefix("powerstate/")
    return VM(
        id=str(row["id"]),
        name=str(row.get("name") or ""),
        resource_group=str(row.get("resourceGroup") or ""),
        subscription=str(row.get("subscriptionId") or ""),
        location=str(row.get("location") or ""),
        power_state=power,
        os=str(row.get("os") or ""),
        size=str(row.get("size") or ""),
        zones=tuple(str(z) for z in zones),
        tags={str(k): str(v) for k, v in dict(tags).items()},
        private_ips=_ips(row.get("privateIps")),
        public_ips=_ips(row.get("publicIps")),
        created=str(row.get("timeCreated") or ""),
    )


def _text(value: Any) -> str:
    """An SDK enum's value, or the string itself ("" for None)."""
    return str(getattr(value, "value", value) or "")


def from_arm(doc: Any, via: str = "arm") -> VM:
    """A :class:`VM` from an SDK ``VirtualMachine`` (or scale set ``VirtualMachineScaleSetVM``)."""
    p = parse_id(str(doc.id))
    props = doc
    power = ""
    view = getattr(props, "instance_view", None)
    for status in getattr(view, "statuses", None) or ():
        code = str(getattr(status, "code", "") or "")
        if code.lower().startswith("powerstate/"):
            power = code.split("/", 1)[1].lower()
    hw = getattr(props, "hardware_profile", None)
    storage = getattr(props, "storage_profile", None)
    os_disk = getattr(storage, "os_disk", None)
    sku = getattr(doc, "sku", None)
    created = getattr(props, "time_created", None)
    return VM(
        id=str(doc.id),
        name=str(doc.name),
        resource_group=p.get("resourcegroups", ""),
        subscription=p.get("subscriptions", ""),
        location=str(doc.location or ""),
        power_state=power,
        os=_text(getattr(os_disk, "os_type", None)),
        size=_text(getattr(hw, "vm_size", None)) or _text(getattr(sku, "name", None)),
        zones=tuple(getattr(doc, "zones", None) or ()),
        tags=dict(doc.tags or {}),
        created=created.isoformat() if isinstance(created, datetime) else str(created or ""),
        scale_set=p.get("virtualmachinescalesets", ""),
        instance_id=str(getattr(doc, "instance_id", "") or ""),
        via=via,
        computer_name=_text(getattr(getattr(props, "os_profile", None), "computer_name", None)),
    )


def graph_vms(arm: Arm, subs: Sequence[str], f: Filters) -> list[VM]:
    """Every VM of ``subs`` the graph query for ``f`` returns (all pages)."""
    from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

    client = arm.graph()
    query = kql(f)
    out: list[VM] = []
    token: str | None = None
    for _ in range(MAX_PAGES):
        options = QueryRequestOptions(top=PAGE, skip_token=token, result_format="objectArray")
        request = QueryRequest(subscriptions=list(subs), query=query, options=options)

        def ask(r: Any = request) -> Any:
            return client.resources(r, api_version=GRAPH_API)

        answer = arm.call(subs[0], "Resource Graph query", ask)
        out.extend(from_row(row) for row in answer.data or [])
        token = answer.skip_token
        if not token:
            return out
    raise AzureError(f"Resource Graph kept returning pages after {MAX_PAGES * PAGE} rows", exit_code=CONFIG)


def arm_vms(arm: Arm, sub: str) -> list[VM]:
    """Every VM of ``sub`` as ARM lists it (with power state), every ``nextLink`` followed."""
    compute = arm.compute(sub)
    return arm.call(
        sub,
        "list VMs",
        lambda: [
            from_arm(d)
            for d in compute.virtual_machines.list_all(status_only="true", api_version=COMPUTE_API)
        ],
    )


def scale_set_vms(arm: Arm, sub: str, resource_group: str, scale_set: str) -> list[VM]:
    """The instances of a scale set, with their power state."""
    compute = arm.compute(sub)
    return arm.call(
        sub,
        f"list instances of scale set {scale_set}",
        lambda: [
            from_arm(d, via="vmss")
            for d in compute.virtual_machine_scale_set_vms.list(
                resource_group, scale_set, expand="instanceView", api_version=COMPUTE_API
            )
        ],
    )


def find(arm: Arm, config: Mapping[str, Any], f: Filters, lag_minutes: float) -> list[VM]:
    """The VMs ``f`` selects: graph rows, plus ARM's recent VMs the graph has not seen."""
    subs = subscriptions(config, f.subscription or None)
    if f.scale_set:
        found = [vm for sub in subs for vm in scale_set_vms(arm, sub, f.resource_group[0], f.scale_set)]
        return sorted((vm for vm in found if f.matches(vm)), key=lambda v: (v.name, v.id))
    found = graph_vms(arm, subs, f)
    if lag_minutes > 0:
        known = {vm.id.lower() for vm in found}
        since = datetime.now(UTC) - timedelta(minutes=lag_minutes)
        for sub in subs:
            for vm in arm_vms(arm, sub):
                if vm.id.lower() not in known and _after(vm.created, since):
                    found.append(vm)
    return sorted((vm for vm in found if f.matches(vm)), key=lambda v: (v.name, v.id))


def _after(created: str, since: datetime) -> bool:
    try:
        when = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return True  # unknown creation time: keep it (the graph did not know it either)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when >= since


def find_vm(arm: Arm, name: str) -> VM:
    """The one VM named ``name`` in the configured subscriptions (for hosts written ``azure://NAME``)."""
    f = Filters(name=re.compile(f"^{re.escape(name)}$", re.IGNORECASE))
    found = find(arm, arm.config, f, float(arm.config.get("azure_graph_lag") or 30))
    if not found:
        raise AzureError(
            f"no VM named {name!r} in subscription(s) {', '.join(subscriptions(arm.config))}",
            hint='use discover("azure", ...) or check the name and azure_subscription',
            exit_code=CONFIG,
        )
    if len(found) > 1:
        raise AzureError(
            f"{len(found)} VMs are named {name!r}: " + ", ".join(v.id for v in found),
            hint='use discover("azure", name=..., resource_group=...) to pick one',
            exit_code=CONFIG,
        )
    return found[0]
