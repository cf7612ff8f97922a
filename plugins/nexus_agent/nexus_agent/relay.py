"""Direct dispatch: a command for a named agent goes over Dask's open streams, not as a Dask task.

A Dask task costs a trip through the scheduler's task machinery and, for its result, a
gather (client → scheduler → worker and back): ~40 ms per command on an idle machine,
which a host's 50 commands in a row pay 50 times. A command for one named agent needs none
of it (the agent is chosen; nothing is to be scheduled), so the client sends it as a
worker-style event on :data:`TOPIC` (``Client.log_event``: the client's open stream to the
scheduler); :class:`Relay`, a scheduler plugin of the coordinator, hands it to that agent
on the scheduler's open stream to it (``Scheduler.worker_send``), and the agent's handler
(:func:`install`) runs it in a thread of its own. Lines and the result come back as the
Dask-task path sends its lines (worker events on the run's topic), in order, so the result
arrives after the last line. The command names the client, which the plugin subscribes
to the run's topic before forwarding: the client's own subscription travels on another
connection (its batched stream) and may arrive after a quick command's result.

Only between parts that have it: the coordinator answers :func:`ready` (asked once per
connection), and agents that install the handlers say so in a heartbeat metric
(:data:`METRIC`); an unknown stream message would make the other side drop the
connection. Anything else (shards, large standard input, older agents) stays a Dask task.
"""

from __future__ import annotations

import contextlib
import threading
from functools import partial
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin

#: The event topic commands for agents travel on (client → coordinator).
TOPIC = "nexus-dispatch"
#: The scheduler plugin's name (what :func:`ready` looks for).
PLUGIN = "nexus-relay"
#: The heartbeat metric of an agent that takes relayed commands.
METRIC = "nexus_relay"
#: Standard input larger than this goes as a Dask task (it would sit in the scheduler's event log).
MAX_INPUT = 64 * 1024
#: The stream operations an agent handles.
RUN_OP = "nexus-run"
SIGNAL_OP = "nexus-signal"


class Relay(SchedulerPlugin):  # type: ignore[misc]
    """Scheduler plugin: hands each command event on :data:`TOPIC` to the agent it names."""

    name = PLUGIN

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler

    def log_event(self, topic: str, msg: Any) -> None:
        """Forward ``{"agent": NAME, "client": ID, "run": SPEC}`` or ``{"agent": NAME, "signal": N, "id": ID}``."""
        if topic != TOPIC or not isinstance(msg, dict):
            return
        name = str(msg.get("agent") or "")
        address = self.scheduler.aliases.get(name)
        ws = self.scheduler.workers.get(address) if address is not None else None
        run = msg.get("run")
        if isinstance(run, dict) and run.get("topic") and msg.get("client"):
            # The client's own subscription travels on its batched stream, this event on an RPC
            # comm: either may arrive first. Subscribe it here, before anything is sent on its
            # topic, or a quick command's start and end could be published to nobody.
            self.scheduler.subscribe_topic(str(run["topic"]), str(msg["client"]))
        if ws is None or not (ws.metrics or {}).get(METRIC):
            if isinstance(run, dict) and run.get("topic"):
                why = f"agent {name} is not in the cluster" if ws is None else f"agent {name} takes no relayed commands"
                self.scheduler.log_event(
                    str(run["topic"]),
                    {"id": run.get("id"), "end": {"status": "unreachable", "reason": why, "lines": 0, "gone": True}},
                )
            return
        if isinstance(run, dict):
            self.scheduler.worker_send(address, {"op": RUN_OP, "spec": run})
        elif msg.get("id") is not None:
            signum = int(msg.get("signal") or 0)
            self.scheduler.worker_send(address, {"op": SIGNAL_OP, "id": str(msg["id"]), "signum": signum})


def ready(dask_scheduler: Any = None) -> bool:
    """True on a scheduler that relays commands (run there with ``Client.run_on_scheduler``)."""
    return dask_scheduler is not None and PLUGIN in getattr(dask_scheduler, "plugins", {})


def install(worker: Any) -> None:
    """Give ``worker`` (before it starts) the handlers for relayed commands and signals."""
    worker.stream_handlers[RUN_OP] = partial(_on_run, worker)
    worker.stream_handlers[SIGNAL_OP] = _on_signal


def _on_run(worker: Any, spec: Any = None, **_: Any) -> None:
    if isinstance(spec, dict):
        threading.Thread(target=_serve, args=(worker, spec), name="nexus-command", daemon=True).start()


def _on_signal(id: Any = None, signum: Any = 0, **_: Any) -> None:
    from nexus_agent.runner import signal_command

    with contextlib.suppress(Exception):
        signal_command(str(id), int(signum))


def _serve(worker: Any, spec: dict[str, Any]) -> None:
    from nexus_agent.runner import run_command

    topic, cmd_id = str(spec.get("topic")), spec.get("id")
    name = str(worker.name)
    try:
        if getattr(worker, "nexus_draining", False):
            result: dict[str, Any] = {"status": "unreachable", "reason": f"agent {name} is draining", "lines": 0,
                                      "gone": True}  # fmt: skip
        else:
            result = run_command(spec, worker=worker)
    except Exception as exc:  # never leave the client waiting without an answer
        result = {"status": "error", "reason": f"{type(exc).__name__} on agent {name}: {exc}", "lines": 0}
    with contextlib.suppress(Exception):
        worker.log_event(topic, {"id": cmd_id, "end": result})
