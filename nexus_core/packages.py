"""Which distribution provides a name the installed parts do not know, for "pip install" hints.

The core knows hosts, transports, commands and files; everything else comes from plugins.
When a nexusfile uses a transport or a ``config(...)`` key that no installed (or allowed)
plugin declares, these tables name the package to install instead of a bare "unknown".
They are hints only: what is installed is always asked of the plugin manager first.
"""

from __future__ import annotations

#: Transport (``NAME://host``, or the default transport of bare host strings) -> distribution.
TRANSPORTS: dict[str, str] = {
    "ssh": "nexus-ssh",
    "agent": "nexus-agent",
    "azure": "nexus-azure",
}

#: Prefix of a ``config(...)`` key -> the distribution that declares the keys it starts.
CONFIG_PREFIXES: dict[str, str] = {
    "ssh_": "nexus-ssh",
    "tailscale_": "nexus-tailscale",
    "vault_": "nexus-vault",
    "agent_": "nexus-agent",
    "aws_": "nexus-aws",
    "hetzner_": "nexus-hetzner",
    "azure_": "nexus-azure",
}


def for_transport(transport: str) -> str | None:
    """The distribution that provides ``transport``, or None when no well-known one does."""
    return TRANSPORTS.get(transport)


def for_config_key(key: str) -> str | None:
    """The distribution that declares the ``config(...)`` key ``key``, or None when unknown."""
    if not isinstance(key, str):
        return None
    for prefix, package in CONFIG_PREFIXES.items():
        if key.startswith(prefix):
            return package
    return None
