"""A small HTTP client for the SIEM sinks: the stdlib's ``http.client``, retried with tenacity.

Retried: connection errors, timeouts and the statuses a busy server answers (429, 500, 502,
503, 504), waiting ``retry_wait`` seconds doubled each time (at most 30 s), ``retries``
attempts in all. Any other error status is final and reported with the server's words.
"""

from __future__ import annotations

import http.client
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from nexus_core.api import AuditSinkError

#: Statuses worth another try: the server is busy or restarting.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class Busy(Exception):
    """A status or connection error worth another try."""


@dataclass(frozen=True)
class Response:
    """What the server answered."""

    status: int
    body: bytes

    def text(self) -> str:
        """The body as text (cut for messages)."""
        return self.body.decode("utf-8", errors="replace")[:300]


class Client:
    """POSTs to one base URL with retries; ``verify_tls`` False or ``ca_file`` for private CAs."""

    def __init__(self, base: str, *, timeout: float, retries: int, retry_wait: float, verify_tls: bool = True,
                 ca_file: str | None = None) -> None:  # fmt: skip
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise AuditSinkError(f"bad URL {base!r}", "write https://HOST[:PORT]")
        self.base = base.rstrip("/")
        self.parts = parts
        self.timeout = timeout
        self.retries = max(1, retries)
        self.retry_wait = retry_wait
        self.context: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self.context = ssl.create_default_context(cafile=ca_file)
            if not verify_tls:
                self.context.check_hostname = False
                self.context.verify_mode = ssl.CERT_NONE
        self.attempts = 0

    def request(self, method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None) -> Response:
        """The response to one request, retried while the server is busy; raise :class:`AuditSinkError`."""
        from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

        retrying = Retrying(
            retry=retry_if_exception_type(Busy),
            stop=stop_after_attempt(self.retries),
            wait=wait_exponential(multiplier=self.retry_wait, max=30),
            reraise=True,
        )
        try:
            result: Response = retrying(self._once, method, path, body, dict(headers or {}))
        except Busy as exc:
            raise AuditSinkError(f"{self.base} is unavailable after {self.retries} attempts: {exc}",
                                 "check the service; raise retries for longer outages") from None  # fmt: skip
        return result

    def _once(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Response:
        self.attempts += 1
        conn: Any
        host, port = self.parts.hostname or "", self.parts.port
        if self.context is not None:
            conn = http.client.HTTPSConnection(host, port, timeout=self.timeout, context=self.context)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=self.timeout)
        prefix = self.parts.path.rstrip("/")
        try:
            conn.request(method, prefix + path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise Busy(f"{type(exc).__name__}: {exc}") from None
        finally:
            conn.close()
        if resp.status in RETRY_STATUSES:
            raise Busy(f"HTTP {resp.status} {data.decode('utf-8', errors='replace')[:200]}")
        return Response(resp.status, data)


def secret_option(options: Mapping[str, Any], key: str, env_key: str, what: str) -> str:
    """A credential from ``key`` or the variable ``env_key`` names, registered for redaction."""
    import os

    from nexus_core.secrets.redact import register

    value = options.get(key)
    if not value and options.get(env_key):
        value = os.environ.get(str(options[env_key]), "")
    if not value:
        raise AuditSinkError(f"no {what}", f'set {key} (in a root-owned file) or {env_key} = "VARIABLE"')
    register(str(value))
    return str(value)
