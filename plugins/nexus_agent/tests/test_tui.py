"""The dashboard's cluster panel on the session's real cluster: the agents a run uses, with their load."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip("textual")

from nexus_core.testing import NexusProject

NEXUSFILE = """
    from nexus_core import all_agents, run, task

    @task(on=all_agents())
    def hello():
        run("echo hello")
"""


def test_the_dashboard_lists_the_agents_with_their_load(project: NexusProject, monkeypatch: Any) -> None:
    from nexus_core.discovery import resolve
    from nexus_core.loader import load_project
    from nexus_core.plan import build_plan
    from nexus_core.plugins import PluginManager
    from nexus_core.session import RunSession
    from nexus_core.tui.live import DashboardRun

    project.write(NEXUSFILE)
    for key, value in project.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(project.root)
    pm = PluginManager()
    found = resolve(load_project(str(project.nexusfile)), pm.registry)  # the selector's agents, as the CLI does
    plan = build_plan(found.project, pm.registry, ["hello"])
    dash = DashboardRun(lambda: pytest.fail("no plain output"), say=lambda m: None)
    dash.start(RunSession(plan, plugins=pm, subscribers=[("output", dash)], report=dash.report))
    app = dash.make_app()

    async def drive() -> None:
        async with app.run_test(size=(140, 40)) as pilot:
            for _ in range(300):  # bounded: the first answer of the cluster, and the run's end
                if app.model.cluster is not None and app.model.finished:
                    break
                await pilot.pause(0.05)
            await pilot.pause()
            view = app.model.cluster
            assert view is not None and view.error == "", (app.model.notices, view)
            assert [m.name for m in view.members] == ["a1", "a2", "coord"]
            assert all(m.slots == 2 for m in view.members)
            assert app.w_cluster.display and app.w_cluster.row_count == 3
            assert str(app.w_cluster.border_title).startswith("cluster: 3 agent(s)")
            await pilot.press("q")

    asyncio.run(drive())
    assert dash.finish(app.return_value).status == "ok"
