"""Parsing of host strings: ``host``, ``user@host``, ``user@host:port``, ``[v6addr]:port``.

Any of these may start with ``TRANSPORT://`` (``ssh://web-1``, ``agent://db-1``) to pick the
executor that serves the host; without a scheme a host uses the default transport (ssh).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any

from nexus_core.model import EMPTY, FrozenMap, Host, HostKey
from nexus_core.options import safe_repr

#: A user name of a host string (``deploy``, ``svc.app``, ``MACHINE$``).
USER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*\$?")
#: One dot-separated label of a host name.
LABEL = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,62}")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9_-]*)://")


#: An inventory-style range (``web-[1:3]``, ``[a:f]``), which host strings do not expand.
_RANGE = re.compile(r"\[(?:\d+:\d+|[A-Za-z]:[A-Za-z])\]")


def _bracketed_v6(text: str) -> bool:
    """True when ``text`` (after any user) is an IPv6 address in brackets (``[::1]:22``)."""
    rest = text.rpartition("@")[2]
    if "://" in rest:
        rest = rest.partition("://")[2]
    if not rest.startswith("[") or "]" not in rest:
        return False
    try:
        ipaddress.IPv6Address(rest[1 : rest.index("]")])
    except ValueError:
        return False
    return True


class HostParseError(ValueError):
    """A host string that cannot be understood; the message says why and what is expected."""


FORMS = "expected host, user@host, user@host:port or [ipv6]:port, optionally after TRANSPORT://"


def parse_host(text: object, transport: str = "ssh") -> Host:
    """Parse one host string into a :class:`Host`, or raise :class:`HostParseError`.

    ``transport`` is used unless the string names one with a ``TRANSPORT://`` prefix.
    """
    if not isinstance(text, str):
        raise HostParseError(f"a host must be a string, not {type(text).__name__} ({safe_repr(text)})")
    raw = text
    text = text.strip()
    if not text:
        raise HostParseError(f"empty host string ({FORMS})")
    if any(c.isspace() for c in text):
        raise HostParseError(f"host {raw!r} contains whitespace ({FORMS})")
    ranged = _RANGE.search(text)
    if ranged and not _bracketed_v6(text):
        raise HostParseError(
            f"host {raw!r}: a range such as {ranged.group()} is expanded in inventory files "
            "only (docs/inventories.md); in a nexusfile, list the hosts, e.g. "
            "[f'web-{i}' for i in range(1, 4)]"
        )
    scheme = _SCHEME.match(text)
    if scheme:
        transport = scheme.group(1).lower()
        text = text[scheme.end() :]
        if not text:
            raise HostParseError(f"host {raw!r} names the {transport} transport but no host ({FORMS})")
    elif "://" in text:
        raise HostParseError(f"host {raw!r}: invalid transport before '://' (letters, digits, '-', '_')")
    user: str | None = None
    if "@" in text:
        user, _, text = text.rpartition("@")
        if not user or not USER_NAME.fullmatch(user):
            raise HostParseError(f"host {raw!r} has an invalid user name {user!r} ({FORMS})")
    port: int | None = None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise HostParseError(f"host {raw!r} opens '[' but never closes it ({FORMS})")
        name, rest = text[1:end], text[end + 1 :]
        try:
            ipaddress.IPv6Address(name)
        except ValueError:
            raise HostParseError(f"host {raw!r}: {name!r} is not an IPv6 address") from None
        if rest:
            if not rest.startswith(":"):
                raise HostParseError(f"host {raw!r}: unexpected {rest!r} after ']' ({FORMS})")
            port = _parse_port(raw, rest[1:])
    elif text.count(":") >= 2:
        try:
            ipaddress.IPv6Address(text)
        except ValueError:
            raise HostParseError(f"host {raw!r} is not a valid IPv6 address; write a port as [addr]:port") from None
        name = text
    else:
        name, sep, port_text = text.partition(":")
        if sep:
            port = _parse_port(raw, port_text)
        _check_name(raw, name)
    return Host(name=name, user=user, port=port, transport=transport, source=raw)


def _parse_port(raw: str, text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise HostParseError(f"host {raw!r}: port {text!r} is not a number ({FORMS})")
    if len(text.lstrip("0")) > 5:
        raise HostParseError(f"host {raw!r}: port {text!r} is out of range 1-65535")
    port = int(text)
    if not 1 <= port <= 65535:
        raise HostParseError(f"host {raw!r}: port {port} is out of range 1-65535")
    return port


def _check_name(raw: str, name: str) -> None:
    if not name:
        raise HostParseError(f"host {raw!r} has no host name ({FORMS})")
    if len(name) > 253:
        raise HostParseError(f"host {raw!r}: name longer than 253 characters")
    labels = name.removesuffix(".").split(".")
    long = next((label for label in labels if len(label) > 63), None)
    if long is not None:
        raise HostParseError(f"host {raw!r} is not a valid host name: its part {long[:20] + '...'!r} is"
                             f" {len(long)} characters long (63 at most between dots)")  # fmt: skip
    if not all(LABEL.fullmatch(label) for label in labels):
        raise HostParseError(
            f"host {raw!r}: {name!r} is not a valid host name (letters, digits, '-', '_' and '.' only)"
        )
    if all(label.isdigit() for label in labels):
        try:
            ipaddress.IPv4Address(name.removesuffix("."))
        except ValueError:
            raise HostParseError(f"host {raw!r}: {name!r} is not a valid IPv4 address") from None


def format_host(host: Host, default_transport: str = "ssh") -> str:
    """The host string of ``host``, the inverse of :func:`parse_host`: ``parse_host(format_host(h))``."""
    name = f"[{host.name}]" if ":" in host.name and host.port is not None else host.name
    text = f"{host.user}@{name}" if host.user else name
    text = f"{text}:{host.port}" if host.port is not None else text
    return text if host.transport == default_transport else f"{host.transport}://{text}"


# --- identity and labels --------------------------------------------------------------------


def assign_labels(hosts: Iterable[Host], default_transport: str = "ssh") -> dict[HostKey, str]:
    """A label for each distinct host (by :attr:`Host.key`), unique among ``hosts``.

    A host keeps its short label (name, and port when given) unless another host of the
    set has the same one; those hosts get their full host string instead (``deploy@web-1``,
    ``agent://web-1``), and the machine Nexus runs on stays ``local``. So output that
    names one host per machine reads as it always did, and two logins to one machine are
    never merged.
    """
    distinct: dict[HostKey, Host] = {}
    for h in hosts:
        distinct.setdefault(h.key, h)
    by_short: dict[str, list[Host]] = {}
    for h in distinct.values():
        by_short.setdefault(h.short_label, []).append(h)
    labels: dict[HostKey, str] = {}
    for short, group in by_short.items():
        if len(group) == 1:
            labels[group[0].key] = short
            continue
        for h in group:
            labels[h.key] = "local" if h.is_local and h.name == "local" else format_host(h, default_transport)
    # A full host string can only meet another in pathological sets (``ssh://local`` next to
    # the local machine): spell the transport out for every host still sharing a label.
    counts: dict[str, int] = {}
    for label in labels.values():
        counts[label] = counts.get(label, 0) + 1
    for key, label in list(labels.items()):
        if counts[label] > 1 and not (distinct[key].is_local and label == "local"):
            labels[key] = format_host(distinct[key], default_transport="")
    return labels


# --- attributes -----------------------------------------------------------------------------

#: Types a host variable may hold (inside lists and dicts of the same).
VAR_TYPES = "strings, numbers, booleans, None, and lists or dicts of these"


class HostAttributeError(ValueError):
    """A host attribute of the wrong type; the message says which and what is allowed."""


def check_tags(value: object) -> tuple[str, ...]:
    """``tags=`` as a tuple of distinct non-empty strings, or raise :class:`HostAttributeError`."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise HostAttributeError(f"tags= must be a list of strings, not {type(value).__name__} ({safe_repr(value)})")
    out: list[str] = []
    for tag in value:
        if not isinstance(tag, str) or tag.split() != [tag]:  # empty, or with whitespace
            raise HostAttributeError(f"tag {safe_repr(tag)} is not a non-empty string without spaces")
        if tag not in out:
            out.append(tag)
    return tuple(sorted(out)) if isinstance(value, (set, frozenset)) else tuple(out)


def check_vars(value: object, what: str = "vars") -> FrozenMap:
    """``vars=`` as a :class:`FrozenMap` of frozen plain data, or raise :class:`HostAttributeError`."""
    if value is None:
        return EMPTY
    if not isinstance(value, Mapping):
        raise HostAttributeError(f"{what}= must be a dict of names to values, not {type(value).__name__}")
    frozen = freeze(value, what)
    assert isinstance(frozen, FrozenMap)
    return frozen


def freeze(value: Any, where: str = "value", depth: int = 0) -> Any:
    """Plain data made immutable (lists to tuples, dicts to :class:`FrozenMap`); other types are refused."""
    if depth > 50:
        raise HostAttributeError(f"{where} is nested too deeply (more than 50 levels)")
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value))
    if isinstance(value, Mapping):
        items: list[tuple[str, Any]] = []
        for k, v in value.items():
            if not isinstance(k, str) or not k:
                raise HostAttributeError(f"{where} has the key {safe_repr(k)}; keys must be non-empty strings")
            items.append((k, freeze(v, f"{where}[{k!r}]", depth + 1)))
        return FrozenMap(items)
    raise HostAttributeError(f"{where} is a {type(value).__name__} ({safe_repr(value)}); allowed: {VAR_TYPES}")
