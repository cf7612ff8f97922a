"""Direct dispatch: a command for a named agent goes over Dask's open streams, not as a Dask task.

A Dask task costs a trip through the scheduler's task machinery and, for its result, a
gather (client → scheduler → worker and back): ~40 ms per command on an idle machine,
which a host's 50 commands in a row pay 50 times. A command for one named agent needs none
of it (the agent is chosen; nothing is to be scheduled), so the client sends it on its
open stream to the scheduler as a :data:`DISPATCH_OP` message; :class:`Relay`, a scheduler
plugin of the coordinator, hands it to that agent on the scheduler's open stream to it
(``Scheduler.worker_send``), and the agent's handler (:func:`install`) runs it on a thread
of a small pool the agent keeps (:class:`_Pool`). Lines and the result come back as the
Dask-task path sends its lines (worker events on the run's topic), in order, so the result
arrives after the last line; a quick command's start note and last lines ride with its
result (one event). The client's subscription to the run's topic goes on the same stream
before its first command; the plugin subscribes the client again before forwarding, for
clients of the first relay, which sent commands as events (``Client.log_event`` on
:data:`TOPIC`, an RPC connection that could overtake the subscription).

Only between parts that have it: the coordinator answers :func:`ready` (asked once per
connection: :data:`VERSION`), and agents that install the handlers say so in a heartbeat
metric (:data:`METRIC`); an unknown stream message would make the other side drop the
connection. Anything else (shards, large standard input, older agents) stays a Dask task.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin

log = logging.getLogger("nexus_agent")

#: The event topic commands for agents travel on from clients of the first relay (client → coordinator).
TOPIC = "nexus-dispatch"
#: The stream operation commands for agents travel on (the client's batched stream → coordinator).
DISPATCH_OP = "nexus-dispatch"
#: What :func:`ready` answers: 1, commands as events on :data:`TOPIC` only; 2, also
#: :data:`DISPATCH_OP` on the client's stream.
VERSION = 2
#: The scheduler plugin's name (what :func:`ready` looks for).
PLUGIN = "nexus-relay"
#: The heartbeat metric of an agent that takes relayed commands.
METRIC = "nexus_relay"
#: Standard input larger than this goes as a Dask task (it would sit in the scheduler's event log).
MAX_INPUT = 64 * 1024
#: Let the Dask streams a relayed command travels on write each message as soon as the one
#: before is written (see :func:`prompt`).
PROMPT = True
#: The stream operations an agent handles.
RUN_OP = "nexus-run"
SIGNAL_OP = "nexus-signal"


class Relay(SchedulerPlugin):  # type: ignore[misc]
    """Scheduler plugin: hands each command (:data:`DISPATCH_OP` on a client's stream, or an
    event on :data:`TOPIC`) to the agent it names."""

    name = PLUGIN

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        # Commands on the client's own stream: no RPC round trip per command, and the same
        # stream as its subscription to the run's topic (which then always arrives first).
        scheduler.stream_handlers[DISPATCH_OP] = self.dispatch

    def dispatch(self, client: str = "", agent: str = "", run: Any = None, id: Any = None, signal: Any = 0,
                 **_: Any) -> None:  # fmt: skip
        """The :data:`DISPATCH_OP` stream handler: a command (``run``) or a signal for one (``id``, ``signal``)."""
        msg: dict[str, Any] = {"agent": agent, "client": client}
        if isinstance(run, dict):
            msg["run"] = run
        else:
            msg.update(id=id, signal=signal)
        try:  # an exception here would end the client's stream (and its connection)
            self._forward(msg)
        except Exception:
            log.exception("cannot relay a command to agent %s", agent)

    def log_event(self, topic: str, msg: Any) -> None:
        """Forward ``{"agent": NAME, "client": ID, "run": SPEC}`` or ``{"agent": NAME, "signal": N, "id": ID}``."""
        if topic == TOPIC and isinstance(msg, dict):
            self._forward(msg)

    def _forward(self, msg: dict[str, Any]) -> None:
        name = str(msg.get("agent") or "")
        address = self.scheduler.aliases.get(name)
        ws = self.scheduler.workers.get(address) if address is not None else None
        run = msg.get("run")
        if isinstance(run, dict) and run.get("topic") and msg.get("client"):
            # A client of the first relay sends the command as an event (an RPC comm) and its
            # subscription on its batched stream: either may arrive first. Subscribe it here,
            # before anything is sent on its topic, or a quick command's start and end could be
            # published to nobody. (On the stream, the subscription is already in; a set.)
            self.scheduler.subscribe_topic(str(run["topic"]), str(msg["client"]))
        if ws is None or not (ws.metrics or {}).get(METRIC):
            if isinstance(run, dict) and run.get("topic"):
                why = f"agent {name} is not in the cluster" if ws is None else f"agent {name} takes no relayed commands"
                self.scheduler.log_event(
                    str(run["topic"]),
                    {"id": run.get("id"), "end": {"status": "unreachable", "reason": why, "lines": 0, "gone": True}},
                )
            return
        prompt(self.scheduler.stream_comms.get(address))
        if msg.get("client"):  # its lines and result: the run's topic goes to the client on this stream
            prompt(self.scheduler.client_comms.get(str(msg["client"])))
        if isinstance(run, dict):
            self.scheduler.worker_send(address, {"op": RUN_OP, "spec": run})
        elif msg.get("id") is not None:
            signum = int(msg.get("signal") or 0)
            self.scheduler.worker_send(address, {"op": SIGNAL_OP, "id": str(msg["id"]), "signum": signum})


def prompt(stream: Any) -> None:
    """Let a Dask batched stream (``BatchedSend``) write each message as soon as the previous
    write is done, instead of at most one write per interval (10 ms client → scheduler, 5 ms
    scheduler → worker, 2 ms back).

    The interval pays off for many small task messages; a relayed command is one message each
    way, and commands in a row on one agent waited for it every time (a 10 ms floor per
    command). Messages that come while a write is under way still go together in the next one.
    """
    if PROMPT and stream is not None and getattr(stream, "interval", 0) > 0:
        stream.interval = 0.0


def ready(dask_scheduler: Any = None) -> int:
    """:data:`VERSION` on a scheduler that relays commands, else 0 (run there with ``Client.run_on_scheduler``)."""
    return VERSION if dask_scheduler is not None and PLUGIN in getattr(dask_scheduler, "plugins", {}) else 0


def install(worker: Any) -> None:
    """Give ``worker`` (before it starts) the handlers for relayed commands and signals."""
    worker.stream_handlers[RUN_OP] = partial(_on_run, worker)
    worker.stream_handlers[SIGNAL_OP] = _on_signal
    prompt(getattr(worker, "batched_stream", None))  # lines and results back to the scheduler


#: Threads kept for relayed commands beyond the agent's slots (commands waiting for a slot hold one).
SPARE_THREADS = 32


class _Pool:
    """Daemon threads that run relayed commands, started on demand and then reused.

    A new thread per command cost the agent's event loop a wait at every command:
    ``Thread.start`` blocks until the new thread runs, and the new thread then holds the GIL
    (it starts the shell) while the loop waits to get it back. An idle thread here is woken
    by a queue instead. Not ``concurrent.futures.ThreadPoolExecutor``: its threads are joined
    at interpreter exit, so an agent stopping would wait for its running commands (a
    ``sleep infinity`` forever); these are daemon threads, as the thread per command was.
    At most ``limit`` threads (the agent's slots plus :data:`SPARE_THREADS`): a command beyond
    them waits in the queue instead of at the slot gate, and a cancel reaches it there as
    well (:func:`nexus_agent.runner.signal_command` marks it; it never starts).
    """

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self.jobs: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]]] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.threads = 0
        self.idle = 0  # threads waiting for a job, minus jobs queued for them

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` on an idle thread, a new one if none is idle and the limit allows."""
        self.jobs.put((fn, args))
        with self.lock:
            if self.idle > 0:
                self.idle -= 1
                return
            if self.threads >= self.limit:
                return
            self.threads += 1
        threading.Thread(target=self._work, name="nexus-command", daemon=True).start()

    def _work(self) -> None:
        for _ in range(1 << 62):  # until the process ends (a daemon thread)
            fn, args = self.jobs.get()
            try:
                fn(*args)
            except Exception:
                log.exception("a relayed command failed on this agent")
            with self.lock:
                self.idle += 1


_POOL: list[_Pool | None] = [None]


def _commands() -> _Pool:
    """The agent's threads for relayed commands (made at the first command; called on its loop)."""
    pool = _POOL[0]
    if pool is None:
        from nexus_agent.runner import _GATE_SIZE

        pool = _POOL[0] = _Pool(_GATE_SIZE[0] + SPARE_THREADS)
    return pool


def _on_run(worker: Any, spec: Any = None, **_: Any) -> None:
    if isinstance(spec, dict):
        # Draining is decided when the command arrives, not when a pool thread takes it.
        draining = bool(getattr(worker, "nexus_draining", False))
        _commands().submit(_serve, worker, spec, draining)


def _on_signal(id: Any = None, signum: Any = 0, **_: Any) -> None:
    from nexus_agent.runner import signal_command

    with contextlib.suppress(Exception):
        signal_command(str(id), int(signum))


def _serve(worker: Any, spec: dict[str, Any], draining: bool = False) -> None:
    from nexus_agent.runner import relayed_sender, run_command

    topic, cmd_id = str(spec.get("topic")), spec.get("id")
    name = str(worker.name)
    sender = relayed_sender(spec, worker)
    try:
        if draining:
            result: dict[str, Any] = {"status": "unreachable", "reason": f"agent {name} is draining", "lines": 0,
                                      "gone": True}  # fmt: skip
        else:
            result = run_command(spec, worker=worker, sender=sender)
    except Exception as exc:  # never leave the client waiting without an answer
        result = {"status": "error", "reason": f"{type(exc).__name__} on agent {name}: {exc}",
                  "lines": sender.sent + len(sender.batch)}  # fmt: skip
    # The last lines (and the start note of a quick command) go with the result: one event.
    with contextlib.suppress(Exception):
        worker.log_event(topic, {"id": cmd_id, **sender.rest(), "end": result})
