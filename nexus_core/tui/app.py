"""The dashboard itself: a Textual app over a :class:`~nexus_core.tui.model.DashboardModel`.

Layout (k9s / lazydocker style): a header with the pipeline, its status and elapsed time;
on the left the task/host tree and the hosts panel; on the right the log panel (following
the selected task or host) or the failure panel (the plain failure report). Everything is
driven from the keyboard (``?`` lists the keys); the mouse works too. Read-only, except
``c`` (and Ctrl+C), which stop a live run the way Ctrl+C does in plain output.

The app pulls from an :class:`~nexus_core.tui.feed.EventFeed` on a timer, so neither a
running pipeline nor a poller ever waits for the screen.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Protocol

from rich.style import Style as RichStyle
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import ContentSwitcher, DataTable, Footer, Input, Static, Tree
from textual.widgets._tree import TOGGLE_STYLE
from textual.widgets.tree import TreeNode

from nexus_core.output.style import Style, fmt_duration
from nexus_core.tui.feed import EventFeed
from nexus_core.tui.logview import LogView
from nexus_core.tui.model import BAD, DashboardModel, HostRow, LogLine, TaskRow

#: Seconds between two looks at the feed.
TICK = 0.1
#: Items applied per look at most: a burst is shown over a few ticks, the keys stay live.
PULL_LIMIT = 20_000

_MARKS = {
    "ok": ("✓", "green"),
    "failed": ("✗", "red"),
    "timeout": ("✗", "red"),
    "unreachable": ("✗", "red"),
    "error": ("✗", "red"),
    "running": ("●", "yellow"),
    "skipped": ("○", "bright_black"),
    "interrupted": ("⚠", "yellow"),
    "crashed": ("⚠", "red"),
    "waiting": ("…", "bright_black"),
    "pending": ("·", "bright_black"),
    "starting": ("·", "bright_black"),
}

HELP = """\
Keys (read-only dashboard; the mouse works too)

  ↑ ↓  j k      move in the tree or the hosts panel
  enter / →     open or close a task's hosts
  tab           next panel (tree, hosts, log)
  l             log panel: follows the selected task or host
  f             failure panel: the failure report, as plain output prints it
  n             details of the selected task or host
  /             search the log (enter: next match, esc: close)
  e             jump to the first error in the log
  p             pause / resume the log
  g  G          top / end of the log (G follows again)
  c             cancel the run (asks first; like Ctrl+C in plain output)
  ctrl+c        interrupt the run now (again: stop harder, as in plain output)
  q             quit (a running pipeline goes on with plain output, or is cancelled: you choose)
  ?             this help
