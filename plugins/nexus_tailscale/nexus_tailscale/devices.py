"""One shape for a tailnet device, read from ``tailscale status --json`` or from the API.

The CLI prints an ``ipnstate.Status`` (``BackendState``, ``Self``, ``Peer`` keyed by node key,
``CurrentTailnet.MagicDNSSuffix``; each peer with ``HostName``, ``DNSName`` ending in a dot,
``TailscaleIPs``, ``Tags``, ``OS``, ``Online``, ``Expired``, ``AltSharerUserID`` for a device
shared in from another tailnet, ``ShareeNode`` for one only shown because we shared ours,
and ``sshHostKeys`` when it runs Tailscale SSH). The API v2 lists ``devices`` with
``name`` (the MagicDNS name), ``hostname``, ``addresses``, ``tags``, ``os``,
``connectedToControl``, ``expires``/``keyExpiryDisabled``, ``isExternal`` (shared in) and,
with ``fields=all``, ``sshEnabled``. Both become :class:`Device`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from nexus_tailscale.errors import CONFIG, CONNECTION, TailscaleError
from nexus_tailscale.plain import Plain


class Device(Plain):
    """A device of the tailnet, as Nexus needs it (whichever backend found it). Read-only by
    convention.

    A plain class with ``__slots__``, not a dataclass: one is made per device of the tailnet
    at every run, and a class made by ``dataclass`` costs its generated source's compilation
    at import (docs/decisions.md, "Tailscale discovery of 1,000 devices").
    """

    __slots__ = (
        "addresses",
        "dns_name",
        "expired",
        "hostname",
        "id",
        "is_self",
        "name",
        "online",
        "os",
        "owner",
        "shared",
        "ssh_host_keys",
        "tags",
        "tailscale_ssh",
    )

    #: The MagicDNS short name (first label of the DNS name), or the OS host name.
    name: str
    #: The MagicDNS name without the trailing dot (``web-1.example.ts.net``), or "".
    dns_name: str
    #: The host name the machine reports for itself.
    hostname: str
    #: Tailscale addresses (IPv4 first, then IPv6).
    addresses: tuple[str, ...]
    tags: tuple[str, ...]
    os: str
    online: bool
    #: The node key has expired: the device cannot join until someone logs it in again.
    expired: bool
    #: Shared in from another tailnet.
    shared: bool
    #: The device runs Tailscale SSH (the tailnet, not a key, authenticates SSH logins).
    tailscale_ssh: bool
    #: The machine Nexus runs on (the CLI's ``Self``).
    is_self: bool
    id: str
    owner: str
    #: SSH host keys the device advertises (Tailscale SSH), as ``known_hosts`` key fields.
    ssh_host_keys: tuple[str, ...]

    def __init__(
        self,
        name: str,
        dns_name: str,
        hostname: str,
        addresses: tuple[str, ...],
        tags: tuple[str, ...] = (),
        os: str = "",
        online: bool = False,
        expired: bool = False,
        shared: bool = False,
        tailscale_ssh: bool = False,
        is_self: bool = False,
        id: str = "",
        owner: str = "",
        ssh_host_keys: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.dns_name = dns_name
        self.hostname = hostname
        self.addresses = addresses
        self.tags = tags
        self.os = os
        self.online = online
        self.expired = expired
        self.shared = shared
        self.tailscale_ssh = tailscale_ssh
        self.is_self = is_self
        self.id = id
        self.owner = owner
        self.ssh_host_keys = ssh_host_keys

    def __repr__(self) -> str:
        return f"Device(name={self.name!r}, dns_name={self.dns_name!r}, addresses={self.addresses!r})"

    @property
    def ipv4(self) -> str | None:
        """The first IPv4 Tailscale address, if any."""
        for a in self.addresses:
            if ":" not in a:
                return a
        return None

    @property
    def ipv6(self) -> str | None:
        """The first IPv6 Tailscale address, if any."""
        for a in self.addresses:
            if ":" in a:
                return a
        return None

    def facts(self) -> dict[str, Any]:
        """What a task body can read about the device (``host.facts``)."""
        facts: dict[str, Any] = {
            "tailscale_name": self.name,
            "tailscale_dns_name": self.dns_name,
            "tailscale_hostname": self.hostname,
            "tailscale_ipv4": self.ipv4,
            "tailscale_ipv6": self.ipv6,
            "tailscale_id": self.id,
            "tailscale_owner": self.owner,
            "tailscale_expired": self.expired,
            "tailscale_shared": self.shared,
            "tailscale_self": self.is_self,
            "tailscale_ssh": self.tailscale_ssh,
        }
        if self.ssh_host_keys:
            facts["ssh_host_keys"] = list(self.ssh_host_keys)
        return facts


class Tailnet:
    """What one backend call returned: the devices, and what is worth a note. Read-only by convention."""

    __slots__ = ("backend", "devices", "magic_dns", "magic_dns_suffix")

    def __init__(
        self,
        devices: tuple[Device, ...],
        magic_dns_suffix: str = "",
        magic_dns: bool = True,
        backend: str = "",
    ) -> None:
        self.devices = devices
        #: The tailnet's MagicDNS suffix (``example.ts.net``), when known.
        self.magic_dns_suffix = magic_dns_suffix
        #: False when the tailnet (or this machine, ``--accept-dns=false``) has MagicDNS off.
        self.magic_dns = magic_dns
        #: The backend that answered: ``"cli"`` or ``"api"``.
        self.backend = backend

    def __repr__(self) -> str:
        return f"Tailnet({len(self.devices)} devices, backend={self.backend!r})"


# --- helpers ---------------------------------------------------------------------------------


def _strs(value: Any) -> tuple[str, ...]:
    """The non-empty strings of a JSON list (anything else: none)."""
    if not isinstance(value, list):
        return ()
    return tuple([v for v in value if isinstance(v, str) and v])


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _sorted_addresses(values: tuple[str, ...]) -> tuple[str, ...]:
    """IPv4 first, then IPv6. Taken as the source gives them: a wrong one fails to connect, with
    the address in the message (checking each with ``ipaddress`` cost 40% of parsing 1,000 devices)."""
    if len(values) == 2 and ":" in values[0] and ":" not in values[1]:
        return (values[1], values[0])
    if len(values) > 2:
        return tuple(sorted(values, key=lambda a: ":" in a))
    return values


def _short(dns_name: str, fallback: str) -> str:
    return dns_name.split(".", 1)[0] if dns_name else fallback


def _parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value or value.startswith("0001-01-01"):
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _bad_shape(what: str, problem: str, hint: str) -> TailscaleError:
    return TailscaleError(f"unexpected answer from {what}: {problem}", hint=hint, exit_code=CONFIG)


# --- the CLI: tailscale status --json ---------------------------------------------------------

#: ``BackendState`` values and what they mean for discovery: (headline, hint, exit code).
BACKEND_STATES: Mapping[str, tuple[str, str, int]] = {
    "NeedsLogin": (
        "this machine is not logged in to a tailnet (tailscale status: NeedsLogin)",
        "log in with: tailscale up (or use the API backend: config(tailscale_backend='api') "
        "with TS_API_KEY or an OAuth client)",
        CONFIG,
    ),
    "NeedsMachineAuth": (
        "this machine waits for a tailnet admin to approve it (tailscale status: NeedsMachineAuth)",
        "approve it in the admin console (Machines page), then run again",
        CONFIG,
    ),
    "Stopped": (
        "Tailscale is stopped on this machine (tailscale status: Stopped)",
        "start it with: tailscale up",
        CONNECTION,
    ),
    "NoState": (
        "tailscaled is still starting (tailscale status: NoState)",
        "wait a moment and run again, or check: tailscale status",
        CONNECTION,
    ),
}


def parse_status(data: Any, *, what: str = "tailscale status --json") -> Tailnet:
    """The devices of a ``tailscale status --json`` document (``Self`` included, ``ShareeNode``s not).

    Raises :class:`TailscaleError` when the daemon is not connected to a tailnet
    (``BackendState`` other than ``Running``/``Starting``) or the document is not a status.
    """
    if not isinstance(data, Mapping) or "BackendState" not in data:
        raise _bad_shape(what, "no BackendState", "is this a tailscale CLI? set config(tailscale_cli=PATH)")
    state = str(data.get("BackendState") or "")
    if state not in ("Running", "Starting"):
        headline, hint, code = BACKEND_STATES.get(
            state,
            (
                f"Tailscale is not connected (tailscale status: {state})",
                "check: tailscale status",
                CONNECTION,
            ),
        )
        auth_url = data.get("AuthURL")
        context = [f"log in at: {auth_url}"] if state == "NeedsLogin" and auth_url else []
        raise TailscaleError(headline, hint=hint, context=context, exit_code=code)
    current = _mapping(data.get("CurrentTailnet"))
    suffix = str(current.get("MagicDNSSuffix") or data.get("MagicDNSSuffix") or "").strip(".")
    magic = bool(current.get("MagicDNSEnabled", True))
    users = _mapping(data.get("User"))
    devices: list[Device] = []
    own = data.get("Self")
    if isinstance(own, Mapping):
        devices.append(_peer(own, users, is_self=True))
    peers = data.get("Peer") or {}
    if not isinstance(peers, Mapping):
        raise _bad_shape(what, "Peer is not an object", "check: tailscale status --json")
    for peer in peers.values():
        if isinstance(peer, Mapping) and not peer.get("ShareeNode"):
            devices.append(_peer(peer, users))
    return Tailnet(tuple(devices), magic_dns_suffix=suffix, magic_dns=magic, backend="cli")


def _peer(p: Mapping[str, Any], users: Mapping[str, Any], is_self: bool = False) -> Device:
    dns_name = str(p.get("DNSName") or "").rstrip(".")
    hostname = str(p.get("HostName") or "")
    owner = ""
    profile = users.get(str(p.get("UserID"))) if users else None
    if isinstance(profile, Mapping):
        owner = str(profile.get("LoginName") or "")
    return Device(
        name=_short(dns_name, hostname),
        dns_name=dns_name,
        hostname=hostname,
        addresses=_sorted_addresses(_strs(p.get("TailscaleIPs"))),
        tags=_strs(p.get("Tags")),
        os=str(p.get("OS") or ""),
        online=bool(p.get("Online")) or is_self,
        expired=bool(p.get("Expired")),
        shared=bool(p.get("AltSharerUserID")),
        tailscale_ssh=bool(_strs(p.get("sshHostKeys"))),
        is_self=is_self,
        id=str(p.get("ID") or ""),
        owner=owner,
        ssh_host_keys=_strs(p.get("sshHostKeys")),
    )


# --- the API: GET /api/v2/tailnet/{tailnet}/devices ------------------------------------------------


def parse_devices(data: Any, *, now: dt.datetime | None = None, what: str = "the Tailscale API") -> Tailnet:
    """The devices of an API ``{"devices": [...]}`` answer."""
    if not isinstance(data, Mapping) or not isinstance(data.get("devices"), list):
        raise _bad_shape(what, "no 'devices' list", "check tailscale_api_url: it must be the API's base URL")
    now = now or dt.datetime.now(dt.UTC)
    devices: list[Device] = []
    suffix = ""
    for d in data["devices"]:
        if not isinstance(d, Mapping):
            continue
        dns_name = str(d.get("name") or "").rstrip(".")
        hostname = str(d.get("hostname") or "")
        expired = False
        if not d.get("keyExpiryDisabled"):
            expires = _parse_time(d.get("expires"))
            expired = bool(expires and expires <= now)
        if "connectedToControl" in d:
            online = bool(d.get("connectedToControl"))
        else:  # older API answers: only lastSeen, rounded by the control plane; 10 minutes is recent
            seen = _parse_time(d.get("lastSeen"))
            online = bool(seen and now - seen < dt.timedelta(minutes=10))
        if not suffix and "." in dns_name and not d.get("isExternal"):
            suffix = dns_name.split(".", 1)[1]
        devices.append(
            Device(
                name=_short(dns_name, hostname),
                dns_name=dns_name,
                hostname=hostname,
                addresses=_sorted_addresses(_strs(d.get("addresses"))),
                tags=_strs(d.get("tags")),
                os=str(d.get("os") or ""),
                online=online,
                expired=expired,
                shared=bool(d.get("isExternal")),
                tailscale_ssh=bool(d.get("sshEnabled")),
                id=str(d.get("nodeId") or d.get("id") or ""),
                owner=str(d.get("user") or ""),
            )
        )
    return Tailnet(tuple(devices), magic_dns_suffix=suffix, backend="api")
