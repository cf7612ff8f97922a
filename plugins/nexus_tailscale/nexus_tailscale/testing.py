"""Fakes of a tailnet for tests and benchmarks: a ``tailscale`` executable and a local API server.

Both speak the recorded shapes: the fake CLI prints what ``tailscale status --json`` prints
(``ipnstate.Status``), or fails the way the real one fails (daemon not running, logged out,
stopped); :class:`FakeApi` is an HTTP server on 127.0.0.1 answering
``GET /api/v2/tailnet/{tailnet}/devices`` and ``POST /api/v2/oauth/token`` like the
Tailscale API v2, with 401, 403, 404, 429 (``Retry-After``) and 5xx on demand. Describe the
tailnet once with :class:`Peer` and feed it to either::

    peers = [Peer("web-1", "127.0.0.2", tags=("tag:web",)), Peer("old", "127.0.0.9", online=False)]
    cli = write_fake_cli(tmp_path, peers)             # a 'tailscale' script; put tmp_path on PATH
    with FakeApi(peers, api_keys={"tskey-api-test"}) as api:
        api.url                                       # config(tailscale_api_url=api.url)

Standard library only (no pytest), so ``bench/`` can use it too.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import sys
import threading
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["SAMPLE", "SUFFIX", "FakeApi", "Peer", "api_devices", "status_document", "write_fake_cli"]

SUFFIX = "tail1234.ts.net"
_NOW = "2026-12-01T12:00:00Z"
_PAST = "2026-11-01T12:00:00Z"
_FUTURE = "2027-05-30T12:00:00Z"
SAMPLE_SSH_HOST_KEY = _SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRhaWxzY2FsZS1zc2gtaG9zdC1rZXktZmFrZQ"


@dataclass(frozen=True)
class Peer:
    """One device of a fake tailnet: its name, Tailscale IPv4 (and IPv6) and its state."""

    name: str
    ipv4: str
    ipv6: str = ""
    tags: tuple[str, ...] = ()
    os: str = "linux"
    online: bool = True
    expired: bool = False
    #: Shared in from another tailnet (CLI ``AltSharerUserID``, API ``isExternal``).
    shared: bool = False
    #: Runs Tailscale SSH (CLI ``sshHostKeys``, API ``sshEnabled``).
    ssh: bool = False
    hostname: str = ""
    #: Only visible because we shared a device with its owner (CLI ``ShareeNode``: hidden).
    sharee: bool = False
    #: The host keys its Tailscale SSH server presents (``ssh-ed25519 AAAA...``); a fixed fake
    #: key when empty. Give a real server's key for a peer Nexus really connects to.
    ssh_host_keys: tuple[str, ...] = ()

    @property
    def dns_name(self) -> str:
        """The MagicDNS name, without the trailing dot."""
        return f"{self.name}.{SUFFIX}"

    @property
    def node_id(self) -> str:
        """A stable id derived from the name."""
        return "n" + hashlib.sha1(self.name.encode()).hexdigest()[:12].upper() + "CNTRL"

    @property
    def ips(self) -> list[str]:
        """Tailscale addresses, IPv4 first."""
        suffix = int(hashlib.sha256(self.name.encode()).hexdigest()[:4], 16)
        return [self.ipv4, self.ipv6 or f"fd7a:115c:a1e0::{suffix:x}"]


#: A tailnet with one of each kind: tagged, untagged, offline, shared-in, expired, Tailscale SSH.
SAMPLE: tuple[Peer, ...] = (
    Peer("web-1", "100.64.0.11", tags=("tag:web", "tag:prod")),
    Peer("web-2", "100.64.0.12", tags=("tag:web", "tag:prod"), ssh=True),
    Peer("test-web-3", "100.64.0.13", tags=("tag:web",)),
    Peer("db-1", "100.64.0.21", tags=("tag:db", "tag:prod")),
    Peer("laptop", "100.64.0.31", os="macOS"),
    Peer("old-box", "100.64.0.41", tags=("tag:web",), online=False),
    Peer("friend-nas", "100.64.0.51", shared=True),
    Peer("stale", "100.64.0.61", tags=("tag:web",), expired=True),
    Peer("win", "100.64.0.71", os="windows", tags=("tag:ci",)),
    Peer("sharee-phone", "100.64.0.81", os="iOS", sharee=True),
)


def _key(name: str) -> str:
    return "nodekey:" + hashlib.sha256(name.encode()).hexdigest()


def _peer_status(p: Peer, *, user_id: int) -> dict[str, Any]:
    """One ``ipnstate.PeerStatus`` as ``tailscale status --json`` prints it."""
    ps: dict[str, Any] = {
        "ID": p.node_id,
        "PublicKey": _key(p.name),
        "HostName": p.hostname or p.name,
        "DNSName": p.dns_name + ".",
        "OS": p.os,
        "UserID": user_id,
        "TailscaleIPs": p.ips,
        "AllowedIPs": [f"{p.ips[0]}/32", f"{p.ips[1]}/128"],
        "Addrs": None,
        "CurAddr": "",
        "Relay": "fra",
        "RxBytes": 0,
        "TxBytes": 0,
        "Created": "2026-01-15T09:00:00Z",
        "LastWrite": "0001-01-01T00:00:00Z",
        "LastSeen": _NOW if p.online else _PAST,
        "LastHandshake": "0001-01-01T00:00:00Z",
        "Online": p.online and not p.expired,
        "ExitNode": False,
        "ExitNodeOption": False,
        "Active": False,
        "PeerAPIURL": [f"http://{p.ips[0]}:38100"],
        "TaildropTarget": 0,
        "NoFileSharingReason": "",
        "InNetworkMap": True,
        "InMagicSock": p.online,
        "InEngine": False,
        "KeyExpiry": _PAST if p.expired else _FUTURE,
    }
    if p.tags:
        ps["Tags"] = list(p.tags)
    if p.expired:
        ps["Expired"] = True
    if p.ssh:
        ps["sshHostKeys"] = list(p.ssh_host_keys) or [_SSH_KEY + " root@" + p.name]
    if p.shared:
        ps["AltSharerUserID"] = 2002
    if p.sharee:
        ps["ShareeNode"] = True
    return ps


def status_document(
    peers: Iterable[Peer], *, self_peer: Peer | None = None, state: str = "Running"
) -> dict[str, Any]:
    """A ``tailscale status --json`` document for ``peers`` (``state`` is the ``BackendState``)."""
    me = self_peer or Peer("nexus-controller", "100.64.0.1")
    doc: dict[str, Any] = {
        "Version": "1.90.6-t1234abcd-gdeadbeef",
        "TUN": True,
        "BackendState": state,
        "HaveNodeKey": True,
        "AuthURL": "",
        "TailscaleIPs": me.ips if state == "Running" else None,
        "Self": _peer_status(me, user_id=1001) | {"Online": True},
        "Health": [],
        "MagicDNSSuffix": SUFFIX,
        "CurrentTailnet": {"Name": "example.com", "MagicDNSSuffix": SUFFIX, "MagicDNSEnabled": True},
        "CertDomains": None,
        "Peer": {},
        "User": {
            "1001": {"ID": 1001, "LoginName": "ops@example.com", "DisplayName": "Ops", "ProfilePicURL": ""},
            "2002": {
                "ID": 2002,
                "LoginName": "friend@example.org",
                "DisplayName": "Friend",
                "ProfilePicURL": "",
            },
        },
        "ClientVersion": None,
    }
    if state == "NeedsLogin":
        doc.update(Self=doc["Self"] | {"Online": False}, Peer=None, CurrentTailnet=None, HaveNodeKey=False)
        doc["AuthURL"] = "https://login.tailscale.com/a/1a2b3c4d5e6f"
        return doc
    if state != "Running":
        doc.update(Peer=None)
        return doc
    doc["Peer"] = {_key(p.name): _peer_status(p, user_id=2002 if p.shared else 1001) for p in peers}
    return doc


#: The fake CLI's failure modes and what the real CLI prints for each (stderr, exit code).
_FAILURES = {
    "daemon-down": (
        "failed to connect to local tailscaled; it doesn't appear to be running "
        "(sudo systemctl start tailscaled ?)",
        1,
    ),
    "broken": ("unexpected error: boom", 1),
}

_SCRIPT = """#!{python}
# A fake 'tailscale' for tests: answers 'status --json' from {data!r}.
import json, sys, time
with open({data!r}) as fh:
    spec = json.load(fh)
