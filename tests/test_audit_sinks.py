"""The built-in network sinks against real local servers the tests start: syslog (RFC 5424 over
UDP, TCP and a unix socket), Splunk HEC (token, channel, acknowledgements, 503 retries) and the
Azure Log Analytics Data Collector API (SharedKey signature, 503 retries)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from nexus_core.testing import NexusProject

PROJECT = """
from nexus_core import run, task

@task
def deploy():
    run("echo deploying")
    run("echo password=hunter2-secret-value")
"""

RFC5424 = re.compile(r"^<(\d+)>1 (\S+) (\S+) (\S+) (\d+) (\S+) - (\{.*\})$")


def user_config(project: NexusProject, text: str) -> None:
    path = Path(project.env["XDG_CONFIG_HOME"]) / "nexus" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


class Listener:
    """A syslog receiver on one transport: collects every message it gets."""

    def __init__(self, kind: str, folder: str) -> None:
        self.kind = kind
        self.messages: list[str] = []
        if kind == "unix":
            self.path = f"{folder}/log.sock"
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.sock.bind(self.path)
            self.address = f"unix://{self.path}"
        else:
            kind_ = socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM
            self.sock = socket.socket(socket.AF_INET, kind_)
            self.sock.bind(("127.0.0.1", 0))
            self.address = f"{kind}://127.0.0.1:{self.sock.getsockname()[1]}"
            if kind == "tcp":
                self.sock.listen(5)
        self.sock.settimeout(0.2)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                if self.kind == "tcp":
                    conn, _ = self.sock.accept()
                    threading.Thread(target=self._stream, args=(conn,), daemon=True).start()
                else:
                    self.messages.append(self.sock.recv(65536).decode())
            except (TimeoutError, OSError):
                continue

    def _stream(self, conn: socket.socket) -> None:
        """Octet-counted frames (RFC 6587): ``LEN SP MSG``."""
        buf = b""
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                while b" " in buf:
                    size, _, rest = buf.partition(b" ")
                    if len(rest) < int(size):
                        break
                    self.messages.append(rest[: int(size)].decode())
                    buf = rest[int(size) :]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


def test_syslog_over_udp_tcp_and_a_unix_socket(nexus_project: NexusProject):
    folder = tempfile.mkdtemp(prefix="nx-syslog-", dir="/tmp")  # a unix socket path must be short
    listeners = {kind: Listener(kind, folder) for kind in ("udp", "tcp", "unix")}
    try:
        nexus_project.write(PROJECT)
        user_config(nexus_project, "".join(
            f'[audit.sinks.{kind}]\ntype = "syslog"\nrequired = true\naddress = "{lst.address}"\nfacility = "auth"\n\n'
            for kind, lst in listeners.items()))  # fmt: skip
        out = nexus_project.run("run", "deploy", env={"NEXUS_SUDO_PASSWORD": "hunter2-secret-value"})
        assert out.code == 0, out
    finally:
        for lst in listeners.values():
            lst.close()
        shutil.rmtree(folder, ignore_errors=True)
    for kind, lst in listeners.items():
        parsed = [RFC5424.match(m.rstrip("\n")) for m in lst.messages]
        assert parsed and all(parsed), (kind, lst.messages)
        ids = [p.group(6) for p in parsed if p]
        assert ids[0] == "run.started" and ids[-1] == "run.completed" and "command.executed" in ids, (kind, ids)
        for p in parsed:
            assert p is not None
            assert int(p.group(1)) == 4 * 8 + 5 and p.group(4) == "nexus"  # facility auth, severity notice
            body = json.loads(p.group(7))
            assert body["event"] == p.group(6) and p.group(2) == body["timestamp"]
        assert "hunter2-secret-value" not in "".join(lst.messages), kind


# --- Splunk HEC and Log Analytics -----------------------------------------------------------

HEC_TOKEN = "11111111-2222-3333-4444-555555555555"
LA_WORKSPACE = "0f1e2d3c-aaaa-bbbb-cccc-111122223333"
LA_KEY = base64.b64encode(b"a workspace key of the test, 32+b").decode()


class Service:
    """What the local HTTP server answers: Splunk HEC and the Log Analytics Data Collector API."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything (each test starts afresh)."""
        self.busy = 0  # answer this many more requests with 503 first
        self.hec_events: list[dict[str, Any]] = []
        self.hec_channels: set[str] = set()
        self.acks: dict[int, bool] = {}
        self.la_records: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, int]] = []
        self.lock = threading.Lock()

    def handle(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, Any]]:
        with self.lock:
            if self.busy > 0 and path.startswith(("/services/collector/event", "/api/logs")) and body:
                self.busy -= 1
                self.requests.append((method, path, 503))
                return 503, {"text": "Server is busy", "code": 9}
            status, answer = self._answer(method, path, headers, body)
            self.requests.append((method, path, status))
            return status, answer

    def _answer(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, Any]]:
        if path.startswith("/services/collector"):
            if path == "/services/collector/health":
                return 200, {"text": "HEC is healthy", "code": 17}
            if headers.get("Authorization") != f"Splunk {HEC_TOKEN}":
                return 403, {"text": "Invalid token", "code": 4}
            channel = headers.get("X-Splunk-Request-Channel", "")
            if path == "/services/collector/event":
                if not body:
                    return 400, {"text": "No data", "code": 5}
                if not channel:
                    return 400, {"text": "Data channel is missing", "code": 10}
                decoder, text, at = json.JSONDecoder(), body.decode(), 0
                while at < len(text):
                    obj, at = decoder.raw_decode(text, at)
                    self.hec_events.append(obj)
                    while at < len(text) and text[at].isspace():
                        at += 1
                self.hec_channels.add(channel)
                ack = len(self.acks)
                self.acks[ack] = True
                return 200, {"text": "Success", "code": 0, "ackId": ack}
            if path.startswith("/services/collector/ack?channel="):
                asked = json.loads(body)["acks"]
                return 200, {"acks": {str(a): self.acks.get(a, False) for a in asked}}
            return 404, {"text": "not found"}
        if path == "/api/logs?api-version=2016-04-01" and method == "POST":
            date = headers.get("x-ms-date", "")
            text = f"POST\n{len(body)}\napplication/json\nx-ms-date:{date}\n/api/logs"
            digest = hmac.new(base64.b64decode(LA_KEY), text.encode(), hashlib.sha256).digest()
            expected = f"SharedKey {LA_WORKSPACE}:{base64.b64encode(digest).decode()}"
            if headers.get("Authorization") != expected or headers.get("Log-Type") != "NexusAudit":
                return 403, {"Error": "InvalidAuthorization"}
            if headers.get("time-generated-field") != "timestamp":
                return 400, {"Error": "InvalidTimeGeneratedField"}
            self.la_records.extend(json.loads(body))
            return 200, {}
        return 404, {}


