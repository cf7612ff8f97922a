"""Parsing of host strings: ``host``, ``user@host``, ``user@host:port``, ``[v6addr]:port``.

Any of these may start with ``TRANSPORT://`` (``ssh://web-1``, ``agent://db-1``) to pick the
executor that serves the host; without a scheme a host uses the default transport (ssh).
"""

from __future__ import annotations

import ipaddress
import re

from nexus_core.model import Host
from nexus_core.options import safe_repr

_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*\$?")
_LABEL = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,62}")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9_-]*)://")


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
        if not user or not _USER.fullmatch(user):
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
    if not all(_LABEL.fullmatch(label) for label in labels):
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