"""


class Controller(Protocol):
    """What a live dashboard may do to its run: see whether it goes on, stop it."""

    def running(self) -> bool:
        """True while the run goes on."""

    def cancel(self) -> None:
        """Stop the run as Ctrl+C would (a second call stops harder)."""

    def terminal_gone(self) -> bool:
        """True when the terminal was closed (SIGHUP): the dashboard leaves, the run stops as in plain output."""


def mark(status: str) -> Text:
    """The coloured mark of a status."""
    symbol, color = _MARKS.get(status, ("?", "white"))
    return Text(symbol, style=color)


def _dur(seconds: float | None) -> str:
    return "" if seconds is None else fmt_duration(max(0.0, seconds))


def task_label(t: TaskRow, now: float) -> Text:
    """``✓ build 1.2s [3/3 hosts] ↻1 reason``."""
    done, running, total = t.progress()
    parts: list[Any] = [mark(t.status), " ", Text(t.name, style="bold")]
    took = _dur(t.elapsed(now))
    if took:
        parts += ["  ", Text(took, style="cyan")]
    if t.sharded:
        busy = f", {running} running" if running else ""
        parts += ["  ", Text(f"[{done}/{total} shards{busy}]", style="bright_black")]
    elif len(t.hosts) > 1 or (t.hosts and "local" not in t.hosts):
        parts += ["  ", Text(f"[{done}/{total} hosts]", style="bright_black")]
    if t.retries:
        parts += ["  ", Text(f"↻{t.retries}", style="yellow")]
    if t.reason and (t.status in BAD or t.status in ("skipped", "interrupted")):
        parts += ["  ", Text(t.reason.splitlines()[0], style="red" if t.status in BAD else "bright_black")]
    return Text.assemble(*parts)


def host_label(h: HostRow, now: float) -> Text:
    """``✗ web-1 2.0s exit code 3`` (or the command running now)."""
    parts: list[Any] = [mark(h.status), " ", h.host]
    took = _dur(h.elapsed(now))
    if took:
        parts += ["  ", Text(took, style="cyan")]
    if h.retries:
        parts += ["  ", Text(f"↻{h.retries}", style="yellow")]
    transfer = h.transfer
    if transfer is not None:
        parts += ["  ", progress_bar(transfer.share), " ", Text(transfer.describe(), style="bright_black")]
    elif h.current:
        parts += ["  ", Text("$ " + h.current.splitlines()[0], style="bright_black")]
    elif h.reason and h.status != "ok":
        parts += ["  ", Text(h.reason.splitlines()[0], style="red" if h.status in BAD else "bright_black")]
    return Text.assemble(*parts)


def progress_bar(share: float | None, width: int = 10) -> Text:
    """``███░░░░░░░`` for a share from 0 to 1 (dots when it is not known)."""
    if share is None:
        return Text("·" * width, style="bright_black")
    full = max(0, min(width, int(share * width)))
    return Text.assemble(("█" * full, "cyan"), ("░" * (width - full), "bright_black"))


class TaskTree(Tree[tuple[str, ...]]):
    """The task/host tree, with vi keys; labels are drawn from the model when a line is painted.

    Drawing labels at paint time (only the lines on screen) instead of setting them on every
    change keeps a status change cheap with a thousand hosts: the node is only repainted.
    """

    model: DashboardModel | None = None
    #: Where "now" comes from (running durations count up): the wall clock, or a fixed one in tests.
    clock: Callable[[], float] = staticmethod(time.time)

    def render_label(self, node: TreeNode[tuple[str, ...]], base_style: RichStyle, style: RichStyle) -> Text:
        """The node's label from the model as it is now (task or host), with the open/close icon."""
        label = self.live_label(node) or Text(str(node.label))
        label.stylize(style)
        if node.allow_expand:
            icon = self.ICON_NODE_EXPANDED if node.is_expanded else self.ICON_NODE
            return Text.assemble((icon, base_style + TOGGLE_STYLE), label)
        return label

    def live_label(self, node: TreeNode[tuple[str, ...]]) -> Text | None:
        """The label of a task or host node as the model has it now (None for other nodes)."""
        data, model = node.data, self.model
        if model is None or not data:
            return None
        if data[0] == "task" and data[1] in model.tasks:
            return task_label(model.tasks[data[1]], self.clock())
        if data[0] == "host" and data[1] in model.tasks and data[2] in model.tasks[data[1]].hosts:
            return host_label(model.tasks[data[1]].hosts[data[2]], self.clock())
        return None

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("right", "open_node", "Open", show=False),
        Binding("left", "close_node", "Close", show=False),
    ]

    def action_open_node(self) -> None:
        """Open the node under the cursor."""
        if self.cursor_node is not None:
            self.cursor_node.expand()

    def action_close_node(self) -> None:
        """Close the node under the cursor (or go to its task)."""
        node = self.cursor_node
        if node is None:
            return
        if node.is_expanded and node.children:
            node.collapse()
        elif node.parent is not None and node.parent is not self.root:
            self.move_cursor(node.parent)


