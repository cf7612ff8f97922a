"""Write docs/img/tui.svg and docs/img/tui-running.svg: the dashboard on fixed data (no clocks).

Run from the repository root: ``.venv/bin/python docs/gen_tui_screenshot.py``. The same data
feed the snapshot tests (tests/test_tui.py, pytest-textual-snapshot).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from nexus_core import events as ev
from nexus_core.tui.app import Dashboard
from nexus_core.tui.feed import EventFeed

RUN = "20261201-101500-a1b2c3"
T0 = 1_800_000_000.0
HOSTS = tuple(f"web-{i}" for i in range(1, 7))


def sample_events() -> list[Any]:
    """A deploy over six hosts after build and test: one host fails, the others pass."""
    out: list[Any] = [ev.PipelineStart(RUN, tasks=("build", "test", "deploy"), hosts=("local", *HOSTS),
                                       requested=("deploy",), ts=T0)]  # fmt: skip
    t = T0
    for task, cmd, lines in (("build", "python -m build", ["building wheel", "done"]),
                             ("test", "pytest -q", ["........ 8 passed"])):  # fmt: skip
        out += [ev.TaskStart(RUN, task=task, hosts=("local",), ts=t), ev.HostStart(RUN, task=task, host="local", ts=t),
                ev.CommandStart(RUN, task=task, host="local", command=cmd, ts=t)]  # fmt: skip
        out += [ev.CommandOutput(RUN, task=task, host="local", stream="stdout", line=x, ts=t) for x in lines]
        t += 2.5
        out += [ev.CommandStop(RUN, task=task, host="local", command=cmd, exit_code=0, duration=2.5, status="ok", ts=t),
                ev.HostStop(RUN, task=task, host="local", status="ok", duration=2.5, ts=t),
                ev.TaskStop(RUN, task=task, hosts=("local",), status="ok", duration=2.5, ts=t)]  # fmt: skip
    out.append(ev.TaskStart(RUN, task="deploy", hosts=HOSTS, strategy="rolling", ts=t))
    for i, h in enumerate(HOSTS):
        bad = h == "web-4"
        out += [ev.HostStart(RUN, task="deploy", host=h, ts=t), ev.CommandStart(RUN, task="deploy", host=h,
                command="systemctl restart myapp", ts=t)]  # fmt: skip
        out.append(ev.CommandOutput(RUN, task="deploy", host=h, stream="stderr" if bad else "stdout",
                                    line="Job for myapp.service failed" if bad else "restarted", ts=t))  # fmt: skip
        d = 1.2 + i / 10
        out += [ev.CommandStop(RUN, task="deploy", host=h, command="systemctl restart myapp", exit_code=1 if bad else 0,
                               duration=d, status="failed" if bad else "ok", reason="exit code 1" if bad else "",
                               ts=t + d),
                ev.HostStop(RUN, task="deploy", host=h, status="failed" if bad else "ok", duration=d,
                            reason="exit code 1" if bad else "", ts=t + d)]  # fmt: skip
    out += [ev.TaskStop(RUN, task="deploy", hosts=HOSTS, status="failed", duration=1.7, reason="failed on web-4",
                        ts=t + 1.7),
            ev.PipelineStop(RUN, duration=t + 1.7 - T0, status="failed", exit_code=1, ts=t + 1.7)]  # fmt: skip
    return out


#: "Now" for the running sample: durations of what runs are counted to it (no wall clock).
NOW = T0 + 42.0
AGENTS = ("gpu-1", "gpu-2", "hub")


def running_items() -> list[Any]:
    """A run in progress on agents: a sharded task at 5/8 shards, an upload at 45%, the cluster's load."""
    from nexus_core.tui.cluster import ClusterView, Member

    shards = tuple(f"shard-{i}" for i in range(8))
    out: list[Any] = [
        ev.PipelineStart(RUN, tasks=("crunch", "ship"), hosts=(*shards, "web-1"), requested=("ship",), ts=T0),
        ev.TaskStart(RUN, task="crunch", hosts=shards, ts=T0),
    ]
    for i, shard in enumerate(shards):
        if i >= 7:
            continue
        t = T0 + i * 4
        cmd = f"python crunch.py --shard {i}"
        out += [
            ev.HostStart(RUN, task="crunch", host=shard, ts=t),
            ev.CommandStart(RUN, task="crunch", host=shard, command=cmd, ts=t),
            ev.CommandOutput(RUN, task="crunch", host=shard, stream="stdout", line=f"shard {i}: 12500 items", ts=t),
        ]
        if i < 5:
            out += [
                ev.CommandStop(
                    RUN, task="crunch", host=shard, command=cmd, exit_code=0, duration=9.0, status="ok", ts=t + 9
                ),
                ev.HostStop(RUN, task="crunch", host=shard, status="ok", duration=9.0, ts=t + 9),
            ]
    out += [
        ev.TaskStart(RUN, task="ship", hosts=("web-1",), ts=T0 + 30),
        ev.HostStart(RUN, task="ship", host="web-1", ts=T0 + 30),
        ev.CommandStart(RUN, task="ship", host="web-1", command="upload dist/app.tar → /srv/app.tar", ts=T0 + 30),
        ev.TransferStart(
            RUN, task="ship", host="web-1", op="upload", dest="/srv/app.tar", files=1, bytes=80_000_000, ts=T0 + 30
        ),
        ev.TransferProgress(
            RUN, task="ship", host="web-1", path="dist/app.tar", done=36_000_000, total=80_000_000, ts=T0 + 40
        ),
    ]
    members = (
        Member("gpu-1", running=2, slots=2, cpu=97, memory=6 << 30, tags=("gpu",)),
        Member("gpu-2", running=1, slots=2, cpu=55, memory=3 << 30, tags=("gpu",)),
        Member("hub", running=0, slots=2, cpu=4, memory=1 << 30, tags=("hub",)),
    )
    out.append(ClusterView("agent", members))
    return out


def dashboard(items: list[Any], clock: float | None = None) -> Dashboard:
    """A dashboard fed ``items`` at once (a fixed clock when given)."""
    feed = EventFeed()
    for item in items:
        feed(item)
    return Dashboard(feed) if clock is None else Dashboard(feed, clock=lambda: clock)


async def screenshot_running(path: Path) -> str:
    """The running sample on a 110x32 screen, the sharded task's hosts open; the SVG text."""
    app = dashboard(running_items(), NOW)
    async with app.run_test(size=(110, 32)) as pilot:
        await pilot.pause()
        await pilot.press("j", "right")
        await pilot.pause()
        svg = app.export_screenshot(title="nexus run ship --tui")
    path.write_text(svg)
    return svg


async def screenshot(path: Path) -> str:
    """Render the sample on a 110x32 screen with the deploy task selected; the SVG text."""
    feed = EventFeed()
    for e in sample_events():
        feed(e)
    app = Dashboard(feed)
    async with app.run_test(size=(110, 32)) as pilot:
        await pilot.pause(0.3)
        for _ in range(3):
            await pilot.press("j")
        await pilot.pause(0.3)
        svg = app.export_screenshot(title="nexus run deploy --tui")
    path.write_text(svg)
    return svg


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img")
    asyncio.run(screenshot(folder / "tui.svg"))
    asyncio.run(screenshot_running(folder / "tui-running.svg"))
    print(folder / "tui.svg", folder / "tui-running.svg")
