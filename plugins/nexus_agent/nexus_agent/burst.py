"""Cloud bursting on this machine: the ``local`` cloud provider and the cluster view the core uses.

``cloud("local", count=(0, 4))`` "provisions" agents as processes here, through the same
controller as every real cloud (hard limits, tags, retries, breaker), so that the whole
loop -- scale up on queued work, bootstrap with a certificate issued for the instance,
join, run, idle, terminate, reap after a killed coordinator -- runs for real in tests and
on a laptop.

Each instance is a detached **supervisor** process (``python -m nexus_agent.burst``, its
own session) that writes the instance's record, starts ``nexus agent`` in the foreground
with the instance's own certificate, and ends it after ``max_runtime`` seconds whatever
happens to the coordinator (the self-destruct a cloud instance gets from its user data).
Records live in ``$NEXUS_AGENT_STATE/cloud/ID.json``; ``list`` drops those whose
supervisor is gone.

:class:`AgentCloudCluster` is what the core's cloud controller asks the agent cluster:
certificates for new instances, and demand (shards waiting in this process for a free
agent of a tag, idle time of each agent).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from nexus_core.plugin import (
    CloudCluster,
    CloudDemand,
    CloudError,
    CloudInstance,
    CloudProvider,
    CloudRequest,
    Option,
    pid_alive,
)

from nexus_agent.paths import state_dir
from nexus_agent.plugin import CLOUD_SETTINGS as SETTINGS

#: Seconds between SIGTERM and SIGKILL when a supervisor stops its agent.
STOP_GRACE = 10.0


def records_dir() -> str:
    """Where the local instances' records are."""
    return os.path.join(state_dir(), "cloud")


def _alive(pid: int) -> bool:
    return pid_alive(pid, reap=True)  # a zombie child of this process counts as gone


def _read(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(path: str, data: Mapping[str, Any]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(dict(data), fh)
    os.replace(tmp, path)


class LocalProvider(CloudProvider):
    """Agents as processes on this machine (``cloud("local", ...)``), for tests and laptops."""

    name: ClassVar[str] = "local"
    settings: ClassVar[tuple[Option, ...]] = SETTINGS

    def hourly_price(self, settings: Mapping[str, Any]) -> float | None:
        """The declared ``price`` (default 0: this machine is already paid for)."""
        return float(settings.get("price") or 0.0)

    def describe(self, settings: Mapping[str, Any]) -> str:
        """``agent process on this machine (1 slot)``."""
        return f"agent process on this machine ({settings.get('max_concurrent_tasks') or 1} slot(s))"

    def provision(self, request: CloudRequest) -> CloudInstance:
        """Start the supervisor of one agent process with the certificate issued for it."""
        if not request.cluster:
            raise CloudError(
                "no agent cluster to join",
                'set config(cluster="tls://HOST:7400") or NEXUS_CLUSTER, or start one: nexus agent start --coordinator',
                exit_code=2,
            )
        if not request.credentials:
            raise CloudError("no certificate was issued for the instance", "run `nexus agent init` first", exit_code=2)
        folder = os.path.join(records_dir(), request.name)
        os.makedirs(folder, mode=0o700, exist_ok=True)
        for filename, content in request.credentials.items():
            path = os.path.join(folder, os.path.basename(filename))
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(content)
        tags = [t for t in request.tags.get("nexus:agent-tags", "").split(",") if t]
        launched = time.time()
        price = self.hourly_price(request.settings)
        spec = {
            "id": request.name,
            "name": request.name,
            "tags": dict(request.tags),
            "agent_tags": tags,
            "cluster": request.cluster,
            "slots": int(request.settings.get("max_concurrent_tasks") or 1),
            "max_runtime": request.max_runtime,
            "launched": launched,
            "hourly_price": price,
            "folder": folder,
            "records": records_dir(),
        }
        with open(os.path.join(folder, "supervisor.log"), "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "nexus_agent.burst", json.dumps(spec)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                env={**os.environ, "NEXUS_AGENT_DIR": folder, "NEXUS_AGENT_STATE": os.path.join(folder, "state")},
            )
        record = {**spec, "pid": proc.pid, "state": "running"}
        _write(os.path.join(records_dir(), f"{request.name}.json"), record)
        return _instance(record)

    def list(self, tags: Mapping[str, str]) -> Sequence[CloudInstance]:
        """Instances whose supervisor runs and whose tags include ``tags``."""
        out = []
        folder = records_dir()
        names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
        for filename in names:
            if not filename.endswith(".json"):
                continue
            record = _read(os.path.join(folder, filename))
            pid = int(record.get("pid") or 0)
            if not record or not pid or not _alive(pid):
                _forget(str(record.get("id") or filename[:-5]))
                continue
            have = record.get("tags") or {}
            if all(have.get(k) == v for k, v in tags.items()):
                out.append(_instance(record))
        return out

    def terminate(self, ids: Sequence[str]) -> None:
        """Stop each instance's supervisor (which stops its agent) and forget it."""
        pids = []
        for instance_id in ids:
            record = _read(os.path.join(records_dir(), f"{os.path.basename(instance_id)}.json"))
            pid = int(record.get("pid") or 0)
            if pid and _alive(pid):
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGTERM)
                pids.append(pid)
        deadline = time.monotonic() + STOP_GRACE + 5
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if _alive(p)]
            time.sleep(0.05)
        for pid in pids:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
        for instance_id in ids:
            _forget(os.path.basename(instance_id))


