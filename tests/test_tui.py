"""The live dashboard (nexus_core.tui): Textual's pilot drives the real app, fed by real runs.

Live mode: a real RunSession of a real nexusfile runs in its worker thread while the pilot
presses keys. Attach mode (``nexus tui``): the real ``nexus`` CLI runs the pipeline in a
subprocess and the dashboard follows its recorded state and run logs. No timings are asserted:
every wait is a bounded poll.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("textual")

from helpers import run_in_pty, start_nexus

from nexus_core import events as ev
from nexus_core.tui import tui_refusal
from nexus_core.tui.feed import EventFeed
from nexus_core.tui.model import DashboardModel, Dropped

PIPELINE = """
from nexus_core import task, run

@task
def build():
    run("echo compiling; echo built")

@task(deps=[build])
def test():
    run("echo running tests; echo boom >&2; exit 3")

@task(deps=[build])
def docs():
    run("echo docs ok")
"""

# A task that waits (bounded) for a file the test creates: the run is "running" for as long
# as the test needs, without any sleep in the test itself.
WAITING = """
from nexus_core import config, task, run

config(interrupt_grace=1, terminate_grace=1)

@task
def slow():
    run("echo started; for i in $(seq 1 1200); do [ -f go ] && break; sleep 0.05; done; echo finished")
