"""The event stream: typed events and a bus whose subscribers are isolated from each other.

Every step of a run is an event. Output renderers, the state store, audit sinks and
telemetry exporters subscribe to the bus; the engine never calls them directly.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar, dataclass_transform

from nexus_core.records import dataclass_repr, init_on_first_use
from nexus_core.secrets.redact import REDACTOR


class Subscriber(Protocol):
    """What receives a run's events (``nexus_subscribers``): called with one event at a time."""

    def __call__(self, event: Event, /) -> None:
        """Handle one event; raising drops this subscriber (reported by name), not the run."""


_T = TypeVar("_T")


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def event_type(cls: type[_T]) -> type[_T]:
    """Make ``cls`` (a subclass of :class:`Event` with a ``name``) a frozen event dataclass.

    Use it instead of ``@dataclass(frozen=True)``: the same class, but ``__eq__``,
    ``__hash__`` and ``__repr__`` are :class:`Event`'s, written once, instead of three more
    methods generated from source and compiled for every event class at every start (half of
    the dataclass cost of the catalogue; see docs/decisions.md), and ``__init__`` is compiled
    when the class is first instantiated (:func:`nexus_core.records.init_on_first_use`): a
    run creates a few of the event types it defines.
    """
    if not cls.__doc__:  # dataclasses writes the docstring from __init__'s signature
        return dataclass(frozen=True, eq=False, repr=False)(cls)
    made = dataclass(frozen=True, eq=False, repr=False, init=False)(cls)
    made.__init__ = init_on_first_use(made)  # type: ignore[method-assign]
    return made


