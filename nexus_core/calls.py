"""``wait_for(cmd)`` and ``call(fn)``: operations that are not one shell command.

* ``wait_for(cmd, timeout=30, interval=1)`` polls a command on the host until it succeeds
  (a health check between rolling batches), bounded by ``timeout``: the last probe starts at
  the deadline. When none succeeds, the operation fails with the last attempt's output and
  exit code, saying how long it waited and how many probes ran.
* ``call(fn, *args, **kwargs)`` runs a Python function at execution time, on the machine
  Nexus runs on, once per host, as ``fn(c, *args, **kwargs)`` where ``c`` is a Fabric-style
  connection to that host given by its executor (:meth:`~nexus_core.api.Executor.connection`):
  a remote transport binds a Fabric ``Connection`` to the connection it already holds, the
  local executor gives an invoke ``Context`` with ``put``/``get``. Its return value is shown
  as output; an exception fails the operation like a failed command, with its message
  (``KeyboardInterrupt`` and ``SystemExit`` raised by the function too: it runs in a worker
  thread, where a real Ctrl+C never arrives; a run that is stopping reports it interrupted).

Both are recorded as :class:`~nexus_core.model.Command` subclasses, so the engine schedules,
times out, reports and checkpoints them like every other operation; only the attempt itself
(:func:`execute`) differs.
"""

from __future__ import annotations

import functools
import os
import re
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nexus_core.api import Cancel, CommandResult, Executor, OutputCallback, unsupported_call
from nexus_core.model import Command, Host
from nexus_core.options import MAX_SECONDS, safe_repr

TAIL_LINES = 20


@dataclass(frozen=True)
class WaitFor(Command):
    """A recorded ``wait_for(cmd, timeout, interval)``: ``cmd`` is the probe, ``timeout`` bounds the wait."""

    interval: float = 1.0

    def flags(self) -> list[str]:
        """The dry-run flags: ``[wait_for:30s every 1s]``."""
        return [f"wait_for:{self.timeout:g}s every {self.interval:g}s"]

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (``op`` tells it from a command)."""
        data = super().to_dict()
        data.update({"op": "wait_for", "interval": self.interval})
        return data


@dataclass(frozen=True)
class Call(Command):
    """A recorded ``call(fn, *args, **kwargs)``; ``cmd`` is what trees show (``call deploy()``)."""

    func: Any = field(default=None, compare=False, repr=False)
    args: tuple[Any, ...] = field(default=(), compare=False, repr=False)
    kwargs: tuple[tuple[str, Any], ...] = field(default=(), compare=False, repr=False)
    #: ``module.qualname`` of the function (what resume compares, with ``cmd``).
    function: str = ""

    def flags(self) -> list[str]:
        """The dry-run flags: ``[python]``."""
        return ["python"]

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (``op`` tells it from a command)."""
        data = super().to_dict()
        data.update({"op": "call", "function": self.function})
        return data


#: Operations that are not a shell command: no status marker, never asked about on resume.
NOT_SHELL: tuple[type[Command], ...] = (WaitFor, Call)


# --- the nexusfile functions ---------------------------------------------------------------


