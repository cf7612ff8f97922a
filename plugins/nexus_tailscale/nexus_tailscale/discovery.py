"""Choosing the backend and asking it once per run, whatever number of groups use it.

``tailscale_backend="auto"`` uses the API when credentials are set (an API key or an OAuth
client, in the config or the environment) and the local CLI otherwise; ``"cli"`` and
``"api"`` force one. A nexusfile with several ``discover("tailscale", ...)`` groups asks the
tailnet once: the answer is kept for the run (:class:`Answers`, one per host source
instance) per backend and endpoint, and each group's filters are applied to it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from nexus_core.plugin import SECRET_PLACEHOLDER

from nexus_tailscale.devices import Tailnet
from nexus_tailscale.errors import CONFIG, TailscaleError
from nexus_tailscale.options import setting
from nexus_tailscale.settings import DEFAULT_API_URL, ApiSettings, Credentials


class Backend:
    """A resolved backend: ``kind`` is ``"cli"`` or ``"api"``, with what it needs. Read-only by convention."""

    __slots__ = ("cli_path", "credentials", "kind", "settings", "timeout")

    def __init__(
        self,
        kind: str,
        cli_path: str = "",
        credentials: Credentials | None = None,
        settings: ApiSettings | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.kind = kind
        self.cli_path = cli_path
        self.credentials = credentials if credentials is not None else Credentials()
        self.settings = settings if settings is not None else ApiSettings()
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"Backend({self.kind!r}: {self.describe()})"

    @property
    def cache_key(self) -> tuple[str, ...]:
        """What makes two groups' questions the same question."""
        if self.kind == "cli":
            return ("cli", self.cli_path)
        c = self.credentials
        return ("api", self.settings.api_url, self.settings.tailnet, c.api_key or c.client_id)

    def describe(self) -> str:
        """For notes and ``nexus hosts list``: ``tailscale CLI (/usr/bin/tailscale)`` or the API URL."""
        if self.kind == "cli":
            return f"tailscale CLI ({self.cli_path})"
        return f"Tailscale API ({self.settings.api_url}, tailnet {self.settings.tailnet})"


def resolve_backend(config: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Backend:
    """The backend ``config`` (and the environment) asks for; raises :class:`TailscaleError`."""
    choice = str(config.get("tailscale_backend") or "auto")
    timeout = float(config.get("tailscale_timeout") or 10)
    credentials = Credentials(
        api_key=setting(config, "tailscale_api_key", environ) or "",
        client_id=setting(config, "tailscale_oauth_client_id", environ) or "",
        client_secret=setting(config, "tailscale_oauth_client_secret", environ) or "",
    )
    # A secret("...") a command that plans without running does not decrypt reads as this.
    keys = ("tailscale_api_key", "tailscale_oauth_client_id", "tailscale_oauth_client_secret")
    masked = [k for k in keys if config.get(k) == SECRET_PLACEHOLDER and not setting(config, k, environ)]
    if masked:
        raise TailscaleError(
            f"{masked[0]} comes from secret(...), which nexus hosts list, --dry-run and"
            " --list-hosts do not decrypt: the tailnet cannot be asked with it",
            hint="set TS_API_KEY (or TS_OAUTH_ID and TS_OAUTH_SECRET) in the environment for these commands;"
            " nexus run decrypts it",
            exit_code=CONFIG,
        )
    if bool(credentials.client_id) != bool(credentials.client_secret):
        missing = "secret" if credentials.client_id else "id"
        raise TailscaleError(
            f"OAuth client {missing} missing: an OAuth client needs both its id and its secret",
            hint="set tailscale_oauth_client_id and tailscale_oauth_client_secret "
            "(or TS_OAUTH_ID and TS_OAUTH_SECRET)",
            exit_code=CONFIG,
        )
    if choice == "api" or (choice == "auto" and credentials):
        settings = ApiSettings(
            api_url=(setting(config, "tailscale_api_url", environ) or DEFAULT_API_URL).rstrip("/"),
            tailnet=setting(config, "tailscale_tailnet", environ) or "-",
            timeout=timeout,
            attempts=int(config.get("tailscale_api_attempts") or 3),
            rate=str(config.get("tailscale_api_rate") or "10/second"),
        )
        if not credentials:
            raise TailscaleError(
                "tailscale_backend='api' but no API credentials are set",
                hint="set TS_API_KEY=tskey-api-... (or config(tailscale_api_key=...)), or an OAuth client: "
                "TS_OAUTH_ID and TS_OAUTH_SECRET",
                exit_code=CONFIG,
            )
        return Backend("api", credentials=credentials, settings=settings, timeout=timeout)
    from nexus_tailscale import cli

    configured = config.get("tailscale_cli")
    path = cli.find_cli(str(configured) if configured else None)
    if path is None:
        raise cli.missing_cli(str(configured) if configured else None)
    return Backend("cli", cli_path=path, timeout=timeout)


class Answers:
    """The tailnet's answers for one run: each backend asked once, whatever the number of groups.

    Groups discovered concurrently wait for the one question in flight instead of asking again;
    a question that failed fails the other groups with the same error, without asking again.
    """

    def __init__(self) -> None:
        self._answers: dict[tuple[str, ...], Tailnet] = {}
        self._failures: dict[tuple[str, ...], TailscaleError] = {}
        self._lock = threading.Lock()
        self._key_locks: dict[tuple[str, ...], threading.Lock] = {}

    def fetch(self, backend: Backend, warn: Callable[[str], None] | None = None) -> Tailnet:
        """The devices from ``backend`` (asked on the first call only); ``warn`` hears of retries."""
        key = backend.cache_key
        with self._lock:
            lock = self._key_locks.setdefault(key, threading.Lock())
        with lock:
            if key in self._failures:  # asked already and failed: the same error, not a second wait
                raise self._failures[key]
            if key not in self._answers:
                try:
                    self._answers[key] = ask(backend, warn)
                except TailscaleError as exc:
                    self._failures[key] = exc
                    raise
            return self._answers[key]


def ask(backend: Backend, warn: Callable[[str], None] | None = None) -> Tailnet:
    """Ask ``backend`` for the tailnet's devices now (``warn``: told of each API retry)."""
    if backend.kind == "cli":
        from nexus_tailscale import cli  # each backend imports only its own transport

        return cli.status(backend.cli_path, backend.timeout)
    from nexus_tailscale.api import ApiClient  # the HTTP stack, only for the API backend

    return ApiClient(backend.credentials, backend.settings, warn=warn).devices()
