"""The interfaces plugins implement and the objects hooks receive.

Plugins import these from :mod:`nexus_core.plugin`, the one public module.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from nexus_core._version import API_VERSION
from nexus_core.events import Event
from nexus_core.model import EMPTY, Command, Host, Problem
from nexus_core.options import Option

if TYPE_CHECKING:
    from nexus_core.plan import Plan

__all__ = [
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
    """A file operation failed: ``message`` says what (host, path), ``hint`` how to fix it."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


class TransferInterrupted(TransferError):
    """A transfer stopped because the run is being stopped (what was sent stays for a resume)."""


@dataclass(frozen=True)
class FileState:
    """What is at a path on a host, as :meth:`Executor.stat_files` finds it.

    ``kind``: ``file``, ``dir``, ``missing`` or ``other`` (a socket, a device...).
    ``parent``: the folder that holds the path: ``dir`` (the login user may write in it),
    ``readonly`` (it exists, the login user may not write in it), ``missing``, ``other``
    (not a folder). ``sha256`` is set for a file whose size was the expected one (checksums
    are only computed when they can say "unchanged"); ``mode`` holds the permission bits.
    """

    path: str
    kind: str
    size: int = 0
    mode: int | None = None
    owner: str = ""
    group: str = ""
    sha256: str = ""
    parent: str = "dir"


@dataclass(frozen=True)
class FileWrite:
    """One file to write on a host: local bytes with their size and sha256, and how the
    destination must end up (mode, owner, group; as root with ``sudo``; checked first by
    ``validate``, a command where ``{path}`` stands for the temporary file)."""

    source: str
    dest: str
    size: int
    sha256: str
    mode: int | None = None
    owner: str | None = None
    group: str | None = None
    sudo: bool = False
    validate: str | None = None
    #: The modification time the destination gets (seconds since the epoch; ``upload(...,
    #: preserve=True)`` keeps the source's), or None for "when it was written".
    mtime: float | None = None


@dataclass(frozen=True)
class SmallFile:
    """One small file for :meth:`Executor.send_files`: written whole (never resumed) to
    ``remote_path``, then given ``mode`` and ``mtime`` when they are set."""

    local_path: str
    remote_path: str
    mode: int | None = None
    mtime: float | None = None


