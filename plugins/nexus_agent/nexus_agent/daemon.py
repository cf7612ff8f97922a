"""The agent process: a Dask worker (and, on the coordinator, the scheduler) in one event loop.

Started by ``nexus agent start`` (in the background: ``python -m nexus_agent.daemon SETTINGS``,
its output in the agent's log file; with ``--foreground`` in the calling process). It
writes an info file (pid, name, tags, address, cluster) once it is ready and removes it
when it stops. When the coordinator goes away the worker closes; the daemon then starts a
new one that waits for the coordinator to come back (every :data:`RECONNECT_SECONDS`), so
agents rejoin a restarted coordinator by themselves. SIGTERM or SIGINT stop it cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

from nexus_agent import certs
from nexus_agent.paths import agent_files
from nexus_agent.runner import SLOTS

#: Seconds between two attempts to rejoin a coordinator that went away.
RECONNECT_SECONDS = 1.0
#: Seconds without a heartbeat after which the coordinator drops an agent (Dask's
#: ``worker-ttl``, 5 minutes by default; agents heartbeat every 0.5-2 s, by cluster size).
AGENT_TIMEOUT = 30.0

log = logging.getLogger("nexus_agent")


@dataclass
class Settings:
    """What ``nexus agent start`` was given (and the TOML file, if any)."""

    name: str
    tags: list[str] = field(default_factory=list)
    port: int = 7400
    host: str = "127.0.0.1"
    join: str = ""
    coordinator: bool = False
    agent: bool = True
    max_concurrent_tasks: int = 4
    max_memory_percent: int = 0
    cert_name: str = ""
    #: Coordinator: seconds without a heartbeat after which an agent is dropped (one that
    #: died without closing its connection: a power cut, a hung machine).
    agent_timeout: float = AGENT_TIMEOUT

    def cert_files(self) -> certs.CertFiles:
        """The certificate to connect with: ``--cert``'s exactly, else the name's (or this machine's)."""
        return certs.find(self.cert_name or self.name, exact=bool(self.cert_name))

    def cluster(self) -> str:
        """The scheduler's address this agent works for."""
        if self.coordinator:
            return f"tls://{self.host}:{self.port}"
        join = self.join
        return join if join.startswith("tls://") else f"tls://{join}"


def _metrics(settings: Settings) -> dict[str, Any]:
    from nexus_agent import relay, runner

    tags = ",".join(settings.tags)
    draining = {"on": False}

    def running(_worker: Any) -> int:
        return len(runner.RUNNING)

    return {
        "nexus_tags": lambda _worker: tags,
        "nexus_running": running,
        "nexus_slots": lambda _worker: settings.max_concurrent_tasks,
        "nexus_idle_since": lambda _worker: 0.0 if runner.RUNNING else runner.IDLE_SINCE[0],
        "nexus_draining": lambda worker: bool(getattr(worker, "nexus_draining", draining["on"])),
        # This agent takes commands relayed by the coordinator (see nexus_agent.relay).
        relay.METRIC: lambda _worker: 1,
    }


async def _worker(settings: Settings, security: Any, death_timeout: float | None) -> Any:
    from distributed import Worker

    from nexus_agent import relay, runner

    slots = max(1, settings.max_concurrent_tasks)
    runner.set_slots(slots)
    # A fraction of the machine's memory (Dask pauses, then restarts, a worker above it).
    memory: Any = settings.max_memory_percent / 100 if settings.max_memory_percent else "auto"
    worker = Worker(
        settings.cluster(),
        name=settings.name,
        nthreads=slots,
        resources={SLOTS: slots},
        security=security,
        metrics=_metrics(settings),
        host=settings.host if settings.coordinator or settings.host != "127.0.0.1" else "127.0.0.1",
        dashboard=False,
        death_timeout=death_timeout,
        memory_limit=memory,
    )
    relay.install(worker)  # before it joins: the scheduler may relay a command at once
    await worker
    return worker


def _health(settings: Settings, scheduler: Any, worker: Any) -> str:
    """The URL of this process's ``/health`` endpoint (Dask's HTTP server: the scheduler's on
    the coordinator, else the worker's, each on a free port), or ''."""
    if scheduler is not None and getattr(scheduler, "http_server", None) is not None:
        return f"http://{settings.host}:{scheduler.http_server.port}/health"
    if worker is not None and getattr(worker, "http_server", None) is not None:
        host = str(worker.address).removeprefix("tls://").rsplit(":", 1)[0]
        return f"http://{host}:{worker.http_server.port}/health"
    return ""


def _write_info(settings: Settings, scheduler: str, ready: bool, health: str = "") -> None:
    _, info, _ = agent_files(settings.name)
    os.makedirs(os.path.dirname(info), exist_ok=True)
    data = {**asdict(settings), "pid": os.getpid(), "cluster": scheduler, "ready": ready, "health": health}
    tmp = info + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    os.replace(tmp, info)


#: Dask settings of an agent process. An idle Dask worker wakes ~170 times a second (its
#: statistical profiler every 10 ms, the event-loop health tick every 20 ms, the memory
#: monitor every 100 ms, host disk counters every 500 ms): ~3.5 % of a core per idle agent,
#: all of two cores for 50 agents on one machine. An agent runs shell commands, not Python
#: work to profile; its load (CPU, memory) is still measured each second for the scheduler.
QUIET: dict[str, Any] = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "500ms",
    "distributed.admin.system-monitor.interval": "1s",
    "distributed.admin.system-monitor.disk": False,
    "distributed.worker.memory.monitor-interval": "500ms",
    # Dask's HTTP server speaks plain HTTP to anyone who reaches it, outside the cluster's
    # mutual TLS: only /health is served (its info pages showed the scheduler's and every
    # agent's logs and tasks to the LAN with --host 0.0.0.0).
    "distributed.scheduler.http.routes": ["distributed.http.health"],
    "distributed.worker.http.routes": ["distributed.http.health"],
}