"""


async def until(pilot: Any, predicate: Any, steps: int = 600) -> bool:
    """Let the app run until ``predicate()`` holds (bounded: ``steps`` pauses of 0.05 s)."""
    for _ in range(steps):
        if predicate():
            return True
        await pilot.pause(0.05)
    return bool(predicate())


def _env(project: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in project.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(project.root)


def _session(project: Any, tasks: list[str], dash: Any) -> Any:
    from nexus_core.loader import load_project
    from nexus_core.plan import build_plan
    from nexus_core.plugins import PluginManager
    from nexus_core.session import RunSession
    from nexus_core.state.paths import state_db
    from nexus_core.state.store import StateStore

    pm = PluginManager()
    plan = build_plan(load_project(str(project.nexusfile)), pm.registry, tasks)
    store = StateStore(state_db())
    return RunSession(plan, plugins=pm, store=store, subscribers=[("output", dash)], report=dash.report)


def _log_text(app: Any) -> str:
    return "\n".join(app.w_log.lines)


def _tree_labels(app: Any) -> list[str]:
    from nexus_core.tui.app import TaskTree

    out: list[str] = []
    tree = app.query_one(TaskTree)

    def walk(node: Any) -> None:
        for child in node.children:
            out.append(str(tree.live_label(child) or child.label))
            walk(child)

    walk(app.query_one(TaskTree).root)
    return out


# --- live: nexus run --tui ------------------------------------------------------------------


def test_live_dashboard_shows_a_real_run_and_its_failure_report(nexus_project, monkeypatch):
    from nexus_core.output.report import failures_text
    from nexus_core.output.style import Style
    from nexus_core.runlogs import logs_command
    from nexus_core.tui.live import DashboardRun

    nexus_project.write(PIPELINE)
    _env(nexus_project, monkeypatch)
    said: list[str] = []
    dash = DashboardRun(lambda: pytest.fail("no plain output while the dashboard is open"), say=said.append)
    dash.start(_session(nexus_project, ["test", "docs"], dash))
    app = dash.make_app()

    async def drive() -> None:
        async with app.run_test(size=(140, 40)) as pilot:
            assert await until(pilot, lambda: app.model.finished and app.model.final_failures is not None)
            await pilot.pause(0.2)
            labels = _tree_labels(app)
            assert any(label.startswith("✓ build") for label in labels), labels
            assert any(label.startswith("✗ test") and "exit code 3" in label for label in labels), labels
            assert any(label.startswith("✓ docs") for label in labels), labels
            assert "failed" in str(app.query_one("#header").render())
            # the log panel follows the task under the cursor
            assert "[build] $ echo compiling; echo built" in _log_text(app)
            await pilot.press("j")  # the first task: build
            assert app.selection == ("task", "build"), app.selection
            await pilot.press("j")  # -> test
            assert app.selection == ("task", "test"), app.selection
            assert "boom" in _log_text(app) and "compiling" not in _log_text(app)
            await pilot.press("e")
            assert "first error" in str(app.w_log.border_subtitle)
            # the failure panel holds the plain report
            await pilot.press("f")
            assert app.query_one("ContentSwitcher").current == "failures"
            style = Style(color=False, live=False, unicode=True, interactive=False)
            result = dash.result
            assert result is not None
            plain = failures_text(style, result.failures, lambda f: logs_command(result.run_id, f.task, f.host))
            assert app.failure_text() == plain
            assert "Command: echo running tests; echo boom >&2; exit 3" in plain
            await pilot.press("n")
            assert len(app.screen_stack) == 2
            await pilot.press("escape")
            await pilot.press("q")
        assert app.return_value == "quit"

    asyncio.run(drive())
    result = dash.finish(app.return_value)
    assert result.status == "failed" and result.exit_code == 1
    assert said == []  # the run ended on the dashboard: no fallback note


def test_no_color_draws_the_dashboard_with_the_log_shorter_than_its_panel(nexus_project, monkeypatch):
    """NO_COLOR makes Textual read the style of every segment drawn: the log panel's empty
    rows (below its last line) had none, and the dashboard stopped at its first frame."""
    from nexus_core.tui.live import DashboardRun

    nexus_project.write(PIPELINE)
    _env(nexus_project, monkeypatch)
    monkeypatch.setenv("NO_COLOR", "1")
    dash = DashboardRun(lambda: pytest.fail("no plain output while the dashboard is open"), say=lambda m: None)
    dash.start(_session(nexus_project, ["test", "docs"], dash))
    app = dash.make_app()

    async def drive() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            assert app.no_color
            assert await until(pilot, lambda: app.model.finished and app.model.final_failures is not None)
            await pilot.pause(0.2)
            assert 0 < len(_log_text(app).splitlines()) < 30  # empty rows below the log's lines
            for key in ("j", "j", "f", "f", "tab", "tab"):
                await pilot.press(key)
            await pilot.press("q")
        assert app.return_value == "quit"

    asyncio.run(drive())
    assert dash.finish(app.return_value).exit_code == 1


def test_cancel_asks_then_stops_the_run_like_ctrl_c(nexus_project, monkeypatch):
    from nexus_core.tui.live import DashboardRun

    nexus_project.write(WAITING)
    _env(nexus_project, monkeypatch)
    dash = DashboardRun(lambda: pytest.fail("no plain output"), say=lambda m: None)
    dash.start(_session(nexus_project, ["slow"], dash))
    app = dash.make_app()

    async def drive() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            assert await until(pilot, lambda: "started" in _log_text(app))
            await pilot.press("c")
            await pilot.press("n")  # no: the run goes on
            assert dash.running()
            await pilot.press("c")
            await pilot.press("y")
            assert await until(pilot, lambda: app.model.finished)
            assert app.model.status == "interrupted"
            await pilot.press("q")

    asyncio.run(drive())
    result = dash.finish(app.return_value)
    assert result.status == "interrupted" and result.exit_code == 130


def _detach(nexus_project: Any, monkeypatch: pytest.MonkeyPatch, source: str, renderer: Any) -> Any:
    """Run the ``slow`` task of ``source`` on the dashboard, leave it with q then d while the
    task waits, let the run end: (the run's result, what was said, what ``renderer`` printed)."""
    from nexus_core.output.style import Style
    from nexus_core.tui.live import DashboardRun

    nexus_project.write(source)
    _env(nexus_project, monkeypatch)
    said: list[str] = []
    printed: list[str] = []

    class Plain(renderer):  # type: ignore[misc,valid-type]
        def write(self, text: str) -> None:
            printed.append(text)

    dash = DashboardRun(lambda: Plain(Style(False, False, True, False)), say=said.append)
    dash.start(_session(nexus_project, ["slow"], dash))
    app = dash.make_app()

    async def drive() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            assert await until(pilot, lambda: "started" in _log_text(app))
            await pilot.press("q")
            await pilot.press("d")  # detach: the run goes on

    asyncio.run(drive())
    assert app.return_value == "detach"
    assert dash.running()
    Path(nexus_project.root, "go").write_text("")
    return dash.finish(app.return_value), said, printed


def test_quit_while_running_hands_over_to_plain_output(nexus_project, monkeypatch):
    from nexus_core.output.render import QuietRenderer

    result, said, printed = _detach(nexus_project, monkeypatch, WAITING, QuietRenderer)
    assert result.status == "ok"
    assert said == ["nexus: dashboard closed; the run goes on with plain output"]
    assert any(line.startswith("✓ slow") for line in printed), printed


def test_plain_output_taking_over_first_shows_what_the_dashboard_showed(nexus_project, monkeypatch):
    """Leaving the dashboard mid-run (q, d) printed only what came after: a task that had
    ended while it was open never appeared in the terminal's output."""
    from nexus_core.output.render import TreeRenderer

    early = '@task\ndef early():\n    run("echo early-output")\n\n@task(deps=[early])\ndef slow'
    result, said, printed = _detach(nexus_project, monkeypatch, WAITING.replace("@task\ndef slow", early), TreeRenderer)
    assert result.status == "ok"
    assert said == ["nexus: dashboard closed; the run goes on with plain output"]
    text = "\n".join(printed)
    assert "early" in text and "slow" in text, printed
    assert text.index("early") < text.index("slow"), printed  # in the order they happened
    assert text.count("● early") == 1, printed  # once: nothing replayed twice


def test_quit_while_running_can_cancel_the_run_instead(nexus_project, monkeypatch):
    from nexus_core.output.render import QuietRenderer
    from nexus_core.output.style import Style
    from nexus_core.tui.live import DashboardRun

    nexus_project.write(WAITING)
    _env(nexus_project, monkeypatch)
    said: list[str] = []
    dash = DashboardRun(lambda: QuietRenderer(Style(False, False, True, False)), say=said.append)
    dash.start(_session(nexus_project, ["slow"], dash))
    app = dash.make_app()

    async def drive() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            assert await until(pilot, lambda: "started" in _log_text(app))
            await pilot.press("q")
            await pilot.press("escape")  # stay: the question goes, the dashboard stays
            assert app.return_value is None and len(app.screen_stack) == 1
            await pilot.press("q")
            await pilot.press("c")  # cancel it and leave

    asyncio.run(drive())
    assert app.return_value == "cancel"
    result = dash.finish(app.return_value)
    assert result.status == "interrupted" and result.exit_code == 130
    assert "nexus: dashboard closed; cancelling the run as Ctrl+C does, plain output follows" in said, said


def test_a_crash_of_the_dashboard_never_stops_the_run(nexus_project, monkeypatch):
    from nexus_core.output.render import QuietRenderer
    from nexus_core.output.style import Style
    from nexus_core.tui import app as app_module
    from nexus_core.tui.live import DashboardRun

    nexus_project.write(WAITING)
    _env(nexus_project, monkeypatch)
    said: list[str] = []
    printed: list[str] = []

    class Plain(QuietRenderer):
        def write(self, text: str) -> None:
            printed.append(text)

    real_pull = app_module.Dashboard.pull

    def pull(self: Any) -> None:
        real_pull(self)
        if "started" in _log_text(self):
            raise RuntimeError("boom")

    monkeypatch.setattr(app_module.Dashboard, "pull", pull)
    dash = DashboardRun(lambda: Plain(Style(False, False, True, False)), say=said.append)
    dash.start(_session(nexus_project, ["slow"], dash))
    app = dash.make_app()

    async def drive() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: bool(app.crash))

    with pytest.raises(RuntimeError, match="boom"):
        asyncio.run(drive())
    assert app.crash == "RuntimeError: boom"
    assert dash.running()
    Path(nexus_project.root, "go").write_text("")
    result = dash.finish(None, app.crash)
    assert result.status == "ok"
    assert said == ["nexus: the dashboard stopped (RuntimeError: boom); the run goes on with plain output"]
    assert any(line.startswith("✓ slow") for line in printed), printed


