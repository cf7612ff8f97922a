"""The interfaces plugins implement and the objects hooks receive.

Plugins import these from :mod:`nexus_core.plugin`, the one public module.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any, ClassVar

from nexus_core._version import API_VERSION
from nexus_core.events import Event
from nexus_core.lazy import lazy_getattr
from nexus_core.model import Command, Host
from nexus_core.options import Option
from nexus_core.records import Record, frozen_dataclass

if TYPE_CHECKING:
    from nexus_core.contracts.audit import AuditSink, AuditSinkContext, AuditSinkError
    from nexus_core.contracts.clouds import (
        CloudCluster,
        CloudContext,
        CloudDemand,
        CloudError,
        CloudInstance,
        CloudProvider,
        CloudRequest,
    )
    from nexus_core.contracts.discovery import DiscoveredHost, DiscoveryError, HostSource, HostSourceContext
    from nexus_core.contracts.files import FileState, FileWrite, SmallFile, TransferResult
    from nexus_core.contracts.secrets import (
        SecretBackend,
        SecretContext,
        SecretDenied,
        SecretError,
        SecretInfo,
        SecretNotFound,
        SecretUnavailable,
    )
    from nexus_core.plan import Plan

__all__ = [
    "ANOTHER_HOST_FAILED",
    "API_VERSION",
    "INTERRUPTED",
    "AuditSink",
    "AuditSinkContext",
    "AuditSinkError",
    "Cancel",
    "Capabilities",
    "CheckResult",
    "CloudCluster",
    "CloudContext",
    "CloudDemand",
    "CloudError",
    "CloudInstance",
    "CloudProvider",
    "CloudRequest",
    "CommandResult",
    "DiscoveredHost",
    "DiscoveryError",
    "Executor",
    "ExecutorContext",
    "FileState",
    "FileWrite",
    "HostOutcome",
    "HostSource",
    "HostSourceContext",
    "OutputCallback",
    "PreflightCheck",
    "ProgressCallback",
    "SecretBackend",
    "SecretContext",
    "SecretDenied",
    "SecretError",
    "SecretInfo",
    "SecretNotFound",
    "SecretUnavailable",
    "SmallFile",
    "Strategy",
    "StrategyContext",
    "TransferError",
    "TransferInterrupted",
    "TransferResult",
    "skipped",
    "unsupported_call",
    "unsupported_files",
]

#: Called with (stream, line) for each line of output; stream is "stdout" or "stderr".
OutputCallback = Callable[[str, str], None]

#: Called while a file moves with the bytes of that file done so far (resumed bytes included).
ProgressCallback = Callable[[int], None]


class TransferError(Exception):
    """A file operation failed: ``message`` says what (host, path), ``hint`` how to fix it,
    ``status`` how the host ends (``"unreachable"`` or ``"timeout"`` when a script of the
    operation could not reach the host or did not answer in time: exit 3 or 4, not 1)."""

    def __init__(self, message: str, hint: str = "", status: str = "failed") -> None:
        super().__init__(message)
        self.hint = hint
        self.status = status


class TransferInterrupted(TransferError):
    """A transfer stopped because the run is being stopped (what was sent stays for a resume)."""


class Cancel:
    """Shared cancellation state of a run, raised step by step by signals.

    ``level`` 0: running normally; 1 (STOP): start nothing new, let running commands
    finish; 2 (INTERRUPT): send them SIGINT; 3 (TERMINATE): SIGTERM; 4 (KILL): SIGKILL, stop
    at once. Executors poll ``level`` or wait on :meth:`wait_change` while a command runs,
    and signal a running command when the level reaches INTERRUPT or above.
    """

    NONE, STOP, INTERRUPT, TERMINATE, KILL = 0, 1, 2, 3, 4

    def __init__(self) -> None:
        self._level = 0
        self._cond = threading.Condition()
        #: Callables run (without arguments) each time the level rises.
        self.listeners: list[Callable[[], None]] = []

    @property
    def level(self) -> int:
        """The current cancellation level."""
        return self._level

    @property
    def requested(self) -> bool:
        """True once any stop was asked for: start no new work."""
        return self._level > 0

    def raise_to(self, level: int) -> None:
        """Raise the level (never lowers it) and wake every waiter."""
        with self._cond:
            if level <= self._level:
                return
            self._level = level
            self._cond.notify_all()
        for listener in list(self.listeners):
            listener()

    def wait_change(self, seen: int, timeout: float | None) -> int:
        """Block until the level differs from ``seen`` or ``timeout`` passes; return the level.

        A timeout past what the platform's clock holds (``threading.TIMEOUT_MAX``) waits that
        long instead of raising ``OverflowError`` (options are bounded far below it)."""
        if timeout is not None:
            timeout = min(timeout, threading.TIMEOUT_MAX)
        with self._cond:
            if self._level == seen:
                self._cond.wait(timeout)
            return self._level

    def sleep(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; return False early if a stop is requested."""
        deadline = time.monotonic() + seconds
        while not self.requested:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            self.wait_change(self._level, left)
        return False