with open({data!r} + ".calls", "a") as fh:
    fh.write(" ".join(sys.argv[1:]) + "\\n")
if sys.argv[1:3] != ["status", "--json"]:
    sys.stderr.write("fake tailscale: only 'status --json' is known\\n")
    sys.exit(2)
if spec.get("sleep"):
    time.sleep(spec["sleep"])
if spec.get("stderr"):
    sys.stderr.write(spec["stderr"] + "\\n")
    sys.exit(spec.get("code", 1))
sys.stdout.write(json.dumps(spec["status"], indent=2))
"""


def write_fake_cli(
    folder: str | os.PathLike[str],
    peers: Sequence[Peer] = SAMPLE,
    *,
    mode: str = "ok",
    state: str = "Running",
    sleep: float = 0,
    self_peer: Peer | None = None,
) -> Path:
    """Write an executable ``tailscale`` in ``folder`` and return its path (call again to change it).

    ``mode``: ``"ok"`` prints the status of ``peers`` (with ``state`` as ``BackendState``:
    ``"NeedsLogin"``, ``"Stopped"``... print the real documents of those states);
    ``"daemon-down"`` fails as the real CLI does when tailscaled is not running;
    ``"broken"`` fails with another message. Each call's arguments are appended to
    ``<folder>/tailscale.json.calls``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "tailscale.json"
    spec: dict[str, Any] = {"sleep": sleep}
    if mode == "ok":
        spec["status"] = status_document(peers, self_peer=self_peer, state=state)
    elif mode in _FAILURES:
        spec["stderr"], spec["code"] = _FAILURES[mode]
    else:
        raise ValueError(f"mode must be 'ok', 'daemon-down' or 'broken', not {mode!r}")
    data.write_text(json.dumps(spec))
    script = folder / "tailscale"
    script.write_text(_SCRIPT.format(python=sys.executable, data=str(data)))
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script


