"""Renderers: event subscribers that print a run for people (tree, verbose, quiet) or scripts (JSON)."""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import IO, Any

from nexus_core import events as ev
from nexus_core.output.safe import brief_command, clean, json_safe, terminal_safe
from nexus_core.output.style import Style, fmt_duration


class _HostState:
    """What the tree shows of one host of a task (a plain class: built at every start, never compared)."""

    __slots__ = ("commands", "status", "duration", "reason", "current", "started", "handlers")

    def __init__(self) -> None:
        self.commands: list[tuple[str, str, float, str]] = []  # cmd, status, dur, reason
        self.status = "running"
        self.duration = 0.0
        self.reason = ""
        self.current = ""
        self.started = time.monotonic()
        #: Handlers running, with where their line goes among the commands.
        self.handlers: dict[str, int] = {}


class _TaskState:
    """What the tree shows of one task: its hosts in order."""

    __slots__ = ("hosts", "order", "started", "strategy")

    def __init__(self, order: list[str] | None = None, strategy: str = "parallel") -> None:
        self.hosts: dict[str, _HostState] = {}
        self.order: list[str] = [] if order is None else order
        self.started = time.monotonic()
        self.strategy = strategy


class Renderer:
    """Base renderer: writes to ``out`` (results) under one lock."""

    def __init__(self, style: Style, out: IO[str] | None = None, err: IO[str] | None = None) -> None:
        self.style = style
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        """Print a block of text on the results stream (controls from hosts made visible)."""
        text = terminal_safe(text)
        with self._lock:
            try:
                self.out.write(text + "\n")
                self.out.flush()
            except BrokenPipeError:
                pass  # the reader is gone (an unguarded stream): the run goes on

    def __call__(self, event: ev.Event) -> None:
        handler = getattr(self, "on_" + event.name.replace(".", "_"), None)
        if handler is not None:
            handler(event)

    def close(self) -> None:
        """Stop any live display."""

    def on_log(self, e: ev.Log) -> None:
        """Warnings and errors that executors and plugins publish go to stderr."""
        if e.level in ("warning", "error"):
            text = log_text(self.style, e)
            with self._lock:
                try:
                    self.err.write(text + "\n")
                    self.err.flush()
                except BrokenPipeError:
                    pass


