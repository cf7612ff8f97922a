"""The filters of ``discover("tailscale", ...)``: which devices become hosts, and at which address.

``tags`` (every one must be on the device; ``"web"`` means ``"tag:web"``), ``os`` (one or
several, case-insensitive), ``hostname`` / ``exclude_hostname`` (regular expressions searched
in the MagicDNS short name and the machine's host name), ``exclude`` (names, DNS names or
addresses to leave out), ``online`` (True by default: offline and expired devices are
listed but not targeted) and ``address`` (``"dns"``, ``"ipv4"`` or ``"ipv6"``: what Nexus
connects to).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from nexus_tailscale.devices import Device, Tailnet
from nexus_tailscale.plain import Plain

ADDRESS_KINDS = ("dns", "ipv4", "ipv6")

#: Every filter, with its default and a one-line description (docs, did-you-mean, validation).
FILTERS: Mapping[str, tuple[Any, str]] = {
    "tags": (None, "ACL tags the device must all carry ('tag:web' or 'web')"),
    "os": (None, "operating system(s): 'linux', 'macOS', 'windows', ... (case-insensitive)"),
    "hostname": (None, "regular expression the device's name must match (re.search)"),
    "exclude_hostname": (None, "regular expression of device names to leave out"),
    "exclude": (None, "names, MagicDNS names or Tailscale addresses to leave out"),
    "online": (True, "True: offline or expired devices are listed but not targeted; False: target them too"),
    "address": ("dns", "what Nexus connects to: 'dns' (MagicDNS name), 'ipv4' or 'ipv6'"),
}


class FilterError(ValueError):
    """A filter value that cannot work; the message names the filter and what it takes."""


class Filters(Plain):
    """Checked filter values (see :data:`FILTERS`). Read-only by convention.

    A plain class, like :class:`Selected`: classes made by ``dataclass`` compile generated
    source at import, which every run that discovers from the tailnet would pay.
    """

    __slots__ = ("address", "exclude", "exclude_hostname", "hostname", "online", "os", "tags")

    def __init__(
        self,
        tags: tuple[str, ...] = (),
        os: tuple[str, ...] = (),
        hostname: re.Pattern[str] | None = None,
        exclude_hostname: re.Pattern[str] | None = None,
        exclude: frozenset[str] = frozenset(),
        online: bool = True,
        address: str = "dns",
    ) -> None:
        self.tags = tags
        self.os = os
        self.hostname = hostname
        self.exclude_hostname = exclude_hostname
        self.exclude = exclude
        self.online = online
        self.address = address

    @classmethod
    def parse(cls, values: Mapping[str, Any]) -> Filters:
        """Check ``values`` (unknown names are the caller's concern); raises :class:`FilterError`."""
        return cls(
            tags=tuple(normalize_tag(t) for t in _names(values.get("tags"), "tags")),
            os=tuple(o.lower() for o in _names(values.get("os"), "os")),
            hostname=_regex(values.get("hostname"), "hostname"),
            exclude_hostname=_regex(values.get("exclude_hostname"), "exclude_hostname"),
            exclude=frozenset(e.lower().rstrip(".") for e in _names(values.get("exclude"), "exclude")),
            online=_bool(values.get("online", True), "online"),
            address=_address(values.get("address", "dns")),
        )


def normalize_tag(tag: str) -> str:
    """``"web"`` -> ``"tag:web"``; a tag that has its prefix stays as it is."""
    return tag if tag.startswith("tag:") else f"tag:{tag}"


def _names(value: Any, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple, set, frozenset)) or not all(
        isinstance(v, str) and v for v in value
    ):
        raise FilterError(f"{name}= takes a string or a list of strings, not {value!r}")
    return tuple(value)


def _regex(value: Any, name: str) -> re.Pattern[str] | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise FilterError(f"{name}= takes a regular expression (a string), not {value!r}")
    try:
        return re.compile(value)
    except re.error as exc:
        raise FilterError(f"{name}={value!r} is not a valid regular expression: {exc}") from exc


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise FilterError(f"{name}= takes True or False, not {value!r}")
    return value


def _address(value: Any) -> str:
    if value not in ADDRESS_KINDS:
        raise FilterError(f"address= takes one of 'dns', 'ipv4', 'ipv6', not {value!r}")
    return str(value)


class Selected:
    """A device the filters kept: where to connect, whether to target it, and why not."""

    __slots__ = ("address", "device", "note", "target")

    def __init__(self, device: Device, address: str, target: bool, note: str = "") -> None:
        self.device = device
        self.address = address
        #: False for a device listed but not targeted (offline, expired, no usable address).
        self.target = target
        #: Why it is not targeted ("" when it is).
        self.note = note

    def __repr__(self) -> str:
        return f"Selected({self.device.name!r}, {self.address!r}, target={self.target}, note={self.note!r})"


def matches(device: Device, f: Filters) -> bool:
    """True when ``device`` passes every filter except ``online`` (which only decides targeting)."""
    if f.tags and not set(f.tags) <= set(device.tags):
        return False
    if f.os and device.os.lower() not in f.os:
        return False
    names = [n for n in (device.name, device.hostname) if n]
    if f.hostname is not None and not any(f.hostname.search(n) for n in names):
        return False
    if f.exclude_hostname is not None and any(f.exclude_hostname.search(n) for n in names):
        return False
    if f.exclude:
        known = {device.name.lower(), device.hostname.lower(), device.dns_name.lower(), *device.addresses}
        if known & f.exclude:
            return False
    return True


def address_of(device: Device, kind: str, magic_dns: bool = True) -> tuple[str, str]:
    """(address, note) for ``kind``; the note says why a fallback or nothing was used."""
    if kind == "ipv4":
        return (device.ipv4 or "", "" if device.ipv4 else "no Tailscale IPv4 address")
    if kind == "ipv6":
        return (device.ipv6 or "", "" if device.ipv6 else "no Tailscale IPv6 address")
    if device.dns_name and magic_dns:
        return device.dns_name, ""
    fallback = device.ipv4 or device.ipv6 or ""
    why = "MagicDNS is off" if device.dns_name else "no MagicDNS name"
    return fallback, (f"{why}: using {fallback}" if fallback else f"{why} and no Tailscale address")


def select(tailnet: Tailnet, f: Filters) -> list[Selected]:
    """The devices that pass the filters, in name order, each with its address and target state."""
    out: list[Selected] = []
    for device in sorted(tailnet.devices, key=lambda d: (d.name.lower(), d.dns_name)):
        if not matches(device, f):
            continue
        address, note = address_of(device, f.address, tailnet.magic_dns)
        target = bool(address)
        if target and f.online:
            if device.expired:
                target, note = False, "node key expired: log the device in again (tailscale up)"
            elif not device.online:
                target, note = False, "offline: not targeted (discover(..., online=False) targets it anyway)"
        out.append(Selected(device, address, target, note))
    return out


def unknown_filters(names: Sequence[str]) -> list[str]:
    """The names in ``names`` that are not filters of this source."""
    return [n for n in names if n not in FILTERS]
