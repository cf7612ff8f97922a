"""What runs on an agent: one command as a subprocess, its output sent back line by line.

:func:`run_command` is the Dask task the executor submits. The shell text comes from the
core's builder (``nexus_core.plugin.shell``: the same ``sudo=``, ``env=``, ``cwd=`` as every
shell transport), run by ``/bin/sh -c`` in a new session so that a timeout or a cancel
reaches the whole process tree. Output lines go back while the command runs as worker
events (``Worker.log_event``) on the topic the client subscribed to, in small batches
(every :data:`FLUSH_SECONDS` or :data:`FLUSH_LINES` lines). :func:`signal_command` is what
the client runs on the agent (``Client.run``) to forward a cancel level as a signal.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import select
import signal
import socket
import subprocess
import threading
import time
from typing import Any

from nexus_core.plugin import LineSplitter, Marker, shell

#: Seconds between batches of output lines sent back while a command runs.
FLUSH_SECONDS = 0.02
#: Lines that make a batch go at once.
FLUSH_LINES = 200
#: Seconds between SIGTERM and SIGKILL when a command times out (as the local executor).
TIMEOUT_KILL_GRACE = 2.0

#: The Dask resource each command takes one of: an agent has ``max_concurrent_tasks`` of them.
SLOTS = "nexus-slots"

#: Running commands on this agent: command id -> process group id.
RUNNING: dict[str, int] = {}
#: Since when (seconds since the epoch) this agent runs nothing: the autoscaler's idle time.
IDLE_SINCE: list[float] = [time.time()]
_LOCK = threading.Lock()
#: The agent's command slots (``max_concurrent_tasks``), shared by Dask tasks and relayed
#: commands (see :mod:`nexus_agent.relay`); None: no limit (a direct call from a test).
_GATE: list[threading.Semaphore | None] = [None]
_GATE_SIZE: list[int] = [0]
#: Commands signalled before they started (they never start): id -> None, oldest first.
_CANCELLED: dict[str, None] = {}
_CANCELLED_MAX = 10_000
#: Running commands that a cancel signalled (their end is "interrupted", not "failed").
_SIGNALLED: set[str] = set()
#: Running commands stopped because the agent stops (their end: the agent is gone).
_STOPPED: set[str] = set()
#: Seconds between checks for a cancel while a command waits for a slot.
SLOT_POLL_SECONDS = 0.1


def set_slots(count: int) -> None:
    """Let at most ``count`` commands run at once on this agent (the daemon calls it at start).

    Called again when the agent rejoins a coordinator: the same count keeps the same gate,
    so commands still running from before hold their slots.
    """
    count = max(1, count)
    if _GATE[0] is None or _GATE_SIZE[0] != count:
        _GATE[0] = threading.Semaphore(count)
        _GATE_SIZE[0] = count


def _worker() -> Any:
    try:
        from distributed import get_worker

        return get_worker()
    except ValueError:  # not inside a worker (a direct call from a test)
        return None


class _Sender:
    """Batches (stream, line) pairs and sends them as events on ``topic``.

    ``relayed``: the caller sends the result itself (:mod:`nexus_agent.relay`), so the last
    lines and a start note not sent yet go with it (:meth:`rest`), one event instead of
    three for a quick command. The start note waits :data:`FLUSH_SECONDS` (or the first
    lines) for that.
    """

    def __init__(self, topic: str, cmd_id: str, worker: Any = None, relayed: bool = False) -> None:
        self.topic = topic
        self.cmd_id = cmd_id
        self.worker = worker if worker is not None else _worker()
        self.relayed = relayed
        self.batch: list[list[str]] = []
        self.sent = 0
        self.last = time.monotonic()
        self.start: dict[str, Any] | None = None  # the start note, while it waits (relayed)

    @property
    def waiting(self) -> bool:
        """True while something waits to go (lines, or a start note)."""
        return bool(self.batch) or self.start is not None

    def add(self, stream: str, line: str) -> None:
        self.batch.append([stream, line])
        if len(self.batch) >= FLUSH_LINES or time.monotonic() - self.last >= FLUSH_SECONDS:
            self.flush()

    def flush(self, final: bool = False) -> None:
        """Send the lines batched (``final``: the command ended; relayed, they go with the result)."""
        self.last = time.monotonic()
        if final and self.relayed:
            return
        if not self.batch and self.start is None:
            return
        msg: dict[str, Any] = {"id": self.cmd_id, **(self.start or {})}
        if self.batch:
            msg["lines"] = self.batch
        if self.worker is not None:
            self.worker.log_event(self.topic, msg)
        self.sent += len(self.batch)
        self.batch = []
        self.start = None

    def note(self, kind: str, **data: Any) -> None:
        if kind == "start" and self.relayed:
            self.start = {kind: True, **data}
            self.last = time.monotonic()
            return
        if self.worker is not None:
            self.worker.log_event(self.topic, {"id": self.cmd_id, kind: True, **data})

    def rest(self) -> dict[str, Any]:
        """What is left to send with the result (relayed): the last lines and the start note, if any."""
        rest: dict[str, Any] = {**(self.start or {})}
        if self.batch:
            rest["lines"] = self.batch
        return rest


def _agent_name(worker: Any = None) -> str:
    worker = worker if worker is not None else _worker()
    if worker is not None and worker.name is not None:
        return str(worker.name)
    return socket.gethostname()


def identity_payload(cmd_id: str, cmd: str) -> bytes:
    """What the client signs for each command (see ``certs.sign_identity``)."""
    return f"nexus-agent-command\n{cmd_id}\n{cmd}".encode()


def policy_refusal(spec: dict[str, Any], agent: str) -> str:
    """Why this agent's policy refuses the command ("" when it runs); see :func:`policy_check`."""
    return policy_check(spec, agent)[0]


