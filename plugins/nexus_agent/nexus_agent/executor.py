"""The ``agent`` executor: commands of ``agent://NAME`` hosts run on that agent's machine.

A command for one named agent is relayed (:mod:`nexus_agent.relay`): sent on the client's
stream to the coordinator, which hands it to the agent on its stream; the agent runs it
(:func:`nexus_agent.runner.run_command`) within its ``max_concurrent_tasks`` slots. Anything
else (a shard, large standard input, an older agent or coordinator) is one Dask task
restricted to the agents allowed (``workers=[...]``, one ``nexus-slots`` resource). Output
lines come back while the command runs as worker events on one topic per run; the calling
thread hands them to the engine. A cancel level is
forwarded to the agent as a signal to the command's process group; a timeout is enforced
on the agent (SIGTERM, then SIGKILL) and, as a backstop, here.

A host that stands for a shard (``facts["nexus_pool"]``: the agents a selector allowed)
runs on whichever of them the scheduler picks: more shards than agents queue, and a
shard whose agent dies is run again on another one by the scheduler. While the run bursts
to a cloud (``cloud_burst``) a shard of ``tagged(TAG)`` waits here instead, for any agent
with the tag (those that joined after planning included), and stays on the agent its first
command claimed.

A host a selector picked (``tagged``, ``any_of``, ...; not ``agent://NAME`` written by
hand) whose agent leaves the cluster mid-task moves, when the task is idempotent, to the
least loaded other agent the selector allows: the task's commands so far run there again,
then the rest of the run's commands for that host. Commands on one agent carry the core's
status-file wrapper (resume asks the agent); file operations are Dask tasks on the agent
(:func:`nexus_agent.runner.write_chunk` and its siblings), 1 MiB at a time.

Before a command is submitted, the agent must be known to the scheduler and not
draining: a task restricted to a worker that does not exist would wait forever
(dask/distributed#8256), so it fails at once instead, naming the agents there are.
"""

from __future__ import annotations

import contextlib
import errno
import queue
import signal
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from nexus_core.plugin import (
    INTERRUPTED,
    Cancel,
    Capabilities,
    Command,
    CommandResult,
    Executor,
    ExecutorContext,
    Host,
)

from nexus_agent import cluster
from nexus_agent.demand import BUSY, LAST_USED, WAITING
from nexus_agent.runner import SLOTS

TAIL_LINES = 20
#: Bytes per Dask task of a file operation (they travel through the coordinator).
FILE_CHUNK = 1 << 20
#: Seconds between checks that a pinned agent is still there while its command runs.
ALIVE_CHECK_SECONDS = 1.0
#: Seconds after which the executor's view of the agents is too old to use without asking.
STALE_VIEW_SECONDS = 5.0
#: Seconds to wait for output lines still on their way once the result is in.
LATE_LINES_SECONDS = 2.0

#: How long a shard waits for a free agent when its command has no timeout.
BURST_WAIT_SECONDS = 3600.0

_SIGNALS = {Cancel.INTERRUPT: signal.SIGINT, Cancel.TERMINATE: signal.SIGTERM, Cancel.KILL: signal.SIGKILL}


def _relays(client: Any) -> int:
    """How the cluster's coordinator relays commands to named agents (``relay.VERSION``; 0: it
    does not), asked once per connection."""
    from nexus_agent import relay

    try:
        return int(client.run_on_scheduler(relay.ready))
    except Exception:  # an older coordinator, or one that cannot say: Dask tasks only
        return 0


#: How to write an agent host, for :func:`_address_problem`'s message.
ADDRESS_HINT = '- write agent://NAME; to run a command as another user: run(..., user="NAME")'


def _address_problem(host: Host) -> str:
    """Why ``host`` is no agent address ('' when it is one): an agent takes no user or port
    (the commands run as the agent's user; ``agent://bob@pi-1`` would not run them as bob)."""
    if host.user is None and host.port is None:
        return ""
    given = f"{host.user}@" if host.user else ""
    given += host.short_label
    return f"agent://{given}: an agent host takes no user or port (its commands run as the agent's user)"


def _movable(host: Host) -> bool:
    """True for a host a selector picked (not one named by hand): its work may move to another agent."""
    return bool(host.facts.get("selector")) and not host.facts.get("selector_name")


