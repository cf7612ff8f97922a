"""The ``ssh`` executor: runs commands on hosts over pooled Paramiko connections.

Paramiko is imported on first use, never when the plugin loads. The hot path uses
Paramiko's transport directly (one exec channel per command, read in the calling thread)
rather than Fabric's ``Connection.run``, whose runner starts threads per command and costs
7-10x the SSH floor (docs/decisions.md, "Speed").
"""

from __future__ import annotations

import codecs
import collections
import contextlib
import dataclasses
import os
import re
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from nexus_core.plugin import (
    Cancel,
    Capabilities,
    Command,
    CommandResult,
    Event,
    Executor,
    ExecutorContext,
    Host,
    LineSplitter,
    Log,
    Marker,
    OutputCallback,
    shell,
)

from nexus_ssh import remote
from nexus_ssh import session as sess
from nexus_ssh.errors import CancelledConnect, ConnectError, headline, with_hints
from nexus_ssh.events import (
    PoolCheckin,
    PoolCheckout,
    SshConnect,
    SshConnectStart,
    SshDisconnect,
    SshError,
    host_label,
)
from nexus_ssh.options import DEFAULT_MODE, MODES
from nexus_ssh.settings import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_POOL_SIZE,
    ConnectSpec,
    Resolver,
    SettingsError,
)
from nexus_ssh.transfer import SftpFiles
from nexus_ssh.wake import waker

if TYPE_CHECKING:
    from paramiko.channel import Channel

    from nexus_ssh.connect import Connection, Connector, Watch
    from nexus_ssh.pool import HostPool
    from nexus_ssh.session import Session

TAIL_LINES = 20
_SIGNALS = {Cancel.INTERRUPT: ["INT"], Cancel.TERMINATE: ["TERM"], Cancel.KILL: ["KILL"]}
_NEEDS_TTY = ("must have a tty", "a terminal is required")
#: What a sudo password is replaced with in any output line (a safety net: it is never echoed).
REDACTED = "********"
_SUDO_WANTS_PASSWORD = ("a password is required",)
_SUDO_BAD_PASSWORD = ("incorrect password attempt", "Sorry, try again", "no password was provided")
#: Session mode: how long to wait for a killed command's sentinels before dropping the session.
_SETTLE = 5.0
#: Exec mode: how long to wait for the end of the output after the exit status came.
_DRAIN = 1.0
#: Longest wait of a running command's loop between checks when nothing wakes it. Output, EOF,
#: a closed channel, a lost connection and a stop request all wake it at once; this only bounds
#: how late anything else would be seen. It was 0.2 s: with a thousand hosts' commands waiting,
#: 5,000 wake-ups a second, each taking the GIL from the threads doing work.
_POLL = 1.0
#: Seconds to wait for a channel to stop a command; a host that cannot open one in this
#: time is reported as not answering (a connection failure).
_KILL_OPEN = 3.0
_NO_CHANNEL = "could not signal"
#: Seconds after which a spooled command's output is followed while it runs (shorter
#: commands show theirs at once when they end, at no cost on the host).
FOLLOW_AFTER = 0.3
#: ... plus this for every command under way at the time (on any host): with hundreds of hosts
#: a short command's output comes back later than 0.3 s only because the client is busy, and
#: following it would open a second channel and start a reader on every host. 1,000 running
#: commands: live output from 10.3 s on (the follower replays the spool from its start).
FOLLOW_PER_RUNNING = 0.01


def session_mode(config: Any, options: Any) -> tuple[str, str]:
    """(mode, problem): ``ssh_session_mode`` from the config, the executor options, env
    ``NEXUS_SSH_SESSION_MODE``, else :data:`nexus_ssh.options.DEFAULT_MODE`; ``problem``
    names an unknown value (then the default is used)."""
    for where, value in (
        ("ssh_session_mode", config.get("ssh_session_mode")),
        ("ssh_session_mode", options.get("ssh_session_mode")),
        (sess.MODE_ENV, os.environ.get(sess.MODE_ENV)),
    ):
        if value is None or str(value).strip() == "":
            continue
        mode = str(value).strip().lower()
        if mode in MODES:
            return mode, ""
        return DEFAULT_MODE, f"{where}={value!r} is not one of {', '.join(MODES)}"
    return DEFAULT_MODE, ""


def sudo_password(options: Any) -> str | None:
    """The sudo password for this run: executor option ``sudo_password`` (``-K``), else
    ``NEXUS_SUDO_PASSWORD`` (the stop-gap until secret backends provide it), else None."""
    for value in (options.get("sudo_password"), os.environ.get("NEXUS_SUDO_PASSWORD")):
        if value is not None and str(value) != "":
            return str(value)
    return None