class TreeRenderer(Renderer):
    """Normal mode: a tree per task when it ends (docs/output.md), a live view on a terminal."""

    verbose = False

    def __init__(self, style: Style, out: IO[str] | None = None, err: IO[str] | None = None) -> None:
        super().__init__(style, out, err)
        self.tasks: dict[str, _TaskState] = {}
        self._live: Any = None
        #: Big files moving now, by (task, host, path): (bytes done, total), for the live view.
        self._transfers: dict[tuple[str, str, str], tuple[int, int]] = {}
        if style.live and not self.verbose:
            self._start_live()

    # live view ---------------------------------------------------------------------------

    def _start_live(self) -> None:
        from rich.console import Console
        from rich.live import Live

        console = Console(file=self.out, no_color=not self.style.color, highlight=False)
        self._live = Live(
            console=console,
            refresh_per_second=8,
            transient=True,
            get_renderable=self._live_view,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._live.start()

    def _live_view(self) -> Any:
        from rich.text import Text

        lines = []
        now = time.monotonic()
        frames = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏" if self.style.unicode else "|/-\\"
        spin = frames[int(now * 10) % len(frames)]
        for name, state in list(self.tasks.items()):
            running = [(h, s) for h, s in state.hosts.items() if s.status == "running"]
            if not running:
                continue
            done = sum(1 for s in state.hosts.values() if s.status != "running")
            detail = ", ".join(f"{h}: {s.current}" if s.current else h for h, s in running[:4])
            more = f" +{len(running) - 4} more" if len(running) > 4 else ""
            lines.append(
                f"{spin} {name} {fmt_duration(now - state.started)}"
                f" [{done}/{len(state.order) or len(state.hosts)} hosts done] {detail}{more}"
            )
        for (_task, host, path), (done, total) in list(self._transfers.items())[:8]:
            share = done / total if total else 1.0
            width = 24
            full = int(share * width)
            bar = ("█" if self.style.unicode else "#") * full + ("░" if self.style.unicode else ".") * (width - full)
            lines.append(f"  {host} {clean(path)} {bar} {share:4.0%} {done >> 20}/{total >> 20} MB")
        return Text("\n".join(lines[:28]))

    def on_transfer_progress(self, e: ev.TransferProgress) -> None:
        """A big file's progress: a bar in the live view (on a terminal only)."""
        if self._live is None:
            return
        key = (e.task, e.host, e.path)
        if e.done >= e.total:
            self._transfers.pop(key, None)
        else:
            self._transfers[key] = (e.done, e.total)

    def on_transfer_stop(self, e: ev.TransferStop) -> None:
        """The operation's bars go when it ends."""
        for key in [k for k in self._transfers if k[0] == e.task and k[1] == e.host]:
            self._transfers.pop(key, None)

    def write(self, text: str) -> None:
        if self._live is not None:
            from rich.text import Text

            with self._lock:
                self._live.console.print(Text.from_ansi(terminal_safe(text)))
            return
        super().write(text)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    # events ------------------------------------------------------------------------------

    def on_task_start(self, e: ev.TaskStart) -> None:
        self.tasks[e.task] = _TaskState(order=list(e.hosts), strategy=e.strategy)

    def on_host_start(self, e: ev.HostStart) -> None:
        state = self.tasks.setdefault(e.task, _TaskState())
        state.hosts[e.host] = _HostState()

    def on_command_start(self, e: ev.CommandStart) -> None:
        host = self._host(e.task, e.host)
        host.current = brief_command(e.command)

    def on_command_stop(self, e: ev.CommandStop) -> None:
        host = self._host(e.task, e.host)
        host.current = ""
        entry = (brief_command(e.command), e.status, e.duration, clean(e.reason))
        if host.commands and host.commands[-1][0] == e.command and e.attempt > 1:
            host.commands[-1] = entry
        else:
            host.commands.append(entry)

    def on_handler_start(self, e: ev.HandlerStart) -> None:
        host = self._host(e.task, e.host)
        host.handlers[e.handler] = len(host.commands)

    def on_handler_stop(self, e: ev.HandlerStop) -> None:
        host = self._host(e.task, e.host)
        at = host.handlers.pop(e.handler, len(host.commands))
        host.commands.insert(at, (f"handler {e.handler}", e.status, e.duration, clean(e.reason)))

    def on_task_retry(self, e: ev.TaskRetry) -> None:
        s = self.style
        where = "" if e.host == "local" else f" {e.host}"
        self.write(
            s.paint(
                f"  {s.retry} {e.task}{where}: {clean(e.command)!r} failed ({clean(e.reason)}); "
                f"attempt {e.attempt}/{e.max_attempts} in {e.delay:.1f}s",
                "yellow",
            )
        )

    def on_task_wait(self, e: ev.TaskWait) -> None:
        s = self.style
        self.write(
            s.paint(f"  {e.task}: waiting {fmt_duration(e.seconds)} before its next hosts ({e.strategy})", "dim")
        )

    def on_host_stop(self, e: ev.HostStop) -> None:
        host = self._host(e.task, e.host)
        host.status, host.duration, host.reason = e.status, e.duration, clean(e.reason)

    def on_task_stop(self, e: ev.TaskStop) -> None:
        s = self.style
        state = self.tasks.get(e.task)
        if e.status == "skipped":
            self.write(f"{s.mark('skipped')} {e.task} {s.paint('skipped: ' + clean(e.reason), 'dim')}\n")
            return
        hosts = f" [{', '.join(e.hosts)}]" if e.hosts and e.hosts != ("local",) else ""
        if len(e.hosts) > GROUP_HOSTS:
            hosts = f" [{len(e.hosts)} hosts]"
        lines = [f"{s.paint(s.bullet, 'cyan')} {s.paint(e.task, 'bold')}{hosts}"]
        if state is not None and len(state.order or state.hosts) > GROUP_HOSTS:
            lines.extend(self._grouped_lines(state))
        elif state is not None:
            lines.extend(self._task_lines(state, e))
        elif e.reason:
            lines.append(f"  {s.branch(True)} {s.mark(e.status)} {s.paint(clean(e.reason), 'dim')}")
        self.write("\n".join(lines) + "\n")

    def _task_lines(self, state: _TaskState, e: ev.TaskStop) -> list[str]:
        s = self.style
        names = [h for h in state.order if h in state.hosts] or list(state.hosts)
        skipped = [h for h in state.order if h not in state.hosts]
        out: list[str] = []
        if names == ["local"] or (len(names) == 1 and not skipped):
            host = state.hosts[names[0]]
            for i, (cmd, status, dur, reason) in enumerate(host.commands):
                last = i == len(host.commands) - 1
                # an ok operation's note ("unchanged", "3 of 1000 files changed") in dim
                extra = "" if not reason else " " + s.paint(reason, "dim" if status in ("ok", "skipped") else "red")
                out.append(f"  {s.branch(last)} {cmd} {s.mark(status)} {fmt_duration(dur)}{extra}")
            if not host.commands:
                out.append(f"  {s.branch(True)} {s.mark(host.status)} {host.reason}")
            return out
        rows = names + skipped
        for i, name in enumerate(rows):
            last = i == len(rows) - 1
            found = state.hosts.get(name)
            if found is None or found.status == "skipped":
                why = found.reason if found else "not started"
                out.append(f"  {s.branch(last)} {name} {s.mark('skipped')} {s.paint(why, 'dim')}")
                continue
            extra = "" if found.status == "ok" else " " + s.paint(found.reason, "red")
            guarded = [c for c in found.commands if c[1] == "skipped"]
            if guarded:  # commands their guards skipped (creates=, only_if=, unless=)
                extra += " " + s.paint(f"({len(guarded)} skipped: {guarded[0][3]})", "dim")
            same = sum(1 for c in found.commands if c[1] == "ok" and c[3] == "unchanged")
            if same:  # file operations with nothing to write
                extra += " " + s.paint("(unchanged)" if same == len(found.commands) else f"({same} unchanged)", "dim")
            out.append(f"  {s.branch(last)} {name} {s.mark(found.status)} {fmt_duration(found.duration)}{extra}")
        return out

    def _grouped_lines(self, state: _TaskState) -> list[str]:
        """A task of many hosts: one line per distinct outcome (``812 hosts ok``, ``188 hosts
        failed: REASON``) with the first hosts named, instead of one line per host.

        Reasons that differ only in each host's own name or a volatile value (a remote process
        group id) are one outcome, its reason read with ``<host>`` (``<pgid>``) where they differ
        (:func:`nexus_core.output.alike.merged`)."""
        from nexus_core.output.alike import Shape, merged, names_of, shape

        s = self.style
        groups: dict[tuple[str, str], list[str]] = {}
        shapes: dict[tuple[str, str], list[Shape]] = {}
        durations: dict[tuple[str, str], list[float]] = {}
        for name in state.order or list(state.hosts):
            found = state.hosts.get(name)
            status = found.status if found is not None else "skipped"
            reason = (found.reason if found is not None else "not started") if status != "ok" else ""
            # alike when equal but for the host's own name and volatile values (docs/output.md)
            shaped = shape(reason, names_of(name))
            key = (status, shaped.key)
            groups.setdefault(key, []).append(name)
            shapes.setdefault(key, []).append(shaped)
            if found is not None and status != "skipped":
                durations.setdefault(key, []).append(found.duration)
        order = sorted(groups, key=lambda k: (k[0] != "ok", -len(groups[k])))
        out: list[str] = []
        for i, key in enumerate(order):
            status, reason = key[0], merged(shapes[key])
            names = groups[key]
            took = durations.get(key, [])
            span = ""
            if took:
                lo, hi = min(took), max(took)
                span = (
                    f" {fmt_duration(lo)}"
                    if fmt_duration(lo) == fmt_duration(hi)
                    else (f" {fmt_duration(lo)}-{fmt_duration(hi)}")
                )
            count = f"{len(names)} host{'s' if len(names) != 1 else ''} {status}"
            why = f": {reason}" if reason else ""
            color = "dim" if status == "skipped" else "red"
            text = count + (s.paint(why, color) if why else "")
            if status != "ok":
                text += s.paint(f" ({_some(names)})", "dim")
            text += span
            out.append(f"  {s.branch(i == len(order) - 1)} {s.mark(status)} {text}")
        return out

    def _host(self, task: str, host: str) -> _HostState:
        return self.tasks.setdefault(task, _TaskState()).hosts.setdefault(host, _HostState())


#: Tasks on more hosts than this are shown grouped by outcome ("812 hosts ok", "188 hosts
#: failed: REASON"), not one line per host; their header counts the hosts instead of naming them.
GROUP_HOSTS = 50


def _some(names: list[str], shown: int = 5) -> str:
    """The first ``shown`` names, then how many more."""
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f", +{more} more" if more > 0 else "")


