"""A local Vault server for the tests: Vault's HTTP API for the endpoints nexus-vault uses.

No Vault can be installed here, so the tests drive the unmodified hvac client against this
server on 127.0.0.1 (plain HTTP, or HTTPS with an optional client certificate). It follows
Vault's documented request and response shapes and its error bodies:

- ``GET  /v1/auth/token/lookup-self``, ``POST /v1/auth/token/renew-self``
- ``POST /v1/auth/{approle}/login`` (``role_id``, ``secret_id``), ``POST /v1/auth/{kubernetes}/login``
  (``role``, ``jwt``)
- KV v2 on each mount: ``GET/POST/DELETE /v1/{mount}/data/{path}`` (``?version=N``),
  ``GET/LIST /v1/{mount}/metadata/{path}`` (``LIST`` or ``GET ?list=true``)
- ``GET /v1/sys/health``
- ``X-Vault-Namespace`` selects the namespace: secrets, tokens and roles live in one; a
  token works in its namespace and in the ones below it.
- Errors as Vault sends them, ``{"errors": [...]}`` with ``Content-Type: application/json``:
  403 ``permission denied`` (policy), 403 ``permission denied`` + ``invalid token`` (unknown,
  expired or revoked token), 404 ``[]`` (no secret), 404 with the version's metadata (deleted
  version), 404 ``no handler for route`` (no such mount), 400 ``invalid role or secret ID``,
  503 ``Vault is sealed``.

Tokens have a TTL, a max TTL and renewability; a policy is a list of ``fnmatch`` patterns
of API paths the token may use (``["*"]`` by default). Counters (``logins``, ``renewals``,
``reads``) and the request log let tests check "one login per run".
"""

from __future__ import annotations

import datetime
import fnmatch
import json
import secrets
import socket
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit


def _now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Token:
    """A token the fake knows."""

    id: str
    namespace: str = ""
    policy: tuple[str, ...] = ("*",)
    ttl: float = 0.0  # 0: never expires (like a root token)
    max_ttl: float = 0.0  # 0: no max
    renewable: bool = False
    created: float = field(default_factory=time.monotonic)
    expires: float | None = None

    def __post_init__(self) -> None:
        if self.ttl:
            self.expires = self.created + self.ttl

    def alive(self) -> bool:
        """Not expired."""
        return self.expires is None or time.monotonic() < self.expires

    def remaining(self) -> int:
        """Seconds left (0 for a token that never expires)."""
        return 0 if self.expires is None else max(0, round(self.expires - time.monotonic()))


@dataclass
class Version:
    """One version of a KV v2 secret."""

    data: dict[str, Any]
    created_time: str = field(default_factory=_now_iso)
    deletion_time: str = ""
    destroyed: bool = False


@dataclass
class Role:
    """An AppRole (role_id + secret_id) or Kubernetes role (name + accepted JWT)."""

    secret: str
    namespace: str = ""
    policy: tuple[str, ...] = ("*",)
    ttl: float = 3600
    max_ttl: float = 0