class HostTable(DataTable[Any]):
    """The hosts panel, with vi keys."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
    ]


class TextScreen(ModalScreen[None]):
    """A modal page of text (help, node details); any of esc, q, enter closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
        Binding("q", "close", "Close", show=False),
        Binding("enter", "close", "Close", show=False),
        Binding("question_mark", "close", "Close", show=False),
        Binding("n", "close", "Close", show=False),
    ]
    DEFAULT_CSS = """
    TextScreen { align: center middle; }
    TextScreen > VerticalScroll { width: 90%; height: 80%; border: round $accent; background: $surface; padding: 0 1; }
    """

    def __init__(self, title: str, body: Text | str) -> None:
        super().__init__()
        self.title_text = title
        self.body = body

    def compose(self) -> ComposeResult:
        """A scrollable page."""
        scroll = VerticalScroll()
        scroll.border_title = self.title_text
        with scroll:
            yield Static(self.body, id="text-body")

    def action_close(self) -> None:
        """Close the page."""
        self.dismiss(None)


class ChoiceScreen(ModalScreen[str]):
    """A question answered with one key: ``choices`` maps keys to (answer, description)."""

    DEFAULT_CSS = """
    ChoiceScreen { align: center middle; }
    ChoiceScreen > Static { width: 72; height: auto; border: thick $warning; background: $surface; padding: 1 2; }
    """

    def __init__(self, question: str, choices: dict[str, tuple[str, str]]) -> None:
        super().__init__()
        self.question = question
        self.choices = choices

    def compose(self) -> ComposeResult:
        """The question and its keys."""
        lines = [self.question, ""] + [f"  [{key}] {desc}" for key, (_, desc) in self.choices.items()]
        yield Static(Text("\n".join(lines)), id="choice-body")

    def on_key(self, event: Any) -> None:
        """Answer with the pressed key; esc answers ''."""
        key = event.key
        if key in self.choices:
            event.stop()
            self.dismiss(self.choices[key][0])
        elif key == "escape":
            event.stop()
            self.dismiss("")