@dataclass(frozen=True, eq=False, repr=False)
class Event:
    """Base of all events: the run id and a wall-clock timestamp (seconds since the epoch)."""

    name: ClassVar[str] = "event"
    run_id: str
    ts: float = field(default_factory=time.time, kw_only=True)

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f.name) for f in dataclasses.fields(self) if f.compare)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Event)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash((self.__class__, self._values()))

    __repr__ = dataclass_repr

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (one JSON object per event in ``--format json``)."""
        data: dict[str, Any] = {"event": self.name}
        for f in dataclasses.fields(self):
            data[f.name] = _plain(getattr(self, f.name))
        return data


def _plain(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


# --- pipeline ------------------------------------------------------------------------------


@event_type
class PipelineStart(Event):
    """A run begins: the tasks it will run (in order) and every host it touches."""

    name: ClassVar[str] = "pipeline.start"
    tasks: tuple[str, ...]
    hosts: tuple[str, ...]
    requested: tuple[str, ...] = ()
    nexusfile: str = ""
    dry_run: bool = False


@event_type
class PipelineStop(Event):
    """A run ends. ``status`` is ok, failed, interrupted or error; ``exit_code`` as the CLI exits."""

    name: ClassVar[str] = "pipeline.stop"
    duration: float
    status: str
    exit_code: int
    tasks_completed: tuple[str, ...] = ()
    tasks_failed: tuple[str, ...] = ()
    tasks_skipped: tuple[str, ...] = ()


@event_type
class PipelineException(Event):
    """Nexus itself failed unexpectedly during a run (a bug or a plugin error)."""

    name: ClassVar[str] = "pipeline.exception"
    duration: float
    kind: str
    reason: str


@event_type
class PipelineInterrupt(Event):
    """A signal arrived: no new work starts; ``signal`` is SIGINT, SIGTERM or SIGHUP; ``level`` counts repeats."""

    name: ClassVar[str] = "pipeline.interrupt"
    signal: str
    level: int = 1


# --- tasks ---------------------------------------------------------------------------------


@event_type
class TaskStart(Event):
    """A task starts on its hosts, with the strategy that orders them."""

    name: ClassVar[str] = "task.start"
    task: str
    hosts: tuple[str, ...]
    strategy: str = "parallel"
    attempt: int = 1


@event_type
class TaskStop(Event):
    """A task ends. ``status``: ok, failed, skipped or interrupted."""

    name: ClassVar[str] = "task.stop"
    task: str
    hosts: tuple[str, ...]
    status: str
    duration: float = 0.0
    commands_executed: int = 0
    reason: str = ""


@event_type
class TaskRetry(Event):
    """A command of a task failed and will be tried again after ``delay`` seconds."""

    name: ClassVar[str] = "task.retry"
    task: str
    host: str
    command: str
    attempt: int
    max_attempts: int
    delay: float
    reason: str


@event_type
class TaskWait(Event):
    """A task's strategy pauses before its next hosts (a canary's ``canary_wait``)."""

    name: ClassVar[str] = "task.wait"
    task: str
    strategy: str
    seconds: float


@event_type
class HostStart(Event):
    """A task starts on one host."""

    name: ClassVar[str] = "host.start"
    task: str
    host: str


@event_type
class HostStop(Event):
    """A task ends on one host. ``status``: ok, failed, timeout, unreachable, skipped, interrupted."""

    name: ClassVar[str] = "host.stop"
    task: str
    host: str
    status: str
    duration: float = 0.0
    reason: str = ""


# --- commands ------------------------------------------------------------------------------


@event_type
class CommandStart(Event):
    """A command starts on a host (``index`` is its position in the task's commands)."""

    name: ClassVar[str] = "command.start"
    task: str
    host: str
    command: str
    index: int = 0
    sudo: bool = False
    attempt: int = 1


@event_type
class CommandOutput(Event):
    """One line of a command's output; ``stream`` is stdout or stderr."""

    name: ClassVar[str] = "command.output"
    task: str
    host: str
    stream: str
    line: str
    index: int = 0


@event_type
class CommandStop(Event):
    """A command ends: ``status`` ok, failed, timeout, error or interrupted."""

    name: ClassVar[str] = "command.stop"
    task: str
    host: str
    command: str
    exit_code: int | None
    duration: float
    status: str
    index: int = 0
    attempt: int = 1
    reason: str = ""
    #: The operation changed something on the host (a command that succeeded; a file written).
    changed: bool = False


# --- file transfers ------------------------------------------------------------------------


@event_type
class TransferStart(Event):
    """A file operation starts moving bytes: ``op`` upload, download or template; ``files`` and
    ``bytes`` to move (files already identical at the destination left out)."""

    name: ClassVar[str] = "transfer.start"
    task: str
    host: str
    op: str
    dest: str
    files: int
    bytes: int
    index: int = 0


@event_type
class TransferProgress(Event):
    """Bytes of one file done so far (at most a few per second, for files over a few MB)."""

    name: ClassVar[str] = "transfer.progress"
    task: str
    host: str
    path: str
    done: int
    total: int
    index: int = 0


@event_type
class TransferStop(Event):
    """A file operation ends: ``status`` ok, failed, error or interrupted; ``changed`` when a
    file was written (``unchanged`` files were identical: same sha256, mode and owner).
    ``bytes``: bytes sent this time; ``resumed``: bytes kept from an interrupted transfer;
    ``sha256``: the verified checksum (one file) or "" (a folder)."""

    name: ClassVar[str] = "transfer.stop"
    task: str
    host: str
    op: str
    dest: str
    status: str
    changed: bool
    files: int = 0
    changed_files: int = 0
    unchanged_files: int = 0
    bytes: int = 0
    resumed: int = 0
    sha256: str = ""
    duration: float = 0.0
    reason: str = ""
    index: int = 0


# --- handlers ------------------------------------------------------------------------------


@event_type
class HandlerNotify(Event):
    """An operation notified a handler on a host (``index``: the operation's; ``by`` says which,
    or ``carried over from run ID`` for a notification a failed earlier run left pending).
    Checkpointed at once: a resume runs the handler even after a crash."""

    name: ClassVar[str] = "handler.notify"
    task: str
    host: str
    handler: str
    index: int = 0
    by: str = ""


@event_type
class HandlerStart(Event):
    """A notified handler starts on a host, at the end of the task that notified it."""

    name: ClassVar[str] = "handler.start"
    task: str
    host: str
    handler: str
    forced: bool = False


@event_type
class HandlerStop(Event):
    """A handler ends on a host: ``status`` ok, failed, timeout, unreachable, error or interrupted."""

    name: ClassVar[str] = "handler.stop"
    task: str
    host: str
    handler: str
    status: str
    duration: float = 0.0
    reason: str = ""


# --- logs ----------------------------------------------------------------------------------


@event_type
class Log(Event):
    """A log record meant for the user's stderr (``level``: debug, info, warning, error)."""

    name: ClassVar[str] = "log"
    level: str
    message: str
    source: str = "nexus"


CATALOGUE: tuple[type[Event], ...] = (
    PipelineStart, PipelineStop, PipelineException, PipelineInterrupt,
    TaskStart, TaskStop, TaskRetry, TaskWait, HostStart, HostStop,
    CommandStart, CommandOutput, CommandStop, Log,
    TransferStart, TransferProgress, TransferStop,
    HandlerNotify, HandlerStart, HandlerStop,
)  # fmt: skip
"""The core's events. Plugins add theirs (connections, pools...) through ``nexus_event_types``:
the full catalogue of a run is ``Registry.event_types``."""


class _Ticket:
    """An event waiting in the bus's queue, and the lock its emitter waits on until delivered."""

    __slots__ = ("done", "event", "owner", "wake")

    def __init__(self, event: Event, owner: int) -> None:
        self.event = event
        self.owner = owner
        self.wake = threading.Lock()  # held until the event is delivered (then released once)
        self.wake.acquire()
        self.done = False


class EventBus:
    """Delivers each event to every subscriber, one event at a time.

    Every subscriber sees the same events in the same order (the output, the audit log and
    the state store never disagree about what happened first), each called by one thread
    at a time. A subscriber that raises is reported on stderr by its name and receives no
    more events; the run and the other subscribers go on. :meth:`emit` returns once every
    subscriber has the event.

    Events join a queue in the order they are emitted (an atomic ``deque.append``: no lock),
    and whichever emitter takes the delivery lock delivers the whole queue -- its own event
    and those that arrive meanwhile -- while the others each wait on a lock of their own,
    released when their event is delivered (flat combining). With a lock around each
    delivery instead, a thousand hosts' threads queued on it one by one, each hand-over also
    waiting for the GIL: at 1,000 hosts, 700 threads were found waiting there and the run
    spent five times its user time in the kernel (docs/decisions.md, Scale). A subscriber
    that emits while it is called is delivered to at once, nested, as before.

    A subscriber may also give an ``after`` callable: the emitting thread calls it once every
    subscriber has the event, outside the bus's locks, before :meth:`emit` returns. That is
    where a subscriber waits for what the event must make durable (the state store's group
    commit): a thousand hosts' checkpoints then share a few transactions instead of queueing
    one by one.
    """

    #: Longest wait for one's event before looking again whether anyone delivers. Only an
    #: interrupted deliverer leaves events behind; every other case wakes the emitter at once.
    #: Long on purpose: with a thousand emitters waiting, a 1 s look-again was a thousand
    #: wake-ups a second, each a thread wanting the GIL the deliverer needs.
    RECHECK = 30.0

    def __init__(self, run_id: str, report: Callable[[str], None] | None = None) -> None:
        self.run_id = run_id
        self._subs: tuple[tuple[str, Subscriber], ...] = ()
        self._after: tuple[tuple[str, Subscriber], ...] = ()
        #: (name, callback, after, event names it wants or None for all), in subscription order.
        self._entries: tuple[tuple[str, Subscriber, Subscriber | None, frozenset[str] | None], ...] = ()
        #: Per event name: its subscribers and its ``after`` callables (made on first use).
        self._routes: dict[str, tuple[tuple[tuple[str, Subscriber], ...], tuple[tuple[str, Subscriber], ...]]] = {}
        self._lock = threading.RLock()  # subscribing and failures
        self._delivering = threading.Lock()  # held by the thread delivering the queue
        self._queue: deque[_Ticket] = deque()
        self._combiner: int | None = None  # the thread delivering the queue now
        self._report = report or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.failures: dict[str, str] = {}

    def subscribe(self, name: str, callback: Subscriber, after: Subscriber | None = None) -> None:
        """Add a subscriber under a name used when reporting its failures (``after``: see the class).

        A subscriber with a ``subscribed_events`` attribute (a frozenset of event names) gets
        only those events, and so does its ``after``: a run's many ``command.output`` events
        then skip the subscribers that ignore them.
        """
        wanted = getattr(callback, "subscribed_events", None)
        with self._lock:
            self._subs = (*self._subs, (name, callback))
            if after is not None:
                self._after = (*self._after, (name, after))
            names = wanted if isinstance(wanted, frozenset) else None
            self._entries = (*self._entries, (name, callback, after, names))
            self._routes = {}

    def _route(self, event_name: str) -> tuple[tuple[tuple[str, Subscriber], ...], tuple[tuple[str, Subscriber], ...]]:
        """The subscribers and the ``after`` callables that want events named ``event_name``."""
        found = self._routes.get(event_name)
        if found is None:
            with self._lock:
                wants = [e for e in self._entries if e[3] is None or event_name in e[3]]
                subs = tuple((e[0], e[1]) for e in wants)
                after = tuple((e[0], e[2]) for e in wants if e[2] is not None)
                found = self._routes[event_name] = (subs, after)
        return found

    def emit(self, event: Event) -> None:
        """Deliver ``event`` to every healthy subscriber, with every secret value shown as ``***``."""
        if REDACTOR:
            event = REDACTOR.data(event)
        me = threading.get_ident()
        if self._combiner == me:  # a subscriber emitting while it is called
            self._deliver(event)
        else:
            ticket = _Ticket(event, me)
            self._queue.append(ticket)
            for _ in range(1_000_000):  # bounded; each round delivers or waits up to RECHECK
                if ticket.done:
                    break
                if self._delivering.acquire(blocking=False):
                    self._combine(me)
                else:
                    ticket.wake.acquire(timeout=self.RECHECK)
        for name, after in self._route(event.name)[1]:
            self._call(name, after, event)

    def _deliver(self, event: Event) -> None:
        for name, callback in self._route(event.name)[0]:
            self._call(name, callback, event)

    def _combine(self, me: int) -> None:
        """Deliver the queue until it is empty; called holding ``_delivering``, which it releases.

        After letting go it looks once more: an emitter that queued its event and found the
        lock taken just before the release would otherwise wait for a deliverer that left."""
        while True:
            self._combiner = me
            try:
                while self._queue:
                    ticket = self._queue.popleft()
                    try:
                        self._deliver(ticket.event)
                    finally:  # delivered, or cut short by an interrupt: its emitter goes on
                        ticket.done = True
                        if ticket.owner != me:
                            ticket.wake.release()
            finally:
                self._combiner = None
                self._delivering.release()
            if not self._queue or not self._delivering.acquire(blocking=False):
                return

    def _call(self, name: str, callback: Subscriber, event: Event) -> None:
        if name in self.failures:
            return
        try:
            callback(event)
        except Exception as exc:  # noqa: BLE001 - isolate subscribers from each other
            reason = f"{type(exc).__name__}: {exc}"
            with self._lock:
                if name in self.failures:
                    return
                self.failures[name] = reason
            self._report(
                f"nexus: event subscriber '{name}' failed on {event.name} ({reason}); "
                "it gets no more events, the run goes on"
            )