class VaultFake:
    """The server and its state (tests change the state directly between requests)."""

    def __init__(
        self,
        *,
        certfile: Path | None = None,
        keyfile: Path | None = None,
        client_ca: Path | None = None,
    ) -> None:
        self.lock = threading.RLock()
        self.tokens: dict[str, Token] = {}
        self.kv: dict[tuple[str, str, str], list[Version]] = {}  # (namespace, mount, path)
        self.mounts: dict[str, set[str]] = {"": {"secret", "kv"}}  # namespace -> KV v2 mounts
        self.approles: dict[tuple[str, str, str], Role] = {}  # (namespace, mount, role_id)
        self.k8s_roles: dict[tuple[str, str, str], Role] = {}  # (namespace, mount, role)
        self.sealed = False
        #: (status, content type, body) every request gets instead of Vault's answer (a proxy,
        #: a login page); ``{token}`` and ``{body}`` in the body echo the request's token and
        #: (JSON-escaped) body.
        self.override: tuple[int, str, bytes] | None = None
        self.logins = 0
        self.renewals = 0
        self.reads = 0
        self.requests: list[tuple[str, str, str]] = []  # (method, path, namespace)
        self.root_token = self.add_token("root-" + secrets.token_hex(8))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.scheme = "http"
        if certfile is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(certfile), str(keyfile) if keyfile else None)
            if client_ca is not None:
                context.load_verify_locations(str(client_ca))
                context.verify_mode = ssl.CERT_REQUIRED
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self._thread = threading.Thread(target=self._server.serve_forever, name="vaultfake", daemon=True)

    # --- life cycle -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (or https)."""
        return f"{self.scheme}://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> VaultFake:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> VaultFake:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- state ----------------------------------------------------------------------------

    def add_token(
        self,
        token: str | None = None,
        *,
        namespace: str = "",
        policy: tuple[str, ...] = ("*",),
        ttl: float = 0,
        max_ttl: float = 0,
        renewable: bool = False,
    ) -> str:
        """Create a token; returns its id."""
        token = token or "hvs." + secrets.token_urlsafe(18)
        with self.lock:
            self.tokens[token] = Token(token, namespace, policy, ttl, max_ttl, renewable)
        return token

    def put(self, path: str, data: dict[str, Any], *, mount: str = "secret", namespace: str = "") -> int:
        """Write a new version of ``mount/path``; returns its version number."""
        with self.lock:
            self.mounts.setdefault(namespace, set()).add(mount)
            versions = self.kv.setdefault((namespace, mount, path.strip("/")), [])
            versions.append(Version(dict(data)))
            return len(versions)

    def delete_version(self, path: str, version: int, *, mount: str = "secret", namespace: str = "") -> None:
        """Soft-delete one version (as ``vault kv delete -versions=N``)."""
        with self.lock:
            self.kv[(namespace, mount, path)][version - 1].deletion_time = _now_iso()

    def add_approle(
        self,
        role_id: str,
        secret_id: str,
        *,
        mount: str = "approle",
        namespace: str = "",
        policy: tuple[str, ...] = ("*",),
        ttl: float = 3600,
        max_ttl: float = 0,
    ) -> None:
        """An AppRole that logs in with ``role_id`` + ``secret_id``."""
        with self.lock:
            self.approles[(namespace, mount, role_id)] = Role(secret_id, namespace, policy, ttl, max_ttl)

    def add_k8s_role(
        self,
        role: str,
        jwt: str,
        *,
        mount: str = "kubernetes",
        namespace: str = "",
        policy: tuple[str, ...] = ("*",),
        ttl: float = 3600,
    ) -> None:
        """A Kubernetes auth role that accepts the service account token ``jwt``."""
        with self.lock:
            self.k8s_roles[(namespace, mount, role)] = Role(jwt, namespace, policy, ttl)

    def count(self, method: str, path_part: str) -> int:
        """How many requests had ``method`` and ``path_part`` in their path."""
        with self.lock:
            return sum(1 for m, p, _ns in self.requests if m == method and path_part in p)