async def serve(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT; return the exit code."""
    import dask

    dask.config.set(QUIET)
    if settings.coordinator:
        # Checked every agent_timeout seconds; Dask never uses less than 10 heartbeats.
        dask.config.set({"distributed.scheduler.worker-ttl": f"{float(settings.agent_timeout)}s"})
    return await _serve(settings)


async def _serve(settings: Settings) -> int:
    from distributed import Scheduler

    files = settings.cert_files()
    security = files.security()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    scheduler = None
    if settings.coordinator:
        scheduler = Scheduler(
            host=settings.host,
            port=settings.port,
            protocol="tls",
            security=security,
            dashboard=False,
            # Dask's HTTP server (``/health`` for monitoring) on a free port of the same address.
            dashboard_address=f"{settings.host}:0",
        )
        from nexus_agent.relay import Relay

        scheduler.add_plugin(Relay(scheduler))
        await scheduler
    address = settings.cluster()
    if not settings.coordinator:
        problem = await asyncio.to_thread(handshake, address, files)
        if problem:
            print(f"error: cannot join the cluster at {address}: {problem}", file=sys.stderr, flush=True)
            return 3
    try:
        worker = await _worker(settings, security, None) if settings.agent else None
    except Exception as exc:  # Dask's own refusal of the name, said as one line
        if "name taken" not in _causes(exc):
            raise
        print(
            f"error: an agent named {settings.name} is already in the cluster at {address}\n"
            "  give this one another name (--name), or stop the other first",
            file=sys.stderr,
            flush=True,
        )
        return 2
    _write_info(settings, address, True, _health(settings, scheduler, worker))
    print(f"agent {settings.name} ready on {address}", flush=True)
    try:
        for _ in range(1 << 62):
            waiters = [asyncio.ensure_future(stop.wait())]
            if worker is not None:
                waiters.append(asyncio.ensure_future(worker.finished()))
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()
            if stop.is_set():
                break
            # The worker closed (coordinator gone): join again when it is back.
            log.warning("agent %s lost the coordinator at %s; rejoining", settings.name, address)
            worker = None
            for _ in range(1 << 62):
                if stop.is_set():
                    break
                try:
                    worker = await asyncio.wait_for(_worker(settings, security, None), timeout=10)
                    break
                except (TimeoutError, OSError) as exc:
                    log.warning("rejoin failed: %s", str(exc) or f"{type(exc).__name__} (no answer within 10 s)")
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), RECONNECT_SECONDS)
            if worker is not None:
                log.warning("agent %s rejoined %s", settings.name, address)
                _write_info(settings, address, True, _health(settings, scheduler, worker))  # a new port
    finally:
        from nexus_agent import runner

        # Its commands stop with the agent: left running, one would go on alone (its output
        # and end lost) while the client moves its task to another agent.
        await asyncio.to_thread(runner.stop_all, STOP_GRACE)
        if worker is not None:
            await worker.close(timeout=5)
        if scheduler is not None:
            await scheduler.close()
        pid, info, _ = agent_files(settings.name)
        for path in (pid, info):
            with contextlib.suppress(OSError):
                os.remove(path)
    return 0


#: Seconds a stopping agent's commands get between SIGTERM and SIGKILL.
STOP_GRACE = 5.0


def _causes(exc: BaseException) -> str:
    """The messages of ``exc`` and of the exceptions behind it, one per line."""
    found: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(found) < 10:
        seen.add(id(current))
        found.append(str(current))
        current = current.__cause__ or current.__context__
    return "\n".join(found)


def handshake(address: str, files: certs.CertFiles, timeout: float = 5.0) -> str:
    """'' when a mutual-TLS handshake with ``address`` succeeds, else why it failed (one line)."""
    import socket
    import ssl

    hostport = address.removeprefix("tls://")
    host, _, port = hostport.rpartition(":")
    host = host.strip("[]")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(files.ca)
    ctx.load_cert_chain(files.cert, files.key)
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as raw, ctx.wrap_socket(raw) as tls:
            # TLS 1.3: the server checks our certificate after the handshake; a read
            # shows whether it refused it (an alert) or is waiting for us to talk.
            tls.settimeout(0.3)
            with contextlib.suppress(TimeoutError):
                tls.recv(1)
    except ssl.SSLCertVerificationError as exc:
        return (
            f"the coordinator's certificate is not from this cluster's CA ({exc.verify_message}); "
            "this machine's certificates belong to another cluster"
        )
    except ssl.SSLError as exc:
        text = str(exc)
        if "unknown ca" in text or "certificate" in text or "decrypt error" in text.lower().replace("_", " "):
            return (
                "the coordinator refused this machine's certificate: it was not issued by the cluster's CA "
                f"({exc.reason or text})"
            )
        return f"TLS failed: {exc.reason or text}"
    except (OSError, ValueError) as exc:
        return f"cannot connect: {exc}"
    return ""


def main(argv: list[str] | None = None) -> int:
    """``python -m nexus_agent.daemon SETTINGS_JSON``."""
    args = sys.argv[1:] if argv is None else argv
    settings = Settings(**json.loads(args[0]))
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    pid, _, _ = agent_files(settings.name)
    os.makedirs(os.path.dirname(pid), exist_ok=True)
    with open(pid, "w", encoding="utf-8") as fh:
        fh.write(str(os.getpid()))
    try:
        return asyncio.run(serve(settings))
    except certs.CertError as exc:
        print(f"error: {exc}\n  {exc.hint}", file=sys.stderr, flush=True)
        return 2
    except OSError as exc:
        print(f"error: agent {settings.name} cannot start: {exc}", file=sys.stderr, flush=True)
        return 3


if __name__ == "__main__":
    sys.exit(main())