def policy_check(spec: dict[str, Any], agent: str) -> tuple[str, dict[str, Any] | None]:
    """Why this agent's policy refuses the command ("" when it runs), and the refusal as the
    fields of a ``policy.check`` audit record (None when it runs: no policy, or allowed).

    Only with a policy in force on the agent's machine (``/etc/nexus/policy.toml``): the
    client's certificate identity, proven by its signature over the command, must be allowed
    to ``run`` on this agent (rules' ``on`` patterns are matched against the agent's name).
    The agent has no audit sinks: the client records the refusal in its run's audit.
    """
    from nexus_core.plugin import PolicyError, policy_decision

    from nexus_agent import certs

    def refused(subject: str, rule: str, reason: str) -> tuple[str, dict[str, Any]]:
        check = {"subject": subject, "action": "run", "target": agent, "allowed": False, "rule": rule,
                 "reason": reason}  # fmt: skip
        return reason, check

    try:
        if policy_decision("", "run") is None:  # no policy here: nothing to check
            return "", None
    except PolicyError as exc:
        return refused("", "policy error", f"refused by the policy of agent {agent}: {exc}")
    payload = identity_payload(str(spec["id"]), str(spec["cmd"]))
    try:
        user = certs.verify_identity(spec.get("identity"), payload, certs.find().ca)
        problem = ""
    except certs.CertError as exc:
        user, problem = "", str(exc)
    try:
        decision = policy_decision(user or "(unverified)", "run", "", (agent,))
    except PolicyError as exc:
        return refused(user, "policy error", f"refused by the policy of agent {agent}: {exc}")
    if decision is None:
        return "", None
    if problem:
        return refused("(unverified)", "client identity", f"refused by agent {agent}: {problem}")
    if decision.allowed:
        return "", None
    return refused(user, decision.rule, f"refused by the policy of agent {agent}: {decision.explain()}")


def run_command(spec: dict[str, Any], worker: Any = None, sender: _Sender | None = None) -> dict[str, Any]:
    """Run one command on this agent; return its result as plain data.

    ``spec``: ``id``, ``topic``, ``cmd``, ``sudo``, ``user``, ``env`` (pairs), ``cwd``,
    ``timeout`` (seconds, 0: none), ``input`` (text for standard input or None), ``marker``
    (``[run_id, key, host]``: record pid and exit code in the run's status file on this
    machine, :mod:`nexus_core.markers`, so that a resume can ask what became of it).
    ``worker``: the Dask worker to send output through (default: the one running this task).
    ``sender``: what sends the lines (:func:`relayed_sender`: the caller sends the result).
    The result: ``status`` (ok, failed, timeout, error, interrupted), ``exit_code``,
    ``reason``, ``lines`` (how many output lines were sent), ``agent``.

    The command waits for one of the agent's slots first (a cancel reaches it there too);
    its timeout counts from when it starts.
    """
    cmd_id = str(spec["id"])
    sender = sender or _Sender(str(spec["topic"]), cmd_id, worker)
    agent = _agent_name(sender.worker)
    gate = _GATE[0]
    if gate is not None and not _acquire(gate, cmd_id):
        return {"status": "interrupted", "exit_code": None, "reason": "not started: cancelled", "lines": 0,
                "agent": agent, "duration": 0.0}  # fmt: skip
    try:
        return _run_started(spec, cmd_id, sender, agent)
    finally:
        if gate is not None:
            gate.release()


