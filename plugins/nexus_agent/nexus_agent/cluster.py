"""The client side of a cluster: where it is, connecting with mutual TLS, and what agents it has.

The address comes from ``config(cluster="tls://HOST:7400")``, else ``NEXUS_CLUSTER``, else
the cluster of an agent started on this machine (its info file). One Dask ``Client`` per
process and address is kept for the run (the host source and the executor share it):
connecting is paid once, not per command. A refused certificate or an unreachable
coordinator is a :class:`ClusterError` with a message and a fix, never a Dask traceback.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nexus_agent import certs
from nexus_agent.paths import state_dir

#: Seconds to wait for the coordinator when connecting.
CONNECT_TIMEOUT = 10.0

_CLIENTS: dict[str, Any] = {}
_LOCK = threading.Lock()


class ClusterError(Exception):
    """The cluster cannot be used: ``hint`` says how to fix it; ``exit_code`` 3 (connection) or 2."""

    def __init__(self, message: str, hint: str = "", exit_code: int = 3) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code


@dataclass(frozen=True)
class Agent:
    """One agent as the scheduler reports it."""

    name: str
    address: str
    tags: tuple[str, ...] = ()
    slots: int = 1
    running: int = 0
    cpu: float = 0.0
    memory: int = 0
    memory_limit: int = 0
    draining: bool = False
    host: str = ""
    facts: Mapping[str, Any] = field(default_factory=dict)

    @property
    def load(self) -> float:
        """How busy the agent is (lower is better): running tasks per slot, then CPU and memory."""
        mem = self.memory / self.memory_limit if self.memory_limit else 0.0
        return self.running / max(self.slots, 1) + self.cpu / 1000.0 + mem / 10.0

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return {
            "name": self.name,
            "address": self.address,
            "tags": list(self.tags),
            "slots": self.slots,
            "running": self.running,
            "cpu": self.cpu,
            "memory": self.memory,
            "memory_limit": self.memory_limit,
            "draining": self.draining,
            "host": self.host,
        }


def local_agents() -> list[dict[str, Any]]:
    """The info files of agents started on this machine (see nexus_agent.daemon)."""
    found = []
    for path in sorted(glob.glob(os.path.join(state_dir(), "*.json"))):
        try:
            with open(path, encoding="utf-8") as fh:
                found.append(json.load(fh))
        except (OSError, ValueError):
            continue
    return found


def address(config: Mapping[str, Any] | None = None) -> str:
    """The cluster's address (``tls://HOST:PORT``) for this run; ClusterError when none is known."""
    value = (config or {}).get("cluster") or os.environ.get("NEXUS_CLUSTER")
    if not value:
        infos = local_agents()
        coordinators = [i for i in infos if i.get("coordinator")]
        for info in coordinators + infos:
            if info.get("cluster"):
                value = str(info["cluster"])
                break
    if not value:
        raise ClusterError(
            "no agent cluster is configured",
            'set config(cluster="tls://HOST:7400") in the nexusfile or NEXUS_CLUSTER, or start one with '
            "`nexus agent start --coordinator`",
            exit_code=2,
        )
    text = str(value)
    if "://" not in text:
        text = "tls://" + text
    if not text.startswith("tls://"):
        raise ClusterError(
            f"cluster address {value!r} is not a tls:// address",
            "agents only speak mutual TLS: write tls://HOST:7400",
            exit_code=2,
        )
    if ":" not in text.removeprefix("tls://").rsplit("]", 1)[-1]:
        text += ":7400"
    host, _, port = text.removeprefix("tls://").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ClusterError(
            f"cluster address {value!r} is not HOST:PORT (the port must be a number from 1 to 65535)",
            "write tls://HOST:PORT, e.g. tls://hub.lan:7400",
            exit_code=2,
        )
    return text


