"""Entry module of the ``nexus-tailscale`` plugin (entry point ``nexus: tailscale``).

Cheap to import: the host source is registered as ``"module:Class"`` and imported only
when a nexusfile discovers from the tailnet; the options module imports only the core's
``Option``.
"""

from __future__ import annotations

from collections.abc import Sequence

from nexus_core.plugin import Option, Registration, hookimpl

#: The core plugin API version this plugin was built for.
NEXUS_API_VERSION = 1


@hookimpl
def nexus_config_options() -> Sequence[Option]:
    """The ``tailscale_*`` keys: backend (``auto``/``cli``/``api``), CLI path, API URL,
    tailnet, API key, OAuth client id and secret, timeout, API attempts and rate.

    Credentials left unset come from ``TS_API_KEY``, ``TS_OAUTH_ID`` / ``TS_OAUTH_SECRET``,
    ``TS_TAILNET`` (or the ``TAILSCALE_*`` names of Tailscale's Terraform provider).
    """
    from nexus_tailscale.options import config_options

    return config_options()


@hookimpl
def nexus_host_sources() -> Sequence[Registration]:
    """``discover("tailscale", **filters)``: the tailnet's devices (the source is imported on first use).

    Filters: ``tags``, ``os``, ``hostname`` / ``exclude_hostname`` (regular expressions),
    ``exclude``, ``online`` (default True) and ``address`` (``"dns"``, ``"ipv4"``, ``"ipv6"``).
    """
    from nexus_tailscale.options import filter_options

    return [
        Registration("tailscale", "nexus_tailscale.source:TailscaleSource", {"filters": filter_options()})
    ]