def relayed_sender(spec: dict[str, Any], worker: Any) -> _Sender:
    """The sender of a relayed command: its last lines and start note go with the result (``rest()``)."""
    return _Sender(str(spec["topic"]), str(spec["id"]), worker, relayed=True)


def _acquire(gate: threading.Semaphore, cmd_id: str) -> bool:
    """Take a slot (False: the command was cancelled while it waited)."""
    for _ in range(1 << 62):
        with _LOCK:
            if cmd_id in _CANCELLED:
                return False
        if gate.acquire(timeout=SLOT_POLL_SECONDS):
            with _LOCK:
                if cmd_id not in _CANCELLED:
                    return True
            gate.release()
            return False
    return False


def _run_started(spec: dict[str, Any], cmd_id: str, sender: _Sender, agent: str) -> dict[str, Any]:
    sender.note("start", agent=agent)
    started = time.monotonic()
    refusal, check = policy_check(spec, agent)

    def result(status: str, code: int | None = None, reason: str = "") -> dict[str, Any]:
        sender.flush(final=True)
        return {
            "status": status,
            "exit_code": code,
            "reason": reason,
            "lines": sender.sent + len(sender.batch),
            "agent": agent,
            "duration": time.monotonic() - started,
        }

    if refusal:  # the client's run audits the refusal (the agent has no sinks of its own)
        return {**result("error", None, refusal), "policy": check}
    env_pairs = [(str(k), str(v)) for k, v in spec.get("env") or ()]
    elevated = bool(spec.get("sudo")) or bool(spec.get("user"))
    try:
        text = shell.body(
            str(spec["cmd"]),
            sudo=bool(spec.get("sudo")),
            user=spec.get("user"),
            env=env_pairs if elevated else (),
            cwd=spec.get("cwd") or None,
        )
    except shell.CommandError as exc:
        return result("error", None, str(exc))
    marker = spec.get("marker")
    if marker:  # the core's status-file wrapper: pid and exit code in the run's status file here
        text = shell.wrap(text, Marker(str(marker[0]), str(marker[1]), str(marker[2])))
    cwd = spec.get("cwd") or None
    if cwd and not os.path.isdir(cwd):
        return result("error", None, f"working directory {cwd} does not exist on agent {agent}")
    env = {**os.environ, **dict(env_pairs)} if env_pairs else None
    data = spec.get("input")
    try:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", text],
            env=env,
            cwd=None,  # the body changes folder itself (cd -- DIR || exit 1)
            stdin=subprocess.DEVNULL if data is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        return result("error", None, f"cannot start the command on agent {agent}: {exc.strerror or exc}")
    with _LOCK:
        RUNNING[cmd_id] = proc.pid
        if cmd_id in _CANCELLED:  # signalled between the slot and the start: stop it now
            _SIGNALLED.add(cmd_id)
            _killpg(proc.pid, signal.SIGKILL)
    if data is not None and proc.stdin is not None:
        threading.Thread(target=_feed, args=(proc.stdin, str(data).encode()), daemon=True).start()
    timeout = float(spec.get("timeout") or 0)
    deadline = started + timeout if timeout > 0 else float("inf")
    timed_out = False
    kill_at: float | None = None
    signalled = False
    try:
        assert proc.stdout is not None and proc.stderr is not None
        streams = {
            proc.stdout.fileno(): (
                "stdout",
                LineSplitter(),
                codecs.getincrementaldecoder("utf-8")("replace"),
            ),
            proc.stderr.fileno(): (
                "stderr",
                LineSplitter(),
                codecs.getincrementaldecoder("utf-8")("replace"),
            ),
        }
        poller = select.poll()
        for fd in streams:
            poller.register(fd, select.POLLIN)
        open_fds = len(streams)
        while open_fds:
            now = time.monotonic()
            if not timed_out and now >= deadline:
                timed_out = True
                kill_at = now + TIMEOUT_KILL_GRACE
                _killpg(proc.pid, signal.SIGTERM)
            if kill_at is not None and now >= kill_at:
                _killpg(proc.pid, signal.SIGKILL)
                kill_at = None
            wait = min(0.1, max(0.0, (kill_at or deadline) - now)) if (kill_at or deadline) != float("inf") else 0.1
            for fd, _ in poller.poll(FLUSH_SECONDS * 1000 if sender.waiting else wait * 1000):
                chunk = os.read(fd, 65536)
                name, splitter, decoder = streams[fd]
                if not chunk:
                    poller.unregister(fd)
                    open_fds -= 1
                    for line in splitter.feed(decoder.decode(b"", final=True)) + splitter.finish():
                        sender.add(name, line)
                    continue
                for line in splitter.feed(decoder.decode(chunk)):
                    sender.add(name, line)
            if sender.waiting and time.monotonic() - sender.last >= FLUSH_SECONDS:
                sender.flush()
        code = proc.wait()
    finally:
        with _LOCK:
            RUNNING.pop(cmd_id, None)
            _CANCELLED.pop(cmd_id, None)
            signalled = cmd_id in _SIGNALLED
            _SIGNALLED.discard(cmd_id)
            stopped = cmd_id in _STOPPED
            _STOPPED.discard(cmd_id)
            if not RUNNING:
                IDLE_SINCE[0] = time.time()
        if proc.returncode is None:
            _killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    if timed_out:
        return result("timeout", code, f"timed out after {timeout:.3g}s")
    if code == 0:
        return result("ok", 0)
    if stopped:  # as when the agent is lost: a connection failure of the host, not the command's
        return result("unreachable", code, f"agent {agent} was stopped while the command ran (and stopped it)")
    if spec.get("signalled") or signalled:
        return result("interrupted", code, "interrupted")
    reason = f"exit code {code}" if code >= 0 else f"killed by signal {-code}"
    return result("failed", code, reason)