def api_devices(peers: Iterable[Peer], *, fields_all: bool = True) -> dict[str, Any]:
    """The API's ``{"devices": [...]}`` answer for ``peers`` (``fields=all`` adds ``sshEnabled``)."""
    out = []
    for p in peers:
        if p.sharee:
            continue
        d: dict[str, Any] = {
            "addresses": p.ips,
            "id": str(int(hashlib.sha1(p.name.encode()).hexdigest()[:12], 16)),
            "nodeId": p.node_id,
            "user": "friend@example.org" if p.shared else "ops@example.com",
            "name": p.dns_name,
            "hostname": p.hostname or p.name,
            "clientVersion": "1.90.6-t1234abcd-gdeadbeef",
            "updateAvailable": False,
            "os": p.os,
            "created": "2026-01-15T09:00:00Z",
            "connectedToControl": p.online and not p.expired,
            "keyExpiryDisabled": bool(p.tags) and not p.expired,
            "expires": _PAST if p.expired else _FUTURE,
            "authorized": True,
            "isExternal": p.shared,
            "isEphemeral": False,
            "machineKey": "mkey:" + hashlib.sha256(p.name.encode()).hexdigest(),
            "nodeKey": _key(p.name),
            "blocksIncomingConnections": False,
            "tailnetLockKey": "",
            "tailnetLockError": "",
        }
        if not p.online:
            d["lastSeen"] = _PAST
        if p.tags:
            d["tags"] = list(p.tags)
        if fields_all:
            d.update(sshEnabled=p.ssh, enabledRoutes=[], advertisedRoutes=[], clientConnectivity=None)
        out.append(d)
    return {"devices": out}


