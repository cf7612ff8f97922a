"""Hetzner Cloud for the tests: a small HTTP server on 127.0.0.1 speaking the documented API
for the endpoints nexus-hetzner uses (servers list/create/delete with label selectors,
actions, server types with their prices per location, locations), with the API's error
documents (``resource_unavailable``, ``rate_limit_exceeded`` with ``RateLimit-*`` headers,
``unauthorized``). The hcloud SDK talks to it unmodified (``HCLOUD_ENDPOINT``)."""

from __future__ import annotations

import http.server
import itertools
import json
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from nexus_core.testing import NexusProject
from nexus_core.testing.servers import agent_ca as make_agent_ca
from nexus_core.testing.servers import serve_in_thread

TOKEN = "test-token-0123456789"
#: A second token of the same project (the servers' self-destruct token).
SELF_TOKEN = "self-destruct-token-9876543210"
LOCATIONS = [
    {"id": 1, "name": "fsn1", "description": "Falkenstein DC Park 1", "country": "DE", "city": "Falkenstein",
     "latitude": 50.47612, "longitude": 12.370071, "network_zone": "eu-central"},
    {"id": 2, "name": "nbg1", "description": "Nuremberg DC Park 1", "country": "DE", "city": "Nuremberg",
     "latitude": 49.452102, "longitude": 11.076665, "network_zone": "eu-central"},
    {"id": 3, "name": "hel1", "description": "Helsinki DC Park 1", "country": "FI", "city": "Helsinki",
     "latitude": 60.169855, "longitude": 24.938379, "network_zone": "eu-central"},
]  # fmt: skip


def _price(location: str, hourly: str, monthly: str) -> dict[str, Any]:
    return {
        "location": location,
        "price_hourly": {"net": hourly, "gross": f"{float(hourly) * 1.19:.10f}"},
        "price_monthly": {"net": monthly, "gross": f"{float(monthly) * 1.19:.10f}"},
        "included_traffic": 21990232555520,
        "price_per_tb_traffic": {"net": "1.0000000000", "gross": "1.1900000000"},
    }


SERVER_TYPES = [
    {"id": 104, "name": "cx22", "description": "CX22", "cores": 2, "memory": 4.0, "disk": 40, "deprecated": False,
     "storage_type": "local", "cpu_type": "shared", "architecture": "x86", "category": "cost_optimized",
     "prices": [_price("fsn1", "0.0060000000", "3.7900000000"), _price("nbg1", "0.0070000000", "3.7900000000"),
                _price("hel1", "0.0080000000", "3.7900000000")]},
    {"id": 96, "name": "ccx13", "description": "CCX13 Dedicated CPU", "cores": 2, "memory": 8.0, "disk": 80,
     "deprecated": False, "storage_type": "local", "cpu_type": "dedicated", "architecture": "x86",
     "category": "general_purpose", "prices": [_price("hel1", "0.0240000000", "14.8600000000")]},
]  # fmt: skip


def _meta(total: int) -> dict[str, Any]:
    return {"pagination": {"page": 1, "per_page": 50, "previous_page": None, "next_page": None, "last_page": 1,
                           "total_entries": total}}  # fmt: skip


@dataclass
class HetznerApi:
    """The fake API's state and fault switchboard; ``url`` is what HCLOUD_ENDPOINT gets."""

    url: str = ""
    servers: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: location -> how many more creates answer resource_unavailable there
    sold_out: dict[str, int] = field(default_factory=dict)
    #: "METHOD /path" -> how many more answers are 429 rate_limit_exceeded
    throttled: dict[str, int] = field(default_factory=dict)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    #: the token of each request, in order (None: none sent)
    tokens: list[str | None] = field(default_factory=list)
    #: what the metadata service (``/hetzner/v1/metadata/instance-id``) says this server is
    metadata_id: str = ""
    token: str = TOKEN
    self_token: str = SELF_TOKEN
    lock: threading.Lock = field(default_factory=threading.Lock)
    ids: Any = field(default_factory=lambda: itertools.count(4242))

    def reset(self) -> None:
        with self.lock:
            self.servers.clear()
            self.sold_out.clear()
            self.throttled.clear()
            self.requests.clear()
            self.tokens.clear()
            self.metadata_id = ""

    def live(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.servers.values())


def _action(number: int, command: str, resource: int) -> dict[str, Any]:
    return {"id": number, "command": command, "status": "success", "progress": 100,
            "started": "2026-01-01T00:00:00+00:00", "finished": "2026-01-01T00:00:01+00:00",
            "resources": [{"id": resource, "type": "server"}], "error": None}  # fmt: skip


def _matches(labels: dict[str, str], query: str) -> bool:
    for term in filter(None, query.split(",")):
        key, eq, value = term.partition("=")
        if eq:
            if labels.get(key.rstrip("!")) != value:
                return False
        elif key not in labels:
            return False
    return True


def _server(api: HetznerApi, body: dict[str, Any]) -> dict[str, Any]:
    number = next(api.ids)
    location = next(x for x in LOCATIONS if x["name"] == body.get("location", "fsn1"))
    kind = next(t for t in SERVER_TYPES if t["name"] == body["server_type"])
    return {
        "id": number, "name": body["name"], "status": "initializing", "created": "2026-01-01T00:00:00+00:00",
        "labels": body.get("labels") or {}, "server_type": kind, "location": location,
        "datacenter": {"id": location["id"], "name": f"{location['name']}-dc1", "description": "",
                       "location": location, "server_types": {"supported": [], "available": [],
                                                              "available_for_migration": []}},
        "public_net": {"ipv4": {"id": number, "ip": f"192.0.2.{number % 250}", "blocked": False,
                                "dns_ptr": "static.example"}, "ipv6": None, "floating_ips": [], "firewalls": []},
        "private_net": [], "image": None, "iso": None, "volumes": [], "placement_group": None,
        "rescue_enabled": False, "locked": False, "backup_window": None, "outgoing_traffic": None,
        "ingoing_traffic": None, "included_traffic": 0, "protection": {"delete": False, "rebuild": False},
        "primary_disk_size": 40,
        "user_data": body.get("user_data"),  # not in the real answer: kept for the tests to read
        "image_requested": body.get("image"), "ssh_keys_requested": body.get("ssh_keys"),
    }  # fmt: skip