class Reply(Exception):
    """Raised by a route to answer with ``status`` and a JSON ``body``."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def _errors(status: int, *messages: str) -> Reply:
    return Reply(status, {"errors": list(messages)})


def _envelope(data: Any = None, auth: Any = None, **extra: Any) -> dict[str, Any]:
    body = {
        "request_id": str(uuid.uuid4()),
        "lease_id": "",
        "renewable": False,
        "lease_duration": 0,
        "data": data,
        "wrap_info": None,
        "warnings": None,
        "auth": auth,
    }
    body.update(extra)
    return body


_DENIED = "1 error occurred:\n\t* permission denied\n\n"


def _handler(fake: VaultFake) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # As Go's net/http (Vault) does: no Nagle delay between the headers and the body.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        def _answer(self, status: int, body: dict[str, Any] | None) -> None:
            raw = b"" if body is None else json.dumps(body).encode("utf-8")
            self.send_response(status)
            self.send_header("Cache-Control", "no-store")
            if body is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _handle(self, method: str) -> None:
            split = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(split.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            payload: dict[str, Any] = {}
            raw = self.rfile.read(length) if length else b""
            if fake.override is not None:
                status, content_type, body = fake.override
                token = (self.headers.get("X-Vault-Token") or "").encode()
                echoed = json.dumps(raw.decode("utf-8", "replace"))[1:-1].encode()  # inside a JSON string
                body = body.replace(b"{token}", token).replace(b"{body}", echoed)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            if length:
                try:
                    payload = json.loads(raw or b"{}")
                except ValueError:
                    self._answer(400, {"errors": ["failed to parse JSON input"]})
                    return
            namespace = (self.headers.get("X-Vault-Namespace") or "").strip("/")
            path = split.path
            if method == "GET" and query.get("list") == "true":
                method = "LIST"
            with fake.lock:
                fake.requests.append((method, path, namespace))
            try:
                status, body = _route(
                    fake, method, path, query, payload, namespace, self.headers.get("X-Vault-Token")
                )
            except Reply as reply:
                status, body = reply.status, reply.body
            self._answer(status, body)

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_PUT(self) -> None:
            self._handle("POST")

        def do_DELETE(self) -> None:
            self._handle("DELETE")

        def do_LIST(self) -> None:
            self._handle("LIST")

    return Handler


def _token(fake: VaultFake, token: str | None, namespace: str) -> Token:
    found = fake.tokens.get(token or "")
    if found is None or not found.alive():
        if found is not None:
            del fake.tokens[found.id]
        raise _errors(403, "permission denied", "invalid token")
    inside = (
        not found.namespace or namespace == found.namespace or namespace.startswith(found.namespace + "/")
    )
    if not inside:
        raise _errors(403, _DENIED)
    return found


def _allowed(token: Token, api_path: str) -> None:
    if not any(fnmatch.fnmatchcase(api_path, pattern) for pattern in token.policy):
        raise _errors(403, _DENIED)


def _login(
    fake: VaultFake, role: Role, namespace: str, metadata: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    token = fake.add_token(
        namespace=namespace, policy=role.policy, ttl=role.ttl, max_ttl=role.max_ttl, renewable=role.ttl > 0
    )
    fake.logins += 1
    auth = {
        "client_token": token,
        "accessor": secrets.token_hex(12),
        "policies": ["default", "app"],
        "token_policies": ["default", "app"],
        "metadata": metadata,
        "lease_duration": int(role.ttl),
        "renewable": role.ttl > 0,
        "entity_id": str(uuid.uuid4()),
        "token_type": "service",
        "orphan": True,
    }
    return 200, _envelope(None, auth)


def _route(
    fake: VaultFake,
    method: str,
    path: str,
    query: dict[str, str],
    payload: dict[str, Any],
    namespace: str,
    token_id: str | None,
) -> tuple[int, dict[str, Any] | None]:
    if not path.startswith("/v1/"):
        raise _errors(404, "404 page not found")
    api = path[len("/v1/") :].strip("/")
    if api == "sys/health":
        if fake.sealed:
            return 503, {"initialized": True, "sealed": True, "standby": True}
        return 200, {"initialized": True, "sealed": False, "standby": False, "version": "1.17.0-fake"}
    if fake.sealed:
        raise _errors(503, "Vault is sealed")
    with fake.lock:
        parts = api.split("/")
        if parts[:2] == ["auth", "token"] and len(parts) == 3:
            token = _token(fake, token_id, namespace)
            if parts[2] == "lookup-self" and method == "GET":
                return 200, _envelope(
                    {
                        "accessor": "acc-" + token.id[-6:],
                        "creation_ttl": int(token.ttl),
                        "display_name": "token",
                        "entity_id": "",
                        "expire_time": None,
                        "explicit_max_ttl": int(token.max_ttl),
                        "id": token.id,
                        "meta": None,
                        "num_uses": 0,
                        "orphan": True,
                        "path": "auth/token/create",
                        "policies": ["default"],
                        "renewable": token.renewable,
                        "ttl": token.remaining(),
                        "type": "service",
                    }
                )
            if parts[2] == "renew-self" and method == "POST":
                if not token.renewable:
                    raise _errors(400, "lease is not renewable")
                ttl = token.ttl
                if token.max_ttl:
                    ttl = min(ttl, token.created + token.max_ttl - time.monotonic())
                token.expires = time.monotonic() + max(0.0, ttl)
                fake.renewals += 1
                auth = {
                    "client_token": token.id,
                    "policies": ["default"],
                    "lease_duration": max(0, int(ttl)),
                    "renewable": True,
                }
                return 200, _envelope(None, auth)
        if len(parts) == 3 and parts[0] == "auth" and parts[2] == "login" and method == "POST":
            mount = parts[1]
            if any(k[1] == mount for k in fake.approles):
                role_id = str(payload.get("role_id") or "")
                role = fake.approles.get((namespace, mount, role_id))
                if role is None or role.secret != payload.get("secret_id"):
                    raise _errors(400, "invalid role or secret ID")
                return _login(fake, role, namespace, {"role_name": "app"})
            if any(k[1] == mount for k in fake.k8s_roles):
                name = str(payload.get("role") or "")
                role = fake.k8s_roles.get((namespace, mount, name))
                if role is None:
                    raise _errors(400, f'invalid role name "{name}"')
                if role.secret != payload.get("jwt"):
                    raise _errors(403, _DENIED)
                return _login(fake, role, namespace, {"role": name, "service_account_name": "app"})
            raise _errors(404, f'no handler for route "{api}". route entry not found.')
        # KV v2: {mount}/data/{path} and {mount}/metadata/{path}
        mounts = fake.mounts.get(namespace, set())
        if not parts or parts[0] not in mounts:
            _token(fake, token_id, namespace)
            raise _errors(404, f'no handler for route "{api}". route entry not found.')
        mount = parts[0]
        kind = parts[1] if len(parts) > 1 else ""
        rest = "/".join(parts[2:])
        token = _token(fake, token_id, namespace)
        _allowed(token, api)
        if kind == "data":
            return _kv_data(fake, method, namespace, mount, rest, query, payload)
        if kind == "metadata":
            return _kv_metadata(fake, method, namespace, mount, rest)
        raise _errors(404, f'no handler for route "{api}". route entry not found.')


def _version_meta(number: int, version: Version) -> dict[str, Any]:
    return {
        "created_time": version.created_time,
        "custom_metadata": None,
        "deletion_time": version.deletion_time,
        "destroyed": version.destroyed,
        "version": number,
    }


def _kv_data(
    fake: VaultFake,
    method: str,
    namespace: str,
    mount: str,
    path: str,
    query: dict[str, str],
    payload: dict[str, Any],
) -> tuple[int, dict[str, Any] | None]:
    versions = fake.kv.get((namespace, mount, path))
    if method == "GET":
        fake.reads += 1
        if not versions:
            raise _errors(404)
        number = int(query.get("version") or 0) or len(versions)
        if number > len(versions):
            raise _errors(404)
        version = versions[number - 1]
        if version.deletion_time or version.destroyed:
            # Vault answers a deleted version with 404 and its metadata (no "errors" key).
            raise Reply(404, _envelope({"data": None, "metadata": _version_meta(number, version)}))
        return 200, _envelope({"data": dict(version.data), "metadata": _version_meta(number, version)})
    if method == "POST":
        data = payload.get("data")
        if not isinstance(data, dict):
            raise _errors(400, "no data provided")
        cas = (payload.get("options") or {}).get("cas")
        current = len(versions or [])
        if cas is not None and int(cas) != current:
            raise _errors(400, "check-and-set parameter did not match the current version")
        number = fake.put(path, data, mount=mount, namespace=namespace)
        version = fake.kv[(namespace, mount, path)][number - 1]
        return 200, _envelope(_version_meta(number, version))
    if method == "DELETE":
        if versions:
            versions[-1].deletion_time = _now_iso()
        return 204, None
    raise _errors(405, "unsupported operation")


def _kv_metadata(
    fake: VaultFake, method: str, namespace: str, mount: str, path: str
) -> tuple[int, dict[str, Any] | None]:
    if method == "LIST":
        prefix = path + "/" if path else ""
        keys: set[str] = set()
        for ns, m, p in fake.kv:
            if ns == namespace and m == mount and p.startswith(prefix):
                head, slash, _tail = p[len(prefix) :].partition("/")
                keys.add(head + slash)
        if not keys:
            raise _errors(404)
        return 200, _envelope({"keys": sorted(keys)})
    if method == "GET":
        versions = fake.kv.get((namespace, mount, path))
        if not versions:
            raise _errors(404)
        return 200, _envelope(
            {
                "cas_required": False,
                "created_time": versions[0].created_time,
                "current_version": len(versions),
                "custom_metadata": None,
                "delete_version_after": "0s",
                "max_versions": 0,
                "oldest_version": 0,
                "updated_time": versions[-1].created_time,
                "versions": {
                    str(i + 1): {k: v for k, v in _version_meta(i + 1, ver).items() if k != "version"}
                    for i, ver in enumerate(versions)
                },
            }
        )
    raise _errors(405, "unsupported operation")


def blackhole() -> tuple[str, list[int], Any]:
    """A TCP server that accepts connections and never answers: (url, accepted counter, stop).

    For the circuit-breaker test: without the breaker, every secret would wait its timeout.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.settimeout(0.2)
    accepted = [0]
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        for _ in range(100_000):  # bounded; ends when stopped
            if stop.is_set():
                break
            try:
                conn, _addr = sock.accept()
            except OSError:
                continue
            accepted[0] += 1
            held.append(conn)
        for conn in held:
            conn.close()
        sock.close()

    thread = threading.Thread(target=serve, name="vault-blackhole", daemon=True)
    thread.start()

    def close() -> None:
        stop.set()
        thread.join(timeout=5)

    return f"http://127.0.0.1:{sock.getsockname()[1]}", accepted, close
