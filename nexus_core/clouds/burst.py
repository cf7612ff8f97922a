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
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nexus_core.api import CloudError
from nexus_core.clouds.autoscale import Autoscaler
from nexus_core.clouds.controller import cost_of
from nexus_core.clouds.session import CloudSession
from nexus_core.model import SourceSpec, source_specs

if TYPE_CHECKING:
    from nexus_core.events import Event
    from nexus_core.model import Project
    from nexus_core.registry import Registry


def targeted_tags(project: Project) -> set[str]:
    """Tags that tasks target with ``tagged(TAG)`` (or ``discover("agent", select="tagged", ...)``)."""
    out: set[str] = set()
    for spec in source_specs(project):
        if isinstance(spec, SourceSpec) and spec.source == "agent" and spec.filters.get("select") == "tagged":
            tag = spec.filters.get("tag")
            if isinstance(tag, str):
                out.add(tag)
    return out


class BurstRun:
    """The clouds of one run (see the module doc); ``say`` prints a line for the user."""

    def __init__(self, registry: Registry, project: Project, run_id: str, say: Callable[[str], None]) -> None:
        self.project = project
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
        """Bring each cloud to its minimum, scale from zero for targeted tags, wait for joins."""
        view = self.cloud.cluster()
        present = view.agents() if view is not None else {}
        wanted_tags = targeted_tags(self.project)
        started: list[str] = []
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
            for _ in range(want - len(live)):
                instance = ctl.provision(self.cloud.bootstrap(name))
                self.say(f"cloud: started {name} instance {instance.id} ({instance.name})")
                started.append(instance.name)
                self.scalers[name].last_up = time.time()  # the cooldown starts now: no thrash at start
        if started and view is not None:
            timeout = max(float(self.cloud.settings(n).get("join_timeout") or 300) for n in self.cloud.declared)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if set(started) <= set(view.agents()):
                    return
                time.sleep(0.3)
            raise CloudError(
                f"instance(s) {', '.join(started)} did not join the cluster within {timeout:g} s",
                "see the instance's log (console output, cloud-init log) and `nexus cloud status`",
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
        """Stop the autoscaler, terminate this run's instances, record and show the cost."""
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
                lines.append(f"cloud: {name}: could not terminate this run's instances: {exc.message} "
                             "(nexus cloud reap will)")  # fmt: skip
                continue
            costs = [c for c in ctl.costs.values() if c is not None]
            costs += [c for i in ctl.started if i.id not in ctl.costs and (c := cost_of(i)) is not None]
            count += len(ctl.started)
            total += sum(costs)
        self._flush()
        self.cloud.close()
        if count:
            lines.append(f"cloud: {count} instance(s) started, cost so far ${total:.4f}")
        for line in lines:
            self.say(line)

    def close(self) -> None:
        """Stop without terminating (the caller failed before the run)."""
        self._stop.set()
        with contextlib.suppress(Exception):
            self.cloud.close()
