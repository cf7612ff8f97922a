"""``nexus run --tui``: the dashboard as the run's output subscriber.

Textual needs the main thread (it handles the terminal's signals), so the run goes to a
worker thread and the dashboard takes the main thread. The run does not know the
dashboard exists: it is the ``output`` subscriber of the event bus, and a bounded
:class:`~nexus_core.tui.feed.EventFeed` stands between the two. When the user quits while
the run goes on, or the dashboard fails, the plain renderer takes over the remaining
events and a line on stderr says so; the run itself is never stopped by the dashboard
(only by the user's ``c`` / Ctrl+C, which interrupt it as Ctrl+C does in plain output).
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nexus_core.tui.cluster import ClusterWatcher
from nexus_core.tui.feed import EventFeed
from nexus_core.tui.model import Notice, RunDone

if TYPE_CHECKING:
    from nexus_core.engine import RunResult
    from nexus_core.output.render import Renderer
    from nexus_core.session import RunSession
    from nexus_core.tui.app import Dashboard

#: Seconds between looks at the worker while waiting for the run to end (signals stay handled).
JOIN_STEP = 0.2


class DashboardRun:
    """The output of one run shown on the dashboard, with the plain renderer as fallback.

    ``plain`` makes the plain renderer when the dashboard closes before the run ends.
    ``say`` prints a line for the user once the dashboard is gone (default: stderr).
    """

    def __init__(
        self,
        plain: Callable[[], Renderer],
        *,
        say: Callable[[str], None] | None = None,
        show_tracebacks: bool = False,
    ) -> None:
        self.feed = EventFeed()
        self._make_plain = plain
        self._plain: Renderer | None = None
        self._say = say or (lambda m: print(m, file=sys.stderr, flush=True))
        self.show_tracebacks = show_tracebacks
        self.session: RunSession | None = None
        self.result: RunResult | None = None
        self.error: BaseException | None = None
        self.notices: list[str] = []
        self._worker: threading.Thread | None = None
        self._switch = threading.Lock()
        self._cluster: ClusterWatcher | None = None

    # --- the bus side ------------------------------------------------------------------------

    def __call__(self, event: Any, /) -> None:
        """The ``output`` subscriber: to the dashboard, or to the plain renderer once it took over."""
        plain = self._plain
        if plain is not None:
            plain(event)
        else:
            self.feed(event)

    def report(self, message: str) -> None:
        """The session's notices: on the dashboard while it is shown, on stderr after."""
        if self._plain is not None:
            self._say(message)
        else:
            self.notices.append(message)
            self.feed(Notice(message))

    def close(self) -> None:
        """Stop the plain renderer's live view (if it took over)."""
        if self._plain is not None:
            self._plain.close()

    # --- the controller the dashboard uses -----------------------------------------------------

    def running(self) -> bool:
        """True while the run goes on."""
        return self._worker is not None and self._worker.is_alive()

    def cancel(self, signal_name: str = "SIGINT") -> None:
        """Stop the run as that signal would (again: harder)."""
        if self.session is not None:
            self.session.interrupt(signal_name)

    # --- running -----------------------------------------------------------------------------

    def start(self, session: RunSession) -> None:
        """Start the run in a worker thread."""
        self.session = session
        self._worker = threading.Thread(target=self._work, name="nexus-run", daemon=True)
        self._worker.start()
        self._watch_cluster(session)

    def _watch_cluster(self, session: RunSession) -> None:
        """The cluster panel: ask the agents' host source about their load, when the run uses agents."""
        from nexus_core.tui.cluster import ClusterWatcher, agent_lister

        try:
            plan = session.plan
            lister = agent_lister(session.plugins.registry, plan.config, plan.root, plan.hosts)
        except Exception as exc:  # noqa: BLE001 - no cluster panel then; the run is not concerned
            self.feed(Notice(f"no cluster panel: {type(exc).__name__}: {exc}"))
            return
        if lister is not None:
            self._cluster = ClusterWatcher(lister, self.feed)
            self._cluster.start()

    def _work(self) -> None:
        assert self.session is not None
        try:
            self.result = self.session.run()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, raised there
            self.error = exc
        if self.result is not None:
            self.feed(RunDone(self.result))

    def make_app(self) -> Dashboard:
        """The dashboard fed by this run."""
        from nexus_core.tui.app import Dashboard

        return Dashboard(self.feed, controller=self, show_tracebacks=self.show_tracebacks)

    def finish(self, choice: str | None, crash: str = "") -> RunResult:
        """After the dashboard closed: plain output for the rest, cancel if asked, wait for the end."""
        if self.running():
            with self._switch:
                self._plain = self._make_plain()
            why = f"the dashboard stopped ({crash})" if crash else "dashboard closed"
            self._say(f"nexus: {why}; the run goes on with plain output")
            if choice == "cancel":
                self.cancel()
        for message in self.notices:
            if self._plain is None:
                self._say(message)
        if self._cluster is not None:
            self._cluster.stop()
        worker = self._worker
        while worker is not None and worker.is_alive():
            worker.join(JOIN_STEP)
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result

    def run(self, session: RunSession) -> RunResult:
        """Run ``session`` with the dashboard on this terminal; the run's result."""
        previous = _install_signals(self.cancel)
        try:
            self.start(session)
            choice: str | None = None
            crash = ""
            try:
                app = self.make_app()
                choice = app.run()
                crash = app.crash
            except Exception as exc:  # noqa: BLE001 - a dashboard failure must not stop the run
                crash = f"{type(exc).__name__}: {exc}"
            return self.finish(choice, crash)
        finally:
            _restore_signals(previous)


def _install_signals(cancel: Callable[[str], None]) -> dict[int, Any]:
    """SIGINT, SIGTERM and SIGHUP stop the run as in plain output (the run is not in the main thread)."""
    from nexus_core.session import STOP_SIGNALS

    previous: dict[int, Any] = {}

    def handler(signum: int, _frame: Any) -> None:
        cancel(signal.Signals(signum).name)

    try:
        for name in STOP_SIGNALS:
            sig = getattr(signal, name, None)
            if sig is not None:
                previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread
        pass
    return previous


def _restore_signals(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)