PROGRESS = """
from nexus_core import run, shard_id, task, upload

@task(parallel="sharded", shards=3)
def crunch():
    run(f"echo shard {shard_id()}")

@task
def ship():
    upload("big.bin", "big.copy")
"""


def test_shards_and_transfers_show_their_progress_on_a_real_run(nexus_project, monkeypatch):
    from nexus_core.tui.live import DashboardRun

    nexus_project.write(PROGRESS)
    Path(nexus_project.root, "big.bin").write_bytes(b"x" * (5 << 20))  # over the size with progress events
    _env(nexus_project, monkeypatch)
    dash = DashboardRun(lambda: pytest.fail("no plain output"), say=lambda m: None)
    dash.start(_session(nexus_project, ["crunch", "ship"], dash))
    app = dash.make_app()

    async def drive() -> None:
        async with app.run_test(size=(140, 40)) as pilot:
            assert await until(pilot, lambda: app.model.finished and app.model.final_failures is not None)
            await pilot.pause()
            labels = _tree_labels(app)
            assert any(label.startswith("✓ crunch") and "[3/3 shards]" in label for label in labels), labels
            assert any(label.startswith("✓ shard-2") for label in labels), labels
            app.select(("host", "crunch", "shard-1"))
            assert "Shard: 1 of 3" in app.details_text()
            app.select(("task", "crunch"))
            assert "Shards done: 3/3" in app.details_text()
            app.select(("task", "ship"))
            ship = app.model.tasks["ship"].hosts["local"]
            transfer = ship.commands[-1].transfer
            assert transfer is not None and transfer.status == "ok" and transfer.total == 5 << 20
            assert transfer.share == 1.0 and transfer.sent == 5 << 20
            app.select(("host", "ship", "local"))
            assert "upload ok, 5.2 MB sent → " in app.details_text(), app.details_text()
            await pilot.press("q")

    asyncio.run(drive())
    assert dash.finish(app.return_value).status == "ok"