def _handler(api: HetznerApi) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *_args: object) -> None:
            pass

        def _send(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
            raw = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.send_header("RateLimit-Limit", "3600")
            self.send_header("RateLimit-Remaining", "3599" if status != 429 else "0")
            self.send_header("RateLimit-Reset", "1767225600")
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(raw)

        def _error(self, status: int, code: str, message: str) -> None:
            self._send(status, {"error": {"code": code, "message": message, "details": {}}})

        def _handle(self, method: str) -> None:
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            body: Any = None
            if method == "POST":
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            if method == "GET" and url.path == "/hetzner/v1/metadata/instance-id":  # no token: link-local
                raw = api.metadata_id.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)
                return None
            path = url.path.removeprefix("/v1")
            api.requests.append((method, path, body))
            auth = self.headers.get("Authorization") or ""
            api.tokens.append(auth.removeprefix("Bearer ") if auth else None)
            if auth not in (f"Bearer {TOKEN}", f"Bearer {SELF_TOKEN}"):
                return self._error(401, "unauthorized", "unable to authenticate")
            key = f"{method} {path.rstrip('0123456789')}"
            with api.lock:
                throttled = api.throttled.get(key, 0)
                if throttled:
                    api.throttled[key] = throttled - 1
            if throttled:
                return self._error(429, "rate_limit_exceeded", "limit of 3600 requests per hour reached")
            if method == "GET" and path == "/server_types":
                found = [t for t in SERVER_TYPES if t["name"] in query.get("name", [t["name"]])]
                return self._send(200, {"server_types": found, "meta": _meta(len(found))})
            if method == "GET" and path == "/locations":
                found = [x for x in LOCATIONS if x["name"] in query.get("name", [x["name"]])]
                return self._send(200, {"locations": found, "meta": _meta(len(found))})
            if method == "GET" and path == "/servers":
                selector = (query.get("label_selector") or [""])[0]
                with api.lock:
                    found = [s for s in api.servers.values() if _matches(s["labels"], selector)]
                return self._send(200, {"servers": found, "meta": _meta(len(found))})
            if method == "GET" and path.startswith("/servers/"):
                with api.lock:
                    found_server = api.servers.get(int(path.rsplit("/", 1)[1]))
                if found_server is None:
                    return self._error(404, "not_found", f"server with ID '{path.rsplit('/', 1)[1]}' not found")
                return self._send(200, {"server": found_server})
            if method == "POST" and path == "/servers":
                kinds = {t["name"] for t in SERVER_TYPES}
                if body.get("server_type") not in kinds:
                    return self._error(422, "invalid_input", "invalid input in field 'server_type'")
                location = body.get("location", "fsn1")
                with api.lock:
                    left = api.sold_out.get(location, 0)
                    if left:
                        api.sold_out[location] = left - 1
                if left:
                    return self._error(412, "resource_unavailable", "error during placement")
                server = _server(api, body)
                with api.lock:
                    api.servers[server["id"]] = server
                action = _action(server["id"] * 10, "create_server", server["id"])
                return self._send(201, {"server": server, "action": action, "next_actions": [],
                                        "root_password": None})  # fmt: skip
            if method == "DELETE" and path.startswith("/servers/"):
                number = int(path.rsplit("/", 1)[1])
                with api.lock:
                    gone = api.servers.pop(number, None)
                if gone is None:
                    return self._error(404, "not_found", f"server with ID '{number}' not found")
                return self._send(200, {"action": _action(number * 10 + 1, "delete_server", number)})
            if method == "GET" and path.startswith("/actions/"):
                number = int(path.rsplit("/", 1)[1])
                return self._send(200, {"action": _action(number, "create_server", number // 10)})
            return self._error(404, "not_found", f"no route {method} {path}")

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_DELETE(self) -> None:
            self._handle("DELETE")

    return Handler


@pytest.fixture(scope="session")
def hetzner_api() -> Iterator[HetznerApi]:
    """The fake Hetzner Cloud API on 127.0.0.1 (one per session)."""
    api = HetznerApi()
    with serve_in_thread(http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))) as server:
        api.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        yield api


@pytest.fixture(scope="session")
def agent_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cluster CA (``nexus agent init``): servers get certificates issued by it."""
    return make_agent_ca(tmp_path_factory.mktemp("agent-ca"))


@pytest.fixture
def hetzner(nexus_project: NexusProject, hetzner_api: HetznerApi, agent_ca: Path) -> Iterator[NexusProject]:
    """A project whose ``nexus`` reaches the fake API with the test token."""
    hetzner_api.reset()
    nexus_project.env.update(
        {
            "HCLOUD_ENDPOINT": hetzner_api.url,
            "HCLOUD_TOKEN": TOKEN,
            "NEXUS_AGENT_DIR": str(agent_ca),
            "NEXUS_CLUSTER": "tls://127.0.0.1:9",  # nothing listens: the cluster's view answers at once
        }
    )
    yield nexus_project
    hetzner_api.reset()