def wait_for(cmd: str, timeout: float = 30, interval: float = 1, **unknown: Any) -> None:
    """Poll ``cmd`` on the host every ``interval`` s until it succeeds; fail after ``timeout`` s.

    ``wait_for("curl -fsS http://localhost:8080/health", timeout=60, interval=2)``. The last
    probe starts at ``timeout`` (the pause before it is what is left, if under ``interval``).
    """
    from nexus_core import dsl

    rec = _recorder("wait_for")
    if rec is None:
        return
    line = dsl._caller(rec.project).line
    bad = False
    for key in unknown:
        if key == "notify":
            from nexus_core.handlers import cannot_notify

            cannot_notify("wait_for", "it checks, it changes nothing")
        else:
            dsl._problem(
                f"wait_for() has no option {key!r}", "options: timeout (seconds), interval (seconds)", "unknown-option"
            )
        bad = True
    if not isinstance(cmd, str) or not cmd.strip():
        dsl._problem(
            f"wait_for() needs a non-empty command string, got {safe_repr(cmd)}",
            'write wait_for("curl -fsS http://localhost:8080/health")',
            "bad-value",
        )
        bad = True
    for name, value, least in (("timeout", timeout, 0.0), ("interval", interval, 0.0)):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not value > least
            or value != value
            or value > MAX_SECONDS
        ):
            dsl._problem(
                f"wait_for(): {name} must be a number of seconds above 0 and at most {MAX_SECONDS:,}"
                f" (a year), not {safe_repr(value)}",
                f"write wait_for(cmd, {name}=...)",
                "bad-value",
            )
            bad = True
    if bad:
        return
    rec.commands.append(WaitFor(cmd=cmd, timeout=float(timeout), interval=float(interval), line=line))


def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Run ``fn(c, *args, **kwargs)`` at execution time for each host, ``c`` a Fabric-style connection to it.

    An existing fabfile task runs unchanged: ``def deploy(c): c.run("make"); c.put("app.tar", "/srv/")``
    then ``call(deploy)`` in a task body. Its return value is shown; an exception fails it
    (``KeyboardInterrupt`` and ``SystemExit`` included: they fail the host, not the run).
    """
    from nexus_core import dsl

    rec = _recorder("call")
    if rec is None:
        return
    line = dsl._caller(rec.project).line
    if not callable(fn):
        dsl._problem(
            f"call() needs a function as its first argument, got {safe_repr(fn)}",
            "write call(deploy) where `def deploy(c): ...` takes a connection first",
            "bad-value",
        )
        return
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__
    module = getattr(fn, "__module__", None) or ""
    if _misfit(rec.project, fn, name, args, kwargs):
        return
    shown = ", ".join([*(safe_repr(a, 40) for a in args), *(f"{k}={safe_repr(v, 40)}" for k, v in kwargs.items())])
    rec.commands.append(
        Call(
            cmd=f"call {name}({shown})",
            timeout=0,
            line=line,
            func=fn,
            args=tuple(args),
            kwargs=tuple(kwargs.items()),
            function=f"{module}.{name}" if module else str(name),
        )
    )


def _misfit(project: Any, fn: Callable[..., Any], name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Record a problem (and return True) when ``fn`` is a task or a handler, or cannot take a
    connection followed by ``args`` and ``kwargs``: found at the ``call()`` line before
    anything runs, not as a ``TypeError`` on every host."""
    import inspect

    from nexus_core import dsl

    for kind, defs in (("task", getattr(project, "tasks", {})), ("handler", getattr(project, "handlers", {}))):
        for d in defs.values():
            if getattr(d, "func", None) is fn:
                how = "name it in deps=[...]" if kind == "task" else "pass it to notify=..."
                dsl._problem(f"call() is given the {kind} {name!r}: a {kind} is not a function to call with a "
                             f"connection", how, "bad-value")  # fmt: skip
                return True
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin or a callable without one: its call tells
        return False
    try:
        signature.bind(object(), *args, **kwargs)
    except TypeError as exc:
        short = name.rsplit(".", 1)[-1]
        if str(exc).startswith("missing"):
            hint = f"pass the other arguments after the function: call({short}, value, name=value)"
        elif str(exc).startswith("got an unexpected"):
            hint = f"pass only the parameters {short} takes, or add that one to it"
        else:
            hint = f"give {short} a first parameter for the connection: def {short}(c, ...)"
        dsl._problem(f"call({short}, ...): {exc} (it is called as {short}(c, ...), c the connection to the host)",
                     hint, "bad-value")  # fmt: skip
        return True
    return False


