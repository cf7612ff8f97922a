"""Entry module of ``nexus-hetzner`` (entry point ``nexus: hetzner``): cheap to import, hcloud is not."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nexus_core.plugin import Option, Registration, hookimpl

#: The core plugin API version this plugin was built for.
NEXUS_API_VERSION = 1


def _names(value: Any) -> str | None:
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) and v for v in value):
        return None
    return 'must be a list of names, e.g. ["nbg1", "hel1"]'


#: ``cloud("hetzner", ...)``'s own settings (the names are promises).
SETTINGS: tuple[Option, ...] = (
    Option("server_type", (str,), "cx22", "the server type (its prices are looked up per location)"),
    Option("location", (str,), "fsn1", "the location servers start in (fsn1, nbg1, hel1, ash, hil, sin)"),
    Option(
        "fallback_locations",
        (list, tuple),
        (),
        "locations tried in order when the API answers resource_unavailable",
        check=_names,
    ),
    Option("image", (str,), "ubuntu-24.04", "the image name or id (the type's architecture picks the variant)"),
    Option("ssh_keys", (list, tuple), (), "names of SSH keys of the project put on the servers", check=_names),
    Option("user_data", (str,), None, "a shell script run after the agent's bootstrap"),
    Option(
        "usd_per_eur",
        (int, float),
        1.2,
        "US dollars per euro: Hetzner reports prices in euros, the cost limits are in dollars",
        minimum=0,
    ),
    Option(
        "self_destruct",
        (str,),
        "poweroff",
        'at max_runtime a server powers off ("poweroff": still billed until deleted) or deletes itself '
        '("delete": needs self_destruct_token, a project-wide API token)',
        choices=("poweroff", "delete"),
    ),
    Option(
        "self_destruct_token",
        (str,),
        None,
        'the API token servers delete themselves with (self_destruct="delete"): use secret(...); '
        "default: env HCLOUD_SELF_DESTRUCT_TOKEN",
    ),
)


@hookimpl
def nexus_cloud_providers() -> Sequence[Registration]:
    """``cloud("hetzner", ...)``: Hetzner Cloud servers that join the agent cluster."""
    return [Registration("hetzner", "nexus_hetzner.provider:HetznerProvider", {"settings": SETTINGS})]