def test_a_transfer_in_flight_shows_a_bar_and_its_share():
    from nexus_core.tui.app import host_label, task_label

    model = DashboardModel("r")
    model.apply(ev.TaskStart("r", task="ship", hosts=("web-1",)))
    model.apply(ev.HostStart("r", task="ship", host="web-1"))
    model.apply(ev.CommandStart("r", task="ship", host="web-1", command="upload app.tar → /srv"))
    model.apply(ev.TransferStart("r", task="ship", host="web-1", op="upload", dest="/srv/app.tar", files=2,
                                 bytes=10_000_000))  # fmt: skip
    model.apply(ev.TransferProgress("r", task="ship", host="web-1", path="a", done=3_000_000, total=6_000_000))
    model.apply(ev.TransferProgress("r", task="ship", host="web-1", path="b", done=1_500_000, total=4_000_000))
    row = model.tasks["ship"].hosts["web-1"]
    label = host_label(row, 0.0).plain
    assert "███░░░░░░░" not in label and "████░░░░░░ upload 45% 4.5/10.0 MB → /srv/app.tar" in label, label
    model.apply(ev.TransferStop("r", task="ship", host="web-1", op="upload", dest="/srv/app.tar", status="failed",
                                changed=False, bytes=4_500_000, reason="disk full"))  # fmt: skip
    assert row.transfer is None  # not in flight any more
    assert row.commands[-1].transfer is not None
    assert row.commands[-1].transfer.describe() == "upload failed, 4.5 MB sent: disk full → /srv/app.tar"
    model.apply(ev.TaskStart("r", task="many", hosts=("shard-0", "shard-1")))
    model.apply(ev.HostStart("r", task="many", host="shard-0"))
    assert "[0/2 shards, 1 running]" in task_label(model.tasks["many"], 0.0).plain


def test_the_cluster_panel_shows_agents_with_their_load_and_hides_without_them():
    from nexus_core.plugins import PluginManager
    from nexus_core.tui.app import Dashboard
    from nexus_core.tui.cluster import ClusterWatcher, Member, agent_lister

    registry = PluginManager().registry
    assert agent_lister(registry, {}, ".", ["local", "ssh"]) is None  # hosts, no cluster
    feed = EventFeed()
    members = (Member("a1", running=1, slots=2, cpu=12, memory=2**30, tags=("linux",)), Member("a2", slots=2))
    answers: list[Any] = [members]

    def lister() -> Any:
        if isinstance(answers[0], Exception):
            raise answers[0]
        return answers[0]

    watcher = ClusterWatcher(lister, feed, source="agent")
    app = Dashboard(feed)

    async def drive() -> None:
        async with app.run_test(size=(140, 40)) as pilot:
            await pilot.pause()
            assert not app.w_cluster.display  # no cluster: the hosts panel only
            watcher.poll()
            assert await until(pilot, lambda: app.w_cluster.display)
            assert app.w_cluster.row_count == 2
            assert app.w_cluster.border_title == "cluster: 2 agent(s), 1/4 slots busy"
            row = [str(c) for c in app.w_cluster.get_row("a1")]
            assert row[0] == "a1" and "50%" in row[1] and row[2:] == ["1/2", "12%", "1024 MiB", "linux"], row
            answers[0] = RuntimeError("coordinator gone")
            watcher.poll()
            assert await until(pilot, lambda: app.w_cluster.border_subtitle == "coordinator gone")
            assert app.w_cluster.row_count == 2  # the last answer stays on screen

    asyncio.run(drive())


# --- attach: nexus tui ----------------------------------------------------------------------


def _attach(nexus_project: Any, run_id: str) -> tuple[Any, Any]:
    from nexus_core import runlogs
    from nexus_core.state.paths import state_db, state_dir
    from nexus_core.state.store import StateStore
    from nexus_core.tui.app import Dashboard
    from nexus_core.tui.attach import StatePoller

    feed = EventFeed()
    poller = StatePoller(StateStore(state_db()), run_id, runlogs.logs_dir(state_dir()), feed, interval=0.1)
    return Dashboard(feed), poller


def _failure_block(stderr: str) -> str:
    """The plain failure report in a CLI run's stderr."""
    start = stderr.index("Error: ")
    return stderr[start:]


def test_attach_shows_a_finished_run_with_the_same_failure_report(nexus_project, monkeypatch):
    nexus_project.write(PIPELINE)
    done = nexus_project.run("run", "test", "docs")
    assert done.code == 1, done
    _env(nexus_project, monkeypatch)
    run_id = re.search(r"nexus logs (\S+) test", done.stderr).group(1)  # type: ignore[union-attr]
    app, poller = _attach(nexus_project, run_id)
    poller.start()

    async def drive() -> None:
        async with app.run_test(size=(140, 40)) as pilot:
            assert await until(pilot, lambda: poller.done.is_set() and app.model.status == "failed")
            await pilot.pause(0.3)
            assert "read-only" in str(app.query_one("#header").render())
            labels = _tree_labels(app)
            assert any(label.startswith("✗ test") for label in labels), labels
            await pilot.press("f")
            assert app.failure_text().strip() == _failure_block(done.stderr).strip()
            await pilot.press("l")
            await pilot.press("tab")  # focus: log -> ... the hosts panel follows a host
            app.select(("host", "test", "local"))
            assert "boom" in _log_text(app)
            await pilot.press("slash")
            await pilot.press(*"boom", "enter")
            assert "'boom'" in str(app.w_log.border_subtitle)
            await pilot.press("escape")
            await pilot.press("c")  # read-only: nothing to cancel
            await pilot.press("q")

    try:
        asyncio.run(drive())
    finally:
        poller.stop()
    assert app.return_value == "quit"


