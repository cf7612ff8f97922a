"""A fake Azure for tests: a local HTTPS server speaking the ARM and Resource Graph APIs
that nexus-azure uses, driven by the unmodified Azure SDK.

Its "virtual machines" run scripts on this machine (a process group per run command), so
Run Command behaves as it does on a VM: exit codes, output, timeouts and deletes that kill
the script's whole process tree. What it speaks, as documented by Microsoft:

* ``POST /providers/Microsoft.ResourceGraph/resources``: pages of ``page_size`` rows with
  ``$skipToken`` (the query text is recorded, not evaluated: every VM of the requested
  subscriptions that is ``in_graph`` is returned);
* ``GET .../providers/Microsoft.Compute/virtualMachines`` (``nextLink`` pages) and one VM;
* managed run commands (``PUT``/``GET``/``DELETE .../runCommands/NAME``), with
  ``Azure-AsyncOperation`` polling and ``instanceView`` (``executionState``, ``exitCode``,
  ``output``, ``error``, growing while the script runs);
* the action Run Command (``POST .../runCommand``): 202 with ``Azure-AsyncOperation`` and
  ``Location``; the result holds the last 4 KB of each stream; 409 while another runs on
  the same VM;
* scale sets: instances (``.../virtualMachineScaleSets/S/virtualMachines``), their run
  commands, ``POST .../delete`` of instances, ``PATCH`` of ``sku.capacity``, all as LROs;
* 401 without a known bearer token, 403 for a forbidden subscription, 429 with
  ``Retry-After`` for the next ``throttle`` requests.

The certificate is the caller's (the tests make one with ``cryptography``): standard
library only here.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["TOKEN", "FakeAzure", "FakeVM", "TestCredential"]

#: The bearer token the fake accepts (``TestCredential`` hands it out).
TOKEN = "fake-azure-token"
#: Bytes of each stream the action Run Command returns (the service keeps the last 4 KB).
ACTION_OUTPUT_BYTES = 4096


class TestCredential:
    """A ``TokenCredential`` (the SDK's public protocol) handing out :data:`TOKEN`."""

    __test__ = False  # not a pytest test class

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.calls = 0

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        """An access token valid for an hour."""
        from azure.core.credentials import AccessToken

        self.calls += 1
        return AccessToken(self.token, int(time.time()) + 3600)

    def get_token_info(self, *scopes: str, options: Any = None) -> Any:
        """The same token, as ``AccessTokenInfo`` (the newer half of the protocol)."""
        from azure.core.credentials import AccessTokenInfo

        self.calls += 1
        return AccessTokenInfo(self.token, int(time.time()) + 3600)


@dataclass
class FakeVM:
    """One virtual machine (or scale set instance) of the fake."""

    name: str
    resource_group: str = "rg-app"
    subscription: str = "sub-1"
    location: str = "westeurope"
    size: str = "Standard_B2s"
    os: str = "Linux"
    power: str = "running"
    tags: dict[str, str] = field(default_factory=dict)
    private_ips: tuple[str, ...] = ("10.0.0.4",)
    public_ips: tuple[str, ...] = ()
    zones: tuple[str, ...] = ()
    created: datetime = field(default_factory=lambda: datetime.now(UTC) - timedelta(days=3))
    #: False: Resource Graph does not know it yet (created a moment ago).
    in_graph: bool = True
    #: False: managed run commands are refused (an old VM agent): the action API must be used.
    managed: bool = True
    #: The scale set it belongs to ("" for a standalone VM) and its instance ID.
    scale_set: str = ""
    instance_id: str = ""

    @property
    def computer_name(self) -> str:
        """The host name Azure gives it: a scale set's first 9 characters and the instance ID in
        six base-36 digits (``ss-web000003``), else the VM's name."""
        if not self.scale_set:
            return self.name
        number, digits = int(self.instance_id or 0), ""
        for _ in range(6):
            number, rest = divmod(number, 36)
            digits = "0123456789abcdefghijklmnopqrstuvwxyz"[rest] + digits
        return self.scale_set[:9] + digits

    @property
    def id(self) -> str:
        """The ARM resource ID."""
        rg = f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
        if self.scale_set:
            ss = f"virtualMachineScaleSets/{self.scale_set}"
            return f"{rg}/providers/Microsoft.Compute/{ss}/virtualMachines/{self.instance_id}"
        return f"{rg}/providers/Microsoft.Compute/virtualMachines/{self.name}"

    def graph_row(self) -> dict[str, Any]:
        """The row nexus-azure's Resource Graph query projects."""
        return {
            "id": self.id,
            "name": self.name,
            "resourceGroup": self.resource_group.lower(),
            "subscriptionId": self.subscription,
            "location": self.location,
            "tags": json.dumps(self.tags),  # summarize ... by tostring(tags)
            "zones": json.dumps(list(self.zones)) if self.zones else "",
            "size": self.size,
            "os": self.os,
            "powerState": f"PowerState/{self.power}",
            "timeCreated": self.created.isoformat(),
            "privateIps": list(self.private_ips),
            "publicIps": list(self.public_ips),
        }

    def arm(self, status_only: bool = False) -> dict[str, Any]:
        """The ARM ``VirtualMachine`` document (with the instance view's statuses)."""
        props: dict[str, Any] = {
            "vmId": str(uuid.uuid5(uuid.NAMESPACE_URL, self.id)),
            "hardwareProfile": {"vmSize": self.size},
            "storageProfile": {"osDisk": {"osType": self.os}},
            "osProfile": {"computerName": self.computer_name},
            "timeCreated": self.created.isoformat(),
            "provisioningState": "Succeeded",
            "instanceView": {
                "statuses": [
                    {"code": "ProvisioningState/succeeded"},
                    {"code": f"PowerState/{self.power}"},
                ]
            },
        }
        doc: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "type": "Microsoft.Compute/virtualMachines",
            "location": self.location,
            "tags": dict(self.tags),
            "properties": props,
        }
        if self.zones:
            doc["zones"] = list(self.zones)
        if self.scale_set:
            doc["instanceId"] = self.instance_id
            doc["type"] = "Microsoft.Compute/virtualMachineScaleSets/virtualMachines"
            doc["sku"] = {"name": self.size}
        return doc


