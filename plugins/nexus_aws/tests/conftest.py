"""EC2 for the tests: moto in server mode on 127.0.0.1, behind a small HTTP proxy that can
answer with EC2 errors (no spot capacity, throttling, a rejected credential) so that failures
reach boto3 exactly as AWS sends them. Nothing in boto3 is patched."""

from __future__ import annotations

import http.server
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from nexus_core.testing import NexusProject
from nexus_core.testing.servers import agent_ca as make_agent_ca
from nexus_core.testing.servers import serve_in_thread

ERROR = """<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors>
<RequestID>nexus-test</RequestID></Response>"""


@dataclass
class Faults:
    """Errors the proxy answers instead of moto: (action, spot only) -> [(code, status), ...]."""

    queued: dict[tuple[str, bool], list[tuple[str, int]]] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, action: str, code: str, status: int = 500, times: int = 1, spot_only: bool = False) -> None:
        with self.lock:
            self.queued.setdefault((action, spot_only), []).extend([(code, status)] * times)

    def take(self, action: str, spot: bool) -> tuple[str, int] | None:
        with self.lock:
            for key in ((action, True), (action, False)) if spot else ((action, False),):
                found = self.queued.get(key)
                if found:
                    return found.pop(0)
        return None

    def clear(self) -> None:
        with self.lock:
            self.queued.clear()
            self.seen.clear()


@dataclass
class Ec2:
    """The endpoint the tests' nexus talks to, and the proxy's fault switchboard."""

    url: str
    moto_url: str
    faults: Faults

    def client(self):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.client("ec2", endpoint_url=self.moto_url, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip


def _proxy(target: str, faults: Faults) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *_args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            form = urllib.parse.parse_qs(body.decode())
            action = (form.get("Action") or [""])[0]
            faults.seen.append(action)
            spot = any(k.startswith("InstanceMarketOptions") for k in form)
            fault = faults.take(action, spot)
            if fault is not None:
                code, status = fault
                data = ERROR.format(code=code, message=f"injected by the test proxy ({code})").encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
            request = urllib.request.Request(target + self.path, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=30) as answer:
                    status, data, kind = answer.status, answer.read(), answer.headers.get("Content-Type", "text/xml")
            except urllib.error.HTTPError as exc:
                status, data, kind = exc.code, exc.read(), exc.headers.get("Content-Type", "text/xml")
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)


@pytest.fixture(scope="session")
def ec2() -> Iterator[Ec2]:
    """moto's EC2 on 127.0.0.1 and the fault-injecting proxy in front of it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    moto_url = f"http://{host}:{port}"
    faults = Faults()
    try:
        with serve_in_thread(_proxy(moto_url, faults)) as proxy:
            yield Ec2(f"http://127.0.0.1:{proxy.server_address[1]}", moto_url, faults)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def agent_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cluster CA (``nexus agent init``): instances get certificates issued by it."""
    return make_agent_ca(tmp_path_factory.mktemp("agent-ca"))


@pytest.fixture
def aws(nexus_project: NexusProject, ec2: Ec2, agent_ca: Path, tmp_path: Path) -> Iterator[NexusProject]:
    """A project whose ``nexus`` reaches the proxied EC2 with test credentials."""
    ec2.faults.clear()
    nexus_project.env.update(
        {
            "AWS_ENDPOINT_URL": ec2.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none-credentials"),
            "AWS_CONFIG_FILE": str(tmp_path / "none-config"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "NEXUS_AGENT_DIR": str(agent_ca),
            "NEXUS_CLUSTER": "tls://127.0.0.1:9",  # nothing listens: the cluster's view answers at once
        }
    )
    yield nexus_project
    client = ec2.client()
    ids = [i["InstanceId"] for r in client.describe_instances()["Reservations"] for i in r["Instances"]]
    if ids:
        client.terminate_instances(InstanceIds=ids)