class Dashboard(App[str]):
    """The live dashboard of one run (``nexus run --tui``, ``nexus tui``)."""

    TITLE = "nexus"
    CSS = """
    #header { height: 1; background: $primary-background; color: $text; padding: 0 1; }
    #notice { height: auto; max-height: 3; color: $warning; padding: 0 1; display: none; }
    #main { height: 1fr; }
    #left { width: 45%; min-width: 30; }
    #tree { height: 2fr; border: round $primary; }
    #hosts { height: 1fr; border: round $primary; }
    #cluster { height: auto; max-height: 12; border: round $primary; display: none; }
    #right { width: 1fr; }
    #log { height: 1fr; border: round $primary; }
    #failures { height: 1fr; border: round $error; }
    #search { display: none; dock: bottom; }
    #search.shown { display: block; }
    TaskTree:focus, HostTable:focus, LogView:focus { border: round $accent; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit_dashboard", "Quit"),
        Binding("question_mark", "help", "Help"),
        Binding("l", "show_log", "Logs"),
        Binding("f", "show_failures", "Failures"),
        Binding("n", "details", "Details"),
        Binding("slash", "search", "Search"),
        Binding("e", "first_error", "1st error"),
        Binding("p", "pause", "Pause"),
        Binding("g", "log_home", "Top", show=False),
        Binding("G", "log_end", "End", show=False),
        Binding("c", "cancel", "Cancel run"),
        Binding("ctrl+c", "interrupt", "Interrupt", show=False, priority=True),
    ]

    def __init__(
        self,
        feed: EventFeed,
        *,
        controller: Controller | None = None,
        model: DashboardModel | None = None,
        tick: float = TICK,
        show_tracebacks: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        #: "Now" for running durations and the elapsed time (a fixed clock makes snapshots stable).
        self.clock = clock
        self.feed = feed
        self.controller = controller
        self.model = model or DashboardModel()
        self.tick = tick
        self.show_tracebacks = show_tracebacks
        #: What stopped the app, when it stopped on an error of its own.
        self.crash = ""
        self.selection: tuple[str, ...] = ("all",)
        self.paused = False
        self.search_text = ""
        self._generation = 0
        self._task_nodes: dict[str, TreeNode[tuple[str, ...]]] = {}
        self._host_nodes: dict[tuple[str, str], TreeNode[tuple[str, ...]]] = {}
        self._host_rows: set[str] = set()
        self._failures_key: tuple[Any, ...] = ()
        self._cancel_asked = False

    # --- layout ----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        """Header, tree and hosts on the left, log or failures on the right, keys at the bottom."""
        yield Static(id="header")
        yield Static(id="notice")
        with Horizontal(id="main"):
            with Vertical(id="left"):
                tree = TaskTree("pipeline", data=("all",), id="tree")
                tree.show_root = False
                tree.border_title = "tasks"
                yield tree
                table = HostTable(id="hosts", cursor_type="row", zebra_stripes=True)
                table.border_title = "hosts"
                yield table
                cluster = HostTable(id="cluster", cursor_type="row", zebra_stripes=True)
                cluster.border_title = "cluster"
                yield cluster
            with Vertical(id="right"):
                with ContentSwitcher(initial="log", id="switcher"):
                    log = LogView(id="log")
                    log.border_title = "log: all tasks"
                    yield log
                    failures = VerticalScroll(id="failures")
                    failures.border_title = "failures"
                    with failures:
                        yield Static(id="failure-text")
                yield Input(placeholder="search the log (enter: next match, esc: close)", id="search")
        yield Footer()

    def on_mount(self) -> None:
        """Columns, first pull, then a pull every tick and the clock every second."""
        # Widgets are kept: a query would look in the screen on top (a help page, a question).
        self.w_header = self.query_one("#header", Static)
        self.w_notice = self.query_one("#notice", Static)
        self.w_tree = self.query_one(TaskTree)
        self.w_tree.model = self.model
        self.w_tree.clock = self.clock
        self.w_table = self.query_one(HostTable)
        self.w_log = self.query_one(LogView)
        self.w_switcher = self.query_one(ContentSwitcher)
        self.w_failures = self.query_one("#failures", VerticalScroll)
        self.w_failure_text = self.query_one("#failure-text", Static)
        self.w_search = self.query_one("#search", Input)
        table = self.w_table
        table.add_column("host", key="host")
        table.add_column("status", key="status")
        table.add_column("task", key="task")
        table.add_column("tasks", key="tasks")
        self.w_cluster = self.query_one("#cluster", HostTable)
        for column in ("agent", "load", "running", "cpu", "memory", "tags"):
            self.w_cluster.add_column(column, key=column)
        self.w_tree.focus()
        self._rebuild_log()
        self.pull()
        self.set_interval(self.tick, self.pull)
        self.set_interval(1.0, self._clock)

    # --- updates ---------------------------------------------------------------------------

    def pull(self) -> None:
        """Apply what the feed holds and redraw what it changed."""
        if self.controller is not None and self.controller.terminal_gone():
            self.exit("hangup")
            return
        items = self.feed.drain(PULL_LIMIT)
        if items:
            self.model.apply_all(items)
        tasks, hosts, pairs, structure, lines = self.model.take_changes()
        if structure:
            self._grow()
        now = self.clock()
        for name in tasks:
            self._relabel_task(name, now)
        for task, host in pairs:
            self._relabel_host(task, host, now)
        for host in hosts:
            self._update_host(host, now)
        if lines:
            self._append(lines)
        if tasks or hosts:
            self._refresh_failures()
        self._header(now)
        if self.model.notices:
            self._show_notices()
        if self.model.cluster_changed:
            self.model.cluster_changed = False
            self._show_cluster()

    def _show_cluster(self) -> None:
        """The cluster panel: each agent with its load (running commands per slot), CPU and memory."""
        view = self.model.cluster
        table = self.w_cluster
        if view is None:
            return
        table.display = True
        table.clear()
        for m in view.members:
            load = Text.assemble(progress_bar(m.load, 6), f" {m.load:.0%}")
            table.add_row(m.name, load, f"{m.running}/{m.slots}", f"{m.cpu:.0f}%", f"{m.memory / 2**20:.0f} MiB",
                          ",".join(m.tags), key=m.name)  # fmt: skip
        busy = sum(m.running for m in view.members)
        slots = sum(m.slots for m in view.members)
        title = f"cluster: {len(view.members)} agent(s), {busy}/{slots} slots busy"
        table.border_title = title
        table.border_subtitle = view.error

    def _clock(self) -> None:
        """Running durations and the elapsed time move on even without events."""
        now = self.clock()
        self._header(now)
        for t in self.model.tasks.values():
            if t.status == "running":
                self._relabel_task(t.name, now)
                for h in t.hosts.values():
                    if h.status == "running":
                        self._relabel_host(t.name, h.host, now)

    def _header(self, now: float) -> None:
        m = self.model
        tasks = list(m.tasks.values())
        done = sum(1 for t in tasks if t.status not in ("pending", "running"))
        status = m.status
        parts: list[Any] = [
            Text("nexus ", style="bold"),
            Text(m.pipeline or "(starting)", style="bold cyan"),
            "  ",
            mark(status),
            " ",
            Text(status, style=_MARKS.get(status, ("", "white"))[1]),
            "  ",
            Text(fmt_duration(m.elapsed(now)), style="cyan"),
            f"  tasks {done}/{len(tasks)}  hosts {len(m.hosts)}",
        ]
        if m.finished:
            parts.append(Text("  (q to leave)", style="bright_black"))
        if self.controller is None:
            parts.append(Text("  read-only", style="bright_black"))
        if m.run_id:
            parts.append(Text(f"  run {m.run_id}", style="bright_black"))
        self.w_header.update(Text.assemble(*parts))

    def _show_notices(self) -> None:
        box = self.w_notice
        box.update(Text("\n".join(self.model.notices[-3:])))
        box.display = True

    def _grow(self) -> None:
        """Add tree nodes and host rows for tasks and hosts seen for the first time."""
        tree = self.w_tree
        for name, t in self.model.tasks.items():
            node = self._task_nodes.get(name)
            if node is None:
                node = self._task_nodes[name] = tree.root.add(name, data=("task", name), expand=len(t.hosts) <= 50)
            for host in t.hosts:
                if host == "local" and len(t.hosts) == 1:
                    continue  # a local task's log is its own: no leaf
                if (name, host) not in self._host_nodes:
                    self._host_nodes[(name, host)] = node.add_leaf(host, data=("host", name, host))
            node.allow_expand = bool(node.children)
        table = self.w_table
        for host in self.model.hosts:
            if host not in self._host_rows:
                self._host_rows.add(host)
                table.add_row(host, "", "", "", key=host)

    def _relabel_task(self, name: str, now: float) -> None:
        t = self.model.tasks.get(name)
        node = self._task_nodes.get(name)
        if t is None or node is None:
            return
        node.refresh()  # TaskTree.render_label draws it from the model

    def _relabel_host(self, task: str, host: str, now: float) -> None:
        leaf = self._host_nodes.get((task, host))
        if leaf is not None and (leaf.parent is None or leaf.parent.is_expanded):  # a closed task's hosts are not drawn
            leaf.refresh()

    def _update_host(self, host: str, now: float) -> None:
        if host not in self._host_rows:
            return
        s = self.model.host_summary(host)
        table = self.w_table
        table.update_cell(host, "status", Text.assemble(mark(s.status), " ", s.status))
        table.update_cell(host, "task", s.task)
        failed = f", {s.failed} failed" if s.failed else ""
        table.update_cell(host, "tasks", f"{s.done}/{s.total}{failed}")

    def failure_text(self) -> str:
        """The failure report, as plain output prints it after the run (no colours)."""
        from nexus_core.output.report import failures_text
        from nexus_core.runlogs import logs_command

        failures = self.model.failures()
        if not failures:
            return ""
        style = Style(color=False, live=False, unicode=True, interactive=False)
        run_id = self.model.run_id
        return failures_text(style, failures, lambda f: logs_command(run_id, f.task, f.host), False)

    def _refresh_failures(self) -> None:
        failures = self.model.failures()
        key = (len(failures), self.model.final_failures is not None, tuple((f.task, f.host) for f in failures))
        if key == self._failures_key:
            return
        self._failures_key = key
        text = self.failure_text()
        body = self.w_failure_text
        body.update(Text(text) if text else Text("No failures.", style="green"))
        self.w_failures.border_title = f"failures ({len(failures)})"

    # --- the log panel ---------------------------------------------------------------------

    def _format(self, line: LogLine) -> str:
        sel = self.selection
        if sel[0] == "host":
            prefix = ""
        elif sel[0] == "task":
            prefix = "" if line.host == "local" else f"[{line.host}] "
        elif sel[0] == "anyhost":
            prefix = f"[{line.task}] "
        else:
            prefix = f"[{line.task}] " if line.host == "local" else f"[{line.task} {line.host}] "
        return prefix + line.text

    @property
    def held(self) -> int:
        """Lines of the selection that came in since the log was paused."""
        return self.w_log.held

    def _append(self, lines: Iterable[LogLine]) -> None:
        """New lines are in the model's lists already: the panel takes in the new length."""
        if self.model.index.generation != self._generation:  # old lines went: the lists were rebuilt
            self._rebuild_log()
            return
        self.w_log.sync()
        if self.paused:
            self._log_title()

    def _rebuild_log(self) -> None:
        """Show the selection's list (taken as it is: nothing is copied or formatted here)."""
        log = self.w_log
        self._generation = self.model.index.generation
        log.limit = None
        log.auto_scroll = not self.paused
        log.show(self.model.index.select(self.selection), self._format)
        if self.paused:
            log.pause(True)
        self._log_title()

    def _log_title(self) -> None:
        sel = self.selection
        what = {
            "all": "all tasks",
            "task": f"task {sel[1]}" if len(sel) > 1 else "",
            "host": f"{sel[1]} on {sel[2]}" if len(sel) > 2 else "",
            "anyhost": f"host {sel[1]}" if len(sel) > 1 else "",
        }.get(sel[0], "")
        following = "following" if self.w_log.auto_scroll else ""
        state = f"paused, {self.held} new line(s)" if self.paused else following
        self.w_log.border_title = f"log: {what}" + (f" [{state}]" if state else "")

    def select(self, selection: tuple[str, ...]) -> None:
        """Make the log panel follow ``selection``: ("all",), ("task", t), ("host", t, h) or ("anyhost", h)."""
        if selection == self.selection:
            return
        self.selection = selection
        self._rebuild_log()

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted[tuple[str, ...]]) -> None:
        """The log follows the task or host under the tree's cursor."""
        if event.node.data is not None:
            self.select(event.node.data)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """The log follows the host under the hosts panel's cursor (all its tasks)."""
        if event.row_key.value is not None and self.w_table.has_focus:
            self.select(("anyhost", str(event.row_key.value)))

    def on_descendant_focus(self, event: Any) -> None:
        """Focusing the hosts panel makes the log follow its highlighted host."""
        table = self.w_table
        if event.widget is table and table.row_count:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
            if key is not None:
                self.select(("anyhost", str(key)))

    # --- actions ---------------------------------------------------------------------------

    def action_show_log(self) -> None:
        """Show the log panel and give it the keys."""
        self.w_switcher.current = "log"
        self.w_log.focus()

    def action_show_failures(self) -> None:
        """Show the failure panel (``f`` again: back to the log)."""
        switcher = self.w_switcher
        if switcher.current == "failures":
            self.action_show_log()
            return
        self._refresh_failures()
        switcher.current = "failures"
        self.w_failures.focus()

    def action_pause(self) -> None:
        """Freeze the log panel, or let it follow again."""
        self.paused = not self.paused
        log = self.w_log
        log.auto_scroll = not self.paused
        log.pause(self.paused)
        if not self.paused:
            log.scroll_end(animate=False)
        self._log_title()

    def action_log_home(self) -> None:
        """Top of the log; it stops following."""
        log = self.w_log
        log.auto_scroll = False
        log.scroll_home(animate=False)
        self._log_title()

    def action_log_end(self) -> None:
        """End of the log; it follows again."""
        if self.paused:
            self.action_pause()
        log = self.w_log
        log.auto_scroll = True
        log.scroll_end(animate=False)
        self._log_title()

    def _jump(self, index: int, note: str) -> None:
        self.w_switcher.current = "log"
        log = self.w_log
        log.auto_scroll = False
        log.scroll_to(y=max(0, index - 2), animate=False)
        log.border_subtitle = note
        self._log_title()

    def action_first_error(self) -> None:
        """Jump to the first failed command in the log panel."""
        index = next((i for i, line in enumerate(self.w_log.shown()) if line.is_error), None)
        if index is None:
            self.notify("No error in this log.", timeout=3)
            return
        self._jump(index, f"first error: line {index + 1}")

    def action_search(self) -> None:
        """Open the search box."""
        box = self.w_search
        box.add_class("shown")
        box.value = self.search_text
        box.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Jump to the next line that holds the text (from the current position, wrapping)."""
        self.search_text = event.value
        self.find(event.value)

    def find(self, text: str) -> int | None:
        """Jump to the next log line holding ``text`` (case-insensitive); its index, or None."""
        if not text:
            return None
        needle = text.lower()
        log = self.w_log
        start = int(log.scroll_offset.y) + 3 if not log.auto_scroll else 0
        lines = [self._format(line).lower() for line in self.w_log.shown()]
        order = list(range(start, len(lines))) + list(range(0, min(start, len(lines))))
        for i in order:
            if needle in lines[i]:
                hits = sum(1 for line in lines if needle in line)
                self._jump(i, f"'{text}': line {i + 1} ({hits} match{'es' if hits != 1 else ''})")
                return i
        self.notify(f"'{text}' is not in this log.", timeout=3)
        return None

    def on_key(self, event: Any) -> None:
        """Esc closes the search box."""
        box = self.w_search
        if event.key == "escape" and box.has_class("shown"):
            box.remove_class("shown")
            self.w_log.focus()
            event.stop()

    def action_help(self) -> None:
        """The keys."""
        self.push_screen(TextScreen("help", Text(HELP)))

    def action_details(self) -> None:
        """Details of the task or host under the cursor."""
        self.push_screen(TextScreen("details", Text(self.details_text())))

    def details_text(self) -> str:
        """Everything known about the selected task or host."""
        sel, now, m = self.selection, self.clock(), self.model
        if sel[0] == "task" and sel[1] in m.tasks:
            t = m.tasks[sel[1]]
            lines = [f"Task: {t.name}", f"Status: {t.status}", f"Strategy: {t.strategy or '-'}",
                     f"Duration: {_dur(t.elapsed(now)) or '-'}", f"Retries: {t.retries}"]  # fmt: skip
            done, running, total = t.progress()
            what = "Shards" if t.sharded else "Hosts"
            lines.append(f"{what} done: {done}/{total}" + (f", {running} running" if running else ""))
            if t.reason:
                lines.append(f"Reason: {t.reason}")
            lines += ["", f"{what}:"]
            lines += [f"  {h.host}: {h.status} {_dur(h.elapsed(now))} {h.reason}".rstrip() for h in t.hosts.values()]
            return "\n".join(lines)
        if sel[0] == "host" and sel[1] in m.tasks and sel[2] in m.tasks[sel[1]].hosts:
            h = m.tasks[sel[1]].hosts[sel[2]]
            lines = [f"Task: {h.task}", f"Host: {h.host}", f"Status: {h.status}",
                     f"Duration: {_dur(h.elapsed(now)) or '-'}", f"Retries: {h.retries}"]  # fmt: skip
            if h.shard is not None:
                lines.insert(2, f"Shard: {h.shard} of {len(m.tasks[sel[1]].hosts)}")
            if h.reason:
                lines.append(f"Reason: {h.reason}")
            lines += ["", "Commands:"]
            for c in h.commands:
                code = f" exit {c.exit_code}" if c.exit_code is not None else ""
                tries = f" attempt {c.attempt}" if c.attempt > 1 else ""
                lines.append(f"  {c.status}{code}{tries} {_dur(c.duration)}  $ {c.command}")
                if c.transfer is not None:
                    lines.append(f"      {c.transfer.describe()}")
            return "\n".join(lines)
        if sel[0] == "anyhost":
            s = m.host_summary(sel[1])
            lines = [f"Host: {s.host}", f"Status: {s.status}", f"Tasks done: {s.done}/{s.total}", f"Failed: {s.failed}"]
            lines += ["", "Tasks:"]
            lines += [f"  {t.name}: {t.hosts[s.host].status}" for t in m.tasks.values() if s.host in t.hosts]
            return "\n".join(lines)
        return f"Pipeline: {m.pipeline}\nRun: {m.run_id}\nNexusfile: {m.nexusfile}\nStatus: {m.status}"

    def action_cancel(self) -> None:
        """Ask, then stop the run as Ctrl+C does."""
        if self.controller is None:
            self.notify("Read-only: this dashboard watches a run started elsewhere.", timeout=4)
            return
        if not self.controller.running():
            self.notify("The run has ended.", timeout=3)
            return

        def answered(answer: str | None) -> None:
            if answer == "yes" and self.controller is not None:
                self.controller.cancel()

        self.push_screen(
            ChoiceScreen(
                "Cancel the run? Running commands get their grace time, as after Ctrl+C.",
                {"y": ("yes", "Yes, cancel it"), "n": ("no", "No, let it go on")},
            ),
            answered,
        )

    def action_interrupt(self) -> None:
        """Ctrl+C: stop the run now, as in plain output (again: harder); without a run, quit."""
        if self.controller is not None and self.controller.running():
            self.controller.cancel()
            self.notify("Interrupting: Ctrl+C again to stop harder.", timeout=4)
        else:
            self.exit("quit")

    def action_quit_dashboard(self) -> None:
        """Leave; a running pipeline goes on with plain output or is cancelled, as the user chooses."""
        if self.controller is None or not self.controller.running():
            self.exit("quit")
            return

        def answered(answer: str | None) -> None:
            if answer in ("detach", "cancel"):
                self.exit(answer)

        self.push_screen(
            ChoiceScreen(
                "The run is still going.",
                {
                    "d": ("detach", "Leave the dashboard; the run goes on with plain output"),
                    "c": ("cancel", "Cancel the run (as Ctrl+C) and leave"),
                    "escape": ("", "Stay here"),
                },
            ),
            answered,
        )

    # --- errors of the dashboard itself ------------------------------------------------------

    def _handle_exception(self, error: Exception) -> None:
        # Textual's hook for an error nothing caught: remember it; the caller falls back to plain output.
        self.crash = f"{type(error).__name__}: {error}"
        super()._handle_exception(error)

    def _print_error_renderables(self) -> None:
        # No traceback reaches the user unless asked for (--log-level debug).
        if self.show_tracebacks:
            super()._print_error_renderables()
        else:
            self._exit_renderables.clear()
