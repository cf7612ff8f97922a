"""Write docs/img/tui.svg: the dashboard on fixed data (no clocks), as Textual renders it.

Run from the repository root: ``.venv/bin/python docs/gen_tui_screenshot.py``.
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
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img/tui.svg")
    asyncio.run(screenshot(target))
    print(target)