def test_attach_follows_a_running_pipeline_of_the_real_cli(nexus_project, monkeypatch):
    nexus_project.write(WAITING)
    proc = start_nexus(nexus_project, "run", "slow", "-v")
    _env(nexus_project, monkeypatch)
    try:
        from nexus_core.state.paths import state_db
        from nexus_core.state.store import StateStore

        store = StateStore(state_db())
        run_id = ""
        for _ in range(400):
            runs = store.runs(limit=1)
            if runs and runs[0].status == "running":
                run_id = runs[0].id
                break
            import time

            time.sleep(0.05)
        assert run_id, "the run did not start"
        app, poller = _attach(nexus_project, run_id)
        poller.start()

        async def drive() -> None:
            async with app.run_test(size=(120, 40)) as pilot:
                assert await until(pilot, lambda: "started" in _log_text(app))
                assert app.model.status == "running"
                Path(nexus_project.root, "go").write_text("")
                assert await until(pilot, lambda: app.model.status == "ok")
                assert await until(pilot, lambda: "finished" in _log_text(app))
                await pilot.press("q")

        try:
            asyncio.run(drive())
        finally:
            poller.stop()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --- when the dashboard never starts -----------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "why"),
    [
        ({"CI": "1"}, "CI is set"),
        ({"CI": "", "TERM": "dumb"}, "TERM=dumb"),
        ({"CI": "", "TERM": "xterm"}, "stdout is not a terminal"),
    ],
)
def test_tui_never_starts_without_a_terminal_under_ci_or_dumb(nexus_project, env, why):
    nexus_project.write(PIPELINE)
    result = nexus_project.run("run", "build", "--tui", env=env)
    assert result.code == 0, result
    assert f"nexus: --tui ignored: {why}; plain output follows" in result.stderr
    assert "✓ build" in result.stdout or "build" in result.stdout
    assert "Completed" in result.stdout


def test_tui_with_json_says_json_follows(nexus_project):
    """--tui --format json said "plain output follows", then printed JSON."""
    nexus_project.write(PIPELINE)
    result = nexus_project.run("run", "build", "--tui", "--format", "json", env={"CI": ""})
    assert result.code == 0, result
    assert "--tui ignored" in result.stderr and "; JSON output follows" in result.stderr, result
    assert result.stdout.lstrip().startswith("{"), result


def test_no_tui_and_the_default_say_nothing(nexus_project):
    nexus_project.write(PIPELINE)
    for args in (("run", "build"), ("run", "build", "--no-tui")):
        result = nexus_project.run(*args)
        assert result.code == 0 and "--tui" not in result.stderr, result


def test_nexus_tui_without_a_terminal_says_why(nexus_project):
    result = nexus_project.run("tui", env={"CI": ""})
    assert result.code == 2
    assert "The dashboard cannot start: stdout is not a terminal" in result.stderr


def test_refusal_reasons():
    class Tty:
        def isatty(self) -> bool:
            return True

    tty: Any = Tty()
    assert tui_refusal(environ={}, stdin=tty, stdout=tty, stderr=tty) == ""
    assert tui_refusal(environ={}, stdin=tty, stdout=tty, stderr=Path(__file__).open()).startswith(
        "stderr is not a terminal"
    )
    assert tui_refusal(environ={"CI": "true"}, stdin=tty, stdout=tty) == "CI is set"
    assert tui_refusal(environ={"TERM": "dumb"}, stdin=tty, stdout=tty) == "TERM=dumb"
    assert "json" in tui_refusal(fmt="json", environ={}, stdin=tty, stdout=tty)
    assert tui_refusal(environ={}, stdin=sys.stdin if not sys.stdin.isatty() else None, stdout=tty) in (
        "stdin is not a terminal",
        "",
    )


# --- the feed and the model, without a screen ------------------------------------------------


def test_feed_drops_output_lines_never_status_events():
    feed = EventFeed(max_lines=5)
    feed(ev.TaskStart("r", task="t", hosts=("h",)))
    for i in range(20):
        feed(ev.CommandOutput("r", task="t", host="h", stream="stdout", line=f"line {i}"))
    feed(ev.HostStop("r", task="t", host="h", status="ok"))
    items = feed.drain()
    names = [getattr(i, "name", type(i).__name__) for i in items]
    assert names.count("command.output") == 5
    assert "task.start" in names and "host.stop" in names
    assert Dropped("t", "h", 15) in items and feed.dropped == 15
    model = DashboardModel("r")
    model.apply_all(items)
    assert model.tasks["t"].hosts["h"].status == "ok"
    assert any("15 output line(s) not shown" in line.text for line in model.lines)
    assert feed.drain() == []