def _task_of(marker_key: str) -> str:
    """The task-and-host part of a status marker's key (``nexus_core.markers.key`` without its index)."""
    return marker_key.rsplit(".", 1)[0]


def _send_now(client: Any, msg: dict[str, Any]) -> None:
    """On the client's event loop: ``msg`` onto its stream to the scheduler (a gone stream: the
    executor's check of the agents, once a second, says the coordinator stopped answering)."""
    with contextlib.suppress(Exception):
        client.scheduler_comm.send(msg)


class AgentExecutor(Executor):
    """Runs commands on agents of a Dask cluster joined with mutual TLS."""

    name = "agent"
    capabilities = Capabilities(stdin=True, file_transfer=True)
    #: Commands on one agent record pid and exit code in the run's status file on the agent's
    #: machine (the core's wrapper, :mod:`nexus_core.markers`): a resume asks the agent what
    #: became of a command that was running, instead of running it again. Not for shards (the
    #: scheduler picks their agent: a later probe could ask another machine).
    supports_markers = True

    def _warn(self, message: str) -> None:
        """A warning of the run (shown in every output mode, not only with -v)."""
        from nexus_core.plugin import Log

        self.context.emit(Log(run_id=self.context.run_id, level="warning", message=message, source="nexus-agent"))

    @classmethod
    def host_problem(cls, host: Host) -> str:
        """An agent host takes no user or port: said when the run is planned (exit 2)."""
        wrong = _address_problem(host)
        return f"{wrong}\n{ADDRESS_HINT}" if wrong else ""

    def __init__(self, context: ExecutorContext) -> None:
        super().__init__(context)
        self._lock = threading.Lock()
        self._client: Any = None
        self._topic = f"nexus-out-{uuid.uuid4().hex}"
        self._queues: dict[str, queue.SimpleQueue[dict[str, Any]]] = {}
        self._error: cluster.ClusterError | None = None
        self._inflight: dict[str, int] = {}
        #: Cloud bursting: the agent each shard's commands run on (id of the shard's host ->
        #: (host, agent)), so that a shard's second command finds what its first one left.
        self._shard_agent: dict[int, tuple[Host, str]] = {}
        self._relay = 0  # how the coordinator relays commands to named agents (nexus_agent.relay.VERSION)
        self._view: dict[str, cluster.Agent] = {}
        self._view_at = float("-inf")
        self._view_lock = threading.Lock()
        self._view_refreshing = False  # a refresh of the view is under way on the client's loop
        self._view_error: Exception | None = None  # why the last refresh failed
        self._sign: Any = None
        #: Hosts a selector picked whose agent was lost, and the agent their work moved to
        #: (host key -> agent name); see :meth:`_move`.
        self._moved: dict[Any, str] = {}
        #: The commands run so far on each host a selector picked, by task ((host key, the
        #: markers' task prefix) -> marker key -> command): when the host moves to another
        #: agent, those of the task under way run there again first.
        self._history: dict[tuple[Any, str], dict[str, Command]] = {}

    @staticmethod
    def cloud_cluster(config: Any) -> Any:
        """The cluster cloud instances join, for the core's cloud controller (see nexus_agent.burst)."""
        from nexus_agent.burst import AgentCloudCluster

        return AgentCloudCluster(config)

    # --- connection -------------------------------------------------------------------------

    def _stamp(self, cmd_id: str, cmd: str) -> dict[str, str] | None:
        """This client's certificate and its signature over the command: what an agent's policy checks."""
        from nexus_agent import certs
        from nexus_agent.runner import identity_payload

        try:
            if self._sign is None:  # the key is read once per run, not per command
                self._sign = certs.signer(certs.find())
            return self._sign(identity_payload(cmd_id, cmd))  # type: ignore[no-any-return]
        except (certs.CertError, OSError, ValueError):
            return None  # an agent with a policy refuses the command, saying why

    def prepare(self, hosts: Sequence[Host]) -> None:
        """Connect to the cluster once, before the first command (errors surface per command).

        The run's audit records from here on name this client's certificate identity (the
        one the agents verify on every command), with ``user_via: "certificate"``.
        """
        from nexus_core.plugin import set_identity

        from nexus_agent import certs

        with contextlib.suppress(certs.CertError, OSError, ValueError):
            name = certs.common_name(certs.find())
            if name:
                set_identity(name, "certificate")
        with contextlib.suppress(cluster.ClusterError):
            self._connect()

    def _connect(self) -> Any:
        with self._lock:
            if self._client is not None:
                return self._client
            if self._error is not None:
                raise self._error
            try:
                client = cluster.client(cluster.address(self.context.config))
            except cluster.ClusterError as exc:
                self._error = exc
                raise
            client.subscribe_topic(self._topic, self._on_event)
            self._relay = _relays(client)
            self._client = client
            return client

    def _on_event(self, event: Any) -> None:
        msg = event[1] if isinstance(event, (tuple, list)) and len(event) == 2 else event
        if not isinstance(msg, dict):
            return
        q = self._queues.get(str(msg.get("id")))
        if q is not None:
            q.put(msg)

    # --- commands ---------------------------------------------------------------------------

    def run(
        self,
        host: Host,
        command: Command,
        on_output: Any,
        cancel: Cancel,
        timeout: float,
    ) -> CommandResult:
        """Run ``command`` on the agent ``host`` names (or on one of a shard's agents)."""
        result = self._run(host, command, on_output, cancel, timeout)
        if result.status == "unreachable" and not result.hint:
            # `nexus preflight` (the generic advice) does not look at agents: the cluster's view does.
            return replace(result, hint="- see the cluster's agents and their state: nexus agent status")
        return result

    def _run(
        self,
        host: Host,
        command: Command,
        on_output: Any,
        cancel: Cancel,
        timeout: float,
    ) -> CommandResult:
        wrong = _address_problem(host)
        if wrong:
            return CommandResult("error", None, 0.0, wrong, retryable=False, hint=ADDRESS_HINT)
        started = time.monotonic()
        try:
            client = self._connect()
        except cluster.ClusterError as exc:
            return CommandResult("unreachable", None, 0.0, exc.message, hint="- " + exc.hint if exc.hint else "")
        pool = tuple(str(n) for n in (host.facts.get("nexus_pool") or ()))
        wanted = pool or (host.name,)
        claimed = ""
        pool_tag = host.facts.get("nexus_pool_tag")
        if pool and pool_tag and self.context.options.get("cloud_burst"):
            # Cloud bursting: the shard waits here (where the autoscaler sees it) until an agent
            # with the tag has a free slot, agents that joined after planning included.
            earlier = self._shard_agent.get(id(host))
            found = self._free_agent(client, str(pool_tag), cancel, timeout, earlier[1] if earlier else "")
            if isinstance(found, CommandResult):
                return found
            claimed = found
            self._shard_agent[id(host)] = (host, found)
            wanted = (found,)
        elif not pool:
            wanted = (self._moved.get(host.key, host.name),)
        movable = not pool and _movable(host)
        if movable:
            self._remember(host, command)
        try:
            result = self._on(client, host, command, on_output, cancel, timeout, wanted, started)
        finally:
            if claimed:
                with self._lock:
                    self._inflight[claimed] -= 1
        if movable and result.status == "unreachable" and not cancel.requested:
            return self._move(client, host, command, on_output, cancel, timeout, wanted[0], result)
        return result

    def _on(
        self,
        client: Any,
        host: Host,
        command: Command,
        on_output: Any,
        cancel: Cancel,
        timeout: float,
        wanted: Sequence[str],
        started: float,
    ) -> CommandResult:
        """Run ``command`` on one of ``wanted`` (the agents' busy counts kept for the autoscaler)."""
        for name in wanted:
            BUSY[name] = BUSY.get(name, 0) + 1
        try:
            return self._submit(client, host, command, on_output, cancel, timeout, wanted, started)
        finally:
            with self._lock:
                for name in wanted:
                    BUSY[name] = BUSY.get(name, 1) - 1
                    LAST_USED[name] = time.time()

    # --- an agent lost under a host a selector picked -----------------------------------------

    def _remember(self, host: Host, command: Command) -> None:
        """Keep ``command`` among those of its task on ``host`` (by its marker: task, host, index)."""
        marker = command.marker
        if marker is None:
            return
        with self._lock:
            self._history.setdefault((host.key, _task_of(marker.key)), {})[marker.key] = command

    def _move(
        self,
        client: Any,
        host: Host,
        command: Command,
        on_output: Any,
        cancel: Cancel,
        timeout: float,
        agent: str,
        failed: CommandResult,
    ) -> CommandResult:
        """After an unreachable result on ``agent``: when it left the cluster (or drains) and the
        task is idempotent, run the task's commands so far again on another agent the host's
        selector allows (the least loaded), and keep the host there for the rest of the run.
        Otherwise ``failed``, saying why the work did not move."""
        from nexus_agent import source

        try:
            found = cluster.fresh_agents(client)
        except Exception:
            return failed  # the coordinator does not answer: nothing to move to
        if any(a.name == agent and not a.draining for a in found):
            return failed  # the agent is there: unreachable for another reason
        if not command.idempotent:
            return replace(failed, reason=f"{failed.reason}; not run again on another agent: the task is not "
                           "idempotent (idempotent=False)")  # fmt: skip
        other = source.replacement(found, host.facts, exclude=agent)
        if other is None:
            selector = host.facts.get("selector") or "its selector"
            return replace(failed, reason=f"{failed.reason}; no other agent matches {selector} to run it again")
        marker = command.marker
        with self._lock:
            self._moved[host.key] = other.name
            done = self._history.get((host.key, _task_of(marker.key)), {}) if marker is not None else {}
            again = [c for key, c in done.items() if marker is None or key != marker.key]
        line = f"[nexus] agent {agent} was lost; running again on {other.name}"
        on_output("stderr", line)
        self._warn(f"{host.label}: agent {agent} was lost; running again on {other.name}")
        for i, earlier in enumerate(again, 1):
            on_output("stderr", f"[nexus] {other.name}: the task's command {i} of {len(again)} before this one")
            limit = float(earlier.timeout) if earlier.timeout and earlier.timeout > 0 else 0.0
            redone = self._on(client, host, earlier, on_output, cancel, limit, (other.name,), time.monotonic())
            if not redone.ok:
                return replace(redone, reason=f"running the task's earlier command again on {other.name}: "
                               f"{redone.reason}")  # fmt: skip
        return self._on(client, host, command, on_output, cancel, timeout, (other.name,), time.monotonic())

    # --- files (nexus_core.transfer builds puts, gets, templates and artifacts on these) ------

    def _file_agent(self, host: Host) -> str:
        """The agent a file operation on ``host`` goes to."""
        if host.facts.get("nexus_pool"):
            earlier = self._shard_agent.get(id(host))
            if earlier is not None:
                return earlier[1]
            raise OSError(
                errno.EINVAL,
                f"{host.name} is a shard: it runs on whichever agent is free, so files cannot follow it; "
                "copy files in a task on the agents (agent://NAME or a selector without parallel='sharded')",
            )
        return self._moved.get(host.key, host.name)

    def _on_agent(self, host: Host, cancel: Cancel | None, fn: Any, *args: Any) -> Any:
        """Call ``fn(*args)`` on the agent of ``host`` (a Dask task there) and return its value.

        The agent's ``OSError`` comes back as it was raised; the agent or the cluster gone is a
        ``ConnectionError``; a cancel at INTERRUPT or above is :class:`TransferInterrupted`.
        """
        from nexus_core.plugin import TransferInterrupted

        wrong = _address_problem(host)
        if wrong:
            raise OSError(errno.EINVAL, wrong)
        try:
            client = self._connect()
        except cluster.ClusterError as exc:
            raise ConnectionError(errno.ECONNREFUSED, exc.message) from None
        name = self._file_agent(host)
        problem = self._check_agents(client, Host(name, transport="agent"), (name,))
        if problem is not None:
            raise ConnectionError(errno.EHOSTUNREACH, problem.reason)
        future = client.submit(fn, *args, key=f"nexus-file-{uuid.uuid4().hex}", workers=[name],
                               allow_other_workers=False, pure=False)  # fmt: skip
        try:
            for _ in range(1 << 62):
                if cancel is not None and cancel.level >= Cancel.INTERRUPT:
                    future.cancel()
                    raise TransferInterrupted("the run is stopping")
                try:
                    return future.result(timeout=ALIVE_CHECK_SECONDS)
                except TimeoutError:
                    if future.status == "error":  # the function's own exception, not our wait
                        raise
                lost = self._lost(client, (name,))
                if lost is not None:
                    future.cancel()
                    raise ConnectionError(errno.EHOSTUNREACH, lost)
        finally:
            future.release()
        raise AssertionError("unreachable")

    def send_file(
        self,
        host: Host,
        local_path: str,
        remote_path: str,
        offset: int = 0,
        progress: Any = None,
        cancel: Cancel | None = None,
    ) -> int:
        """Write ``local_path`` (from ``offset`` on) into ``remote_path`` on the agent, a chunk at a time."""
        from nexus_agent.runner import write_chunk

        sent = 0
        with open(local_path, "rb") as fh:
            fh.seek(offset)
            for _ in range(1 << 62):
                data = fh.read(FILE_CHUNK)
                if not data and (sent or offset):
                    break
                self._on_agent(host, cancel, write_chunk, remote_path, offset + sent, data)
                sent += len(data)
                if progress is not None:
                    progress(offset + sent)
                if len(data) < FILE_CHUNK:
                    break
        return sent

    def receive_file(
        self,
        host: Host,
        remote_path: str,
        local_path: str,
        offset: int = 0,
        progress: Any = None,
        cancel: Cancel | None = None,
    ) -> int:
        """Append ``remote_path`` on the agent (from ``offset`` on) to ``local_path``, a chunk at a time."""
        from nexus_agent.runner import read_chunk

        got = 0
        with open(local_path, "ab") as fh:
            for _ in range(1 << 62):
                data = self._on_agent(host, cancel, read_chunk, remote_path, offset + got, FILE_CHUNK)
                fh.write(data)
                got += len(data)
                if progress is not None:
                    progress(offset + got)
                if len(data) < FILE_CHUNK:
                    break
        return got

    def file_size(self, host: Host, remote_path: str) -> int | None:
        """The size of ``remote_path`` on the agent, None when there is no such file."""
        from nexus_agent.runner import file_size

        return self._on_agent(host, None, file_size, remote_path)  # type: ignore[no-any-return]

    def remove_markers(self, host: Host, run_id: str) -> None:
        """Remove the run's status files from the agent (shards keep none)."""
        if not host.facts.get("nexus_pool"):
            super().remove_markers(host, run_id)

    def _free_agent(
        self, client: Any, tag: str, cancel: Cancel, timeout: float, prefer: str = ""
    ) -> str | CommandResult:
        """The name of an agent with ``tag`` and a free slot (claimed), waiting for one as long as needed;
        only ``prefer`` (where the shard's earlier commands ran) while that agent is there."""
        key = uuid.uuid4().hex
        WAITING[key] = (tag, time.time())
        deadline = time.monotonic() + (timeout if timeout > 0 else BURST_WAIT_SECONDS)
        try:
            while time.monotonic() < deadline:
                if cancel.requested:
                    return CommandResult("interrupted", None, 0.0, INTERRUPTED)
                try:
                    found = cluster.agents(client)
                except Exception as exc:  # the scheduler gone: say so, as elsewhere
                    return CommandResult("unreachable", None, 0.0, f"the agent cluster does not answer: {exc}")
                usable = [a for a in found if tag in a.tags and not a.draining]
                if prefer and any(a.name == prefer for a in usable):
                    usable = [a for a in usable if a.name == prefer]
                with self._lock:
                    free = [a for a in usable if self._inflight.get(a.name, 0) < max(a.slots, 1)]
                    if free:
                        best = min(free, key=lambda a: (self._inflight.get(a.name, 0) / max(a.slots, 1), a.load))
                        self._inflight[best.name] = self._inflight.get(best.name, 0) + 1
                        return best.name
                cancel.sleep(0.2)
            why = f"no agent tagged {tag!r} had a free slot in time"
            hint = "- raise the cloud's count maximum or the task's timeout"
            return CommandResult("unreachable", None, 0.0, why, hint=hint, retryable=False)
        finally:
            WAITING.pop(key, None)

    def _submit(
        self,
        client: Any,
        host: Host,
        command: Command,
        on_output: Any,
        cancel: Cancel,
        timeout: float,
        wanted: Sequence[str],
        started: float,
    ) -> CommandResult:
        problem = self._check_agents(client, host, wanted)
        if problem is not None:
            return problem
        if cancel.requested:
            return CommandResult("interrupted", None, 0.0, INTERRUPTED)
        cmd_id = uuid.uuid4().hex
        q: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._queues[cmd_id] = q
        spec = {
            "id": cmd_id,
            "topic": self._topic,
            "cmd": command.cmd,
            "sudo": command.sudo,
            "user": command.user,
            "env": [[k, str(v)] for k, v in command.env],
            "cwd": command.cwd,
            "timeout": timeout,
            "input": command.input,
            "identity": self._stamp(cmd_id, command.cmd),
        }
        marker = command.marker
        if marker is not None and not host.facts.get("nexus_pool"):
            spec["marker"] = [marker.run_id, marker.key, marker.host]
        try:
            return self._wait(client, host, spec, on_output, cancel, timeout, wanted, started, q)
        finally:
            self._queues.pop(cmd_id, None)

    def _dispatch(self, client: Any, msg: dict[str, Any]) -> str:
        """Send a relayed command or signal (``msg``) to the coordinator; why it cannot be sent, or "".

        On the client's own stream to the scheduler (``relay.DISPATCH_OP``): no round trip per
        command, several commands at once go in one write, and the run's topic subscription,
        sent on the same stream when the run connected, is always in before them. A
        coordinator of the first relay takes them as events (``Client.log_event``, one RPC each).
        """
        from nexus_agent import relay

        try:
            if self._relay >= 2:
                if client.status != "running" or client.scheduler_comm is None:
                    return f"the agent cluster does not answer (the client is {client.status})"
                relay.prompt(client.scheduler_comm)  # again after a reconnection (a new stream)
                client.loop.add_callback(_send_now, client, {"op": relay.DISPATCH_OP, **msg})
            else:
                client.log_event(relay.TOPIC, {**msg, "client": client.id})
        except Exception as exc:  # the coordinator went away between two commands
            return f"the agent cluster does not answer: {exc}"
        return ""

    def _relayed(self, host: Host, data: str | None, wanted: Sequence[str]) -> bool:
        """True when this command goes to its agent directly (nexus_agent.relay), not as a Dask task."""
        from nexus_agent import relay

        if not self._relay or host.facts.get("nexus_pool") or len(wanted) != 1:
            return False  # a shard: the scheduler picks the agent and reruns it if that agent dies
        if data is not None and len(data) > relay.MAX_INPUT:
            return False
        agent = self._view.get(wanted[0])
        return agent is not None and bool(agent.facts.get("relay"))

    def _wait(
        self,
        client: Any,
        host: Host,
        spec: dict[str, Any],
        on_output: Any,
        cancel: Cancel,
        timeout: float,
        wanted: Sequence[str],
        started: float,
        q: queue.SimpleQueue[dict[str, Any]],
    ) -> CommandResult:
        """Send the command (relayed, or as a Dask task) and hand its lines on until it ends."""
        cmd_id = str(spec["id"])
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        received = 0
        running_on = ""
        running_at = ""  # the agent's Dask address (Client.run needs it)
        future: Any = None
        result: dict[str, Any] | None = None
        sent_on = None  # the client's stream to the scheduler the relayed command went on
        if self._relayed(host, spec["input"], wanted):
            # Lines, then the result, come back in order on the run's topic: no gather.
            sent_on = getattr(client, "scheduler_comm", None)
            problem = self._dispatch(client, {"agent": wanted[0], "run": spec})
            if problem:
                return CommandResult("unreachable", None, time.monotonic() - started, problem, retryable=False)
        else:
            from nexus_agent.runner import run_command

            future = client.submit(
                run_command,
                spec,
                key=f"nexus-{cmd_id}",
                workers=list(wanted),
                allow_other_workers=False,
                resources={SLOTS: 1},
                pure=False,
            )
            # Wake the loop below as soon as the result is in (not at its next poll).
            future.add_done_callback(lambda _f: q.put({"id": cmd_id, "done": True}))
        level_sent = 0
        next_check = time.monotonic() + ALIVE_CHECK_SECONDS
        # A backstop to the agent's own timeout, which counts from the command's start there.
        backstop = started + timeout + 30 if timeout > 0 else float("inf")

        def stop(signum: int) -> None:
            if future is None:  # relayed: the agent also drops a command not started yet
                self._dispatch(client, {"agent": running_on or wanted[0], "id": cmd_id, "signal": int(signum)})
            elif running_at:
                self._signal(client, running_at, cmd_id, signum)

        try:
            for _ in range(1 << 62):
                try:
                    msg: dict[str, Any] | None = q.get(timeout=0.25)
                except queue.Empty:
                    msg = None
                while msg is not None:
                    if msg.get("start"):
                        if running_on and running_on != msg.get("agent"):
                            line = f"[nexus] agent {running_on} was lost; running again on {msg.get('agent')}"
                            tail.append(line)
                            on_output("stderr", line)
                            self._warn(line.removeprefix("[nexus] "))
                        running_on = str(msg.get("agent") or "")
                        running_at = str(msg.get("worker") or "")
                        if timeout > 0:
                            backstop = time.monotonic() + timeout + 30
                    for stream, line in msg.get("lines") or ():
                        received += 1
                        tail.append(line)
                        on_output(stream, line)
                    if isinstance(msg.get("end"), dict):
                        result = msg["end"]
                    try:
                        msg = q.get_nowait()
                    except queue.Empty:
                        msg = None
                if result is not None or (future is not None and future.done()):
                    break
                level = cancel.level
                if level > level_sent:
                    level_sent = level
                    if level in _SIGNALS:
                        with contextlib.suppress(Exception):
                            stop(_SIGNALS[level])
                    if level >= Cancel.INTERRUPT and not running_on and future is not None:
                        future.cancel()
                        return CommandResult("interrupted", None, time.monotonic() - started, "not started: "
                                             "the run is stopping")  # fmt: skip
                    # Relayed: the agent answers either way (not started, or stopped), and a
                    # quick command's start note comes with its result, so wait for that.
                now = time.monotonic()
                if now >= backstop:
                    if future is not None:
                        future.cancel()
                    else:
                        with contextlib.suppress(Exception):
                            stop(signal.SIGKILL)
                    return CommandResult("timeout", None, now - started, f"timed out after {timeout:.3g}s",
                                         tuple(tail))  # fmt: skip
                if now >= next_check:
                    next_check = now + ALIVE_CHECK_SECONDS
                    lost = self._lost(client, wanted if not running_on or future is not None else (running_on,))
                    if lost is None and sent_on is not None and getattr(client, "scheduler_comm", None) is not sent_on:
                        # The client connected again: what was on the old stream (this command,
                        # its output or its result) may be lost, and nothing would say so.
                        lost = "the connection to the agent cluster's coordinator was reset while the command ran"
                    if lost is not None:
                        if future is not None:
                            future.cancel()
                        return CommandResult("unreachable", None, now - started, lost, tuple(tail),
                                             retryable=False)  # fmt: skip
            if result is None:
                try:
                    result = future.result()
                except Exception as exc:
                    name = type(exc).__name__
                    if name == "KilledWorker":
                        reason = f"the agents running this command kept dying ({', '.join(wanted)})"
                    else:
                        reason = f"{name}: {exc}"
                    return CommandResult("unreachable", None, time.monotonic() - started, reason, tuple(tail),
                                         retryable=False)  # fmt: skip
                # Lines sent before the result may still be on their way: wait for them (bounded).
                expected = int(result.get("lines") or 0)
                deadline = time.monotonic() + LATE_LINES_SECONDS
                while received < expected and time.monotonic() < deadline:
                    try:
                        msg = q.get(timeout=0.05)
                    except queue.Empty:
                        continue
                    for stream, line in msg.get("lines") or ():
                        received += 1
                        tail.append(line)
                        on_output(stream, line)
        finally:
            if future is not None:
                future.release()
        status = str(result.get("status") or "error")
        check = result.get("policy")
        if isinstance(check, dict):  # the agent's policy refused: audited in this run
            from nexus_core.plugin import PolicyCheck

            self.context.emit(PolicyCheck(
                self.context.run_id, subject=str(check.get("subject") or ""), action="run",
                target=str(check.get("target") or host.name), allowed=False, rule=str(check.get("rule") or ""),
                reason=str(check.get("reason") or "")))  # fmt: skip
        return CommandResult(
            status,
            result.get("exit_code"),
            time.monotonic() - started,
            str(result.get("reason") or ""),
            tuple(tail),
            retryable=status not in ("error", "interrupted") and not result.get("gone"),
        )

    def _agents(self, client: Any, fresh: bool = False) -> dict[str, cluster.Agent]:
        """The agents by name as the scheduler reported them about a second ago (``fresh``: now).

        One question to the scheduler per second for all the run's commands, not one per
        command: with 50 agents each answer is the whole worker table. The question goes on
        the client's event loop while commands go on with the table they have (a command
        whose agent is not in it asks again, ``fresh``); only a table older than
        :data:`STALE_VIEW_SECONDS` (answers stopped coming) makes the caller wait for one.
        """
        now = time.monotonic()
        if self._view_error is not None:
            error, self._view_error = self._view_error, None
            raise error
        age = now - self._view_at
        if fresh or age >= STALE_VIEW_SECONDS:
            with self._view_lock:
                if fresh or time.monotonic() - self._view_at >= STALE_VIEW_SECONDS:
                    self._view = {a.name: a for a in cluster.fresh_agents(client)}
                    self._view_at = time.monotonic()
                return self._view
        if age >= ALIVE_CHECK_SECONDS:
            with self._view_lock:
                start = not self._view_refreshing
                self._view_refreshing = True
            if start:
                try:
                    client.loop.add_callback(self._refresh, client)
                except Exception:
                    self._view_refreshing = False
                    raise
        return self._view

    async def _refresh(self, client: Any) -> None:
        """Ask the scheduler for its worker table (on the client's loop) and keep it as the view."""
        try:
            info = await client.scheduler.identity(n_workers=-1)
            self._view = {a.name: a for a in cluster.agents_of(info)}
            self._view_at = time.monotonic()
        except Exception as exc:  # the next caller raises it (the coordinator stopped answering)
            self._view_error = exc
        finally:
            self._view_refreshing = False

    def _check_agents(self, client: Any, host: Host, wanted: Sequence[str]) -> CommandResult | None:
        """A failed result when none of ``wanted`` is in the cluster (or all are draining)."""
        try:
            by_name = self._agents(client)
        except Exception as exc:
            return CommandResult("unreachable", None, 0.0, f"the agent cluster does not answer: {exc}")
        usable = [n for n in wanted if n in by_name and not by_name[n].draining]
        if usable:
            return None
        try:  # the view may be a second old: ask once more
            by_name = self._agents(client, fresh=True)
        except Exception as exc:
            return CommandResult("unreachable", None, 0.0, f"the agent cluster does not answer: {exc}")
        if [n for n in wanted if n in by_name and not by_name[n].draining]:
            return None
        what = f"agent {host.name!r}" if len(wanted) == 1 else "agents " + ", ".join(wanted)
        draining = [n for n in wanted if n in by_name]
        state = "is draining" if draining else "is not in the cluster"
        fix = (
            f"- let it take commands again with `nexus agent drain {draining[0]} --off`, or pick another agent"
            if draining
            else f"- start it with `nexus agent start --name {wanted[0]} --join HOST:PORT`, or pick another agent"
        )
        return CommandResult(
            "unreachable",
            None,
            0.0,
            f"{what} {state}",
            hint=f"the agents there: {cluster.describe(sorted(by_name.values(), key=lambda a: a.name))}\n{fix}",
            retryable=False,
        )

    def _lost(self, client: Any, wanted: Sequence[str]) -> str | None:
        """Why the command can no longer run (every allowed agent gone), or None."""
        try:
            names = self._agents(client)
        except Exception:
            return "the agent cluster's coordinator stopped answering while the command ran"
        if any(n in names for n in wanted):
            return None
        if len(wanted) == 1:
            return f"agent {wanted[0]} was lost while the command ran (it did not finish)"
        return f"every agent this command may run on was lost ({', '.join(wanted)})"

    def _signal(self, client: Any, address: str, cmd_id: str, signum: int) -> None:
        from nexus_agent.runner import signal_command

        with contextlib.suppress(Exception):
            client.run(signal_command, cmd_id, int(signum), workers=[address])

    def close(self) -> None:
        """Stop listening for this run's output and close the process's client (the run is over)."""
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.unsubscribe_topic(self._topic)
            cluster.close_all()