@pytest.fixture(scope="session")
def http_service() -> Iterator[tuple[str, Service]]:
    """One local server for the session; each test resets its :class:`Service`."""
    holder: dict[str, Service] = {"service": Service()}

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, method: str) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, answer = holder["service"].handle(method, self.path, self.headers, body)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._reply("GET")

        def do_POST(self) -> None:
            self._reply("POST")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield url, holder["service"]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def service(http_service: tuple[str, Service]) -> tuple[str, Service]:
    url, svc = http_service
    svc.reset()
    return url, svc


def test_splunk_hec_and_log_analytics_deliver_every_record_once_through_503s(nexus_project: NexusProject, service):
    url, svc = service
    svc.busy = 2  # the first two batches are refused with 503 "server busy", then retried
    nexus_project.write(PROJECT)
    user_config(
        nexus_project,
        f"""
[audit.sinks.splunk]
type = "splunk"
required = true
url = "{url}"
token_env = "TEST_HEC_TOKEN"
ack = true
index = "audit"
retry_wait = 0.01

[audit.sinks.azure]
type = "azure_log_analytics"
required = true
workspace_id = "{LA_WORKSPACE}"
shared_key = "{LA_KEY}"
endpoint = "{url}"
retry_wait = 0.01
""",
    )
    out = nexus_project.run("run", "deploy", env={"TEST_HEC_TOKEN": HEC_TOKEN,
                                                  "NEXUS_SUDO_PASSWORD": "hunter2-secret-value"})  # fmt: skip
    assert out.code == 0, out
    assert sum(1 for r in svc.requests if r[2] == 503) == 2, svc.requests
    hec = [e["event"] for e in svc.hec_events]
    la = svc.la_records
    assert [r["event"] for r in hec] == [r["event"] for r in la], "each sink got every record once, in order"
    assert hec[0]["event"] == "run.started" and hec[-1]["event"] == "run.completed"
    assert all(e["sourcetype"] == "nexus:audit" and e["index"] == "audit" for e in svc.hec_events)
    assert len(svc.hec_channels) == 1 and any("/services/collector/ack?channel=" in r[1] for r in svc.requests)
    everything = json.dumps(svc.hec_events) + json.dumps(la) + out.stdout + out.stderr
    assert "hunter2-secret-value" not in everything and HEC_TOKEN not in json.dumps(la)
    assert "echo password=***" in [r.get("command") for r in la]


def test_a_required_splunk_sink_with_a_bad_token_stops_the_run(nexus_project: NexusProject, service):
    url, _ = service
    nexus_project.write(PROJECT)
    user_config(nexus_project, f'[audit.sinks.siem]\ntype = "splunk"\nrequired = true\nurl = "{url}"\n'
                               'token = "not-the-token"\nretry_wait = 0.01\n')  # fmt: skip
    out = nexus_project.run("run", "deploy")
    assert out.code == 2, out
    assert "audit sink 'siem' (splunk, required) cannot write: HEC refused the token: HTTP 403" in out.stderr, out
    assert "not-the-token" not in out.stderr and "deploying" not in out.stdout, out