def test_model_holds_a_thousand_hosts():
    model = DashboardModel("r")
    hosts = tuple(f"web-{i:04d}" for i in range(1000))
    model.apply(ev.PipelineStart("r", tasks=("deploy",), hosts=hosts, requested=("deploy",)))
    model.apply(ev.TaskStart("r", task="deploy", hosts=hosts))
    for h in hosts:
        model.apply(ev.HostStart("r", task="deploy", host=h))
        model.apply(ev.CommandStart("r", task="deploy", host=h, command="restart"))
        model.apply(ev.CommandOutput("r", task="deploy", host=h, stream="stdout", line="ok " + h))
        status = "failed" if h.endswith("7") else "ok"
        model.apply(ev.CommandStop("r", task="deploy", host=h, command="restart", exit_code=int(status != "ok"),
                                   duration=0.1, status=status))  # fmt: skip
        model.apply(ev.HostStop("r", task="deploy", host=h, status=status, reason="exit code 1" * (status != "ok")))
    assert len(model.hosts) == 1000
    assert len(model.failures()) == 100
    assert model.host_summary("web-0007").status == "failed"
    assert model.host_summary("web-0001").status == "ok"
    assert [line.text for line in model.lines_for(host="web-0002")] == ["$ restart", "ok web-0002", "[ok]"]


def test_switching_the_log_panel_formats_only_the_lines_on_screen():
    from nexus_core.tui.app import Dashboard
    from nexus_core.tui.model import LogLine

    model = DashboardModel("r")
    hosts = tuple(f"node-{i:03d}" for i in range(100))
    model.apply(ev.TaskStart("r", task="sweep", hosts=hosts))
    for h in hosts:
        model.apply(ev.CommandStart("r", task="sweep", host=h, command="scan"))
        for i in range(1000):  # the lines as the model files them (events would only take longer)
            model.index.append(LogLine(0, "sweep", h, f"{h} item {i}"))
    model.apply(ev.TaskStart("r", task="other", hosts=("local",)))
    model.apply(ev.CommandOutput("r", task="other", host="local", stream="stdout", line="the other task"))
    assert len(model.lines) == 100_101
    app = Dashboard(EventFeed(), model=model)
    formatted: list[Any] = []

    async def drive() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            real = app._format
            app._format = lambda line: formatted.append(line) or real(line)  # type: ignore[method-assign]
            for selection in (("task", "sweep"), ("host", "sweep", "node-050"), ("anyhost", "node-007"), ("all",)):
                formatted.clear()
                app.select(selection)
                await pilot.pause()
                assert (
                    app.w_log.line_count
                    == {"task": 100_100, "host": 1001, "anyhost": 1001, "all": 100_101}[selection[0]]
                )
                assert 0 < len(formatted) <= 2 * 40, (selection, len(formatted))  # the rows on screen, no more
            assert _log_text(app).endswith("[other] the other task")
            await pilot.press("p")  # paused: new lines are counted, not shown
            model.apply(ev.CommandOutput("r", task="other", host="local", stream="stdout", line="later"))
            app.pull()
            assert app.w_log.line_count == 100_101 and app.held == 1
            assert "paused, 1 new line(s)" in str(app.w_log.border_title)
            await pilot.press("p")
            assert app.w_log.line_count == 100_102 and app.held == 0

    asyncio.run(drive())


def test_the_line_index_keeps_the_newest_lines_and_every_selection_in_step():
    from nexus_core.tui.model import LineIndex, LogLine

    index = LineIndex(max_lines=100)
    for i in range(250):
        index.append(LogLine(i, f"t{i % 2}", f"h{i % 5}", str(i)))
    assert 100 <= len(index) <= 110 and index.all[-1].text == "249" and index.generation > 0
    assert [x.seq for x in index.select(("task", "t1"))] == [x.seq for x in index.all if x.task == "t1"]
    assert [x.seq for x in index.select(("anyhost", "h3"))] == [x.seq for x in index.all if x.host == "h3"]
    assert index.select(("host", "t0", "h9")) == [] and index.dropped == 250 - len(index)


def test_attach_reads_only_what_a_run_log_gained(tmp_path):
    import gzip

    from nexus_core.tui.attach import GzipTail

    path = tmp_path / "web-1.log.gz"
    path.write_bytes(gzip.compress(b"$ deploy\nfirst\n"))  # the writer's first batch: one member
    tail = GzipTail(str(path))
    assert tail.read() == ["$ deploy", "first"]
    assert tail.read() == []
    with gzip.GzipFile(str(path), "ab") as fh:  # then a stream, flushed per batch
        fh.write(b"second\nhalf a li")
        fh.flush()
        assert tail.read() == ["second"]  # the line being written waits
        fh.write(b"ne\n[ok]\n")
        fh.flush()
        assert tail.read() == ["half a line", "[ok]"]
    with open(path, "ab") as fh:
        fh.write(gzip.compress(b"again\n"))  # reopened: a new member
    assert tail.read() == ["again"]
    path.write_bytes(gzip.compress(b"new\n"))  # rewritten from the start
    assert tail.read() == ["new"]


def _pty_run(args: list[str], cwd: Any, env: dict[str, str], answers: dict[bytes, bytes], timeout: float = 120):
    """``nexus ARGS`` on a 120x40 pseudo-terminal; type each answer once its text shows; (code, screen)."""
    return run_in_pty(args, cwd, env, answers, timeout=timeout, size=(120, 40))