def _recorder(what: str) -> Any:
    from nexus_core import dsl

    rec = dsl._RECORDER.get()
    if rec is None:
        if dsl._PROJECT.get() is not None:
            dsl._problem(f"{what}() is called outside a task body", "put it inside a function decorated with @task")
            return None
        raise dsl.NexusfileError(f"{what}() can only be called inside a task body, while Nexus plans a run")
    return rec


def check_executor(cmds: Any, executor: type[Executor]) -> str | None:
    """Why ``executor`` cannot run these operations (a validation message), or None."""
    if any(isinstance(c, Call) for c in cmds):
        return unsupported_call(executor)
    return None


# --- running -------------------------------------------------------------------------------


def execute(
    executor: Executor, host: Host, op: Command, on_output: OutputCallback, cancel: Cancel, timeout: float
) -> CommandResult:
    """One attempt of a :class:`WaitFor` or :class:`Call` on ``host`` within ``timeout`` s (0: none)."""
    if isinstance(op, WaitFor):
        return _wait_for(executor, host, op, cancel, timeout)
    assert isinstance(op, Call)
    return _call(executor, host, op, on_output, cancel, timeout)


#: Seconds a probe may always take, even one that starts at the deadline (the last one does):
#: it gets the time left or this, whichever is more (never more than the whole wait's limit).
PROBE_FLOOR = 1.0


def _wait_for(executor: Executor, host: Host, op: WaitFor, cancel: Cancel, timeout: float) -> CommandResult:
    """Probe ``op.cmd`` until it succeeds or the wait's limit (``timeout``, else the op's) passes.

    A failed probe is followed by a pause of ``op.interval`` seconds or of what is left of the
    limit, whichever is shorter, so the last probe starts at the deadline rather than up to one
    interval before it. A timeout says how long the wait really took and how many probes ran.
    """
    from nexus_core.output.style import fmt_duration

    started = time.monotonic()
    limit = timeout if timeout > 0 else op.timeout
    deadline = started + limit
    floor = min(PROBE_FLOOR, limit)
    attempts = 0
    last = CommandResult("failed", None, 0.0, "never ran")
    lines: deque[str] = deque(maxlen=TAIL_LINES)
    while attempts < 1_000_000:  # bounded by the deadline; the count only guards a zero interval
        attempts += 1
        lines.clear()
        allowed = max(deadline - time.monotonic(), floor)
        last = executor.run(host, Command(op.cmd, timeout=allowed), lambda _s, line: lines.append(line),
                            cancel, allowed)  # fmt: skip
        if last.ok:
            return CommandResult("ok", 0, time.monotonic() - started, "", tuple(lines))
        if last.status in ("unreachable", "interrupted", "error"):
            return last
        if cancel.requested:
            return CommandResult("interrupted", None, time.monotonic() - started, "interrupted", retryable=False)
        left = deadline - time.monotonic()
        if left <= 0:
            break
        if not cancel.sleep(min(op.interval, left)):
            return CommandResult("interrupted", None, time.monotonic() - started, "interrupted", retryable=False)
    how = f"exit code {last.exit_code}" if last.exit_code is not None else last.reason or last.status
    tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
    took = time.monotonic() - started
    longer = "give it longer: wait_for(..., timeout=SECONDS)"
    if 0 < timeout < op.timeout:  # what was left of the task's time ended the wait, not its own timeout
        longer = (f"the task's timeout ended the wait before wait_for's own timeout={op.timeout:g}: "
                  "give the task longer with @task(timeout=SECONDS)")  # fmt: skip
    return CommandResult(
        "timeout",
        last.exit_code,
        took,
        f"wait_for: still failing after {fmt_duration(took)} ({tries}, last: {how})",
        tuple(lines) or last.tail,
        retryable=False,
        hint=f"- check `{op.cmd}` on {host.label} by hand\n- {longer}",
        headline="Waiting for a command to succeed timed out",
    )


