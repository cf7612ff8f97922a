"""The ``local`` executor: commands on this machine, one process group each.

Each command is one ``/bin/sh -c`` in a new session (so a timeout or a cancel signals the
whole group), and its two output streams are read in the calling thread with ``poll``:
no helper thread per command. invoke's runner did this job before; it started three
threads per command and its import alone cost 33 ms, which was a third of a small local
run's time against ``make -j`` (docs/decisions.md, "The local executor").
"""

from __future__ import annotations

import codecs
import os
import select
import shlex
import subprocess
import threading
import time
from collections import deque

from nexus_core.api import Cancel, Capabilities, CommandResult, Executor, ExecutorContext, OutputCallback
from nexus_core.model import Command, Host

TAIL_LINES = 20
_CHUNK = 65536


class LineStream:
    """Decodes one output stream and hands its complete lines to a callback."""

    def __init__(self, stream: str, on_output: OutputCallback, tail: deque[str]) -> None:
        self.stream = stream
        self.on_output = on_output
        self.tail = tail
        self._partial = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> None:
        """Decode ``data`` (any chunk of bytes) and emit each line it completes."""
        self.write(self._decoder.decode(data))

    def write(self, data: str) -> int:
        """Split ``data`` into lines and emit each complete one."""
        text = self._partial + data
        *lines, self._partial = text.split("\n")
        for line in lines:
            self._emit(line)
        return len(data)

    def _emit(self, line: str) -> None:
        line = line.rstrip("\r")
        self.tail.append(line)
        self.on_output(self.stream, line)

    def finish(self) -> None:
        """Emit the last line when the output did not end with a newline."""
        rest = self._decoder.decode(b"", final=True)
        if rest:
            self.write(rest)
        if self._partial:
            self._emit(self._partial)
            self._partial = ""


def pump(streams: dict[int, LineStream]) -> None:
    """Read every pipe in ``streams`` (fd -> stream) until each reaches end of file."""
    poller = select.poll()  # no descriptor of its own to open and close, unlike epoll
    for fd in streams:
        poller.register(fd, select.POLLIN)
    left = len(streams)
    while left:
        for fd, _ in poller.poll():
            data = os.read(fd, _CHUNK)
            if data:
                streams[fd].feed(data)
            else:
                poller.unregister(fd)
                left -= 1


class LocalExecutor(Executor):
    """Runs commands on the machine Nexus runs on, in the nexusfile's folder by default."""

    name = "local"
    supports_markers = True
    #: Any number of commands at once, streamed, every cancel level; no put/get (files are local).
    capabilities = Capabilities()

    def __init__(self, context: ExecutorContext) -> None:
        super().__init__(context)
        from nexus_core.executors.watchdog import Watchdog

        self._watchdog = Watchdog(context.cancel)
        self._lock = threading.Lock()
        self.shell = str(context.config.get("shell") or "/bin/sh")

    def run(
        self,
        host: Host,
        command: Command,
        on_output: OutputCallback,
        cancel: Cancel,
        timeout: float,
    ) -> CommandResult:
        """Run ``command`` in a new process group; kill the whole group on timeout or cancel."""
        started = time.monotonic()
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        cwd = command.cwd or self.context.root
        if not os.path.isdir(cwd):
            return CommandResult("error", None, 0.0, f"working directory {cwd} does not exist", retryable=False)
        text = command.cmd
        if command.sudo or command.user:
            prefix = ["sudo", "-n"] + (["-u", shlex.quote(command.user)] if command.user else [])
            # sudo resets the environment: export env= values inside, as nexus-ssh does.
            exports = "".join(f"export {k}={shlex.quote(str(v))}\n" for k, v in command.env)
            text = " ".join(prefix) + " -- " + shlex.quote(self.shell) + " -c " + shlex.quote(exports + text)
        if command.marker is not None:
            from nexus_core.markers import wrap

            text = wrap(text, command.marker)
        if cancel.requested:
            return CommandResult("interrupted", None, 0.0, "not started: the run is stopping")
        env = {**os.environ, **{k: str(v) for k, v in command.env}} if command.env else None
        try:
            proc = subprocess.Popen(
                [self.shell, "-c", text],
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            return CommandResult(
                "error",
                None,
                time.monotonic() - started,
                f"cannot start the command: {exc.strerror or exc}",
                retryable=False,
            )
        assert proc.stdout is not None and proc.stderr is not None
        watched = self._watchdog.add(proc.pid, timeout)
        out = LineStream("stdout", on_output, tail)
        err = LineStream("stderr", on_output, tail)
        try:
            with proc.stdout, proc.stderr:
                pump({proc.stdout.fileno(): out, proc.stderr.fileno(): err})
            code = proc.wait()
        finally:
            if proc.returncode is None:  # an output callback raised: do not leave the group behind
                _kill_group(proc.pid)
                proc.wait()
            self._watchdog.remove(watched)
            out.finish()
            err.finish()
        duration = time.monotonic() - started
        if watched.timed_out:
            return CommandResult("timeout", code, duration, f"timed out after {timeout:.3g}s", tuple(tail))
        if watched.signalled and code != 0:
            return CommandResult("interrupted", code, duration, "interrupted", tuple(tail), retryable=False)
        if code == 0:
            return CommandResult("ok", 0, duration, "", tuple(tail))
        reason = f"exit code {code}" if code >= 0 else f"killed by signal {-code}"
        return CommandResult("failed", code, duration, reason, tuple(tail))

    def remove_markers(self, host: Host, run_id: str) -> None:
        """Remove the run's status file in-process (no shell needed on this machine)."""
        from nexus_core.markers import local_status_file

        try:
            os.remove(local_status_file(run_id, host.label))
        except OSError:
            pass

    def close(self) -> None:
        """Stop the watchdog thread."""
        self._watchdog.close()


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, 9)
    except (ProcessLookupError, PermissionError):
        pass