def _instance(record: Mapping[str, Any]) -> CloudInstance:
    return CloudInstance(
        id=str(record["id"]),
        name=str(record["name"]),
        state=str(record.get("state") or "running"),
        instance_type="process",
        launched=float(record.get("launched") or 0.0),
        hourly_price=record.get("hourly_price"),
        tags=dict(record.get("tags") or {}),
        address="127.0.0.1",
        market="on_demand",
        zone=os.uname().nodename,
    )


def _forget(instance_id: str, folder: str = "") -> None:
    folder = folder or records_dir()
    with contextlib.suppress(OSError):
        os.remove(os.path.join(folder, f"{instance_id}.json"))
    shutil.rmtree(os.path.join(folder, instance_id), ignore_errors=True)


# --- the cluster, as the core's cloud controller sees it ----------------------------------------


class AgentCloudCluster(CloudCluster):
    """Certificates and demand for the core's cloud controller (one per command or run)."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        from nexus_agent import cluster

        self.config = config
        try:
            self.address = cluster.address(config)
        except cluster.ClusterError:
            self.address = ""
        self._client: Any = None
        self._waiting_since: float | None = None

    def _connect(self) -> Any:
        from nexus_agent import cluster

        if self._client is None:
            self._client = cluster.client(self.address)
        return self._client

    def credentials(self, name: str) -> Mapping[str, str]:
        """A certificate issued now for instance ``name`` by the cluster's CA (files not kept here)."""
        from nexus_agent import certs

        try:
            files = certs.issue(name)
        except certs.CertError as exc:
            raise CloudError(f"cannot issue a certificate for {name}: {exc}", exc.hint, exit_code=2) from None
        out = {}
        for path, filename in ((files.ca, "ca.pem"), (files.cert, f"{name}.pem"), (files.key, f"{name}-key.pem")):
            with open(path, encoding="utf-8") as fh:
                out[filename] = fh.read()
        for path in (files.cert, files.key):  # the instance has them; this machine need not
            with contextlib.suppress(OSError):
                os.remove(path)
        return out

    def agents(self) -> Mapping[str, tuple[str, ...]]:
        """The agents there now (none when the cluster cannot be reached)."""
        from nexus_agent import cluster

        if not self.address:
            return {}
        try:
            return {a.name: a.tags for a in cluster.fresh_agents(self._connect())}
        except Exception:  # unreachable, refused, or the client closed at the end of the run
            return {}

    def demand(self, tags: Sequence[str]) -> CloudDemand:
        """Shards of this process waiting for an agent with one of ``tags``, and idle agents."""
        from nexus_agent import cluster
        from nexus_agent.demand import BUSY, LAST_USED, WAITING

        now = time.time()
        wanted = set(tags)
        waits = [since for tag, since in list(WAITING.values()) if not wanted or tag in wanted]
        idle: dict[str, float | None] = {}
        if self.address:
            with contextlib.suppress(Exception):  # unreachable, or the client closed as the run ends
                for a in cluster.fresh_agents(self._connect()):
                    since = float(a.facts.get("idle_since") or 0.0)
                    if BUSY.get(a.name, 0) > 0:
                        since = 0.0  # a command of this run is on its way there
                    elif since:
                        since = max(since, LAST_USED.get(a.name, 0.0))
                    idle[a.name] = since or None
        return CloudDemand(waiting=len(waits), oldest_wait=now - min(waits) if waits else 0.0, idle_since=idle)

    def close(self) -> None:
        """Close the process's Dask client if this view opened it (the run's executor is done by now)."""
        from nexus_agent import cluster

        if self._client is not None:
            self._client = None
            cluster.close_all()


# --- the supervisor of one local instance --------------------------------------------------------


def supervise(spec: Mapping[str, Any]) -> int:
    """Run one local instance: its agent in the foreground, ended after ``max_runtime``."""
    name = str(spec["name"])
    stop = {"signal": 0}

    def on_signal(signum: int, _frame: Any) -> None:
        stop["signal"] = signum

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    join = str(spec["cluster"]).removeprefix("tls://")
    argv = [sys.executable, "-m", "nexus_core", "agent", "start", "--foreground", "--name", name, "--cert", name,
            "--join", join, "--max-concurrent-tasks", str(int(spec.get("slots") or 1))]  # fmt: skip
    if spec.get("agent_tags"):
        argv += ["--tags", ",".join(spec["agent_tags"])]
    agent = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    deadline = float(spec["launched"]) + float(spec["max_runtime"])
    why = "agent exited"
    while agent.poll() is None:
        if stop["signal"]:
            why = "terminated"
            break
        if time.time() >= deadline:
            why = f"max_runtime {float(spec['max_runtime']):g} s reached: self-destruct"
            break
        time.sleep(0.2)
    print(f"nexus-burst {name}: {why}", flush=True)
    if agent.poll() is None:
        agent.terminate()
        try:  # terminated: a cloud machine is gone at once, so a short grace only
            agent.wait(3.0 if stop["signal"] else STOP_GRACE)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait()
    _forget(name, str(spec["records"]))  # its own environment points into the instance's folder
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m nexus_agent.burst SPEC_JSON`` (started by :class:`LocalProvider`)."""
    args = sys.argv[1:] if argv is None else argv
    return supervise(json.loads(args[0]))


if __name__ == "__main__":
    sys.exit(main())