@dataclass(frozen=True)
class TransferResult:
    """How one file moved: ``status`` ok, failed, unreachable, error or interrupted.

    ``changed``: a file was written (or its mode or owner set); ``sent``: bytes that went
    over the wire this time; ``resumed_from``: bytes of an earlier interrupted transfer
    that were kept; ``sha256``: the checksum verified at the destination.
    """

    status: str
    path: str
    changed: bool = False
    sent: int = 0
    resumed_from: int = 0
    sha256: str = ""
    reason: str = ""
    hint: str = ""
    tail: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when the file is in place (written, or found unchanged)."""
        return self.status == "ok"


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
        """Block until the level differs from ``seen`` or ``timeout`` passes; return the level."""
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


@dataclass(frozen=True)
class Capabilities:
    """What an executor can do, declared as :attr:`Executor.capabilities`.

    The engine respects it (no more commands at once on one host than
    ``commands_per_host``; file operations refused on an executor without ``file_transfer``)
    and the conformance suite (:mod:`nexus_core.testing.conformance`) tests what it declares.
    """

    #: Commands one host runs at once through this executor; None: no limit of its own.
    commands_per_host: int | None = None
    #: True when output lines reach ``on_output`` while the command runs, not only at its end.
    streams_output: bool = True
    #: The :class:`Cancel` levels that signal a running command (INTERRUPT: SIGINT, TERMINATE:
    #: SIGTERM, KILL: SIGKILL). STOP needs nothing of an executor: the engine starts nothing new.
    cancel_levels: frozenset[int] = frozenset({Cancel.INTERRUPT, Cancel.TERMINATE, Cancel.KILL})
    #: True when the executor moves files: :meth:`Executor.send_file` and
    #: :meth:`Executor.receive_file` (and so ``write_files``, ``put``, ``get``) work.
    file_transfer: bool = False
    #: True when the executor writes ``Command.input`` (when set) on the command's standard
    #: input and then closes it (``secret(..., to=PATH)`` needs it). With a sudo password on
    #: the same input, the password line goes first.
    stdin: bool = False
    #: True when :meth:`Executor.connection` gives a Fabric-style connection to a host (what
    #: ``call(fn)`` hands to ``fn``): ``run``, ``sudo``, ``put``, ``get``, ``cd``...
    connection: bool = False

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


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class ExecutorContext:
    """What an executor gets when the engine creates it for a run."""

    config: Mapping[str, Any]
    root: str
    emit: Callable[[Event], None]
    run_id: str
    cancel: Cancel = field(default_factory=Cancel)
    options: Mapping[str, Any] = field(default_factory=dict)


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

    def remove_markers(self, host: Host, run_id: str) -> None:
        """Remove the run's status files from ``host`` (only called when ``supports_markers``)."""
        from nexus_core.markers import cleanup_script

        script = cleanup_script(run_id, host.label)
        self.run(host, Command(script, timeout=30), lambda _s, _l: None, Cancel(), 30.0)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release every connection and process this executor holds."""


@dataclass(frozen=True)
class HostOutcome:
    """How one host did in a task: ``status`` ok, failed, timeout, unreachable, skipped, interrupted."""

    host: Host
    status: str
    duration: float = 0.0
    reason: str = ""

    @property
    def ok(self) -> bool:
        """True when every command succeeded on this host."""
        return self.status == "ok"


class StrategyContext(ABC):
    """What a strategy drives: batches of hosts, stop requests, and pauses."""

    continue_on_error: bool
    options: Mapping[str, Any]

    @abstractmethod
    def run_batch(self, hosts: Sequence[Host], stop_on_failure: bool | None = None) -> list[HostOutcome]:
        """Run the task on ``hosts`` concurrently (bounded by ``forks``); return their outcomes.

        When a host fails and ``stop_on_failure`` is true (default: unless the run continues
        on error), hosts of the batch that have not started yet are skipped.
        """

    @abstractmethod
    def stopping(self) -> bool:
        """True when no new host should start because the run is being stopped."""

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


def skipped(batches: Sequence[Sequence[Host]], reason: str) -> list[HostOutcome]:
    """Outcomes for every host of ``batches`` that a strategy did not start, with ``reason``."""
    return [HostOutcome(h, "skipped", reason=reason) for b in batches for h in b]


@dataclass(frozen=True)
class CheckResult:
    """One pre-flight finding: ``status`` ok, warn, fail or skipped, in a category, for a host or not.

    ``hint``: lines of advice shown under a failure (``- `` prefixes optional).
    ``exit_code``: what a blocking failure makes ``nexus preflight`` exit with (3 connection,
    2 configuration, 1 anything else; None: 3 for a host, 2 otherwise).
    """

    category: str
    status: str
    message: str
    host: str | None = None
    duration: float | None = None
    blocking: bool = True
    hint: str = ""
    exit_code: int | None = None

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


# --- secret backends -------------------------------------------------------------------------


class SecretError(Exception):
    """A secret could not be had; the message says what and where, ``hint`` how to fix it.

    A message never contains a secret value (it is shown, logged and recorded as is).
    The run stops with exit code 2 (configuration) and this message, without a traceback.
    The core names the reference itself (``secret('vault:kv/app#key'): MESSAGE``, with the
    hint under it), so a message need not repeat it. Without a hint the core shows a
    generic one (or the fix may end the message). Raise one of the subclasses when it fits.
    """

    def __init__(self, message: str = "", hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


class SecretNotFound(SecretError):
    """The backend has no secret of that name (``nexus secret set NAME`` / the Vault path)."""


class SecretDenied(SecretError):
    """The backend refused: wrong key or passphrase, permission denied, expired credentials."""


class SecretUnavailable(SecretError):
    """The backend could not be reached or used (network, sealed Vault, locked store, damaged file)."""


@dataclass(frozen=True)
class SecretInfo:
    """What ``nexus secret list`` shows of one secret: never its value.

    ``created_at``/``updated_at`` are ISO 8601 UTC strings ('' when the backend does not know);
    ``location`` says where it lives (a store file, a Vault path).
    """

    name: str
    backend: str
    created_at: str = ""
    updated_at: str = ""
    location: str = ""


@dataclass(frozen=True)
class SecretContext:
    """What a secret backend gets when it is created (once per run, or per ``nexus secret`` command).

    ``config``: the ``config(...)`` values as the user set them (defaults not filled in; read
    ``config.get(key, default)``), the backend's own keys included (declared through
    ``nexus_config_options``). ``root``: the project folder (the nexusfile's). ``cache_dir``:
    a private folder (mode 0700, ``$XDG_CACHE_HOME/nexus/secrets/NAME``) the backend may keep
    files in between runs ('' when it could not be made); anything it writes there must be
    encrypted. ``interactive``: True when a prompt may be shown on the
    terminal. ``warn``: reports one line to the user (a stale cache used, a token about to
    expire), never a value. :meth:`cache_key` gives key material for what the backend
    encrypts in ``cache_dir``.
    """

    config: Mapping[str, Any]
    root: str = "."
    cache_dir: str = ""
    interactive: bool = False
    warn: Callable[[str], None] = field(default=lambda _message: None)
    #: Set by the core: ``purpose -> bytes | None`` behind :meth:`cache_key`.
    key_source: Callable[[str], bytes | None] = field(default=lambda _purpose: None, repr=False, compare=False)

    def cache_key(self, purpose: str) -> bytes | None:
        """32 bytes to encrypt the backend's cache with, derived from the user's secret store master key.

        ``purpose`` names what the key is for (``"nexus-vault cache"``): each purpose gets its
        own key (HKDF-SHA256), and neither the master key nor the store's own keys are handed
        out. The key is the same from run to run while the master key is (a rotated master key
        makes old copies unreadable: a cache must then treat them as missing). None when no
        master key can be had without a prompt (no store, no ``NEXUS_MASTER_KEY`` or keyfile,
        a passphrase store the run did not unlock): keep a key of your own then.
        """
        return self.key_source(purpose)


class SecretBackend(ABC):
    """Where ``secret(...)`` values come from: the local encrypted store, Vault, SOPS...

    The interface is kept small on purpose: ``resolve`` is all a read-only backend needs.

    - A nexusfile's ``secret("NAME")`` goes to the default backend (``config(secret_backend=...)``,
      ``"local"`` when unset) with the reference ``"NAME"``; ``secret("vault:kv/app#db_password")``
      goes to the backend registered as ``vault`` with the reference ``"kv/app#db_password"``
      (everything after the first colon; what it means is the backend's business).
    - One instance serves a whole run (created before the first ``resolve``, from one thread
      at a time), and ``close`` is called once at its end, also after a failure.
    - The core remembers every value ``resolve`` returns and replaces it with ``***`` in all
      output, logs and state: a backend never needs to redact, and must never put a value in
      an exception message.
    """

    #: The prefix references use (``vault`` for ``secret("vault:...")``); set from the registration.
    name: ClassVar[str]
    #: True when the backend keeps values between runs (an encrypted local cache): shown by
    #: ``nexus plugins`` and ``nexus secret list`` so that users know copies exist.
    caches: ClassVar[bool] = False
    #: True when :meth:`set` and :meth:`delete` work (``nexus secret set --backend NAME``).
    writable: ClassVar[bool] = False

    def __init__(self, context: SecretContext) -> None:
        self.context = context

    @abstractmethod
    def resolve(self, reference: str) -> str:
        """The value of ``reference``; raise :class:`SecretNotFound`, :class:`SecretDenied` or
        :class:`SecretUnavailable` (never another exception, never the value in a message)."""

    def exists(self, reference: str) -> bool | None:
        """Whether ``reference`` exists, told without fetching its value; None when the backend cannot tell.

        ``nexus validate``, ``--dry-run`` and ``nexus list`` call it for every ``secret(...)``
        (they decrypt nothing): False is reported as a missing secret at its ``file:line``.
        """
        return None

    def list_names(self) -> Sequence[SecretInfo]:
        """The secrets this backend knows (names and dates only); optional.

        The default says the backend cannot list: ``nexus secret list`` then shows it as such.
        """
        raise NotImplementedError(f"secret backend {self.name!r} cannot list its secrets")

    def set(self, name: str, value: str) -> None:
        """Store ``value`` under ``name`` (only when :attr:`writable`)."""
        raise NotImplementedError(f"secret backend {self.name!r} is read-only")

    def delete(self, name: str) -> None:
        """Remove ``name``; :class:`SecretNotFound` when absent (only when :attr:`writable`)."""
        raise NotImplementedError(f"secret backend {self.name!r} is read-only")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and forget keys; called once when the run ends."""


# --- host sources ----------------------------------------------------------------------------


class DiscoveryError(Exception):
    """A host source could not discover: the message says what failed, ``hint`` how to fix it.

    ``discover(...)`` raises it for every failure the user can act on (not on the tailnet,
    an expired API key, a missing inventory file...). The run stops before anything
    executes, with exit code 3 (a host source that cannot be reached) unless ``exit_code``
    says otherwise (2 for a configuration mistake such as a bad inventory file).
    ``problems`` carries several findings at once (every mistake of an inventory file), as
    strings or, with their file and line, as :class:`nexus_core.model.Problem`.
    """

    def __init__(
        self, message: str, hint: str = "", *, exit_code: int = 3, problems: Sequence[str | Problem] = ()
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code
        self.problems = tuple(problems)


@dataclass(frozen=True)
class DiscoveredHost:
    """One host a source found: where to connect, and what is known about the machine.

    ``address`` is what Nexus connects to (a DNS name or an IP address); ``user``,
    ``port`` and ``transport`` (empty: the default transport of host strings) complete the
    connection.
    ``tags`` are labels for grouping and ``-H tag:NAME``; ``os``, ``online`` and
    ``addresses`` (every address of the machine) are common facts; ``facts`` holds anything
    source-specific (plain data: strings, numbers, booleans, None, lists and dicts of
    these); ``vars`` holds per-host variables (what an inventory file sets, read in task
    bodies with ``host_var``). ``name`` is the source's own name for the machine (its
    hostname, when the address is a DNS name or an IP), shown by ``nexus hosts list``.

    A host that is not ``online`` is listed by ``nexus hosts list`` but not targeted.
    ``targeted`` overrides that when a source decides itself (None: target exactly the
    online hosts): ``False`` for an online machine that cannot be reached (no usable
    address, an expired login), ``True`` for an offline one the user asked for anyway.
    ``online`` always states the machine's own state, as the source reported it.
    """

    address: str
    user: str | None = None
    port: int | None = None
    tags: tuple[str, ...] = ()
    os: str = ""
    online: bool = True
    addresses: tuple[str, ...] = ()
    facts: Mapping[str, Any] = field(default=EMPTY)
    vars: Mapping[str, Any] = field(default=EMPTY)
    name: str = ""
    transport: str = ""
    targeted: bool | None = None

    @property
    def target(self) -> bool:
        """Whether a run targets this host: ``targeted`` when the source set it, else ``online``."""
        return self.online if self.targeted is None else self.targeted

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON output, the discovery cache)."""
        from nexus_core.model import thaw

        return {
            "address": self.address,
            "user": self.user,
            "port": self.port,
            "tags": list(self.tags),
            "os": self.os,
            "online": self.online,
            "addresses": list(self.addresses),
            "facts": thaw(self.facts),
            "vars": thaw(self.vars),
            "name": self.name,
            "transport": self.transport,
            "targeted": self.targeted,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DiscoveredHost:
        """The inverse of :meth:`to_dict`."""
        return cls(
            address=str(data["address"]),
            user=data.get("user"),
            port=data.get("port"),
            tags=tuple(data.get("tags") or ()),
            os=str(data.get("os") or ""),
            online=bool(data.get("online", True)),
            addresses=tuple(data.get("addresses") or ()),
            facts=dict(data.get("facts") or {}),
            vars=dict(data.get("vars") or {}),
            name=str(data.get("name") or ""),
            transport=str(data.get("transport") or ""),
            targeted=None if data.get("targeted") is None else bool(data["targeted"]),
        )


@dataclass(frozen=True)
class HostSourceContext:
    """What a host source gets when it is created, once per run (or ``nexus hosts`` command).

    ``config``: the nexusfile's ``config(...)`` values as the user set them (defaults not
    filled in: ``config.get(key, default)``; keys the source reads are declared with
    ``nexus_config_options``). ``root``: the project folder (relative paths are relative to
    it). ``warn``: report something the user should know that does not stop discovery (a
    rate limit waited out, a peer skipped), one line, shown before the run.
    """

    config: Mapping[str, Any]
    root: str = "."
    warn: Callable[[str], None] = field(default=lambda _message: None)


class HostSource(ABC):
    """Discovers hosts: ``discover("NAME", **filters)`` in a nexusfile (a mesh VPN, a cloud, a CMDB).

    One instance is created per run with a :class:`HostSourceContext`; ``discover`` is called
    once for each distinct ``discover(...)`` of the nexusfile, at plan time, from a worker
    thread (sources run concurrently with each other). Keep it about *what* hosts exist:
    the core turns each :class:`DiscoveredHost` into a target host, applies ``online``,
    caches results (``config(discovery_ttl=...)``) and shows where each host came from.
    """

    #: What ``discover("NAME")`` refers to; set from the registration.
    name: ClassVar[str]
    #: The filters ``discover(NAME, **filters)`` accepts, as :class:`Option` (name, types,
    #: default, help): an unknown filter is a validation error with a "did you mean", a value
    #: of the wrong type is reported with the option's help. A registration gives them as its
    #: ``filters`` detail, so that validation does not import the source's module.
    filters: ClassVar[tuple[Option, ...]] = ()

    def __init__(self, context: HostSourceContext) -> None:
        self.context = context

    def check(self, filters: Mapping[str, Any]) -> list[str]:
        """Problems with these filter values beyond their types (a bad regex...); no network.

        Called when the nexusfile is validated; each string is one problem. Default: none.
        """
        return []

    @abstractmethod
    def discover(self, filters: Mapping[str, Any]) -> Sequence[DiscoveredHost]:
        """The hosts matching ``filters`` (only the filters the user gave; defaults are the
        source's to apply). Raise :class:`DiscoveryError` with a message and a fix when the
        source cannot answer."""


# --- audit sinks -----------------------------------------------------------------------------


class AuditSinkError(Exception):
    """An audit sink cannot open or write: ``message`` says what, ``hint`` how to fix it.

    Never put a secret value (a token, a shared key) in either: the message is shown and
    audited.
    """

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class AuditSinkContext:
    """What an audit sink gets when it is created, once per run (or ``nexus audit`` command).

    ``name``: the sink's name in the configuration (``[audit.sinks.NAME]``); ``options``: the
    sink's own keys from that table, already checked against :attr:`AuditSink.options` and
    with their defaults filled in; ``required``: the run stops when this sink cannot write;
    ``config_dir``: the user's Nexus configuration folder (keys and salts the sink keeps
    live there, 0600); ``where``: the file (and line) that declared the sink, for messages;
    ``warn``: report one line to the user without failing.
    """

    name: str
    options: Mapping[str, Any]
    required: bool = False
    config_dir: str = "."
    where: str = ""
    warn: Callable[[str], None] = field(default=lambda _message: None)


class AuditSink(ABC):
    """A destination of audit records: a file, syslog, a SIEM (``[audit.sinks.NAME]`` with ``type = "..."``).

    The core creates one instance per configured sink and run, calls :meth:`open` before
    anything runs, then :meth:`write` from the sink's own thread with batches of records
    taken from its own bounded queue (a slow sink never stalls the hosts), and :meth:`close`
    once at the end of the run after the queue is drained. Records are plain JSON-able dicts
    (``timestamp``, ``event``, ``user``, ``correlation_id``...); secret values are already
    redacted and values that must stay matchable are already HMAC'd with the sink's salt.
    Raise :class:`AuditSinkError` when the destination cannot take the records: a
    ``required`` sink then stops the run (it does not start, or starts no new work), any
    other sink is reported once and dropped.
    """

    #: What ``type = "NAME"`` refers to; set from the registration.
    name: ClassVar[str]
    #: The keys of the sink's table (besides ``type``, ``required``, ``queue_size``, ``salt``,
    #: ``salt_file`` and ``flush_timeout``, which the core reads), as :class:`Option`: an unknown
    #: key is an error with a "did you mean", a wrong type is reported with the option's help.
    options: ClassVar[tuple[Option, ...]] = ()

    def __init__(self, context: AuditSinkContext) -> None:
        self.context = context

    def open(self) -> None:  # noqa: B027 - optional hook
        """Check that the destination can take records (open the file, connect...); raise :class:`AuditSinkError`."""

    @abstractmethod
    def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Deliver ``records`` (in order, at least one); raise :class:`AuditSinkError` when they cannot be."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Finish: flush, wait for acknowledgements, sign, release connections (called once)."""