def signal_command(cmd_id: str, signum: int) -> bool:
    """Send ``signum`` to the process group of running command ``cmd_id``; False when not running.

    Run on the agent when the run's cancel level rises (``Client.run``, or relayed). A
    command not started yet (waiting for a slot, or on its way) is marked so that it never starts.
    """
    with _LOCK:
        pgid = RUNNING.get(cmd_id)
        if pgid is None:
            _CANCELLED[cmd_id] = None
            while len(_CANCELLED) > _CANCELLED_MAX:
                del _CANCELLED[next(iter(_CANCELLED))]
            return False
        _SIGNALLED.add(cmd_id)
    _killpg(pgid, signum)
    if signum != signal.SIGKILL:
        _killpg(pgid, signal.SIGCONT)
    return True


def stop_all(grace: float) -> int:
    """Stop every running command (SIGTERM, then SIGKILL after ``grace`` seconds): the agent
    is stopping (``nexus agent stop``), and a command left behind would go on alone while
    its task moves to another agent. Returns how many were running."""
    with _LOCK:
        running = dict(RUNNING)
        _STOPPED.update(running)
    for pgid in running.values():
        _killpg(pgid, signal.SIGTERM)
        _killpg(pgid, signal.SIGCONT)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_group_alive(p) for p in running.values()):
        time.sleep(0.05)
    for pgid in running.values():
        _killpg(pgid, signal.SIGKILL)
    return len(running)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _feed(pipe: Any, data: bytes) -> None:
    try:
        with pipe:
            pipe.write(data)
    except OSError:
        pass


async def set_draining(value: bool, dask_worker: Any = None) -> bool:
    """Mark this agent as draining (no new commands) or not; run on the agent by ``nexus agent drain``.

    Its command slots go to 0, so the scheduler gives it nothing new; commands running finish.
    """
    if dask_worker is not None:
        if value and not getattr(dask_worker, "nexus_draining", False):
            dask_worker.nexus_slots = dask_worker.state.total_resources.get(SLOTS, 1)
        dask_worker.nexus_draining = bool(value)
        await dask_worker.set_resources(**{SLOTS: 0 if value else getattr(dask_worker, "nexus_slots", 1)})
        # The coordinator learns of the change at the agent's next heartbeat (0.5-2 s away):
        # send one now, so a run started right after ``nexus agent drain`` already sees it.
        await dask_worker.heartbeat()
    return bool(value)


# --- files (the agent executor's send_file, receive_file and file_size run these here) -------


def write_chunk(path: str, offset: int, data: bytes) -> int:
    """Write ``data`` at ``offset`` of ``path`` on this agent; return the bytes written.

    Offset 0 creates or truncates the file; a larger offset extends it from there (what an
    interrupted transfer resumes), dropping anything beyond. A relative path is relative to
    the agent's working folder, as its commands' are. Errors are ``OSError`` with ``errno``.
    """
    with open(path, "r+b" if offset else "wb") as fh:
        if offset:
            fh.seek(offset)
            fh.truncate()
        fh.write(data)
    return len(data)


def read_chunk(path: str, offset: int, size: int) -> bytes:
    """At most ``size`` bytes of ``path`` on this agent from ``offset`` on (b"" at its end)."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read(size)


def file_size(path: str) -> int | None:
    """The size of the file ``path`` on this agent, None when there is none."""
    try:
        return os.stat(path).st_size
    except OSError:
        return None
