"""The ``local`` executor: commands on this machine through invoke, one process group each."""

from __future__ import annotations

import os
import shlex
import subprocess
import threading
import time
from collections import deque
from typing import Any

import pluggy

from nexus_core.api import Cancel, CommandResult, Executor, ExecutorContext, OutputCallback
from nexus_core.model import Command, Host

hookimpl = pluggy.HookimplMarker("nexus")

TAIL_LINES = 20


class LineStream:
    """A write-only text stream that hands complete lines to a callback."""

    def __init__(self, stream: str, on_output: OutputCallback, tail: deque[str]) -> None:
        self.stream = stream
        self.on_output = on_output
        self.tail = tail
        self._partial = ""

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

    def flush(self) -> None:
        """Nothing to flush until the stream ends (see :meth:`finish`)."""

    def finish(self) -> None:
        """Emit the last line when the output did not end with a newline."""
        if self._partial:
            self._emit(self._partial)
            self._partial = ""


def _runner_class() -> type[Any]:
    """Build the invoke runner subclass lazily (invoke is imported only when a command runs)."""
    from invoke.runners import Local

    class GroupLocal(Local):
        """invoke's Local runner, in a new session (process group) with a working directory."""

        cwd: str | None = None

        def start(self, command: str, shell: str, env: dict[str, Any]) -> None:
            self.process = subprocess.Popen(
                command,
                shell=True,
                executable=shell,
                env=env,
                cwd=self.cwd,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

        def wait(self) -> None:
            # Block on the process instead of invoke's 10 ms polling loop.
            self.process.wait()

        def kill(self) -> None:
            try:
                os.killpg(self.process.pid, 9)
            except (ProcessLookupError, PermissionError):
                pass

        def close_proc_stdin(self) -> None:
            pass

    return GroupLocal


class LocalExecutor(Executor):
    """Runs commands on the machine Nexus runs on, in the nexusfile's folder by default."""

    name = "local"
    supports_markers = True

    def __init__(self, context: ExecutorContext) -> None:
        super().__init__(context)
        from invoke.config import Config
        from invoke.context import Context

        from nexus_core.executors.watchdog import Watchdog

        self._runner = _runner_class()
        self._invoke = Context(Config(lazy=True))
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
        out = LineStream("stdout", on_output, tail)
        err = LineStream("stderr", on_output, tail)
        runner = self._runner(self._invoke)
        runner.cwd = command.cwd or self.context.root
        if not os.path.isdir(runner.cwd):
            return CommandResult("error", None, 0.0, f"working directory {runner.cwd} does not exist", retryable=False)
        text = command.cmd
        if command.sudo or command.user:
            prefix = ["sudo", "-n"] + (["-u", command.user] if command.user else [])
            text = " ".join(prefix) + " -- " + shlex.quote(self.shell) + " -c " + shlex.quote(text)
        if command.marker is not None:
            from nexus_core.markers import wrap

            text = wrap(text, command.marker)
        if cancel.requested:
            return CommandResult("interrupted", None, 0.0, "not started: the run is stopping")
        try:
            promise = runner.run(
                text,
                asynchronous=True,
                warn=True,
                hide=False,
                echo=False,
                pty=False,
                in_stream=False,
                out_stream=out,
                err_stream=err,
                env=dict(command.env),
                replace_env=False,
                shell=self.shell,
            )
        except OSError as exc:
            return CommandResult(
                "error",
                None,
                time.monotonic() - started,
                f"cannot start the command: {exc.strerror or exc}",
                retryable=False,
            )
        watched = self._watchdog.add(runner.process.pid, timeout)
        try:
            result = promise.join()
        finally:
            self._watchdog.remove(watched)
            out.finish()
            err.finish()
        duration = time.monotonic() - started
        code = result.exited
        if watched.timed_out:
            return CommandResult("timeout", code, duration, f"timed out after {timeout:.3g}s", tuple(tail))
        if watched.signalled and code != 0:
            return CommandResult("interrupted", code, duration, "interrupted", tuple(tail), retryable=False)
        if code == 0:
            return CommandResult("ok", 0, duration, "", tuple(tail))
        reason = f"exit code {code}" if code is not None and code >= 0 else f"killed by signal {-(code or 0)}"
        return CommandResult("failed", code, duration, reason, tuple(tail))

    def remove_markers(self, host: Host, run_id: str) -> None:
        """Remove the run's status folder in-process (no shell needed on this machine)."""
        import shutil

        from nexus_core.markers import local_run_dir

        shutil.rmtree(local_run_dir(run_id, host.label), ignore_errors=True)

    def close(self) -> None:
        """Stop the watchdog thread."""
        self._watchdog.close()


@hookimpl
def nexus_executors() -> list[type[Executor]]:
    """The built-in local executor."""
    return [LocalExecutor]