@pytest.mark.slow
def test_smoke_nexus_run_tui_on_a_real_terminal(nexus_project):
    nexus_project.write(PIPELINE)
    env = {**os.environ, **nexus_project.env, "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    env.pop("CI", None)
    code, screen = _pty_run(["run", "build", "--tui"], nexus_project.root, env, {b"to leave": b"q"})
    assert code == 0, screen
    assert "Completed" in screen
    assert "tasks" in screen and "hosts" in screen  # the dashboard's panels were drawn


# --- under tmux: the real CLI on a real terminal ------------------------------------------------


class Tmux:
    """A private tmux server (own socket) with one 120x40 window running a shell command."""

    def __init__(self, env: dict[str, str]) -> None:
        import tempfile

        self.dir = tempfile.mkdtemp(prefix="nx-tmux-")  # a short path: sockets have a length limit
        self.socket = os.path.join(self.dir, "s")
        self.env = env

    def __call__(self, *args: str) -> str:
        import subprocess

        done = subprocess.run(["tmux", "-S", self.socket, *args], env=self.env, capture_output=True, text=True,
                              timeout=30)  # fmt: skip
        return done.stdout

    def start(self, command: str) -> None:
        """Open the window running ``command`` (in sh)."""
        self("new-session", "-d", "-s", "nx", "-x", "120", "-y", "40", command)

    def screen(self) -> str:
        """What the window shows, with its scrollback."""
        return self("capture-pane", "-p", "-S", "-500", "-t", "nx")

    def flag(self, name: str) -> str:
        """A pane variable (``alternate_on``, ``cursor_flag``, ``pane_pid``)."""
        return self("display-message", "-p", "-t", "nx", "#{" + name + "}").strip()

    def wait(self, predicate: Any, steps: int = 600) -> bool:
        """Until ``predicate(screen)`` holds (bounded: ``steps`` looks 0.1 s apart)."""
        import time

        for _ in range(steps):
            if predicate(self.screen()):
                return True
            time.sleep(0.1)
        return bool(predicate(self.screen()))

    def close(self) -> None:
        """Stop the server (the window's terminal closes)."""
        self("kill-server")


@pytest.fixture
def tmux(nexus_project: Any) -> Any:
    import shutil

    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (python3 dev.py test installs it)")
    env = {**os.environ, **nexus_project.env, "TERM": "xterm-256color"}
    for key in ("CI", "NO_COLOR", "TMUX"):
        env.pop(key, None)
    made = Tmux(env)
    yield made
    made.close()


def _nexus_line(project: Any, *args: str) -> str:
    import shlex

    nexus = " ".join(shlex.quote(a) for a in (sys.executable, "-m", "nexus_core", *args))
    return f"cd {shlex.quote(str(project.root))} && {nexus}; echo EXIT=$?; sleep 600"


def _child_of(pid: int) -> int:
    """The one child of ``pid`` (the nexus the window's shell runs)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def test_smoke_under_tmux_draws_the_dashboard_and_q_gives_the_terminal_back(nexus_project, tmux):
    nexus_project.write(PIPELINE)
    tmux.start(_nexus_line(nexus_project, "run", "build", "--tui"))
    assert tmux.wait(lambda s: "(q to leave)" in s and "╭─ tasks" in s and "hosts" in s), tmux.screen()
    assert "✓ build" in tmux.screen()
    assert tmux.flag("alternate_on") == "1"  # the dashboard has the screen
    tmux("send-keys", "-t", "nx", "q")
    assert tmux.wait(lambda s: "EXIT=0" in s), tmux.screen()
    screen = tmux.screen()
    assert "Completed" in screen and "Traceback" not in screen, screen
    assert tmux.flag("alternate_on") == "0" and tmux.flag("cursor_flag") == "1"  # the terminal as it was


def test_sighup_under_tmux_stops_the_run_as_plain_output_does_and_restores_the_terminal(nexus_project, tmux):
    nexus_project.write(WAITING)
    tmux.start(_nexus_line(nexus_project, "run", "slow", "--tui"))
    assert tmux.wait(lambda s: "started" in s and "╭─ tasks" in s), tmux.screen()
    nexus = _child_of(int(tmux.flag("pane_pid")))
    os.kill(nexus, signal.SIGHUP)
    assert tmux.wait(lambda s: "EXIT=" in s), tmux.screen()
    screen = tmux.screen()
    assert "EXIT=129" in screen, screen  # as plain output: a graceful stop, exit 129, resumable
    assert "SIGHUP (terminal closed): stopping" in screen and "Resume with: nexus resume" in screen, screen
    assert "nexus: terminal closed (SIGHUP); the run goes on with plain output" in screen, screen
    assert "Traceback" not in screen, screen
    assert tmux.flag("alternate_on") == "0" and tmux.flag("cursor_flag") == "1"


def test_closing_the_terminal_under_the_dashboard_stops_the_run_with_129_no_traceback(nexus_project, tmux):
    import json

    nexus_project.write(WAITING)
    tmux.start(_nexus_line(nexus_project, "run", "slow", "--tui"))
    assert tmux.wait(lambda s: "started" in s and "╭─ tasks" in s), tmux.screen()
    nexus = _child_of(int(tmux.flag("pane_pid")))
    tmux.close()  # the terminal goes away: the kernel sends SIGHUP
    for _ in range(600):  # bounded: nexus stops (grace 1 s, then the command is killed)
        if not Path(f"/proc/{nexus}").exists() or "zombie" in Path(f"/proc/{nexus}/status").read_text():
            break
        import time

        time.sleep(0.1)
    assert not Path(f"/proc/{nexus}").exists() or "zombie" in Path(f"/proc/{nexus}/status").read_text()
    runs = json.loads(nexus_project.run("pipelines", "--format", "json").stdout)["runs"]
    assert (runs[0]["status"], runs[0]["exit_code"]) == ("interrupted", 129), runs[0]  # as plain output


# --- fixed data: the screenshot of the docs, and size ------------------------------------------


def _sample() -> Any:
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "docs" / "gen_tui_screenshot.py"
    spec = importlib.util.spec_from_file_location("gen_tui_screenshot", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_screenshot_of_fixed_data_shows_the_panels(tmp_path):
    svg = asyncio.run(_sample().screenshot(tmp_path / "tui.svg"))
    text = re.sub(r"<[^>]+>", "", svg).replace("&#160;", " ")
    for expected in ("deploy", "web-4", "exit&#160;code&#160;1", "hosts", "log:&#160;task&#160;deploy"):
        assert expected.replace("&#160;", " ") in text.replace("&#160;", " "), expected


# Snapshot tests (pytest-textual-snapshot): the same fixed data as the docs' screenshots, a fixed
# clock. After a deliberate change of the screen (or of Textual), review and accept the new
# pictures with: pytest tests/test_tui.py -k snapshot --snapshot-update


def test_snapshot_a_failed_deploy_with_its_log(snap_compare):
    sample = _sample()
    app = sample.dashboard(sample.sample_events(), sample.NOW)
    assert snap_compare(app, press=["j", "j", "j"], terminal_size=(110, 32))


def test_snapshot_the_failure_panel(snap_compare):
    sample = _sample()
    app = sample.dashboard(sample.sample_events(), sample.NOW)
    assert snap_compare(app, press=["f"], terminal_size=(110, 32))


def test_snapshot_a_run_on_agents_with_shards_a_transfer_and_the_cluster(snap_compare):
    sample = _sample()
    app = sample.dashboard(sample.running_items(), sample.NOW)
    assert snap_compare(app, press=["j", "right"], terminal_size=(110, 32))


def test_snapshot_the_details_of_a_host_in_a_transfer(snap_compare):
    sample = _sample()
    app = sample.dashboard(sample.running_items(), sample.NOW)

    def select_web_1(pilot: Any) -> None:
        pilot.app.select(("host", "ship", "web-1"))

    assert snap_compare(app, press=["n"], terminal_size=(110, 32), run_before=select_web_1)


@pytest.mark.slow
def test_a_thousand_hosts_and_a_hundred_thousand_lines():
    from nexus_core.tui.app import Dashboard

    feed = EventFeed(max_lines=200_000)
    hosts = tuple(f"node-{i:04d}" for i in range(1000))
    feed(ev.PipelineStart("r", tasks=("sweep",), hosts=hosts, requested=("sweep",)))
    feed(ev.TaskStart("r", task="sweep", hosts=hosts))
    for h in hosts:
        feed(ev.HostStart("r", task="sweep", host=h))
        feed(ev.CommandStart("r", task="sweep", host=h, command="scan"))
        for i in range(100):
            feed(ev.CommandOutput("r", task="sweep", host=h, stream="stdout", line=f"{h} item {i}"))
    app = Dashboard(feed)

    async def drive() -> None:
        async with app.run_test(size=(140, 40)) as pilot:
            assert await until(pilot, lambda: len(app.model.lines) >= 101_000)
            assert app.w_log.line_count >= 101_000
            assert len(app.model.hosts) == 1000 and app.w_table.row_count == 1000
            for h in hosts:
                feed(ev.CommandStop("r", task="sweep", host=h, command="scan", exit_code=0, duration=1.0, status="ok"))
                feed(ev.HostStop("r", task="sweep", host=h, status="ok", duration=1.0))
            assert await until(pilot, lambda: app.model.host_summary("node-0999").status == "ok")
            await pilot.press("j")  # the task
            assert await until(pilot, lambda: app.selection == ("task", "sweep"))
            await pilot.press("right")  # open it (big tasks start closed)
            assert await until(pilot, lambda: app.w_tree.cursor_node is not None and app.w_tree.cursor_node.is_expanded)
            await pilot.press("j")  # its first host: the log shows that host only
            assert await until(pilot, lambda: app.selection == ("host", "sweep", "node-0000")), app.selection
            assert app.w_log.line_count == 102
            await pilot.press("q")

    asyncio.run(drive())