def client(addr: str, cert_name: str | None = None) -> Any:
    """The process's Dask client for ``addr`` (connected once, with this machine's certificate)."""
    with _LOCK:
        found = _CLIENTS.get(addr)
        if found is not None and found.status == "running":
            return found
    try:
        files = certs.find(cert_name)
    except certs.CertError as exc:
        raise ClusterError(str(exc), exc.hint, exit_code=2) from None
    from nexus_agent.daemon import handshake

    problem = handshake(addr, files, timeout=CONNECT_TIMEOUT)
    if problem:
        raise ClusterError(
            f"cannot connect to the agent cluster at {addr}: {problem}",
            "check that the coordinator runs (`nexus agent status` on it) and that this machine's certificate "
            "comes from the cluster's CA (`nexus agent cert NAME` on the coordinator's machine)",
        )
    from distributed import Client

    quiet_dask_logs()
    try:
        # Results come back through the scheduler: the client never connects to an agent
        # itself (one TLS set-up per agent and run, and agents behind NAT stay reachable).
        made = Client(
            addr,
            security=files.security(),
            set_as_default=False,
            timeout=CONNECT_TIMEOUT,
            direct_to_workers=False,
        )
    except (OSError, TimeoutError) as exc:
        raise ClusterError(
            f"cannot connect to the agent cluster at {addr}: {exc}",
            "check that the coordinator runs and is reachable on that port",
        ) from None
    with _LOCK:
        _CLIENTS[addr] = made
    return made


def quiet_dask_logs() -> None:
    """Keep Dask's own log records out of a run's output (after ``import distributed``).

    A lost coordinator is reported by the executor in one sentence; Dask's client would add
    its reconnection traceback (an ERROR record of ``distributed.client``, whose level Dask's
    logging configuration sets itself, written by the handler Dask puts on ``distributed``).
    """
    import logging

    for name in ("distributed", "distributed.client", "distributed.utils", "distributed.comm"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    for handler in logging.getLogger("distributed").handlers:
        handler.setLevel(logging.CRITICAL)


def agents(connection: Any) -> list[Agent]:
    """Every agent (worker) the scheduler knows, in name order."""
    info = connection.scheduler_info(n_workers=-1)
    return agents_of(info)


def fresh_agents(connection: Any) -> list[Agent]:
    """Like :func:`agents`, asking the scheduler now (not the client's cached view)."""
    info = connection.sync(connection.scheduler.identity, n_workers=-1)
    return agents_of(info)


def agents_of(info: Mapping[str, Any]) -> list[Agent]:
    """The agents of a scheduler's ``identity`` answer, in name order."""
    out = []
    for addr, w in (info.get("workers") or {}).items():
        metrics = w.get("metrics") or {}
        tags = tuple(t for t in str(metrics.get("nexus_tags") or "").split(",") if t)
        out.append(
            Agent(
                name=str(w.get("name", addr)),
                address=str(addr),
                tags=tags,
                slots=int(metrics.get("nexus_slots") or (w.get("resources") or {}).get("nexus-slots") or 1),
                running=int(metrics.get("nexus_running") or 0),
                cpu=float(metrics.get("cpu") or 0.0),
                memory=int(metrics.get("memory") or 0),
                memory_limit=int(w.get("memory_limit") or 0),
                draining=bool(metrics.get("nexus_draining")),
                host=str(w.get("host") or ""),
                facts={
                    "idle_since": float(metrics.get("nexus_idle_since") or 0.0),
                    "relay": bool(metrics.get("nexus_relay")),
                },
            )
        )
    return sorted(out, key=lambda a: a.name)


def describe(found: list[Agent]) -> str:
    """``web-1 [web, prod], db-1 [db]``: the agents and their tags, for error messages."""
    if not found:
        return "none"
    return ", ".join(f"{a.name} [{', '.join(a.tags)}]" if a.tags else f"{a.name} []" for a in found)


def close_all() -> None:
    """Close every client this process opened."""
    with _LOCK:
        made = list(_CLIENTS.values())
        _CLIENTS.clear()
    for c in made:
        with contextlib.suppress(Exception):
            c.close(timeout=2)