class Capabilities(Record):
    """What an executor can do, declared as :attr:`Executor.capabilities`.

    The engine respects it (no more commands at once on one host than
    ``commands_per_host``; file operations refused on an executor without ``file_transfer``)
    and the conformance suite (:mod:`nexus_core.testing.conformance`) tests what it declares.
    """

    __slots__ = ("commands_per_host", "streams_output", "cancel_levels", "file_transfer", "stdin", "connection")
    #: Commands one host runs at once through this executor; None: no limit of its own.
    commands_per_host: int | None
    #: True when output lines reach ``on_output`` while the command runs, not only at its end.
    streams_output: bool
    #: The :class:`Cancel` levels that signal a running command (INTERRUPT: SIGINT, TERMINATE:
    #: SIGTERM, KILL: SIGKILL). STOP needs nothing of an executor: the engine starts nothing new.
    cancel_levels: frozenset[int]
    #: True when the executor moves files: :meth:`Executor.send_file` and
    #: :meth:`Executor.receive_file` (and so ``write_files``, ``put``, ``get``) work.
    file_transfer: bool
    #: True when the executor writes ``Command.input`` (when set) on the command's standard
    #: input and then closes it (``secret(..., to=PATH)`` needs it). With a sudo password on
    #: the same input, the password line goes first.
    stdin: bool
    #: True when :meth:`Executor.connection` gives a Fabric-style connection to a host (what
    #: ``call(fn)`` hands to ``fn``): ``run``, ``sudo``, ``put``, ``get``, ``cd``...
    connection: bool

    def __init__(
        self,
        commands_per_host: int | None = None,
        streams_output: bool = True,
        cancel_levels: frozenset[int] = frozenset({Cancel.INTERRUPT, Cancel.TERMINATE, Cancel.KILL}),
        file_transfer: bool = False,
        stdin: bool = False,
        connection: bool = False,
    ) -> None:
        self._init(commands_per_host, streams_output, cancel_levels, file_transfer, stdin, connection)

    def can_cancel(self, level: int) -> bool:
        """True when cancel ``level`` reaches a running command (STOP and below always do)."""
        return level <= Cancel.STOP or level in self.cancel_levels


def unsupported_files(executor: type[Executor]) -> str | None:
    """Why ``executor`` cannot run a file operation (validation message), or None when it can."""
    if executor.capabilities.file_transfer:
        return None
    return (
        f"the {executor.name!r} transport cannot copy files (its executor declares no file transfer); "
        f"run this task on hosts of a transport that can (e.g. ssh), or copy with run(...)"
    )


def unsupported_call(executor: type[Executor]) -> str | None:
    """Why ``executor`` cannot run ``call(fn)`` (validation message), or None when it can."""
    if executor.capabilities.connection:
        return None
    return (
        f"the {executor.name!r} transport gives no connection object for call() "
        f"(its executor declares no Fabric-style connection); run this task on hosts of a transport that "
        f"does (e.g. the local machine), or use run(...)"
    )


