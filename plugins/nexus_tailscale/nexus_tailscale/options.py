"""The ``config(tailscale_...)`` keys, contributed through ``nexus_config_options``.

Cheap to import (the plugin manager reads them at every start): nothing but the core's
``Option``. Credentials left out of the nexusfile come from the environment variables
Tailscale's own tools read (see :data:`ENV`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from nexus_core.plugin import SECRET_PLACEHOLDER, Option

BACKENDS = ("auto", "cli", "api")

#: Environment variables read when the key is unset, first found wins: Tailscale's
#: gitops-pusher names (TS_*) and its Terraform provider's (TAILSCALE_*).
ENV: Mapping[str, tuple[str, ...]] = {
    "tailscale_api_key": ("TS_API_KEY", "TAILSCALE_API_KEY"),
    "tailscale_oauth_client_id": ("TS_OAUTH_ID", "TS_OAUTH_CLIENT_ID", "TAILSCALE_OAUTH_CLIENT_ID"),
    "tailscale_oauth_client_secret": (
        "TS_OAUTH_SECRET",
        "TS_OAUTH_CLIENT_SECRET",
        "TAILSCALE_OAUTH_CLIENT_SECRET",
    ),
    "tailscale_tailnet": ("TS_TAILNET", "TAILSCALE_TAILNET"),
    "tailscale_api_url": ("TS_API_URL", "TAILSCALE_BASE_URL"),
}


def _rate(value: Any) -> str | None:
    from limits import parse

    try:
        parse(str(value))
    except ValueError:
        return f"tailscale_api_rate must read like '10/second' or '100/minute', not {value!r}"
    return None


def _url(value: Any) -> str | None:
    if not str(value).startswith(("http://", "https://")):
        return (
            f"tailscale_api_url must start with https:// (or http:// for a local test server), not {value!r}"
        )
    return None


def config_options() -> list[Option]:
    """Every ``tailscale_*`` key: names, types, defaults and checks."""
    num = (int, float)
    return [
        Option(
            "tailscale_backend",
            (str,),
            "auto",
            "how to ask the tailnet: 'cli' (tailscale status --json), 'api' (HTTP API v2), "
            "'auto' (the API when credentials are set, else the CLI)",
            choices=BACKENDS,
        ),
        Option("tailscale_cli", (str,), None, "the tailscale executable (default: 'tailscale' on PATH)"),
        Option(
            "tailscale_api_url", (str,), None, "API base URL (default https://api.tailscale.com)", check=_url
        ),
        Option(
            "tailscale_tailnet", (str,), None, "tailnet name for the API (default '-': the credentials' own)"
        ),
        Option("tailscale_api_key", (str,), None, "API access token tskey-api-... (default: env TS_API_KEY)"),
        Option("tailscale_oauth_client_id", (str,), None, "OAuth client id (default: env TS_OAUTH_ID)"),
        Option(
            "tailscale_oauth_client_secret",
            (str,),
            None,
            "OAuth client secret (default: env TS_OAUTH_SECRET)",
        ),
        Option("tailscale_timeout", num, 10, "seconds to wait for the CLI or one API request", minimum=0.1),
        Option(
            "tailscale_api_attempts",
            (int,),
            3,
            "attempts per API request (retries on no answer, 5xx, 429)",
            minimum=1,
        ),
        Option(
            "tailscale_api_rate",
            (str,),
            "10/second",
            "most API requests from one run ('10/second')",
            check=_rate,
        ),
    ]


def setting(config: Mapping[str, Any], key: str, environ: Mapping[str, str] | None = None) -> str | None:
    """``config[key]``, else the first set variable of :data:`ENV` for it, else None. A
    ``secret(...)`` not decrypted (:data:`SECRET_PLACEHOLDER`) counts as not set: never sent."""
    value = config.get(key)
    if value not in (None, "", SECRET_PLACEHOLDER):
        return str(value)
    env = os.environ if environ is None else environ
    for name in ENV.get(key, ()):
        if env.get(name):
            return env[name]
    return None


def filter_options() -> tuple[Option, ...]:
    """The filters ``discover("tailscale", ...)`` accepts (declared without importing the source)."""
    names = (str, list, tuple)
    return (
        Option("tags", names, None, "ACL tags the device must all carry: ['tag:web'] ('tag:' optional)"),
        Option("os", names, None, "operating system(s): 'linux', 'macOS', 'windows'... (any case)"),
        Option("hostname", (str,), None, "regular expression the device name must match (re.search)"),
        Option("exclude_hostname", (str,), None, "regular expression of device names to leave out"),
        Option("exclude", names, None, "device names, MagicDNS names or Tailscale IPs to leave out"),
        Option(
            "online",
            (bool,),
            True,
            "True: offline and expired devices are listed, not targeted; False: target them too",
        ),
        Option(
            "address",
            (str,),
            "dns",
            "what Nexus connects to: 'dns' (MagicDNS name), 'ipv4' or 'ipv6'",
            choices=("dns", "ipv4", "ipv6"),
        ),
    )