# --- cloud providers -------------------------------------------------------------------------


class CloudError(Exception):
    """A cloud provider call failed: the message says what, ``hint`` how to fix it.

    ``retryable`` marks a failure worth another try (a timeout, a 5xx, a throttle): the core
    retries those with backoff and counts them against the provider's circuit breaker.
    ``capacity`` marks "no capacity or price for this request" (spot capacity, a sold-out
    location) so that the caller can fall back. ``exit_code`` is 3 (the provider cannot be
    reached or refuses) unless it says otherwise (2 for a configuration mistake such as a
    missing credential).
    """

    def __init__(
        self,
        message: str,
        hint: str = "",
        *,
        retryable: bool = False,
        capacity: bool = False,
        exit_code: int = 3,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.retryable = retryable
        self.capacity = capacity
        self.exit_code = exit_code


@dataclass(frozen=True)
class CloudInstance:
    """One machine a provider runs for Nexus, as ``list`` reports it.

    ``id`` is the provider's identifier (``i-0abc...``, a server id, a pid); ``name`` the
    agent name it joins the cluster under; ``state`` one of ``pending``, ``running``,
    ``stopping``, ``terminated``; ``launched`` seconds since the epoch; ``hourly_price`` in
    US dollars (None when unknown); ``tags`` every tag/label on the resource (the core's
    ``nexus:*`` tags included); ``market`` ``spot`` or ``on_demand``.
    """

    id: str
    name: str
    state: str
    instance_type: str = ""
    launched: float = 0.0
    hourly_price: float | None = None
    tags: Mapping[str, str] = field(default=EMPTY)
    address: str = ""
    market: str = "on_demand"
    zone: str = ""

    @property
    def live(self) -> bool:
        """True while the instance runs or is about to (it costs money)."""
        return self.state in ("pending", "running")

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (``nexus cloud status --format json``)."""
        return {
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "instance_type": self.instance_type,
            "launched": self.launched,
            "hourly_price": self.hourly_price,
            "tags": dict(self.tags),
            "address": self.address,
            "market": self.market,
            "zone": self.zone,
        }


@dataclass(frozen=True)
class CloudRequest:
    """What the core asks a provider to start: one instance.

    ``settings``: the ``cloud(...)`` declaration's values (the common ones and the
    provider's own, defaults filled in). ``tags``: put every one of them on the instance
    and on everything created with it (volumes, network interfaces). ``name``: the agent
    name the instance joins under. ``bootstrap``: a shell script that installs
    ``nexus-agent``, writes the certificate issued for this instance and joins the cluster
    (empty when no agent cluster is configured); a provider runs it at boot (user data,
    cloud-init) or, for local processes, uses ``credentials``/``cluster`` directly.
    ``max_runtime``: seconds after which the instance must stop and go away by itself (a
    shutdown that terminates), whatever happens to the coordinator.
    """

    name: str
    settings: Mapping[str, Any]
    tags: Mapping[str, str]
    bootstrap: str = ""
    cluster: str = ""
    credentials: Mapping[str, str] = field(default=EMPTY)
    max_runtime: float = 3600.0


@dataclass(frozen=True)
class CloudDemand:
    """What the agent cluster says about the agents a cloud serves, at one moment.

    ``waiting``: commands queued for an agent with the cloud's tags and not running;
    ``oldest_wait``: seconds the longest of them has waited; ``idle_since``: for each
    joined agent (by name), the time (seconds since the epoch) since which it runs nothing
    (None while it is busy). The autoscaler (``nexus_core.clouds.autoscale``) decides from it.
    """

    waiting: int = 0
    oldest_wait: float = 0.0
    idle_since: Mapping[str, float | None] = field(default=EMPTY)


@dataclass(frozen=True)
class CloudContext:
    """What a cloud provider gets when it is created (once per command or run).

    ``config``: the nexusfile's ``config(...)`` values as the user set them. ``settings``: the
    ``cloud(...)`` declaration for this provider (defaults filled in). ``root``: the project
    folder. ``warn``: one line the user should see that does not stop the work (a fallback
    taken, a rate limit waited out).
    """

    config: Mapping[str, Any]
    settings: Mapping[str, Any]
    root: str = "."
    warn: Callable[[str], None] = field(default=lambda _message: None)


class CloudCluster(ABC):
    """The agent cluster cloud instances join, as the core's cloud controller needs it.

    An agent transport offers one: its executor class has a static method
    ``cloud_cluster(config) -> CloudCluster | None`` (nexus-agent's ``agent`` executor does),
    so that the core issues certificates and reads demand without knowing the cluster's
    implementation. ``address`` is the coordinator's (``tls://HOST:PORT``).
    """

    address: str = ""

    @abstractmethod
    def credentials(self, name: str) -> Mapping[str, str]:
        """The files an instance called ``name`` needs to join (file name -> content): the
        cluster's CA certificate and a certificate and key issued for that instance."""

    @abstractmethod
    def demand(self, tags: Sequence[str]) -> CloudDemand:
        """Waiting commands and idle agents among the agents carrying every tag of ``tags``."""

    @abstractmethod
    def agents(self) -> Mapping[str, tuple[str, ...]]:
        """The agents in the cluster now: name -> tags."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the connection."""


class CloudProvider(ABC):
    """Starts, lists and terminates machines that join the agent cluster: ``cloud("NAME", ...)``.

    Keep it about *what* machines exist: the core decides how many (``nexus cloud scale``,
    the autoscaler), enforces ``max_instances`` and ``max_hourly_cost`` before every
    ``provision`` call, tags every resource with the owning cluster and run, retries calls
    that raise a ``retryable`` :class:`CloudError` (tenacity), rate-limits them (``limits``)
    and stops asking a provider that keeps failing (``pybreaker``). A provider only talks to
    its API. Calls come from one thread at a time.
    """

    #: What ``cloud("NAME")`` refers to; set from the registration.
    name: ClassVar[str]
    #: The provider's own ``cloud(NAME, ...)`` parameters beyond the common ones, as
    #: :class:`Option` (an unknown one is a validation error, without importing the provider).
    settings: ClassVar[tuple[Option, ...]] = ()

    def __init__(self, context: CloudContext) -> None:
        self.context = context

    @abstractmethod
    def provision(self, request: CloudRequest) -> CloudInstance:
        """Start one instance with ``request.tags`` on it and return it (``pending`` is fine).

        Raise :class:`CloudError` (``capacity=True`` when the provider has no capacity or the
        price is over the limit, after any fallback the settings allow)."""

    @abstractmethod
    def list(self, tags: Mapping[str, str]) -> Sequence[CloudInstance]:
        """The instances carrying every tag of ``tags`` that are not terminated (read only)."""

    @abstractmethod
    def terminate(self, ids: Sequence[str]) -> None:
        """Terminate these instances (unknown or already gone ids are not an error)."""

    def hourly_price(self, settings: Mapping[str, Any]) -> float | None:
        """The price of one instance of these settings per hour in US dollars, from the
        provider's own figures (spot price history, server-type prices); None when unknown.
        Read only. Default: None (then ``config(cloud_prices={...})`` must give it)."""
        return None

    def describe(self, settings: Mapping[str, Any]) -> str:
        """One line saying what one instance would be (``t3.micro spot in eu-west-1``), for
        the dry run. Read only, no network needed."""
        kind = settings.get("instance_type") or settings.get("server_type") or "instance"
        return f"{kind} ({self.name})"

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients and connections; called once when the command or run ends."""
