"""The contract of audit sinks (``nexus_audit_sinks``): re-exported by ``nexus_core.api``.

Imported on first use, so that a run that does not use this kind of plugin does not build
its classes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from nexus_core.options import Option

if TYPE_CHECKING:
    pass


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