@frozen_dataclass
class CommandResult:
    """What one command attempt produced.

    ``status``: ok, failed (non-zero exit), timeout, unreachable (could not connect),
    error (the executor could not run it), interrupted. ``tail`` holds the last lines.
    ``reason`` is one line (the cause, shown in trees and events); ``hint`` holds further
    lines for the error message: lines starting with ``- `` are suggestions, other lines
    are details shown under the reason (e.g. both fingerprints of a changed host key).
    ``headline`` replaces the failure report's generic first line ("Command failed",
    "Connection to HOST failed"...) with the executor's own, naming its transport.
    """

    status: str
    exit_code: int | None = None
    duration: float = 0.0
    reason: str = ""
    tail: tuple[str, ...] = ()
    retryable: bool = True
    hint: str = ""
    headline: str = ""
    #: True when the operation changed something on the host: set by the engine (a command
    #: that succeeded changed something; a file operation says whether it wrote a file).
    changed: bool = False

    @property
    def ok(self) -> bool:
        """True when the command succeeded."""
        return self.status == "ok"


class ExecutorContext(Record):
    """What an executor gets when the engine creates it for a run."""

    __slots__ = ("config", "root", "emit", "run_id", "cancel", "options")
    config: Mapping[str, Any]
    root: str
    emit: Callable[[Event], None]
    run_id: str
    cancel: Cancel
    options: Mapping[str, Any]

    def __init__(
        self,
        config: Mapping[str, Any],
        root: str,
        emit: Callable[[Event], None],
        run_id: str,
        cancel: Cancel | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self._init(
            config, root, emit, run_id, Cancel() if cancel is None else cancel, {} if options is None else options
        )


class Executor(ABC):
    """A transport (``local``, ``ssh``, ...): runs commands on hosts with streaming output.

    One instance serves a whole run and is used from many threads at once; ``close``
    is called once at the end of the run (also after an interruption).
    """

    #: The transport name hosts refer to (``Host.transport``); set from the registration.
    name: ClassVar[str]
    #: True when ``run`` honours ``Command.marker`` (see :mod:`nexus_core.markers`): the host
    #: then records pid and exit code of each command, so resume can ask it what happened.
    supports_markers: ClassVar[bool] = False
    #: What this executor can do (commands at once per host, streaming, signals, files).
    capabilities: ClassVar[Capabilities] = Capabilities()
    #: Where the login user stages ``sudo`` uploads on the host (relative: to its login folder).
    staging_dir: str = ".cache/nexus/transfers"

    def __init__(self, context: ExecutorContext) -> None:
        self.context = context

    @classmethod
    def host_problem(cls, host: Host) -> str:
        """Why this transport cannot serve ``host`` as written ("" when it can): checked when a
        run is planned, so the mistake is a validation error (exit 2) naming the task's line,
        not a failure mid-run (an agent address with a user, say). Optional."""
        return ""

    @abstractmethod
    def run(
        self,
        host: Host,
        command: Command,
        on_output: OutputCallback,
        cancel: Cancel,
        timeout: float,
    ) -> CommandResult:
        """Run ``command`` on ``host``, streaming lines to ``on_output``, within ``timeout`` s."""

    def prepare(self, hosts: Sequence[Host]) -> None:  # noqa: B027 - optional hook
        """Get ready before the run's first command (imports, configuration); optional.

        Called once per run, before any task starts, with every host of this executor's
        transport. Slow one-time work done here is not repeated by each host's thread. It
        must not connect to hosts. An exception is reported and ignored: the same problem
        then surfaces, host by host, when commands run.
        """

    # --- files (see nexus_core.transfer for the contract every executor keeps) ----------------
    #
    # An executor that moves files declares ``Capabilities(file_transfer=True)`` and
    # implements the two byte movers, ``send_file`` and ``receive_file``, plus
    # ``file_size``. Everything else (checksums on both ends, the unchanged check,
    # temporary file + atomic rename, sudo, validation, resume) is built on them and on
    # ``run`` by :mod:`nexus_core.transfer`; an executor may override ``stat_files`` and
    # ``write_files`` with something faster for its transport.

    def send_file(
        self,
        host: Host,
        local_path: str,
        remote_path: str,
        offset: int = 0,
        progress: ProgressCallback | None = None,
        cancel: Cancel | None = None,
    ) -> int:
        """Write the bytes of ``local_path`` from ``offset`` on into ``remote_path`` at ``offset``.

        With ``offset`` 0 the remote file is created or truncated; otherwise it is extended
        from ``offset`` (resuming an interrupted transfer). The remote folder exists. Returns
        the bytes sent; calls ``progress`` with the file's bytes done so far; stops with
        :class:`TransferInterrupted` once ``cancel`` reaches INTERRUPT. Raises ``OSError``
        (with ``errno`` when known) on a failure of the host's file system.
        """
        raise NotImplementedError(f"executor {self.name!r} cannot upload files")

    def receive_file(
        self,
        host: Host,
        remote_path: str,
        local_path: str,
        offset: int = 0,
        progress: ProgressCallback | None = None,
        cancel: Cancel | None = None,
    ) -> int:
        """Append the bytes of ``remote_path`` from ``offset`` on to ``local_path``; return bytes received.

        The counterpart of :meth:`send_file` (same ``progress``, ``cancel`` and errors).
        """
        raise NotImplementedError(f"executor {self.name!r} cannot download files")

    def connection(self, host: Host, streams: Any) -> AbstractContextManager[Any]:
        """A Fabric-style connection to ``host`` for ``call(fn)``, as a context manager.

        What it yields has Fabric's ``Connection`` API (``run``, ``sudo``, ``put``, ``get``,
        ``cd``...) and rides the executor's own transport to the host: no second connection.
        ``streams`` (:class:`nexus_core.calls.CallStreams`) holds ``stdout``/``stderr`` writers for
        command output (invoke's ``out_stream``/``err_stream``), the run's ``cancel`` and the
        call's ``timeout`` in seconds (0: none). Only called when
        ``capabilities.connection`` is true; the default says the transport has none.
        """
        raise NotImplementedError(unsupported_call(type(self)))

    def file_session(self, host: Host) -> AbstractContextManager[Any]:
        """A context in which a series of ``send_file``/``receive_file``/``file_size`` calls on
        ``host`` share one channel (SFTP session...); no ``run`` is called inside it."""
        return nullcontext()

    def file_size(self, host: Host, remote_path: str) -> int | None:
        """Size of ``remote_path`` on the host, None when there is no such file (a resume asks)."""
        raise NotImplementedError(f"executor {self.name!r} cannot read files")

    def send_files(
        self, host: Host, files: Sequence[SmallFile], cancel: Cancel | None = None
    ) -> list[BaseException | None]:
        """Write many small files whole, inside a :meth:`file_session`; one outcome per file
        (None, or the ``OSError``/:class:`TransferInterrupted` it met), in order.

        Modes and times are applied only when :attr:`sets_attributes` is true (otherwise
        :mod:`nexus_core.transfer` applies them with a script). The default calls
        :meth:`send_file` for each; an executor overrides it to pipeline the series (SFTP
        sends every request without waiting for the previous answer). A broken connection
        is raised, not returned.
        """
        out: list[BaseException | None] = []
        for f in files:
            try:
                self.send_file(host, f.local_path, f.remote_path, 0, None, cancel)
            except (OSError, TransferInterrupted) as exc:
                if isinstance(exc, ConnectionError):
                    raise
                out.append(exc)
            else:
                out.append(None)
        return out

    #: True when :meth:`send_files` applies each file's ``mode`` and ``mtime`` itself.
    sets_attributes: ClassVar[bool] = False

    def rename_files(self, host: Host, moves: Sequence[tuple[str, str]]) -> list[str | None]:
        """Rename each ``(temporary, destination)`` atomically over what is there, as the login
        user, in one go; one outcome per move (None, or why it failed), in order (optional).

        Raises ``NotImplementedError`` when the transport cannot (the default): the renames
        are then done by a script through :meth:`run`.
        """
        raise NotImplementedError

    def stat_files(
        self, host: Host, paths: Sequence[str], sizes: Sequence[int | None] = (), sudo: bool = False
    ) -> list[FileState]:
        """What is at each of ``paths`` on the host, in one round trip; read only (optional).

        ``sizes[i]``: the size the caller expects at ``paths[i]``: its sha256 is computed
        only when the size matches (``-1``: always). Raises :class:`TransferError` when the
        host cannot be asked. Not overridden: :func:`nexus_core.transfer.stat_files` runs
        one POSIX shell script through :meth:`run` (as root with ``sudo``).
        """
        raise NotImplementedError

    def write_files(
        self,
        host: Host,
        writes: Sequence[FileWrite],
        progress: Callable[[FileWrite, int], None] | None = None,
        cancel: Cancel | None = None,
    ) -> list[TransferResult]:
        """Write each file to its destination, never leaving a partial file there (optional).

        Bytes go to a temporary file in the destination's folder (for ``sudo``: a staging
        file in the login user's cache, copied as root into the destination's folder), are
        verified by sha256 there, get owner and mode, pass ``validate``, then are renamed
        into place atomically. A temporary file left by an interrupted transfer of the same
        bytes is resumed from its end. One result per write, in order. Not overridden:
        :func:`nexus_core.transfer.write_files` does this with :meth:`send_file` and
        :meth:`run`.
        """
        raise NotImplementedError

    def put(self, host: Host, local_path: str, remote_path: str) -> None:
        """Copy a local file to the host as it is (a plain copy: plans use :meth:`write_files`)."""
        self.send_file(host, local_path, remote_path)

    def get(self, host: Host, remote_path: str, local_path: str) -> None:
        """Copy a file from the host as it is (a plain copy: plans verify and rename it)."""
        with open(local_path, "wb"):  # receive_file appends: start from an empty file
            pass
        self.receive_file(host, remote_path, local_path)

    def host_done(self, host: Host) -> None:  # noqa: B027 - optional hook
        """The run has no more commands for ``host`` (all ended or skipped); optional.

        Until then an executor may keep what ``host`` will need again (a remote transport
        can keep one connection open however long the host waits for its next task); after
        it, it may let go of it at once.
        """

    def remove_markers(self, host: Host, run_id: str) -> None:
        """Remove the run's status files from ``host`` (only called when ``supports_markers``)."""
        from nexus_core.markers import cleanup_script

        script = cleanup_script(run_id, host.label)
        self.run(host, Command(script, timeout=30), lambda _s, _l: None, Cancel(), 30.0)

    def settled(self, host: Host, run_id: str, keys: Sequence[str]) -> None:  # noqa: B027 - optional hook
        """The commands with these marker ``keys`` of ``run_id`` on ``host`` are recorded as
        finished (called when the host is done with a task): a resume will never ask about
        them, so their status-folder files may serve later commands (the local executor
        renames their spools for the next command instead of making new files)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release every connection and process this executor holds."""


class HostOutcome(Record):
    """How one host did in a task: ``status`` ok, failed, timeout, unreachable, skipped, interrupted."""

    __slots__ = ("host", "status", "duration", "reason")
    host: Host
    status: str
    duration: float
    reason: str

    def __init__(self, host: Host, status: str, duration: float = 0.0, reason: str = "") -> None:
        self._init(host, status, duration, reason)

    @property
    def ok(self) -> bool:
        """True when every command succeeded on this host."""
        return self.status == "ok"


class StrategyContext(ABC):
    """What a strategy drives: batches of hosts, stop requests, and pauses."""

    continue_on_error: bool
    options: Mapping[str, Any]

    @abstractmethod
    def run_batch(
        self,
        hosts: Sequence[Host],
        stop_on_failure: bool | None = None,
        max_failures: int | None = None,
        stop_reason: Callable[[int], str] | None = None,
    ) -> list[HostOutcome]:
        """Run the task on ``hosts`` concurrently (bounded by ``forks``); return their outcomes.

        When a host fails and ``stop_on_failure`` is true (default: unless the run continues
        on error), hosts of the batch that have not started yet are skipped. ``max_failures``:
        the failures the batch tolerates; once more hosts than that have failed, its hosts not
        started yet are skipped (a failure threshold such as ``max_fail_percentage``).
        ``stop_reason``: why such a host is not started, given the batch's failures so far
        (``not started: `` is put before it; default :data:`ANOTHER_HOST_FAILED`).
        """

    @abstractmethod
    def stopping(self) -> bool:
        """True when no new host should start because the run is being stopped."""

    def resumed(self, host: Host) -> bool:
        """True when the interrupted run this one resumes had already started this task on
        ``host`` (a canary's wait is not made a second time once the rest had begun)."""
        return False

    @abstractmethod
    def wait(self, seconds: float) -> bool:
        """Pause (e.g. canary wait); return False if the run is being stopped."""

    @abstractmethod
    def emit(self, event: Event) -> None:
        """Publish an event on the run's stream."""


class Strategy(ABC):
    """How a task's hosts are scheduled (``parallel``, ``serial``, ``rolling``, ``canary``)."""

    #: What ``@task(strategy=...)`` refers to; set from the registration.
    name: ClassVar[str]
    #: The ``@task`` options this strategy reads (``batch``, ``canary_hosts``...): they are
    #: validated with every task (a registration gives them as its ``task_options`` detail).
    task_options: ClassVar[tuple[Option, ...]] = ()

    def check(self, options: Mapping[str, Any]) -> list[str]:
        """Problems with this task's options for this strategy (empty when fine)."""
        return []

    @abstractmethod
    def batches(self, hosts: Sequence[Host], options: Mapping[str, Any]) -> list[list[Host]]:
        """The planned order: host batches in the order they will go (shown by dry-run)."""

    def describe(self, hosts: Sequence[Host], options: Mapping[str, Any]) -> str:
        """A short human description, e.g. ``rolling, 2 at a time``."""
        return self.name

    def execute(self, hosts: Sequence[Host], context: StrategyContext) -> list[HostOutcome]:
        """Run the batches in order, stopping after a failing batch unless continuing on error."""
        outcomes: list[HostOutcome] = []
        plan = self.batches(hosts, context.options)
        for i, batch in enumerate(plan):
            if context.stopping():
                outcomes.extend(skipped(plan[i:], INTERRUPTED))
                break
            results = context.run_batch(batch)
            outcomes.extend(results)
            if context.stopping():  # hosts stopped by the interrupt did not fail the batch
                outcomes.extend(skipped(plan[i + 1 :], INTERRUPTED))
                break
            if not context.continue_on_error and any(not r.ok for r in results):
                outcomes.extend(skipped(plan[i + 1 :], "not started: an earlier batch failed"))
                break
        return outcomes


#: Why hosts a strategy did not start once the run was interrupted (SIGINT, SIGTERM, SIGHUP).
INTERRUPTED = "not started: the run was interrupted"
#: Why a batch leaves hosts out after a failure, unless its ``stop_reason`` says more
#: (``not started: `` is put before it).
ANOTHER_HOST_FAILED = "another host failed"


def skipped(batches: Sequence[Sequence[Host]], reason: str) -> list[HostOutcome]:
    """Outcomes for every host of ``batches`` that a strategy did not start, with ``reason``."""
    return [HostOutcome(h, "skipped", reason=reason) for b in batches for h in b]


class CheckResult(Record):
    """One pre-flight finding: ``status`` ok, warn, fail or skipped, in a category, for a host or not.

    ``hint``: lines of advice shown under a failure (``- `` prefixes optional).
    ``exit_code``: what a blocking failure makes ``nexus preflight`` exit with (3 connection,
    2 configuration, 1 anything else; None: 3 for a host, 2 otherwise).
    """

    __slots__ = ("category", "status", "message", "host", "duration", "blocking", "hint", "exit_code")
    category: str
    status: str
    message: str
    host: str | None
    duration: float | None
    blocking: bool
    hint: str
    exit_code: int | None

    def __init__(
        self,
        category: str,
        status: str,
        message: str,
        host: str | None = None,
        duration: float | None = None,
        blocking: bool = True,
        hint: str = "",
        exit_code: int | None = None,
    ) -> None:
        self._init(category, status, message, host, duration, blocking, hint, exit_code)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON output."""
        return {
            "category": self.category,
            "status": self.status,
            "message": self.message,
            "host": self.host,
            "duration": self.duration,
            "blocking": self.blocking,
            "hint": self.hint,
            "exit_code": self.exit_code,
        }


class PreflightCheck(ABC):
    """A pre-flight check over the hosts and commands a plan touches."""

    #: The check's name; set from the registration.
    name: ClassVar[str]
    #: Heading the results are grouped under (``Configuration``, ``Hosts``...).
    category: ClassVar[str] = "Checks"
    #: Where the results appear: configuration 0, host checks 10-40, local files 90.
    order: ClassVar[int] = 50

    @abstractmethod
    def run(self, plan: Plan, options: Mapping[str, Any]) -> list[CheckResult]:
        """Check ``plan`` and report findings.

        ``options`` (all optional): ``dry_run`` (True under ``--dry-run``: execute nothing on
        any host), ``skip_connectivity``, ``skip_auth``, ``skip_sudo_check`` (bools),
        ``timeout`` (seconds per host check), ``parallel`` (hosts checked at once), ``force``,
        ``registry`` (the run's ``Registry``: the classes the plan uses can be loaded from it).
        """


#: The contracts of the newer plugin kinds, imported on first use (a plain run builds none of
#: their classes): name -> module.
_LAZY = {
    "FileState": "nexus_core.contracts.files",
    "FileWrite": "nexus_core.contracts.files",
    "SmallFile": "nexus_core.contracts.files",
    "TransferResult": "nexus_core.contracts.files",
    "SecretBackend": "nexus_core.contracts.secrets",
    "SecretContext": "nexus_core.contracts.secrets",
    "SecretDenied": "nexus_core.contracts.secrets",
    "SecretError": "nexus_core.contracts.secrets",
    "SecretInfo": "nexus_core.contracts.secrets",
    "SecretNotFound": "nexus_core.contracts.secrets",
    "SecretUnavailable": "nexus_core.contracts.secrets",
    "DiscoveredHost": "nexus_core.contracts.discovery",
    "DiscoveryError": "nexus_core.contracts.discovery",
    "HostSource": "nexus_core.contracts.discovery",
    "HostSourceContext": "nexus_core.contracts.discovery",
    "AuditSink": "nexus_core.contracts.audit",
    "AuditSinkContext": "nexus_core.contracts.audit",
    "AuditSinkError": "nexus_core.contracts.audit",
    "CloudCluster": "nexus_core.contracts.clouds",
    "CloudContext": "nexus_core.contracts.clouds",
    "CloudDemand": "nexus_core.contracts.clouds",
    "CloudError": "nexus_core.contracts.clouds",
    "CloudInstance": "nexus_core.contracts.clouds",
    "CloudProvider": "nexus_core.contracts.clouds",
    "CloudRequest": "nexus_core.contracts.clouds",
}


# The contract types of secret backends, host sources, audit sinks and cloud providers, on first use.
__getattr__ = lazy_getattr("nexus_core.api", _LAZY, globals())
