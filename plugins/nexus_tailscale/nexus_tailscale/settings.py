"""Where the Tailscale API is, how patient to be with it, and the credentials (plain data).

Kept apart from :mod:`nexus_tailscale.api` so that choosing a backend imports nothing of the
HTTP stack (``urllib``, ``tenacity``, ``limits``, ``pybreaker``): a run on the CLI backend
never pays for them.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_API_URL = "https://api.tailscale.com"


@dataclass(frozen=True)
class Credentials:
    """An API key, or an OAuth client (id and secret). Never printed."""

    api_key: str = ""
    client_id: str = ""
    client_secret: str = ""

    @property
    def oauth(self) -> bool:
        """True for an OAuth client."""
        return bool(self.client_id and self.client_secret)

    def __bool__(self) -> bool:
        return bool(self.api_key) or self.oauth

    def __repr__(self) -> str:
        kind = "oauth" if self.oauth else "api_key" if self.api_key else "none"
        return f"Credentials({kind})"


@dataclass(frozen=True)
class ApiSettings:
    """Where the API is and how patient to be with it."""

    api_url: str = DEFAULT_API_URL
    tailnet: str = "-"
    timeout: float = 10.0
    #: Attempts per request (tenacity), the first included.
    attempts: int = 3
    #: Longest ``Retry-After`` worth waiting for; a longer one fails at once and says when to retry.
    max_wait: float = 30.0
    #: Base of the exponential backoff between attempts, in seconds.
    backoff: float = 0.5
    #: Requests allowed to the API from this process (``limits`` notation: ``"10/second"``).
    rate: str = "10/second"
    #: Seconds an open breaker stays open before the API is asked again.
    breaker_reset: float = 30.0