class _Lines:
    """Splits one stream into lines (UTF-8, invalid bytes replaced) and strips the pg marker.

    ``spool``: the stream is a replayed spool (:func:`nexus_core.shell.wrap` with ``replay``):
    its lines are stdout up to the ``\\x1eNEXUS-SPOOL RC`` line, stderr after it; ``spool_code``
    then holds RC.
    """

    def __init__(
        self,
        stream: str,
        emit: Callable[[str, str], None],
        on_marker: Callable[[tuple[int, int]], None],
        tail: collections.deque[str],
        redact: Callable[[str], str] | None = None,
        sentinel: str | None = None,
        spool: bool = False,
        follower: bool = False,
    ) -> None:
        self.stream = stream
        self._redact = redact
        self._emit = emit
        self._on_marker = on_marker
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._split = LineSplitter()
        self._tail = tail
        self.lines = 0
        #: Session mode: the sentinel line's start (see :mod:`nexus_ssh.session`); once it
        #: was seen, ``done`` is True and ``code`` holds the exit code it carried.
        self._sentinel = sentinel
        self._spool = spool
        self.spool_ended = False
        self.spool_code: int | None = None
        self._blank = False  # an empty line held back: it may be a marker line's own newline
        self.done = False
        self.code: int | None = None
        self.received = False
        #: Lines of each part of a replayed spool already shown by a follower (not shown again).
        self.skip_out = 0
        self.skip_err = 0
        #: Spool offsets: where a follower's shown lines end, per part (replay: lines ending
        #: before it are skipped once a part starts at the keeper's cut, see _cut).
        self.upto_out = 0
        self.upto_err = 0
        #: Offset in the spool of the next line, counted in a follower (always) and in a
        #: replayed part that starts at a cut (``None``: not counted).
        self.pos: int | None = 0 if follower else None
        self._follower = follower
        #: Bytes received; the keeper cut the spool (a SPOOL_CUT line); the wrapper took an
        #: earlier command's spool files (its process-group line said so): see _SpoolUse.
        self.size = 0
        self.cut = False
        self.reused = False
        #: A follower's NUL bytes at the end of the last data (see _feed_holes).
        self._held = b""

    def feed(self, data: bytes, final: bool = False) -> None:
        if self.done:
            return  # after the sentinel: nothing of this command's
        if data:
            self.received = True
            self.size += len(data)
        if (self._held or b"\0" in data) and (self._follower or self.cut or _CUT in data):
            self._feed_holes(data, final)
            return
        self._feed(data, final)

    def _feed_holes(self, data: bytes, final: bool) -> None:
        """Data of a spool the keeper cut with runs of at least :data:`_HOLE_MIN` NUL bytes:
        ``tail`` read the front the keeper gave back (a hole reads as zeros), a follower
        behind the command or a replay that began at a cut the keeper moved on from. Each
        run is said once as dropped output, not shown as NUL "lines"; the offsets count it
        (the replay's skip relies on them). A run at the end of ``data`` waits for the next
        data, which may go on with it."""
        data, self._held = self._held + data, b""
        start = 0
        for run in _NULS.finditer(data):
            if run.end() == len(data) and not final:
                self._feed(data[start : run.start()], False)
                self._held = data[run.start() :]
                return
            if run.end() - run.start() < _HOLE_MIN:
                continue
            self._feed(data[start : run.start()], False)
            size = run.end() - run.start()
            if self.pos is not None:
                self.pos += size
            self._emit(self.stream, shell.dropped_note(size))
            start = run.end()
        self._feed(data[start:], final)

    def _feed(self, data: bytes, final: bool) -> None:
        complete = self._split.feed(self._decoder.decode(data, final))
        if final:
            complete += self._split.finish()
        hold = self._sentinel is not None or (self._spool and not self.spool_ended)
        for line in complete:
            if line[:1] == "\x1e":  # every line of Nexus's own starts so: one test for the others
                end = self._sentinel
                if end is not None and line.startswith(end) and line[len(end) :].isdigit():
                    self.done, self.code = True, int(line[len(end) :])
                    return  # the held empty line, if any, was the sentinel's leading newline
                if self._spool and not self.spool_ended:
                    ended, code = shell.parse_spool_end(line)
                    if ended:
                        self.spool_ended, self.spool_code, self._blank = True, code, False
                        self.pos = self.pos if self._follower else None
                        hold = self._sentinel is not None
                        continue
                if line.startswith(shell.SPOOL_CUT) and line[len(shell.SPOOL_CUT) :].isdigit():
                    self._cut(int(line[len(shell.SPOOL_CUT) :]))
                    continue
            if self._blank:
                self._blank = False
                self._line("")
            if hold and line == "" and not final:
                self._blank = True
                continue
            self._line(line)

    def _cut(self, offset: int) -> None:
        """The spool's front up to ``offset`` was given back by the keeper (spool_max_bytes):
        count offsets from there, skip what a follower showed, say what nobody will see."""
        err = self._spool and self.spool_ended
        self.cut = True
        upto = self.upto_err if err else self.upto_out
        if err:
            self.skip_err = 0
        else:
            self.skip_out = 0
        self.pos = offset
        if offset > upto:
            self._emit("stderr" if err else self.stream, shell.dropped_note(offset - upto))

    def _line(self, line: str) -> None:
        if line[:1] == "\x1e" and line.startswith(shell.PG_MARKER):
            pg = shell.parse_pg(line)
            if pg is not None:
                self.reused = self.reused or shell.pg_reused(line)
                self._on_marker(pg)
                return
        if self.pos is not None:
            # Same count in the follower and in the replay: both see the same lines.
            self.pos += len(line.encode("utf-8", "replace")) + 1
            if self.pos <= (self.upto_err if self._spool and self.spool_ended else self.upto_out):
                return
        if self._spool:
            if self.spool_ended and self.skip_err > 0:
                self.skip_err -= 1
                return
            if not self.spool_ended and self.skip_out > 0:
                self.skip_out -= 1
                return
        if self._redact is not None:
            line = self._redact(line)
        self.lines += 1
        self._tail.append(line)
        self._emit("stderr" if self.spool_ended else self.stream, line)


#: NUL bytes in a row that a follower takes for a hole the spool keeper made (tail reads one
#: as zeros); shorter runs are output (``find -print0``).
_HOLE_MIN = 64
_NULS = re.compile(rb"\0+")
_CUT = shell.SPOOL_CUT.encode()


class _SpoolUse:
    """What a command did with its spool files, for later commands of the run on the host.

    ``sent``: its script may have reached the host; ``started``: its wrapper's process-group
    line came (``group``), saying whether it took the earlier command's files offered to it
    (``reused``); ``clean``: it ended normally, its output read whole and small enough that
    the keeper never cut it, and nothing of it ran as another user. See
    ``SshExecutor._spool_done``.
    """

    __slots__ = ("clean", "group", "reused", "sent", "started")

    def __init__(self) -> None:
        self.sent = self.started = self.reused = self.clean = False
        self.group = 0


class _Follower:
    """A second channel streaming a long command's spool (``tail -f``) while it runs."""

    def __init__(self, chan: Channel, out: _Lines, err: _Lines) -> None:
        self.chan, self.out, self.err = chan, out, err

    @classmethod
    def start(
        cls,
        conn: Connection,
        marker: Marker,
        emit: Callable[[str, str], None],
        on_marker: Callable[[tuple[int, int]], None],
        tail: collections.deque[str],
        redact: Callable[[str], str] | None,
    ) -> _Follower | None:
        """Open the channel (None when that fails: the output then comes at the end)."""
        try:
            chan = conn.transport.open_session(timeout=5)
            chan.exec_command("exec /bin/sh -c " + shell.quote(shell.follow_script(marker)))
            chan.shutdown_write()
        except Exception:
            return None
        # The stdout spool ends with the replay's end line once the command is done.
        out = _Lines("stdout", emit, on_marker, tail, redact, spool=True, follower=True)
        return cls(chan, out, _Lines("stderr", emit, on_marker, tail, redact, follower=True))

    def pump(self) -> bool:
        """Hand on what arrived; True when something did."""
        got = False
        try:
            while self.chan.recv_ready():
                self.out.feed(self.chan.recv(65536))
                got = True
            while self.chan.recv_stderr_ready():
                self.err.feed(self.chan.recv_stderr(65536))
                got = True
        except Exception:
            return got
        return got

    def finish(self) -> None:
        """Emit the last partial lines (when no replay will come)."""
        self.out.feed(b"", final=True)
        self.err.feed(b"", final=True)

    def stop(self) -> tuple[int, int]:
        """Close the channel (the remote ``tail`` ends); lines shown per stream."""
        self.pump()
        with contextlib.suppress(Exception):
            self.chan.close()
        return self.out.lines, self.err.lines