class VerboseRenderer(TreeRenderer):
    """``-v``: every command and output line as it happens, tagged with task and host."""

    verbose = True

    def _tag(self, task: str, host: str) -> str:
        return self.style.paint(f"[{task} {host}]", "dim")

    def on_command_start(self, e: ev.CommandStart) -> None:
        super().on_command_start(e)
        attempt = f" (attempt {e.attempt})" if e.attempt > 1 else ""
        tag = self._tag(e.task, e.host)
        # A command of several lines: one output line per line, each tagged (a shell's "> ").
        first, *more = e.command.strip("\n").split("\n")
        self.write(f"{tag} $ {clean(first)}{attempt}")
        for line in more:
            self.write(f"{tag}   {clean(line)}")

    def on_command_output(self, e: ev.CommandOutput) -> None:
        text = clean(e.line)
        line = text if e.stream == "stdout" else self.style.paint(text, "yellow")
        self.write(f"{self._tag(e.task, e.host)} > {line}")

    def on_command_stop(self, e: ev.CommandStop) -> None:
        super().on_command_stop(e)
        extra = f" {clean(e.reason)}" if e.reason else ""
        self.write(f"{self._tag(e.task, e.host)} {self.style.mark(e.status)} {fmt_duration(e.duration)}{extra}")

    def on_host_stop(self, e: ev.HostStop) -> None:
        super().on_host_stop(e)
        if e.status == "skipped":  # a host the strategy or a stop left out: said, not left unmentioned
            self.write(f"{self._tag(e.task, e.host)} {self.style.mark('skipped')} {clean(e.reason)}")

    def on_task_stop(self, e: ev.TaskStop) -> None:
        s = self.style
        if e.status == "skipped":
            self.write(f"{s.mark('skipped')} {e.task} skipped: {clean(e.reason)}")
            return
        self.write(f"{s.mark(e.status)} {e.task} {e.status} in {fmt_duration(e.duration)}")


