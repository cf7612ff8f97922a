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

import os
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
#: After SIGHUP and the run's end, seconds the dashboard has to close before the process exits anyway.
HANGUP_GRACE = 10.0
#: Events kept while the dashboard is shown, for the plain output that takes over when it
#: closes before the run ends (it first shows what happened so far); past these counts the
#: later ones are not repeated (a line says how many). Command output lines (what ``-v``
#: prints) count apart.
KEEP_EVENTS = 50_000
KEEP_OUTPUT = 10_000


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
        self._switch = threading.RLock()  # re-entered when a signal handler reports while finish() holds it
        self._cluster: ClusterWatcher | None = None
        #: Set by SIGHUP: the terminal is gone (or going), the dashboard leaves it.
        self.hung_up = False
        #: Set once the dashboard has closed.
        self.closed = threading.Event()
        #: What the dashboard was fed (bounded, transfers' progress left out): the plain
        #: renderer starts from it (:meth:`finish`).
        self._kept: list[Any] = []
        self._kept_output = 0
        self._not_kept = 0

    # --- the bus side ------------------------------------------------------------------------

    def __call__(self, event: Any, /) -> None:
        """The ``output`` subscriber: to the dashboard, or to the plain renderer once it took over."""
        plain = self._plain
        if plain is None:
            with self._switch:  # the hand-over (finish) replays what was kept, then takes the rest
                plain = self._plain
                if plain is None:
                    self._keep(event)
                    self.feed(event)
                    return
        plain(event)

    def _keep(self, event: Any) -> None:
        """Keep ``event`` for the plain output that may take over (see :data:`KEEP_EVENTS`)."""
        name = getattr(event, "name", "")
        if name == "transfer.progress":  # a bar's steps: only the live view's, long gone
            return
        output = name == "command.output"
        if len(self._kept) >= KEEP_EVENTS or (output and self._kept_output >= KEEP_OUTPUT):
            self._not_kept += 1
            return
        self._kept.append(event)
        self._kept_output += output

    def report(self, message: str) -> None:
        """The session's notices: on the dashboard while it is shown, on stderr after."""
        with self._switch:
            shown = self._plain is None
            if shown:
                self.notices.append(message)
        if shown:
            self.feed(Notice(message))
        else:
            self._tell(message)

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

    def on_signal(self, signal_name: str) -> None:
        """SIGINT, SIGTERM, SIGHUP: stop the run as in plain output; after SIGHUP the dashboard also leaves.

        When the terminal is really gone (closed, not just a ``kill -HUP``), the standard
        streams are pointed at /dev/null first: the dashboard's last writes and the plain
        output that follows cannot fail or block on a dead terminal, and a watchdog makes sure
        the process ends with the run's exit code even if the screen library cannot let go.
        """
        if signal_name == "SIGHUP" and not self.hung_up:
            self.hung_up = True
            if not any(_isatty(fd) for fd in (0, 1, 2)):  # closed, not just signalled
                _detach_from_terminal()
                threading.Thread(target=self._watchdog, name="nexus-hangup", daemon=True).start()
        self.cancel(signal_name)

    def _watchdog(self) -> None:
        """After SIGHUP: once the run has ended, the dashboard has HANGUP_GRACE seconds to close."""
        worker = self._worker
        while worker is not None and worker.is_alive():
            worker.join(JOIN_STEP)
        if self.closed.wait(HANGUP_GRACE):
            return
        code = self.result.exit_code if self.result is not None else 129
        os._exit(code)  # the terminal is gone and the screen would not let go: the run's outcome is recorded

    def terminal_gone(self) -> bool:
        """True once SIGHUP came: the dashboard closes (the run's output goes on as plain output)."""
        return self.hung_up

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
            lister = agent_lister(session.plugins.registry, plan.config, plan.root, (h.transport for h in plan.hosts))
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
        running = self.running()
        # The plain output starts with what the dashboard showed so far (a task that ended
        # while it was open, the hosts done), then takes the rest: events that come meanwhile
        # wait for the lock, so nothing is shown twice or out of order.
        with self._switch:
            plain = self._make_plain() if running else None  # notices from now on go to stderr directly
            for message in self.notices:  # what the dashboard showed, kept on stderr
                self._tell(message)
            if plain is not None:
                why = f"the dashboard stopped ({crash})" if crash else "dashboard closed"
                if choice == "hangup":
                    why = "terminal closed (SIGHUP)"
                follows = "cancelling the run as Ctrl+C does, plain output follows"
                self._tell(f"nexus: {why}; " + (follows if choice == "cancel" else "the run goes on with plain output"))
                self._catch_up(plain)
                self._plain = plain
            self._kept = []
        if running and choice == "cancel":
            self.cancel()
        if self._cluster is not None:
            self._cluster.stop()
        worker = self._worker
        while worker is not None and worker.is_alive():
            worker.join(JOIN_STEP)
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result

    def _catch_up(self, plain: Renderer) -> None:
        """Show on ``plain`` what the dashboard was fed so far (what was not kept: said)."""
        if self._not_kept:
            self._tell(f"nexus: {self._not_kept} events of the run so far not repeated below, past the first"
                       f" {KEEP_OUTPUT:,} output lines (`nexus logs` shows all the output)")  # fmt: skip
        for event in self._kept:
            try:
                plain(event)
            except Exception:  # noqa: BLE001 - a renderer's failure must not stop the hand-over
                continue

    def _tell(self, message: str) -> None:
        try:
            self._say(message)
        except (OSError, ValueError):  # the terminal is gone (SIGHUP): the run's outcome stands
            pass

    def run(self, session: RunSession) -> RunResult:
        """Run ``session`` with the dashboard on this terminal; the run's result."""
        previous = _install_signals(self.on_signal)
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
            self.closed.set()
            return self.finish(choice, crash)
        finally:
            _restore_signals(previous)


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def _detach_from_terminal() -> None:
    """Point stdin, stdout and stderr at /dev/null (the terminal was closed under us)."""
    try:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
    except OSError:
        pass


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
