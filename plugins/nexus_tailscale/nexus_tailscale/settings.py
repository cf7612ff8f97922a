"""Where the Tailscale API is, how patient to be with it, and the credentials (plain data).

Kept apart from :mod:`nexus_tailscale.api` so that choosing a backend imports nothing of the
HTTP stack (``http.client``, ``tenacity``, ``limits``, ``pybreaker``): a run on the CLI backend
never pays for them. Plain classes rather than dataclasses, which compile generated source at
import (docs/decisions.md, "Tailscale discovery of 1,000 devices").
"""

from __future__ import annotations

from nexus_tailscale.plain import Plain

DEFAULT_API_URL = "https://api.tailscale.com"


class Credentials(Plain):
    """An API key, or an OAuth client (id and secret). Never printed. Read-only by convention."""

    __slots__ = ("api_key", "client_id", "client_secret")

    def __init__(self, api_key: str = "", client_id: str = "", client_secret: str = "") -> None:
        self.api_key = api_key
        self.client_id = client_id
        self.client_secret = client_secret

    @property
    def oauth(self) -> bool:
        """True for an OAuth client."""
        return bool(self.client_id and self.client_secret)

    def __bool__(self) -> bool:
        return bool(self.api_key) or self.oauth

    def __repr__(self) -> str:
        kind = "oauth" if self.oauth else "api_key" if self.api_key else "none"
        return f"Credentials({kind})"


class ApiSettings(Plain):
    """Where the API is and how patient to be with it. Read-only by convention.

    ``attempts``: attempts per request (tenacity), the first included. ``max_wait``: the
    longest ``Retry-After`` worth waiting for (a longer one fails at once and says when to
    retry). ``backoff``: base of the exponential backoff between attempts, in seconds.
    ``rate``: requests allowed to the API from this process (``limits`` notation:
    ``"10/second"``). ``breaker_reset``: seconds an open breaker stays open before the API is
    asked again.
    """

    __slots__ = ("api_url", "attempts", "backoff", "breaker_reset", "max_wait", "rate", "tailnet", "timeout")

    def __init__(
        self,
        api_url: str = DEFAULT_API_URL,
        tailnet: str = "-",
        timeout: float = 10.0,
        attempts: int = 3,
        max_wait: float = 30.0,
        backoff: float = 0.5,
        rate: str = "10/second",
        breaker_reset: float = 30.0,
    ) -> None:
        self.api_url = api_url
        self.tailnet = tailnet
        self.timeout = timeout
        self.attempts = attempts
        self.max_wait = max_wait
        self.backoff = backoff
        self.rate = rate
        self.breaker_reset = breaker_reset
