"""nexus-tailscale: host discovery from a Tailscale tailnet (``discover("tailscale", ...)``).

Two backends: the local ``tailscale`` CLI (``tailscale status --json``) and the HTTP API v2
(``GET /api/v2/tailnet/{tailnet}/devices``, with an API key or an OAuth client). The entry
module is :mod:`nexus_tailscale.plugin`; docs/plugins/tailscale.md is the user guide.
"""

__version__ = "0.1.0"