class QuietRenderer(Renderer):
    """``-q``: one line per task (with the hosts it left out, if any)."""

    def __init__(self, style: Style, out: IO[str] | None = None, err: IO[str] | None = None) -> None:
        super().__init__(style, out, err)
        self._not_started: dict[str, int] = {}  # hosts of a task left out (a strategy, a stop)

    def on_host_stop(self, e: ev.HostStop) -> None:
        if e.status == "skipped":
            with self._lock:
                self._not_started[e.task] = self._not_started.get(e.task, 0) + 1

    def on_task_stop(self, e: ev.TaskStop) -> None:
        s = self.style
        left = self._not_started.get(e.task, 0)
        more = f", {left} host{'s' if left != 1 else ''} not started" if left else ""
        if e.status == "skipped":
            self.write(f"{s.mark('skipped')} {e.task} (skipped)")
        elif e.status == "ok" and e.reason:
            self.write(f"{s.mark(e.status)} {e.task} ({clean(e.reason)}{more})")
        else:
            self.write(f"{s.mark(e.status)} {e.task} ({fmt_duration(e.duration)}{more})")


class JsonRenderer(Renderer):
    """``--format json``: one JSON object per event (NDJSON) on stdout."""

    def __call__(self, event: ev.Event) -> None:
        self.write(event_json(event))


def event_json(event: ev.Event) -> str:
    """``event`` as one line of ``--format json`` output (one JSON object)."""
    return json_safe(json.dumps(event.to_dict(), default=str, ensure_ascii=False))


def log_text(style: Style, e: ev.Log) -> str:
    """A warning or error that an executor or plugin published, as stderr shows it."""
    return terminal_safe(style.paint(f"nexus: {e.level}: {clean(e.message, multiline=True)}", "yellow"))


def make_renderer(mode: str, fmt: str, style: Style) -> Renderer:
    """The renderer for ``--format`` and verbosity (``normal``, ``verbose``, ``quiet``)."""
    if fmt == "json":
        return JsonRenderer(style)
    if mode == "verbose":
        return VerboseRenderer(style)
    if mode == "quiet":
        return QuietRenderer(style)
    return TreeRenderer(style)