@dataclass
class _Script:
    """A script the fake runs: its process group, output so far and how it ended."""

    proc: subprocess.Popen[bytes]
    out: bytearray = field(default_factory=bytearray)
    err: bytearray = field(default_factory=bytearray)
    state: str = "Running"
    exit_code: int | None = None
    started: float = field(default_factory=time.time)
    ended: float | None = None
    timeout: float = 0.0
    readers: list[threading.Thread] = field(default_factory=list)

    def finished(self) -> bool:
        return self.state not in ("Running", "Pending")


@dataclass
class _Op:
    """A long-running operation: done when ``check()`` says so; ``result`` for the Location GET."""

    check: Any
    result: Any = None
    polls: int = 0


class FakeAzure:
    """The server; ``with FakeAzure(vms, cert, key) as az:`` then ``az.endpoint``."""

    def __init__(
        self,
        vms: list[FakeVM],
        certfile: str,
        keyfile: str,
        *,
        page_size: int = 2,
        script_env: dict[str, str] | None = None,
    ) -> None:
        self.vms = list(vms)
        #: The environment scripts run with (None: this process's), e.g. a HOME of their own.
        self.script_env = script_env
        self.page_size = page_size
        self.tokens = {TOKEN}
        self.forbidden: set[str] = set()
        #: The next ``throttle`` requests get 429 with ``Retry-After: retry_after``.
        self.throttle = 0
        self.retry_after = 1
        self.throttled = 0
        self.requests: list[tuple[str, str, Any]] = []
        self.graph_queries: list[dict[str, Any]] = []
        #: ``api-version`` of every request, by provider ("compute", "graph").
        self.api_versions: dict[str, set[str]] = {"compute": set(), "graph": set()}
        self.capacity: dict[str, int] = {}
        self.deleted: list[str] = []
        self._scripts: dict[str, _Script] = {}
        self._managed: dict[str, dict[str, Any]] = {}
        self._action_busy: dict[str, _Script] = {}
        self._ops: dict[str, _Op] = {}
        self._lock = threading.RLock()
        self._certfile, self._keyfile = certfile, keyfile
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- life cycle ---------------------------------------------------------------------

    def __enter__(self) -> FakeAzure:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                fake._handle(self)

            do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _serve

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self._certfile, self._keyfile)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the server and every script still running."""
        with self._lock:
            scripts = list(self._scripts.values())
        for s in scripts:
            self._kill(s, "Canceled")
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def endpoint(self) -> str:
        """``https://127.0.0.1:PORT``: what ``azure_arm_endpoint`` is set to."""
        assert self._server is not None
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    def running(self) -> int:
        """Scripts still running (a test's check that cancels and timeouts stop them)."""
        with self._lock:
            return sum(1 for s in self._scripts.values() if not s.finished())

    def count(self, method: str, fragment: str) -> int:
        """Requests seen of ``method`` whose path holds ``fragment``."""
        with self._lock:
            return sum(1 for m, p, _ in self.requests if m == method and fragment in p)

    # --- HTTP ---------------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        url = urlsplit(h.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        with self._lock:
            self.requests.append((h.command, url.path, body))
            throttled = self.throttle > 0
            if throttled:
                self.throttle -= 1
                self.throttled += 1
        if throttled:
            self._send(
                h,
                429,
                _error("TooManyRequests", "The request is being throttled."),
                {"Retry-After": str(self.retry_after)},
            )
            return
        auth = h.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
            self._send(
                h,
                401,
                _error("InvalidAuthenticationToken", "The access token is invalid."),
                {"WWW-Authenticate": 'Bearer authorization_uri="https://login.microsoftonline.com/t"'},
            )
            return
        if not query.get("api-version"):
            self._send(
                h, 400, _error("MissingApiVersionParameter", "The api-version query parameter is required.")
            )
            return
        parts = [p for p in url.path.split("/") if p]
        low = [p.lower() for p in parts]
        with self._lock:
            kind = "graph" if "microsoft.resourcegraph" in low else "compute"
            self.api_versions[kind].add(query["api-version"])
        if len(low) >= 2 and low[0] == "subscriptions" and parts[1] in self.forbidden:
            self._send(
                h,
                403,
                _error(
                    "AuthorizationFailed",
                    "The client does not have authorization to perform action over scope "
                    f"'/subscriptions/{parts[1]}'.",
                ),
            )
            return
        try:
            status, doc, headers = self._route(h.command, parts, low, query, body, url.path)
        except _NotFound as exc:
            status, doc, headers = 404, _error("ResourceNotFound", str(exc)), {}
        self._send(h, status, doc, headers)

    def _send(
        self, h: BaseHTTPRequestHandler, status: int, doc: Any, headers: dict[str, str] | None = None
    ) -> None:
        data = b"" if doc is None else json.dumps(doc).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json; charset=utf-8")
        h.send_header("Content-Length", str(len(data)))
        h.send_header("x-ms-request-id", str(uuid.uuid4()))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        if data:
            h.wfile.write(data)

    def _route(
        self, method: str, parts: list[str], low: list[str], query: dict[str, str], body: Any, path: str
    ) -> tuple[int, Any, dict[str, str]]:
        if low[:3] == ["providers", "microsoft.resourcegraph", "resources"] and method == "POST":
            return self._graph(body or {})
        if len(low) < 2 or low[0] != "subscriptions":
            raise _NotFound("/" + "/".join(parts))
        sub = parts[1]
        if (
            low[2:5] == ["providers", "microsoft.compute", "locations"]
            and len(low) == 8
            and low[6] == "operations"
        ):
            return self._op(parts[7], query.get("monitor") or "async")
        if low[2:5] == ["providers", "microsoft.compute", "virtualmachines"] and len(low) == 5:
            vms = [v.arm() for v in self.vms if v.subscription == sub and not v.scale_set]
            return self._page(vms, query, path)
        if len(low) < 8 or low[2] != "resourcegroups" or low[4:6] != ["providers", "microsoft.compute"]:
            raise _NotFound("/" + "/".join(parts))
        rg = parts[3]
        kind, rest = low[6], parts[7:]
        if kind == "virtualmachines":
            vm = self._vm(sub, rg, rest[0])
            return self._vm_route(method, vm, rest[1:], query, body)
        if kind == "virtualmachinescalesets":
            ss = rest[0]
            members = [
                v
                for v in self.vms
                if v.subscription == sub
                and v.resource_group.lower() == rg.lower()
                and v.scale_set.lower() == ss.lower()
            ]
            if not members and f"{rg}/{ss}".lower() not in self.capacity:
                raise _NotFound(f"scale set {ss}")
            if len(rest) == 1:
                return self._vmss(method, sub, rg, ss, members, body)
            if rest[1].lower() == "delete" and method == "POST":
                ids = set((body or {}).get("instanceIds") or [])
                return self._delete_instances(sub, rg, ss, ids)
            if rest[1].lower() == "virtualmachines":
                if len(rest) == 2:
                    return self._page([v.arm() for v in members], query, path)
                member = next((v for v in members if v.instance_id == rest[2]), None)
                if member is None:
                    raise _NotFound(f"instance {rest[2]} of {ss}")
                return self._vm_route(method, member, rest[3:], query, body)
        raise _NotFound("/" + "/".join(parts))

    def _vm(self, sub: str, rg: str, name: str) -> FakeVM:
        for v in self.vms:
            same_group = v.subscription == sub and v.resource_group.lower() == rg.lower()
            if same_group and v.name.lower() == name.lower() and not v.scale_set:
                return v
        raise _NotFound(
            f"The Resource 'Microsoft.Compute/virtualMachines/{name}' under resource group '{rg}' "
            "was not found."
        )

    def _page(self, items: list[Any], query: dict[str, str], path: str) -> tuple[int, Any, dict[str, str]]:
        start = int(query.get("$skiptoken") or 0)
        page = items[start : start + self.page_size]
        doc: dict[str, Any] = {"value": page}
        if start + self.page_size < len(items):
            # The SDK follows nextLink as it is: the same path, with a skip token.
            params = "&".join(
                f"{k}={v}" for k, v in {**query, "$skiptoken": str(start + self.page_size)}.items()
            )
            doc["nextLink"] = f"{self.endpoint}{path}?{params}"
        return 200, doc, {}

    # --- Resource Graph -----------------------------------------------------------------

    def _graph(self, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            self.graph_queries.append(body)
        subs = set(body.get("subscriptions") or [])
        if not body.get("query"):
            return 400, _error("BadRequest", "query is required"), {}
        rows = [
            v.graph_row()
            for v in self.vms
            if v.in_graph and not v.scale_set and (not subs or v.subscription in subs)
        ]
        options = body.get("options") or {}
        start = int(options.get("$skipToken") or 0)
        top = min(int(options.get("$top") or 1000), self.page_size)
        page = rows[start : start + top]
        doc: dict[str, Any] = {
            "totalRecords": len(rows),
            "count": len(page),
            "resultTruncated": "false",
            "data": page,
            "facets": [],
        }
        if start + top < len(rows):
            doc["$skipToken"] = str(start + top)
        return 200, doc, {"x-ms-user-quota-remaining": "14", "x-ms-user-quota-resets-after": "00:00:05"}

    # --- VMs, run commands --------------------------------------------------------------

    def _vm_route(
        self, method: str, vm: FakeVM, rest: list[str], query: dict[str, str], body: Any
    ) -> tuple[int, Any, dict[str, str]]:
        if not rest and method == "GET":
            return 200, vm.arm(), {}
        if rest and rest[0].lower() == "instanceview" and method == "GET":
            view = dict(vm.arm()["properties"]["instanceView"])
            ready = "Ready" if vm.power == "running" else "Not Ready"
            view["vmAgent"] = {
                "vmAgentVersion": "2.10.0.8",
                "statuses": [
                    {"code": "ProvisioningState/succeeded", "level": "Info", "displayStatus": ready}
                ],
            }
            return 200, view, {}
        if rest and rest[0].lower() == "runcommand" and method == "POST":
            return self._action(vm, body or {})
        if rest and rest[0].lower() == "runcommands" and len(rest) == 2:
            key = f"{vm.id}/runCommands/{rest[1]}".lower()
            if method == "PUT":
                return self._create_managed(vm, key, rest[1], body or {})
            if method == "GET":
                return self._get_managed(key, query)
            if method == "DELETE":
                return self._delete_managed(vm, key)
        raise _NotFound(f"{vm.name}/{'/'.join(rest)}")

    def _start(self, script: str, timeout: float) -> _Script:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", script],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env=self.script_env,
        )
        s = _Script(proc, timeout=timeout)

        def pump(stream: Any, into: bytearray) -> None:
            for chunk in iter(lambda: stream.read1(65536), b""):
                with self._lock:
                    into.extend(chunk)

        for stream, into in ((proc.stdout, s.out), (proc.stderr, s.err)):
            t = threading.Thread(target=pump, args=(stream, into), daemon=True)
            t.start()
            s.readers.append(t)

        def wait() -> None:
            try:
                code = proc.wait(timeout=timeout if timeout > 0 else None)
            except subprocess.TimeoutExpired:
                self._kill(s, "TimedOut")
                return
            for t in s.readers:
                t.join(10)
            with self._lock:
                if not s.finished():
                    s.exit_code = code
                    s.state = "Succeeded" if code == 0 else "Failed"
                    s.ended = time.time()

        threading.Thread(target=wait, daemon=True).start()
        return s

    def _kill(self, s: _Script, state: str) -> None:
        with self._lock:
            if s.finished():
                return
            s.state = state
            s.ended = time.time()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(s.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            s.proc.wait(10)

    def _new_op(self, vm: FakeVM, check: Any, result: Any = None) -> tuple[str, str]:
        op = uuid.uuid4().hex
        with self._lock:
            self._ops[op] = _Op(check, result)
        base = self.endpoint
        loc = vm.location
        return (
            f"{base}/subscriptions/{vm.subscription}/providers/Microsoft.Compute/locations/{loc}/operations/{op}"
            f"?api-version=2024-07-01&monitor=async",
            f"{base}/subscriptions/{vm.subscription}/providers/Microsoft.Compute/locations/{loc}/operations/{op}"
            f"?api-version=2024-07-01&monitor=location",
        )

    def _create_managed(
        self, vm: FakeVM, key: str, name: str, body: dict[str, Any]
    ) -> tuple[int, Any, dict[str, str]]:
        if not vm.managed:
            return (
                409,
                _error("OperationNotAllowed", "Managed run commands need VM agent 2.4.0.2 or later."),
                {},
            )
        if vm.power != "running":
            return (
                409,
                _error("OperationNotAllowed", f"Cannot run commands on VM '{vm.name}': it is {vm.power}."),
                {},
            )
        props = body.get("properties") or {}
        script = (props.get("source") or {}).get("script") or ""
        for p in props.get("parameters") or []:
            script = f"export {p['name']}={_sh(p['value'])}\n{script}"
        s = self._start(script, float(props.get("timeoutInSeconds") or 0))
        doc = {
            "id": f"{vm.id}/runCommands/{name}",
            "name": name,
            "type": "Microsoft.Compute/virtualMachines/runCommands",
            "location": vm.location,
            "properties": {**props, "provisioningState": "Creating"},
        }
        with self._lock:
            self._scripts[key] = s
            self._managed[key] = doc
        async_url, _ = self._new_op(vm, lambda: True)
        return 201, doc, {"Azure-AsyncOperation": async_url, "Retry-After": "0"}

    def _get_managed(self, key: str, query: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            doc = self._managed.get(key)
            s = self._scripts.get(key)
            if doc is None or s is None:
                raise _NotFound(key)
            out = dict(doc)
            out["properties"] = {**doc["properties"], "provisioningState": "Succeeded"}
            if "instanceview" in (query.get("$expand") or "").lower():
                view: dict[str, Any] = {
                    "executionState": s.state,
                    "executionMessage": "",
                    "output": s.out.decode("utf-8", "replace"),
                    "error": s.err.decode("utf-8", "replace"),
                    "startTime": _iso(s.started),
                }
                if s.finished():
                    view["exitCode"] = s.exit_code if s.exit_code is not None else -1
                    view["endTime"] = _iso(s.ended or time.time())
                    if s.state == "TimedOut":
                        view["executionMessage"] = "Execution timed out."
                out["properties"]["instanceView"] = view
        return 200, out, {}

    def _delete_managed(self, vm: FakeVM, key: str) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            s = self._scripts.pop(key, None)
            self._managed.pop(key, None)
        if s is None:
            return 204, None, {}
        threading.Thread(target=self._kill, args=(s, "Canceled"), daemon=True).start()
        async_url, loc_url = self._new_op(vm, s.finished)
        return 202, None, {"Azure-AsyncOperation": async_url, "Location": loc_url, "Retry-After": "0"}

    def _action(self, vm: FakeVM, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        if vm.power != "running":
            return (
                409,
                _error("OperationNotAllowed", f"Cannot run commands on VM '{vm.name}': it is {vm.power}."),
                {},
            )
        with self._lock:
            busy = self._action_busy.get(vm.id)
            if busy is not None and not busy.finished():
                return (
                    409,
                    _error(
                        "Conflict",
                        "Run command extension execution is in progress. Please wait for completion before "
                        "invoking a run command.",
                    ),
                    {},
                )
        script = "\n".join(body.get("script") or [])
        for p in body.get("parameters") or []:
            script = f"export {p['name']}={_sh(p['value'])}\n{script}"
        s = self._start(script, 90 * 60.0)  # the action API stops a script after 90 minutes
        with self._lock:
            self._action_busy[vm.id] = s
            self._scripts[f"action:{uuid.uuid4().hex}"] = s

        def result() -> dict[str, Any]:
            out = bytes(s.out[-ACTION_OUTPUT_BYTES:]).decode("utf-8", "replace")
            err = bytes(s.err[-ACTION_OUTPUT_BYTES:]).decode("utf-8", "replace")
            return {
                "value": [
                    {
                        "code": "ProvisioningState/succeeded",
                        "level": "Info",
                        "displayStatus": "Provisioning succeeded",
                        "message": f"Enable succeeded: \n[stdout]\n{out}\n[stderr]\n{err}",
                    }
                ]
            }

        async_url, loc_url = self._new_op(vm, s.finished, result)
        return 202, None, {"Azure-AsyncOperation": async_url, "Location": loc_url, "Retry-After": "0"}

    def _op(self, op_id: str, monitor: str) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            op = self._ops.get(op_id)
            if op is None:
                raise _NotFound(f"operation {op_id}")
            op.polls += 1
        done = bool(op.check())
        if monitor == "location":  # 202 while running; then the result (or 204)
            if not done:
                return 202, None, {"Retry-After": "0"}
            result = op.result() if callable(op.result) else op.result
            return (200, result, {}) if result is not None else (204, None, {})
        doc = {"name": op_id, "status": "Succeeded" if done else "InProgress", "startTime": _iso(time.time())}
        return 200, doc, {} if done else {"Retry-After": "0"}

    # --- scale sets ---------------------------------------------------------------------

    def _vmss(
        self, method: str, sub: str, rg: str, ss: str, members: list[FakeVM], body: Any
    ) -> tuple[int, Any, dict[str, str]]:
        key = f"{rg}/{ss}".lower()
        with self._lock:
            cap = self.capacity.setdefault(key, len(members))
        doc: dict[str, Any] = {
            "id": f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/"
            f"virtualMachineScaleSets/{ss}",
            "name": ss,
            "type": "Microsoft.Compute/virtualMachineScaleSets",
            "location": members[0].location if members else "westeurope",
            "sku": {
                "name": members[0].size if members else "Standard_B2s",
                "tier": "Standard",
                "capacity": cap,
            },
            "properties": {"provisioningState": "Succeeded", "orchestrationMode": "Uniform"},
        }
        if method == "GET":
            return 200, doc, {}
        if method in ("PATCH", "PUT"):
            new = int(((body or {}).get("sku") or {}).get("capacity", cap))
            with self._lock:
                self.capacity[key] = new
                template = (
                    members[0] if members else FakeVM(f"{ss}_0", rg, sub, scale_set=ss, instance_id="0")
                )
                ids = sorted((int(v.instance_id) for v in members), reverse=True)
                while len(ids) > new:
                    gone = str(ids.pop(0))
                    self.vms = [v for v in self.vms if not (v.scale_set == ss and v.instance_id == gone)]
                next_id = (max(ids) + 1) if ids else 0
                while len(ids) < new:
                    self.vms.append(
                        FakeVM(
                            f"{ss}_{next_id}",
                            template.resource_group,
                            sub,
                            template.location,
                            template.size,
                            template.os,
                            tags=dict(template.tags),
                            private_ips=(f"10.1.0.{next_id + 4}",),
                            scale_set=ss,
                            instance_id=str(next_id),
                        )
                    )
                    ids.append(next_id)
                    next_id += 1
            doc["sku"]["capacity"] = new
            vm = template
            async_url, _ = self._new_op(vm, lambda: True)
            return 200, doc, {"Azure-AsyncOperation": async_url, "Retry-After": "0"}
        raise _NotFound(ss)

    def _delete_instances(self, sub: str, rg: str, ss: str, ids: set[str]) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            gone = [v for v in self.vms if v.scale_set.lower() == ss.lower() and v.instance_id in ids]
            if not gone:
                return 400, _error("InvalidParameter", f"instance IDs {sorted(ids)} are not in {ss}"), {}
            self.vms = [v for v in self.vms if v not in gone]
            self.deleted.extend(v.id for v in gone)
            key = f"{rg}/{ss}".lower()
            self.capacity[key] = max(0, self.capacity.get(key, len(gone)) - len(gone))
        async_url, loc_url = self._new_op(gone[0], lambda: True)
        return 202, None, {"Azure-AsyncOperation": async_url, "Location": loc_url, "Retry-After": "0"}


class _NotFound(Exception):
    pass


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def _sh(value: str) -> str:
    return "'" + str(value).replace("'", "'\\''") + "'"