def _may_run_out_of_files(hosts: int, pool_size: int) -> bool:
    """True when ``hosts`` hosts' connections could use up this process's open-files limit."""
    import resource

    from nexus_ssh.limits import fds_needed

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return soft != resource.RLIM_INFINITY and fds_needed(hosts, pool_size, hosts) > soft


class SshExecutor(SftpFiles, Executor):
    """Runs commands over SSH with per-host pools, host key checks and jump hosts.

    Registered as ``ssh`` by :mod:`nexus_ssh.plugin` (which never imports this module).
    """

    supports_markers = True
    #: Commands at once per host are bounded by the connection pool itself (``ssh_pool_size``:
    #: a command waits for a free connection); every cancel level signals the remote process
    #: group; files go over SFTP.
    capabilities = Capabilities(file_transfer=True, stdin=True, connection=True)

    def __init__(self, context: ExecutorContext) -> None:
        super().__init__(context)
        cfg, opts = context.config, context.options
        self.pool_size = int(cfg.get("ssh_pool_size") or opts.get("ssh_pool_size") or DEFAULT_POOL_SIZE)
        self.idle_timeout = float(
            opts.get("ssh_idle_timeout", cfg.get("ssh_idle_timeout")) or DEFAULT_IDLE_TIMEOUT
        )
        self.kill_grace = float(opts.get("ssh_kill_grace", 2.0))
        #: Bound of each output spool on a host (``spool_max_bytes``; see nexus_core.shell).
        self.spool_max = int(cfg.get("spool_max_bytes") or shell.SPOOL_MAX_BYTES)
        self._sudo_password = sudo_password(opts)
        self._lock = threading.Lock()
        #: Retry warnings said, by attempt and failure with the host set aside (see _open).
        self._retries_said: set[tuple[int, str]] = set()
        #: One item per command under way now (connecting or running), on all hosts: sets how
        #: soon a spooled command's output is followed.
        self._under_way: list[None] = []
        #: Hosts of the run (``prepare``) with commands still to come, and the pool of each.
        self._pending: set[Hashable] = set()
        self._pool_of: dict[Hashable, HostPool] = {}
        self._resolver: Resolver | None = None
        self._connector: Connector | None = None
        self._specs: dict[tuple[str, str | None, int | None], ConnectSpec] = {}
        self._pools: dict[tuple[object, ...], HostPool] = {}
        self._stop = threading.Event()
        #: Per run and host folder: spool files of finished commands that later commands of
        #: the run may take, with the process group of their last writer (see shell.wrap's
        #: ``reuse`` and docs/decisions.md, "Spool files reused on hosts").
        self._spare: dict[tuple[str, str], list[tuple[str, int]]] = {}
        self._sweeper: threading.Thread | None = None
        self._warned_off = False
        self._closed = False
        self.session_mode, problem = session_mode(cfg, opts)
        if problem:
            message = f"{problem}: using {self.session_mode}"
            self._emit(Log(run_id=context.run_id, level="warning", message=message))
        #: Session mode: the shell session of each pooled connection (by ``id``), and the
        #: connections whose host cannot run one (they use exec mode).
        self._sessions: dict[int, Session] = {}
        #: Hosts whose connection was lost or stopped answering during this run.
        self._lost: set[str] = set()
        #: Of those, hosts that stopped answering (a timed-out command could not be stopped):
        #: new commands fail at once instead of waiting for another timeout.
        self._hung: set[str] = set()
        self._no_session: set[int] = set()

    # --- plumbing --------------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        with contextlib.suppress(Exception):  # a subscriber's failure must not break a command
            self.context.emit(event)

    def _setup(self) -> tuple[Resolver, Connector]:
        resolver, connector = self._resolver, self._connector
        if resolver is not None and connector is not None:  # set once (below, under the lock)
            return resolver, connector
        with self._lock:
            if self._resolver is None or self._connector is None:
                from nexus_ssh.connect import Connector

                self._resolver = Resolver(self.context.config, self.context.options)
                options = dict(self.context.options)
                for key in (
                    "ssh_connect_rate",
                    "ssh_jump_concurrency",
                    "ssh_connect_concurrency",
                ):  # config keys the connector reads
                    if key not in options and self.context.config.get(key) is not None:
                        options[key] = self.context.config.get(key)
                self._connector = Connector(self._resolver, options)
            return self._resolver, self._connector

    def prepare(self, hosts: Sequence[Host]) -> None:
        """Import Paramiko and read the ssh config once, before the hosts' threads start; note
        the run's hosts, whose idle connection is kept until :meth:`host_done`."""
        self._pending = {h.key for h in hosts}
        self._setup()
        # Every module the hosts' threads import, imported here, once: an import that fails
        # half-way in one thread (out of open files, say) leaves a partial module the others
        # then trip over ("partially initialized module 'tenacity'"). tenacity (connection
        # retries, after a failed connect only) when the run may run out of open files: its
        # import costs ~50 ms of CPU where tornado is installed (docs/decisions.md).
        if _may_run_out_of_files(len(hosts), self.pool_size):
            import tenacity  # noqa: F401 - the connection retries (connect.py)

        import nexus_ssh.hostkeys
        import nexus_ssh.pool
        import nexus_ssh.session  # noqa: F401

    def spec_for(self, host: Host) -> ConnectSpec:
        """The resolved connection recipe for ``host`` (cached)."""
        key = (host.name, host.user, host.port)
        spec = self._specs.get(key)
        if spec is None:
            resolver, _ = self._setup()
            spec = resolver.resolve(host.name, host.user, host.port)
            if host.facts.get("ssh_auth") == "none":  # e.g. Tailscale SSH: the tailnet authenticates
                spec = dataclasses.replace(spec, auth_none=True)
            if host.facts.get("ssh_host_keys"):  # host keys its source vouches for (Tailscale SSH)
                spec = dataclasses.replace(spec, host_keys=tuple(map(str, host.facts["ssh_host_keys"])))
            self._specs[key] = spec
            if spec.policy == "off" and not self._warned_off:
                self._warned_off = True
                self._emit(
                    Log(
                        run_id=self.context.run_id,
                        level="warning",
                        message="SSH host key verification is off: connections can be intercepted",
                    )
                )
        return spec

    def _pool(self, spec: ConnectSpec, label: str) -> HostPool:
        # Every host asks at the same moment at the start of a run: a lock taken here made
        # them queue, each hand-over waiting for the GIL. Reading a dict needs none.
        pool = self._pools.get(spec.pool_key)
        if pool is not None and not self._closed:
            return pool
        from nexus_ssh.pool import HostPool

        with self._lock:
            if self._closed:
                raise RuntimeError("the ssh executor is closed")
            pool = self._pools.get(spec.pool_key)
            if pool is None:
                pool = HostPool(
                    label,
                    self.pool_size,
                    lambda: self._open(spec, label, None),
                    lambda conn, why: self._on_close(label, spec, conn, why),
                )
                self._pools[spec.pool_key] = pool
            if self._sweeper is None:
                self._sweeper = threading.Thread(target=self._sweep_loop, name="nexus-ssh-idle", daemon=True)
                self._sweeper.start()
            return pool

    def _open(self, spec: ConnectSpec, label: str, cancel: Cancel | None) -> Connection:
        from nexus_ssh.connect import retry_text

        _, connector = self._setup()
        self._emit(
            SshConnectStart(
                run_id=self.context.run_id, host=label, user=spec.target.user, port=spec.target.port
            )
        )
        t0 = time.monotonic()

        def retrying(failed: int, attempts: int, why: str, delay: float) -> None:
            # Every host's next attempt is an event of its own (JSON shows which hosts were
            # retried); it starts once the retry's wait (``delay``) has passed.
            self._emit(
                SshConnectStart(
                    run_id=self.context.run_id,
                    host=label,
                    user=spec.target.user,
                    port=spec.target.port,
                    attempt=failed + 1,
                )
            )
            # The same failure on many hosts (a dead jump host, a throttled server) is said once
            # per attempt: 200 hosts behind one dead hop made 400 lines (the report groups them).
            from nexus_core.plugin import alike_key

            alike = (failed, alike_key(why, label, spec.target.hostname))
            with self._lock:
                said = alike in self._retries_said
                self._retries_said.add(alike)
            if said:
                return
            message = retry_text(label, failed, attempts, why, delay)
            self._emit(Log(run_id=self.context.run_id, level="warning", message=message))

        if cancel is None:
            conn = connector.connect(spec, None, retrying)
        else:  # a stop abandons a connection still being opened at once (docs/cli.md)
            conn = connector.connect(spec, cancel.sleep, retrying, _watch(cancel))
        self._emit(
            SshConnect(
                run_id=self.context.run_id,
                host=label,
                duration=time.monotonic() - t0,
                auth=conn.auth,
                port=spec.target.port,
            )
        )
        return conn

    def _on_close(self, label: str, spec: ConnectSpec, conn: Connection, why: str) -> None:
        with self._lock:
            session = self._sessions.pop(id(conn), None)
            self._no_session.discard(id(conn))
        # At the executor's close the whole connection goes: closing the transport ends the
        # session shell on the server too (sshd hangs it up), so its channel is not closed
        # first. That polite close cost a message and a lock hand-off per host, one host after
        # another, at the end of every run: half the client's GIL time at 250 hosts.
        if session is not None and why != "executor closed":
            session.close()
        conn.close()
        self._emit(SshDisconnect(run_id=self.context.run_id, host=label, reason=why, port=spec.target.port))

    def _sweep_loop(self) -> None:
        interval = max(0.05, min(5.0, self.idle_timeout / 4))
        while not self._stop.wait(interval):
            with self._lock:
                pools = list(self._pools.values())
            for pool in pools:
                pool.sweep(self.idle_timeout)

    def connection_count(self) -> int:
        """Connections open (or being opened) over all pools."""
        with self._lock:
            return sum(p.total for p in self._pools.values())

    # --- the Executor interface ------------------------------------------------------------

    def host_done(self, host: Host) -> None:
        """The run has no more commands for ``host``: its pool's last idle connection may go
        after ``ssh_idle_timeout`` like any other."""
        self._pending.discard(host.key)
        pool = self._pool_of.pop(host.key, None)
        if pool is not None:
            pool.pending.discard(host.key)

    def remove_markers(self, host: Host, run_id: str) -> None:
        """Remove the run's status file from ``host``.

        In session mode this is one ``rm`` line in the host's session shell (no ``setsid``,
        no new ``sh``); in exec mode, an exec channel as for any command.
        """
        from nexus_core.plugin import cleanup_line

        if host.name in self._lost:  # the host stopped answering: do not wait for it again
            self._emit(
                Log(
                    run_id=self.context.run_id,
                    level="debug",
                    message=f"status files left on {host.name} (connection lost): removed by a later prune",
                )
            )
            return
        with self._lock:  # first: a command starting now makes its own files
            self._spare.pop((run_id, host.label), None)
        line = cleanup_line(run_id, host.label)
        self.run(host, Command(line, timeout=30), lambda _s, _l: None, Cancel(), 30.0, raw=True)

    def run(
        self,
        host: Host,
        command: Command,
        on_output: OutputCallback,
        cancel: Cancel,
        timeout: float,
        *,
        raw: bool = False,
    ) -> CommandResult:
        """Run ``command`` on ``host``; see the module docstring of :mod:`nexus_ssh.remote`.

        ``raw``: Nexus's own short command (no sudo, env, cwd or marker), run in session mode
        by the session shell itself (:func:`nexus_ssh.session.raw_input`).
        """
        self._under_way.append(None)  # list appends and pops are atomic: no lock to queue on
        marker = command.marker
        donor = self._spool_take(marker.run_id, marker.host) if marker is not None and not raw else None
        use = _SpoolUse()
        try:
            return self._run_command(host, command, on_output, cancel, timeout, raw=raw, donor=donor, use=use)
        finally:
            self._under_way.pop()
            if marker is not None and not raw:
                self._spool_done(marker.run_id, marker.host, marker.key, donor, use)

    def _spool_take(self, run_id: str, folder: str) -> tuple[str, int] | None:
        """An earlier command's spool files for the next command of the run in ``folder``."""
        with self._lock:
            spare = self._spare.get((run_id, folder))
            return spare.pop() if spare else None

    def _spool_done(
        self, run_id: str, folder: str, key: str, donor: tuple[str, int] | None, use: _SpoolUse
    ) -> None:
        """Offer what the command ``key`` leaves to the run's later commands on the host.

        The files it was offered go back when it certainly left them alone (never sent, or its
        wrapper found their last writer's process group alive); its own spool (its files or
        the ones it took) when ``use.clean``, with its own process group to check. Otherwise
        they are not offered again: a command may still write to them.
        """
        back: list[tuple[str, int]] = []
        if donor is not None and (not use.sent or (use.started and not use.reused)):
            back.append(donor)
        if use.clean and use.group > 1:
            back.append((donor[0] if donor is not None and use.reused else key, use.group))
        if back:
            with self._lock:
                self._spare.setdefault((run_id, folder), []).extend(back)

    def _run_command(
        self,
        host: Host,
        command: Command,
        on_output: OutputCallback,
        cancel: Cancel,
        timeout: float,
        *,
        raw: bool,
        donor: tuple[str, int] | None,
        use: _SpoolUse,
    ) -> CommandResult:
        start = time.monotonic()
        deadline = start + timeout if timeout and timeout > 0 else None
        if cancel.requested:
            return CommandResult("interrupted", reason="not started: the run is stopping")
        if host.name in self._hung:
            # The host stopped answering earlier in this run: say so at once instead of waiting
            # for another timeout (clean-up and prune commands included). A host whose
            # connection merely dropped is reconnected as usual.
            return CommandResult(
                "unreachable",
                None,
                0.0,
                f"not started: {host.name} stopped answering earlier in this run",
                retryable=False,
            )
        # A sudo that reads its password on stdin needs the channel's stdin: exec mode.
        use_session = (
            self.session_mode == "shell"
            and command.input is None  # the command's own input: exec mode
            and not ((command.sudo or command.user) and self._sudo_password is not None)
        )

        # In a session the spool keeper's text is the session shell's (shell.keeper_start).
        keeper = use_session and command.marker is not None
        try:
            spec = self.spec_for(host)
            script = remote.build(
                command.cmd,
                sudo=command.sudo,
                user=command.user,
                env=command.env,
                cwd=command.cwd,
                marker=command.marker,
                spool=command.marker is not None,
                sudo_password=self._sudo_password is not None,
                stdin=command.input is not None,
                spool_max=self.spool_max,
                keeper_arg=keeper,
                keeper_stay=command.more,
                reuse=donor,
            )
        except (SettingsError, remote.CommandError) as exc:
            return CommandResult("error", reason=str(exc), retryable=False, duration=time.monotonic() - start)
        pool = self._pool(spec, host_label(host.name, spec.target.port))
        if host.key in self._pending and host.key not in self._pool_of:
            self._pool_of[host.key] = pool
            pool.pending.add(host.key)
        for _ in range(self.pool_size + 2):  # each round drops one stale connection
            got = self._checkout(pool, spec, host, cancel, deadline, start)
            if isinstance(got, CommandResult):
                return got
            conn, t_checkout = got
            session: Session | None = None
            chan: Channel | None = None
            token = ""
            try:
                session = self._session_for(conn, spec, host) if use_session else None
                use.sent = True  # from here on the script may reach the host
                if session is not None:
                    token = sess.nonce()
                    if raw:
                        session.start_raw(command.cmd, token)
                    else:
                        session.start(script, token, keeper)
                else:
                    if keeper:  # no session on this host after all: the text goes with the script
                        keeper, script = False, shell.with_keeper_arg(script)
                    chan = self._open_channel(conn, spec)
            except Exception as exc:
                if session is not None:
                    self._drop_session(conn, session)
                pool.discard(conn, f"stale ({type(exc).__name__})")
                continue
            # The command's own time starts now that it runs on the host: connecting has its
            # own bound (ssh_connect_timeout per attempt). At 1,000 hosts the last handshakes of
            # a busy client end a minute after the first, which ate whole 60 s command timeouts.
            run_deadline = time.monotonic() + timeout if timeout and timeout > 0 else None
            try:
                return self._run_on(
                    conn,
                    chan,
                    session,
                    token,
                    spec,
                    host,
                    command,
                    script,
                    on_output,
                    cancel,
                    timeout,
                    run_deadline,
                    start,
                    keeper,
                    use,
                )
            finally:
                self._emit(
                    PoolCheckin(
                        run_id=self.context.run_id,
                        host=host_label(host.name, spec.target.port),
                        use_time=time.monotonic() - t_checkout,
                        port=spec.target.port,
                    )
                )
                pool.checkin(conn)
        return CommandResult(
            "error",
            reason=f"could not open a session on {host.name}: connections keep failing",
            duration=time.monotonic() - start,
        )

    def _checkout(
        self,
        pool: HostPool,
        spec: ConnectSpec,
        host: Host,
        cancel: Cancel,
        deadline: float | None,
        start: float,
    ) -> tuple[Connection, float] | CommandResult:
        from nexus_ssh.pool import PoolCancelled, PoolTimeout

        t0 = time.monotonic()
        try:
            conn = pool.checkout(
                deadline,
                lambda: cancel.requested,
                factory=lambda: self._open(spec, host_label(host.name, spec.target.port), cancel),
            )
        except PoolTimeout as exc:
            return CommandResult("timeout", reason=str(exc), duration=time.monotonic() - start)
        except (PoolCancelled, CancelledConnect):
            return CommandResult(
                "interrupted", reason="stopped while connecting", duration=time.monotonic() - start
            )
        except ConnectError as exc:
            attempts = self._connector.tries(exc) if self._connector else 1
            head, _, rest = exc.reason.partition("\n")
            if attempts > 1:
                head = f"{head} after {attempts} attempts"
            self._emit(
                SshError(
                    run_id=self.context.run_id,
                    host=host_label(host.name, spec.target.port),
                    reason=head,
                    port=spec.target.port,
                )
            )
            return CommandResult(
                "unreachable",
                reason=head,
                hint=with_hints(head, rest),
                headline=headline(head),
                retryable=exc.retryable,
                duration=time.monotonic() - start,
            )
        now = time.monotonic()
        self._emit(
            PoolCheckout(
                run_id=self.context.run_id,
                host=host_label(host.name, spec.target.port),
                port=spec.target.port,
                queue_time=now - t0,
                pool_size=pool.size,
                available=pool.available,
            )
        )
        return conn, now

    @staticmethod
    def _open_channel(conn: Connection, spec: ConnectSpec) -> Channel:
        chan = conn.transport.open_session(timeout=spec.connect_timeout)
        return chan

    def _session_for(self, conn: Connection, spec: ConnectSpec, host: Host) -> Session | None:
        """The connection's shell session (opened now if it has none or it died), or None when
        the host cannot run one. Raises when the connection cannot open a channel (stale)."""
        key = id(conn)
        if key in self._no_session:  # reads need no lock (writes take it)
            return None
        session = self._sessions.get(key)
        if session is not None:
            if session.usable():
                return session
            self._drop_session(conn, session)
        try:
            session = sess.Session.open(conn.transport, spec.connect_timeout)
        except sess.SessionError as exc:
            if not conn.transport.is_active():
                raise
            with self._lock:
                self._no_session.add(key)
            self._emit(
                Log(
                    run_id=self.context.run_id,
                    level="debug",
                    message=f"ssh session mode unavailable on {host.name} ({exc}): using exec channels",
                )
            )
            return None
        with self._lock:
            self._sessions[key] = session
        return session

    def _drop_session(self, conn: Connection, session: Session) -> None:
        with self._lock:
            if self._sessions.get(id(conn)) is session:
                del self._sessions[id(conn)]
        session.close()

    def _run_on(
        self,
        conn: Connection,
        chan: Channel | None,
        session: Session | None,
        token: str,
        spec: ConnectSpec,
        host: Host,
        command: Command,
        script: str,
        on_output: OutputCallback,
        cancel: Cancel,
        timeout: float,
        deadline: float | None,
        start: float,
        keeper: bool,
        use: _SpoolUse,
    ) -> CommandResult:
        """Run ``script`` on ``session`` (or ``chan``), again on a PTY channel when sudo wants one.

        ``keeper``: ``script`` was built with ``keeper_arg`` for the session shell; a PTY
        channel has none, so the keeper's text is appended there. ``use``: filled in with what
        the command did with its spool files.
        """
        result, needs_tty = self._exec(
            conn,
            chan,
            session,
            token,
            host,
            command,
            script,
            on_output,
            cancel,
            timeout,
            deadline,
            start,
            use,
            pty=False,
        )
        if needs_tty and command.input is None:  # sudo demands a terminal: an exec channel with a PTY
            # (never for a command reading a secret on its input: a terminal would echo it)
            chan = self._open_channel(conn, spec)
            result, _ = self._exec(
                conn,
                chan,
                None,
                "",
                host,
                command,
                shell.with_keeper_arg(script) if keeper else script,
                on_output,
                cancel,
                timeout,
                deadline,
                start,
                use,
                pty=True,
            )
        return result

    def _redact(self, line: str) -> str:
        pw = self._sudo_password
        return line.replace(pw, REDACTED) if pw and pw in line else line

    def _feed_password(self, chan: Channel, pty: bool) -> None:
        """Write the sudo password on the channel's stdin, then end the input (sudo never waits)."""
        pw = self._sudo_password
        if pw is None:
            return
        chan.sendall(pw.encode() + b"\n")
        if pty:
            chan.sendall(b"\x04")  # ^D: end of input for a terminal in canonical mode
        else:
            chan.shutdown_write()

    @staticmethod
    def _sudo_failure(host: Host, tail: tuple[str, ...], have_password: bool) -> tuple[str, str] | None:
        """(reason, hint) when sudo itself refused to start the command, else None."""
        text = "\n".join(tail)
        if not have_password and any(t in text for t in _SUDO_WANTS_PASSWORD):
            # `sudo -n` says "a password is required" before it looks at sudoers, so a user with
            # no sudo rights at all gets the same answer: both causes are named.
            return (
                f"sudo on {host.label} asked for a password (or this user may not use sudo there)",
                "- If the user may use sudo with a password: pass -K/--ask-sudo-pass to type it once per "
                "run, or set NEXUS_SUDO_PASSWORD where no terminal is available\n"
                "- Or let this user run sudo without a password (NOPASSWD in sudoers)\n"
                "- If the user is not in sudoers: log in as a user who is (-u/--user, ssh_user), "
                "or drop sudo=True",
            )
        if have_password and any(t in text for t in _SUDO_BAD_PASSWORD):
            return (
                f"sudo on {host.label} rejected the password",
                "- Check the sudo password given with -K/--ask-sudo-pass or NEXUS_SUDO_PASSWORD\n"
                "- Check that this user may use sudo on the host (sudoers)",
            )
        return None

    def _exec(
        self,
        conn: Connection,
        chan: Channel | None,
        session: Session | None,
        token: str,
        host: Host,
        command: Command,
        script: str,
        on_output: OutputCallback,
        cancel: Cancel,
        timeout: float,
        deadline: float | None,
        start: float,
        use: _SpoolUse,
        pty: bool,
    ) -> tuple[CommandResult, bool]:
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        groups: list[int] = []
        held: list[tuple[str, str]] = []  # stderr held back while a sudo tty error is possible
        sudo = command.sudo or bool(command.user)

        def emit(stream: str, line: str) -> None:
            if sudo and not pty and stream == "stderr" and any(t in line for t in _NEEDS_TTY):
                held.append((stream, line))  # maybe retried with a pty: shown only if not
                return
            on_output(stream, line)

        started = [False]  # the shell behind sudo printed its marker: sudo let the command run

        def marker(pg: tuple[int, int]) -> None:
            groups[:] = sorted(set(groups) | set(pg))
            started[0] = started[0] or pg[0] != pg[1] or not sudo

        redact = self._redact if sudo and self._sudo_password else None
        # Session mode: the command (already started) ends with a sentinel line carrying the
        # random nonce ``token`` on both streams.
        end = sess.sentinel(token) if session is not None else None
        # With a status marker the output was spooled on the host and comes back at the end,
        # on stdout: stdout's lines, a line with the exit code, stderr's lines.
        spooled = command.marker is not None
        out = _Lines("stdout", emit, marker, tail, redact, end, spool=spooled)
        err = _Lines("stderr", emit, marker, tail, redact, end)
        if session is not None:
            chan = session.chan
        assert chan is not None
        wake = waker(chan)  # not select(): see nexus_ssh.wake
        status: str | None = None
        reason = ""
        signalled = 0
        # A spooled command still running after a moment: follow its spool on a second channel.
        follow: _Follower | None = None
        followed = False
        soon = FOLLOW_AFTER + FOLLOW_PER_RUNNING * len(self._under_way)
        if timeout and timeout > 0:
            soon = min(soon, timeout / 3)
        follow_at = time.monotonic() + soon if spooled else None
        finished = False
        settle: float | None = None  # session mode, after a kill: wait this long for the sentinels
        exited: float | None = None  # exec mode: when the exit status came
        # A stop request wakes the wait at once (its level is checked after every wake-up);
        # data, EOF, a closed channel or a lost connection set the waker through the channel.
        cancel.listeners.append(wake.set)
        try:
            if session is None:
                if pty:
                    chan.get_pty(term="dumb", width=200, height=50)
                chan.exec_command(script)
                if command.input is not None and not pty:
                    if sudo and self._sudo_password is not None:
                        chan.sendall(self._sudo_password.encode() + b"\n")  # sudo reads its line first
                    chan.sendall(command.input.encode("utf-8"))
                    chan.shutdown_write()
                elif sudo and self._sudo_password is not None:
                    self._feed_password(chan, pty)
                elif not pty:
                    chan.shutdown_write()  # a command reading stdin gets EOF, as in session mode
            for _ in range(100_000_000):
                progressed = False
                if follow is not None:
                    progressed = follow.pump() or progressed
                elif follow_at is not None and (exited is not None or out.spool_ended):
                    # The command ended and its replay came: a background job that still holds
                    # the channel open (exec mode: its shell kept the wrapper's saved copy of
                    # the channel's stdout, see docs/decisions.md) is not followed.
                    follow_at = None
                elif follow_at is not None and time.monotonic() >= follow_at:
                    follow_at = None
                    assert command.marker is not None
                    follow = _Follower.start(conn, command.marker, emit, marker, tail, redact)
                    if follow is not None:
                        followed = True
                        wake.watch(follow.chan)
                while chan.recv_ready():
                    data = chan.recv(65536)
                    if follow is not None and data:  # the replay begins: it has everything
                        out.skip_out, out.skip_err = follow.stop()
                        out.upto_out, out.upto_err = follow.out.pos or 0, follow.err.pos or 0
                        follow = None
                    out.feed(data)
                    progressed = True
                while chan.recv_stderr_ready():
                    err.feed(chan.recv_stderr(65536))
                    progressed = True
                if session is not None:
                    if out.done and err.done:
                        finished = True
                        break
                elif chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                    # sshd may report the exit status before the last output: read up to EOF
                    # (bounded, as a background process may keep the pipes open).
                    exited = exited or time.monotonic()
                    if chan.eof_received or chan.closed or time.monotonic() - exited > _DRAIN:
                        finished = True
                        break
                gone = chan.closed or not conn.transport.is_active()
                if session is not None:  # the session shell itself ended (killed, channel closed)
                    gone = gone or chan.eof_received or chan.exit_status_ready()
                if gone:
                    if not chan.recv_ready() and not chan.recv_stderr_ready():
                        break
                    continue
                now = time.monotonic()
                if settle is not None:
                    if now >= settle:
                        break
                elif deadline is not None and now >= deadline:
                    status = "timeout"
                    reason = self._stop_remote(
                        conn, groups, ["TERM", "KILL"], sudo, command.user, f"timed out after {timeout:g}s"
                    )
                    if conn.broken and (
                        _NO_CHANNEL in reason or not (out.received or err.received or groups)
                    ):
                        status = "unreachable"  # no channel for the kill, or not one byte: a hung host
                    if session is None or conn.broken:
                        break
                    settle = time.monotonic() + _SETTLE
                level = cancel.level
                if level > signalled and level in _SIGNALS:
                    signalled = level
                    sigs = _SIGNALS[level]
                    why = self._stop_remote(
                        conn, groups, sigs, sudo, command.user, f"interrupted (SIG{sigs[0]})", grace=0.0
                    )
                    if status != "timeout":
                        reason, status = why, "interrupted"
                    if level >= Cancel.KILL:
                        if session is None or conn.broken:
                            break
                        settle = settle or time.monotonic() + _SETTLE
                if progressed:
                    continue
                limit = settle if settle is not None else deadline
                if follow_at is not None:
                    limit = follow_at if limit is None else min(limit, follow_at)
                wait = _POLL if limit is None else max(0.0, min(_POLL, limit - now))
                if exited is not None:
                    wait = min(wait, 0.02)
                wake.wait(wait)
            if finished and session is None and not conn.transport.is_active():
                # A channel closed because the connection died (Paramiko then reports an exit
                # status too): the host was lost, the command did not end.
                finished = spooled and out.spool_ended
            out.feed(b"", final=True)
            err.feed(b"", final=True)
            if 0 < signalled < Cancel.KILL and groups and conn.transport.is_active() and not conn.broken:
                # The command's shell ended under SIGINT/SIGTERM, but what it started may ignore
                # them (trap '' INT TERM) and live on in its process group: no orphans.
                self._stop_remote(conn, groups, ["KILL"], sudo, command.user, "", grace=0.0)
        finally:
            with contextlib.suppress(ValueError):
                cancel.listeners.remove(wake.set)
            if follow is not None:  # no replay came (killed, timed out): show what was followed
                with contextlib.suppress(Exception):
                    follow.pump()
                    follow.finish()
                follow.stop()
            # The session shell ended (killed on the host) while the connection is up: not a lost
            # connection, and the command, in a session of its own, may still run there.
            shell_gone = (
                session is not None
                and not finished
                and status is None
                and not session.usable()
                and conn.transport.is_active()
                and not conn.broken
            )
            if not finished and status is None and not shell_gone:
                # Leaving abnormally (callback raised, connection lost): do not leave the command running.
                if conn.transport.is_active():
                    try:
                        self._stop_remote(conn, groups, ["TERM", "KILL"], sudo, command.user, "")
                    except Exception:
                        conn.broken = True
                else:
                    conn.broken = True
            if session is None:
                try:
                    chan.close()
                except Exception:
                    conn.broken = True
            elif not finished:  # the shell is still busy or gone: the next command opens another
                self._drop_session(conn, session)
        duration = time.monotonic() - start
        exit_code: int | None = None
        if finished and session is not None:
            exit_code = out.code
            if spooled:
                exit_code = out.spool_code if out.spool_ended else None
        elif finished:
            code = chan.recv_exit_status()
            exit_code = code if code >= 0 else None
            if spooled:
                exit_code = out.spool_code if out.spool_ended else None
        use.started, use.reused = bool(groups), out.reused or err.reused
        use.group = groups[0] if len(groups) == 1 else 0
        # Offered to later commands only when nothing can write to its files any more and the
        # keeper never cut them (a .cut file would be read as the next command's).
        use.clean = (
            spooled
            and finished
            and status is None
            and out.spool_ended
            and not sudo
            and not followed
            and not (out.cut or err.cut)
            and out.size + err.size < self.spool_max // 2
        )
        if sudo and not pty and exit_code == 1 and held:
            return CommandResult("error", reason="sudo needs a tty"), True
        for stream, line in held:
            on_output(stream, line)
        tail_t = tuple(tail)
        if status == "timeout":
            return CommandResult("timeout", None, duration, reason, tail_t, retryable=True), False
        if status == "unreachable":
            self._lost.add(host.name)
            self._hung.add(host.name)
            return CommandResult(
                "unreachable",
                None,
                duration,
                f"{host.name} stopped answering: the command timed out after {timeout:g}s "
                "and could not be stopped",
                tail_t,
                retryable=False,
            ), False
        if status == "interrupted":
            return CommandResult("interrupted", exit_code, duration, reason, tail_t, retryable=False), False
        if not finished:
            if shell_gone and command.marker is None:  # nothing on the host tells its end
                return CommandResult(
                    "error",
                    None,
                    duration,
                    "the remote shell session ended while the command ran",
                    tail_t,
                    retryable=False,  # it may still run: never started a second time
                ), False
            if shell_gone:
                # The session shell ended under the command (killed on the host), but the command
                # runs in a session of its own and may well finish: as for a lost connection, it
                # is not retried and its status files stay, so that a resume asks the host what
                # became of it instead of running it again.
                self._lost.add(host.name)
                return CommandResult(
                    "unreachable",
                    None,
                    duration,
                    "the remote shell session ended while the command ran; the command may still be "
                    "running there (a resume asks the host what became of it, and never runs it again)",
                    tail_t,
                    retryable=False,
                ), False
            conn.broken = True
            self._lost.add(host.name)
            # A connection failure of the host (exit 3), not a failed command: not retried, as
            # the command may still be running there (resume asks the host).
            return CommandResult(
                "unreachable",
                None,
                duration,
                "the SSH connection was lost while the command ran",
                tail_t,
                retryable=False,
            ), False
        if exit_code == 0:
            return CommandResult("ok", 0, duration, "", tail_t), False
        if exit_code is None:
            # Its shell died before its replay (kill -9): the session shell saw 128 + the signal.
            signal = out.code - 128 if finished and session is not None and out.code and out.code > 128 else 0
            why = (
                f"the command was killed by signal {signal}"
                if signal
                else "the command was killed by a signal"
            )
            return CommandResult("failed", None, duration, why, tail_t), False
        if sudo and exit_code == 1 and not started[0]:  # no marker: sudo never started the command
            refused = self._sudo_failure(host, tail_t, self._sudo_password is not None)
            if refused is not None:
                return CommandResult(
                    "failed", exit_code, duration, refused[0], tail_t, retryable=False, hint=refused[1]
                ), False
        return CommandResult("failed", exit_code, duration, f"exit code {exit_code}", tail_t), False

    def _stop_remote(
        self,
        conn: Connection,
        groups: list[int],
        signals: list[str],
        sudo: bool,
        user: str | None,
        what: str,
        grace: float | None = None,
    ) -> str:
        """Signal the command's process groups through a second channel; return a reason text."""
        if not groups:
            conn.broken = True  # no handle on the process: drop the whole connection
            return f"{what}; the remote process group was unknown, connection closed"
        grace = self.kill_grace if grace is None else grace
        password = self._sudo_password if (sudo or user) else None
        cmd = remote.kill_command(
            groups, signals, grace, sudo=sudo, user=user, sudo_password=password is not None
        )
        try:
            chan = conn.transport.open_session(timeout=_KILL_OPEN)
        except Exception as exc:  # no channel in time: the host does not answer
            conn.broken = True
            return f"{what}; {_NO_CHANNEL} the remote process group {groups} ({exc!r})"
        try:
            try:
                chan.exec_command(cmd)
                if password is not None:  # one line for each sudo the kill command may run
                    chan.sendall((password + "\n").encode() * 2)
                    chan.shutdown_write()
                limit = time.monotonic() + grace * len(signals) + 10
                wake = waker(chan)
                while not chan.exit_status_ready() and time.monotonic() < limit:
                    wake.wait(0.1)
                    if chan.recv_ready():
                        chan.recv(4096)
            finally:
                chan.close()
        except Exception as exc:
            conn.broken = True
            return f"{what}; signalling the remote process group {groups} failed ({exc!r})"
        sig = "/".join(signals)
        return f"{what}; remote process group {' '.join(map(str, groups))} sent SIG{sig}"

    def connection(self, host: Host, streams: Any) -> contextlib.AbstractContextManager[Any]:
        """A Fabric ``Connection`` on a pooled transport to ``host`` (see :mod:`nexus_ssh.fabric_bridge`)."""
        from nexus_ssh.fabric_bridge import pooled_connection

        return pooled_connection(self, host, streams)

    @contextlib.contextmanager
    def _borrow(self, host: Host) -> Iterator[Any]:
        """A pooled connection to ``host`` for one use that is not a command (SFTP)."""
        spec = self.spec_for(host)
        pool = self._pool(spec, host_label(host.name, spec.target.port))
        got = self._checkout(pool, spec, host, self.context.cancel, None, time.monotonic())
        if isinstance(got, CommandResult):
            raise ConnectionError(got.reason)
        conn, _ = got
        try:
            yield conn
        except BaseException:
            if not conn.transport.is_active():
                conn.broken = True
            raise
        finally:
            pool.checkin(conn)

    def close(self) -> None:
        """Close every pooled connection and stop the idle sweeper."""
        with self._lock:
            self._closed = True
            pools = list(self._pools.values())
            sweeper = self._sweeper
        self._stop.set()
        if sweeper is not None:
            sweeper.join(timeout=5)
        for pool in pools:
            pool.close()


def _watch(cancel: Cancel) -> Watch:
    """A ``watch`` for :meth:`Connector.connect`: ``abort`` runs when ``cancel`` rises (at once if
    a stop was asked already), until the returned ``forget`` is called.

    The first stop (STOP: start nothing new) abandons connections still being opened: none of
    them runs a command yet, so none is cut short, and a server that accepted TCP but stays
    silent no longer holds the run until ``ssh_connect_timeout``.
    """

    def watch(abort: Callable[[], None]) -> Callable[[], None]:
        cancel.listeners.append(abort)
        if cancel.requested:
            abort()

        def forget() -> None:
            with contextlib.suppress(ValueError):
                cancel.listeners.remove(abort)

        return forget

    return watch