@dataclass
class _Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class FakeApi:
    """A local HTTP server speaking the Tailscale API v2 for ``devices`` and ``oauth/token``.

    ``api_keys``: tokens accepted as ``Bearer`` or as the Basic-auth user. ``oauth``: client
    id -> secret; each token it issues lives ``token_lifetime`` seconds. ``tailnet``: the
    tailnet the credentials own (``-`` always works). :meth:`fail_next` queues answers
    (``429`` with ``Retry-After``, ``401``, ``500``...) served before the real one;
    :attr:`requests` records ``(method, path, authorization)`` of every request.
    """

    def __init__(
        self,
        peers: Sequence[Peer] = SAMPLE,
        *,
        api_keys: Iterable[str] = ("tskey-api-test",),
        oauth: dict[str, str] | None = None,
        token_lifetime: int = 3600,
        tailnet: str = "example.com",
    ) -> None:
        self.peers = list(peers)
        self.api_keys = set(api_keys)
        self.oauth = dict(oauth or {})
        self.token_lifetime = token_lifetime
        self.tailnet = tailnet
        self.tokens: set[str] = set()
        self.requests: list[tuple[str, str, str]] = []
        self._queue: list[_Reply] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._body_cache: tuple[int, bytes] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> FakeApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> FakeApi:
        """Listen on 127.0.0.1 (a free port) in a background thread."""
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                api._handle(self, "GET")

            def do_POST(self) -> None:
                api._handle(self, "POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-tailscale-api", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        """The base URL (``http://127.0.0.1:PORT``), for ``tailscale_api_url``."""
        assert self._server is not None, "start() the FakeApi first"
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}"

    # -- control -----------------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        *,
        retry_after: str | None = None,
        message: str = "",
        times: int = 1,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next ``times`` API requests with ``status`` (and ``Retry-After``, and
        ``headers``: a 307 with its ``Location``...)."""
        headers = dict(headers or {})
        if retry_after is not None:
            headers["Retry-After"] = retry_after
        with self._lock:
            for _ in range(times):
                self._queue.append(_Reply(status, {"message": message or f"fake error {status}"}, headers))

    def expire_tokens(self) -> None:
        """Invalidate every OAuth token issued so far (the next request with one gets 401)."""
        with self._lock:
            self.tokens.clear()

    def count(self, path_part: str) -> int:
        """How many requests had ``path_part`` in their path."""
        return sum(1 for _, path, _ in self.requests if path_part in path)

    # -- serving -----------------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        auth = h.headers.get("Authorization", "")
        path = urllib.parse.urlsplit(h.path).path
        with self._lock:
            self.requests.append((method, h.path, auth))
            queued = self._queue.pop(0) if self._queue and path != "/api/v2/oauth/token" else None
        if queued is not None:
            return self._send(h, queued.status, queued.body, queued.headers)
        if method == "POST" and path == "/api/v2/oauth/token":
            return self._token(h, auth)
        prefix, suffix = "/api/v2/tailnet/", "/devices"
        if method == "GET" and path.startswith(prefix) and path.endswith(suffix):
            tailnet = urllib.parse.unquote(path[len(prefix) : -len(suffix)])
            if not self._authorized(auth):
                return self._send(h, 401, {"message": "API token invalid"})
            if tailnet not in ("-", self.tailnet):
                return self._send(h, 404, {"message": "tailnet not found"})
            return self._send_raw(h, 200, self._devices_body())
        return self._send(h, 404, {"message": "not found"})

    def _devices_body(self) -> bytes:
        with self._lock:
            key = hash(tuple(self.peers))
            if self._body_cache is None or self._body_cache[0] != key:
                self._body_cache = (key, json.dumps(api_devices(self.peers)).encode())
            return self._body_cache[1]

    def _authorized(self, auth: str) -> bool:
        kind, _, value = auth.partition(" ")
        if kind == "Bearer":
            return value in self.api_keys or value in self.tokens
        if kind == "Basic":
            user = base64.b64decode(value).decode(errors="replace").partition(":")[0]
            return user in self.api_keys
        return False

    def _token(self, h: BaseHTTPRequestHandler, auth: str) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(h.rfile.read(length).decode())
        client_id = (form.get("client_id") or [""])[0]
        secret = (form.get("client_secret") or [""])[0]
        if auth.startswith("Basic ") and not client_id:
            client_id, _, secret = base64.b64decode(auth[6:]).decode(errors="replace").partition(":")
        if (form.get("grant_type") or [""])[0] != "client_credentials":
            return self._send(h, 400, {"error": "unsupported_grant_type"})
        if not client_id or self.oauth.get(client_id) != secret:
            return self._send(h, 401, {"error": "invalid_client", "message": "invalid client credentials"})
        token = "tskey-api-oauth-" + hashlib.sha256(os.urandom(16)).hexdigest()[:24]
        with self._lock:
            self.tokens.add(token)
        body = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.token_lifetime,
            "scope": "all:read",
        }
        return self._send(h, 200, body)

    def _send(
        self,
        h: BaseHTTPRequestHandler,
        status: int,
        body: dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> None:
        self._send_raw(h, status, json.dumps(body).encode(), headers)

    @staticmethod
    def _send_raw(
        h: BaseHTTPRequestHandler, status: int, raw: bytes, headers: dict[str, str] | None = None
    ) -> None:
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(raw)
