"""Jump hosts as ``ssh_jump`` and OpenSSH's ``ProxyJump`` write them, and the error of a
setting that cannot be used: apart from :mod:`nexus_ssh.settings`, so that the option's
check (:mod:`nexus_ssh.options`, which settings imports) can parse hops too."""

from __future__ import annotations

from typing import Any

__all__ = ["SettingsError", "jump_list", "parse_hop"]


class SettingsError(ValueError):
    """A setting that cannot be used (bad jump host string, unreadable ssh config...)."""


def parse_hop(text: str) -> tuple[str | None, str, int | None]:
    """Split ``[user@]host[:port]`` (``[v6]:port`` too) into (user, host, port)."""
    raw = text
    text = text.strip()
    if not text:
        raise SettingsError("empty jump host")
    user: str | None = None
    if "@" in text:
        user, _, text = text.rpartition("@")
    port: int | None = None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SettingsError(f"jump host {raw!r}: '[' without ']'")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                raise SettingsError(f"jump host {raw!r}: bad port after ']'")
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        if not port_text.isdigit():
            raise SettingsError(f"jump host {raw!r}: port {port_text!r} is not a number")
        port = int(port_text)
    else:
        host = text
    if port is not None and not 1 <= port <= 65535:
        raise SettingsError(f"jump host {raw!r}: port {port} out of range")
    if not host:
        raise SettingsError(f"jump host {raw!r} has no host name")
    return user or None, host, port


def jump_list(value: Any) -> list[str]:
    """The hops of ``value`` (a string with commas, or a list); [] for none or ``"none"``."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in items:
        out += [p.strip() for p in str(item).split(",") if p.strip()]
    if len(out) == 1 and out[0].lower() == "none":
        return []
    return out
