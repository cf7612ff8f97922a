"""Cloud bursting during ``nexus run``: machines before the plan, the autoscaler, the bill at the end.

When the nexusfile declares ``cloud(...)``, a :class:`BurstRun` runs beside the engine:

1. **Before planning**: each cloud is brought to its ``count`` minimum; a cloud whose tags a
   task targets (``tagged("burst")``) while no agent has them starts one instance (scale
   from zero) and the run waits, up to ``join_timeout`` seconds, for it to join.
2. **During the run**: every ``autoscale_interval`` seconds the autoscaler reads the demand
   (shards waiting for a free agent of the tags, idle agents) and starts or terminates
   instances (``nexus_core.clouds.autoscale``), always through the controller's hard limits.
3. **At the end**: the instances this run started are terminated, what each cost is
   recorded in the run's state (``cloud.provisioned``/``cloud.terminated`` events, table
   ``cloud_instances``) and one line says the total.

A coordinator that dies skips step 3: the instances' own ``max_runtime`` self-destruct and
``nexus cloud reap`` (instances whose owning process is gone) take care of them.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from nexus_core.api import CloudError
from nexus_core.clouds import MANUAL, TAG_OWNER, TAG_RUN
from nexus_core.clouds.autoscale import Autoscaler
from nexus_core.clouds.controller import cost_of, owner_alive
from nexus_core.clouds.session import CloudSession
from nexus_core.exitcodes import for_signal
from nexus_core.model import SourceSpec, source_specs

if TYPE_CHECKING:
    from types import FrameType

    from nexus_core.events import Event
    from nexus_core.model import Project
    from nexus_core.registry import Registry


def targeted_tags(project: Project, tasks: Sequence[str] | None = None) -> set[str]:
    """Tags that tasks target with ``tagged(TAG)`` (or ``discover("agent", select="tagged", ...)``).

    ``tasks``: only these tasks (a run's, with their dependencies) count; None: every task.
    A task the run does not include must not start a billed machine."""
    from nexus_core.discovery import needed_specs

    out: set[str] = set()
    for spec in source_specs(project) if tasks is None else needed_specs(project, tasks):
        if isinstance(spec, SourceSpec) and spec.source == "agent" and spec.filters.get("select") == "tagged":
            tag = spec.filters.get("tag")
            if isinstance(tag, str):
                out.add(tag)
    return out


class BurstRun:
    """The clouds of one run (see the module doc); ``say`` prints a line for the user."""

    def __init__(
        self,
        registry: Registry,
        project: Project,
        run_id: str,
        say: Callable[[str], None],
        tasks: Sequence[str] | None = None,
    ) -> None:
        self.project = project
        #: The run's tasks with their dependencies (None: every task): only their tags scale from zero.
        self.tasks = tasks
        self.say = say
        self.cloud = CloudSession(registry, project, run_id=run_id, emit=self._emit, warn=say)
        self.scalers = {name: Autoscaler(self.cloud.settings(name)) for name in self.cloud.declared}
        self.interval = min([float(self.cloud.settings(n)["autoscale_interval"]) for n in self.cloud.declared] or [5.0])
        self._lock = threading.Lock()
        self._pending: list[Event] = []
        self._session: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._said: set[str] = set()
        #: Called with the events no run's bus took (see :meth:`_deliver_unsent`).
        self.on_unsent: Callable[[list[Event]], None] | None = None

    # --- events: buffered until the run's bus exists ---------------------------------------------

    def attach(self, session: Any) -> None:
        """The run's :class:`~nexus_core.session.RunSession` (its engine's bus gets the events)."""
        self._session = session

    def _bus(self) -> Any:
        engine = getattr(self._session, "engine", None)
        return getattr(engine, "bus", None)

    def _emit(self, event: Event) -> None:
        with self._lock:
            bus = self._bus()
            if bus is None:
                self._pending.append(event)
                return
            pending, self._pending = self._pending, []
        for e in [*pending, event]:
            bus.emit(e)

    def _flush(self) -> None:
        with self._lock:
            bus = self._bus()
            if bus is None or not self._pending:
                return
            pending, self._pending = self._pending, []
        for e in pending:
            bus.emit(e)

    def _warn_once(self, message: str) -> None:
        if message not in self._said:
            self._said.add(message)
            self.say(message)

    # --- 1. before the plan --------------------------------------------------------------------

    def before_plan(self) -> None:
        """Bring each cloud to its minimum, scale from zero for targeted tags, wait for joins.

        An instance of the cluster that is still joining (this run's, or one another run
        started) is waited for as well. SIGINT, SIGTERM and SIGHUP meanwhile stop the wait
        with a CloudError of the signal's exit code, after the provider call under way: the
        caller's :meth:`finish` then terminates what this run started.
        """
        with _signals() as caught:
            self._before_plan(caught)

    def _before_plan(self, caught: list[str]) -> None:
        view = self.cloud.cluster()
        present = view.agents() if view is not None else {}
        wanted_tags = targeted_tags(self.project, self.tasks)
        waits: list[tuple[int, list[str]]] = []  # per cloud: how many must join, of which instances
        mine: list[str] = []  # the instances this run started
        for name in self.cloud.declared:
            settings = self.cloud.settings(name)
            tags = set(settings.get("tags") or ())
            low = int(settings["count"][0])
            want = low
            if tags & wanted_tags and not any(tags <= set(t) for t in present.values()):
                want = max(low, 1)
            if not want:
                continue
            ctl = self.cloud.controller(name)
            live = ctl.instances()
            # Left by a run whose process is gone (kill -9): never joins, and is billed until reaped.
            left = [
                i for i in live if i.tags.get(TAG_RUN) != MANUAL and owner_alive(i.tags.get(TAG_OWNER, "")) is False
            ]
            for i in left:
                self._warn_once(
                    f"cloud: {name}: instance {i.id} ({i.name}) was left by run {i.tags.get(TAG_RUN, '?')}, whose "
                    "process is gone: not waited for; `nexus cloud reap` ends it (it is billed until then)"
                )
            live = [i for i in live if i not in left]
            joining = [i.name for i in live if i.name not in present]
            need = want - (len(live) - len(joining))  # instances that still have to join
            for _ in range(want - len(live)):
                _stop_if(caught, "starting the cloud's instances")
                instance = ctl.provision(self.cloud.bootstrap(name))
                self.say(f"cloud: started {name} instance {instance.id} ({instance.name})")
                joining.append(instance.name)
                mine.append(instance.name)
                self.scalers[name].last_up = time.time()  # the cooldown starts now: no thrash at start
            if need > 0:
                waits.append((need, joining))
        if not waits or view is None:
            return
        timeout = max(float(self.cloud.settings(n).get("join_timeout") or 300) for n in self.cloud.declared)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _stop_if(caught, "waiting for the cloud's instances to join")
            there = set(view.agents())
            if all(len(there.intersection(names)) >= count for count, names in waits):
                return
            time.sleep(0.3)
        _stop_if(caught, "waiting for the cloud's instances to join")
        there = set(view.agents())
        late = [n for _, names in waits for n in names if n not in there]
        others = [n for n in late if n not in mine]
        raise CloudError(
            f"instance(s) {', '.join(late)} did not join the cluster within {timeout:g} s",
            "see the instance's log (console output, cloud-init log) and `nexus cloud status`"
            + (
                f"; {', '.join(others)} did not start with this run: `nexus cloud terminate ID` ends it"
                if others
                else ""
            ),
        )

    # --- 2. during the run ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the autoscaler thread."""
        now = time.time()
        for scaler in self.scalers.values():
            scaler.started = now
            scaler.last_up = max(scaler.last_up, now)  # the cooldown also starts with the run
        self._thread = threading.Thread(target=self._loop, name="nexus-autoscaler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        view = self.cloud.cluster()
        while not self._stop.wait(self.interval):
            self._flush()
            if view is None:
                continue
            for name, scaler in self.scalers.items():
                settings = self.cloud.settings(name)
                try:
                    demand = view.demand(tuple(settings.get("tags") or ()))
                    decision = scaler.step(self.cloud.controller(name), demand, bootstrap=self.cloud.bootstrap(name))
                except CloudError as exc:
                    self._warn_once(f"cloud: {name}: {exc.message}")
                    continue
                except Exception as exc:  # noqa: BLE001 - the autoscaler must never take the run down
                    self._warn_once(f"cloud: {name}: autoscaler error: {type(exc).__name__}: {exc}")
                    continue
                if decision.start or decision.stop:
                    what = f"+{decision.start}" if decision.start else f"-{len(decision.stop)}"
                    self.say(f"cloud: {name} {what} ({decision.why})")

    # --- 3. at the end ---------------------------------------------------------------------------

    def finish(self) -> None:
        """Stop the autoscaler, terminate this run's instances, record and show the cost.

        SIGINT, SIGTERM and SIGHUP meanwhile are noted and do not stop it (a second Ctrl+C,
        a CI runner's SIGTERM): the instances are billed until it is done.
        """
        with _signals() as caught:
            self._finish()
        if caught:
            self.say(f"cloud: {caught[0]} waited until this run's instances were terminated")

    def _finish(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        lines: list[str] = []
        total = 0.0
        count = 0
        for name in self.cloud.declared:
            try:
                ctl = self.cloud.controller(name)
                mine = ctl.instances(run_only=True)
                ctl.terminate(mine, "the run ended")
            except CloudError as exc:
                started = ", ".join(f"{i.id} ({i.name})" for i in self.cloud.controller(name).started)
                which = f": {started}" if started else ""
                lines.append(
                    f"cloud: {name}: could not terminate this run's instances{which}: {exc.message}; they are billed "
                    "until `nexus cloud reap` (or `nexus cloud terminate ID`) ends them"
                )
                continue
            costs = [c for c in ctl.costs.values() if c is not None]
            costs += [c for i in ctl.started if i.id not in ctl.costs and (c := cost_of(i)) is not None]
            count += len(ctl.started)
            total += sum(costs)
        self._flush()
        self._deliver_unsent()
        self.cloud.close()
        if count:
            lines.append(f"cloud: {count} instance(s) started, cost so far ${total:.4f}")
        for line in lines:
            self.say(line)

    def _deliver_unsent(self) -> None:
        """The events of a run that ended before its bus existed (a join that timed out, a
        limit, a signal while planning): to the audit sinks and subscribers, as outside a run,
        and to :attr:`on_unsent` (``--format json`` prints them), not dropped."""
        with self._lock:
            if self._bus() is not None or not self._pending:
                return
            pending, self._pending = self._pending, []
        from nexus_core.policy.gate import audit

        try:
            audit(pending, dict(self.project.config), self.project.root)
        except Exception as exc:  # noqa: BLE001 - the instances are terminated either way
            self.say(f"cloud: the instances' events could not be delivered: {exc}")
        if self.on_unsent is not None:
            self.on_unsent(pending)

    def close(self) -> None:
        """Stop without terminating (the caller failed before the run)."""
        self._stop.set()
        with contextlib.suppress(Exception):
            self.cloud.close()


@contextlib.contextmanager
def _signals() -> Iterator[list[str]]:
    """While the block runs, SIGINT, SIGTERM and SIGHUP are noted (by name) in the yielded
    list instead of stopping the process (a signal already ignored stays ignored; outside the
    main thread nothing changes)."""
    from nexus_core.session import STOP_SIGNALS

    caught: list[str] = []
    previous: dict[int, Any] = {}

    def note(signum: int, _frame: FrameType | None) -> None:
        caught.append(signal.Signals(signum).name)

    if threading.current_thread() is threading.main_thread():
        for sig_name in STOP_SIGNALS:
            sig = getattr(signal, sig_name, None)
            if sig is not None and signal.getsignal(sig) is not signal.SIG_IGN:
                previous[sig] = signal.signal(sig, note)
    try:
        yield caught
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop_if(caught: list[str], doing: str) -> None:
    """Raise a CloudError with the exit code of the first signal in ``caught``, if any."""
    if caught:
        raise CloudError(
            f"interrupted ({caught[0]}) while {doing}: no task ran",
            exit_code=int(for_signal(caught[0])),
        )