class _Lines:
    """A writable text stream that hands complete lines to a callback (what invoke writes to)."""

    def __init__(self, stream: str, on_output: OutputCallback, tail: deque[str]) -> None:
        self.stream = stream
        self.on_output = on_output
        self.tail = tail
        self._buf = ""

    def write(self, data: str) -> int:
        """Take ``data``; emit each line it completes."""
        self._buf += data
        while "\n" in self._buf:
            line, self._buf = self._buf.split("\n", 1)
            self._emit(line.rstrip("\r"))
        return len(data)

    def _emit(self, line: str) -> None:
        self.tail.append(line)
        self.on_output(self.stream, line)

    def flush(self) -> None:
        """Nothing is buffered but a partial line (kept until its end or :meth:`close`)."""

    def close(self) -> None:
        """Emit a last line that had no newline."""
        if self._buf:
            self._emit(self._buf)
            self._buf = ""


class _Discard:
    """A text stream that keeps nothing (what a hidden stream is written to)."""

    def write(self, data: str) -> int:
        """Drop ``data``."""
        return len(data)

    def flush(self) -> None:
        """Nothing to flush."""


def honour_hide(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``hide=True``/``"both"``, ``"out"``/``"stdout"``, ``"err"``/``"stderr"`` as Fabric users
    expect: that output is not shown (the result still holds it). invoke ignores ``hide`` for
    a stream given explicitly, and the run's output streams are given explicitly in the
    configuration, so a hidden stream gets one that discards instead."""
    hide = kwargs.get("hide")
    if not hide:
        return kwargs
    out = hide in (True, "both", "out", "stdout")
    err = hide in (True, "both", "err", "stderr")
    extra: dict[str, Any] = {}
    if out and kwargs.get("out_stream") is None:
        extra["out_stream"] = _Discard()
    if err and kwargs.get("err_stream") is None:
        extra["err_stream"] = _Discard()
    return {**kwargs, **extra}


@dataclass(frozen=True)
class CallStreams:
    """Where a connection given to ``call()`` writes command output: line writers for stdout
    and stderr (each a ``write(str)``/``flush()`` stream), and the cancel and time limit of
    the call. Executors pass the writers to their connection (invoke's ``out_stream``)."""

    stdout: Any
    stderr: Any
    cancel: Cancel
    timeout: float


def _call(
    executor: Executor, host: Host, op: Call, on_output: OutputCallback, cancel: Cancel, timeout: float
) -> CommandResult:
    started = time.monotonic()
    why = unsupported_call(type(executor))
    if why:
        return CommandResult("error", None, 0.0, why, retryable=False)
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    out, err = _Lines("stdout", on_output, tail), _Lines("stderr", on_output, tail)
    streams = CallStreams(out, err, cancel, timeout)
    entered = False
    try:
        with executor.connection(host, streams) as conn:
            entered = True
            value = op.func(conn, *op.args, **dict(op.kwargs))
    except KeyboardInterrupt as exc:
        out.close()
        err.close()
        if threading.current_thread() is threading.main_thread():
            raise  # Python delivers a real Ctrl+C there: it stops the run, it is not the function's failure
        if cancel.requested:  # the run is stopping: the function ended with it
            return CommandResult("interrupted", None, time.monotonic() - started, "interrupted", tuple(tail),
                                 retryable=False)  # fmt: skip
        # Raised by the function itself (a worker thread never receives Ctrl+C): fails this host.
        return _failure(op, exc, tuple(tail), time.monotonic() - started, _OWN_INTERRUPT)
    except BaseException as exc:  # noqa: BLE001 - user code: reported like a failed command
        out.close()
        err.close()
        if not entered:  # no connection: the function never ran, the host is the trouble
            return _no_connection(op, host, exc, cancel, time.monotonic() - started)
        return _failure(op, exc, tuple(tail), time.monotonic() - started)
    out.close()
    err.close()
    if value is not None:
        on_output("stdout", f"{op.function.rsplit('.', 1)[-1]}() returned {safe_repr(value, 400)}")
    return CommandResult("ok", 0, time.monotonic() - started, "", tuple(tail))


def _no_connection(op: Call, host: Host, exc: BaseException, cancel: Cancel, duration: float) -> CommandResult:
    """The result of a call whose connection could not be opened (the function never ran):
    unreachable (exit 3) for a connection error, interrupted when the run is stopping."""
    if cancel.requested:
        return CommandResult("interrupted", None, duration, "interrupted", retryable=False)
    name = op.function.rsplit(".", 1)[-1]
    text = _first_line(exc) or type(exc).__name__
    if isinstance(exc, ConnectionError):
        return CommandResult("unreachable", None, duration, text, retryable=False)
    return CommandResult("failed", None, duration, f"{name}() did not run: no connection to {host.label}: {text}",
                         retryable=False)  # fmt: skip


def _first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message ("" when it has none, or its ``__str__`` raises)."""
    try:
        text = str(exc).strip()
    except Exception:  # noqa: BLE001 - a user exception's __str__ can raise
        return ""
    return text.splitlines()[0] if text else ""


def _library(filename: str) -> bool:
    """True for a frame of Nexus itself, of a Nexus plugin, of Python's standard library or of
    an installed package (not the user's code)."""
    if filename.startswith(_library_dirs()) or "site-packages" in filename or "dist-packages" in filename:
        return True
    return filename.startswith(_plugin_dirs())


_PKG_DIR = os.path.dirname(os.path.abspath(__file__))


@functools.cache
def _library_dirs() -> tuple[str, ...]:
    """Nexus's own folder and Python's standard library's."""
    import sysconfig

    paths = sysconfig.get_paths()
    return (os.path.join(_PKG_DIR, ""), *{os.path.join(paths[k], "") for k in ("stdlib", "platstdlib") if k in paths})


def _plugin_dirs() -> tuple[str, ...]:
    """The folders of the Nexus packages imported so far (``nexus_*`` packages: plugins
    installed from a checkout, not under site-packages)."""
    found = []
    for name, mod in list(sys.modules.items()):
        where = getattr(mod, "__file__", None)
        if name.startswith("nexus_") and "." not in name and hasattr(mod, "__path__") and isinstance(where, str):
            found.append(os.path.join(os.path.dirname(os.path.abspath(where)), ""))
    return tuple(found)


#: What a failure report says under a ``KeyboardInterrupt`` the function raised itself.
_OWN_INTERRUPT = (
    "the function raised KeyboardInterrupt itself: that fails this host like any exception "
    "(Ctrl+C on Nexus stops the whole run)"
)


def _failure(op: Call, exc: BaseException, tail: tuple[str, ...], duration: float, hint: str = "") -> CommandResult:
    """A failed call: the exception's type and message; a failed command inside it keeps its exit code.

    ``hint``: detail lines shown under the reason (``- `` lines: suggestions).
    """
    name = op.function.rsplit(".", 1)[-1]
    kind = type(exc).__name__
    code: int | None = None
    result = getattr(exc, "result", None)  # invoke's UnexpectedExit / CommandTimedOut carry one
    if result is not None and isinstance(getattr(result, "exited", None), int):
        code = int(result.exited)
        # A local connection's working folder is invoke's ``cd ROOT && `` prefix: not what was written.
        command = re.sub(r"^cd \S+ && ", "", str(getattr(result, "command", "?")))
        reason = f"{name}(): command `{command}` exited with {code}"
    else:
        text = _first_line(exc)
        reason = f"{name}() raised {kind}" + (f": {text}" if text else "")
    frames = [  # the user's frames: where in their function it failed, not inside invoke or Nexus
        f"  at {f.filename}:{f.lineno} in {f.name}"
        for f in traceback.extract_tb(exc.__traceback__)
        if f.filename and not _library(f.filename)
    ][-3:]
    status = "timeout" if kind == "CommandTimedOut" else "failed"
    return CommandResult(
        status, code, duration, reason[:500], (*tail, *frames)[-TAIL_LINES:], retryable=False, hint=hint
    )
