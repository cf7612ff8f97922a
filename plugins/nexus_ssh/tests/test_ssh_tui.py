"""The live dashboard over the real sshd bed: a real run on three hosts, driven by Textual's pilot."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from nexus_core.testing import NexusProject
from nexus_core.testing.sshbed import USER_KEY, SshBed

pytest.importorskip("textual")

pytestmark = pytest.mark.ssh

H1, H2, H3 = "127.0.0.2", "127.0.0.3", "127.0.0.4"


def test_dashboard_follows_a_run_on_three_ssh_hosts(
    nexus_project: NexusProject, sshbed: SshBed, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nexus_core.loader import load_project
    from nexus_core.output.report import failures_text
    from nexus_core.output.style import Style
    from nexus_core.plan import build_plan
    from nexus_core.plugins import PluginManager
    from nexus_core.runlogs import logs_command
    from nexus_core.session import RunSession
    from nexus_core.tui.live import DashboardRun

    nexus_project.write(
        "from nexus_core import config, hosts, hostname, run, task\n"
        f"config(ssh_user={USER_KEY!r}, ssh_identity={sshbed.key_path('ed25519')!r}, "
        f"ssh_known_hosts_file={sshbed.known_hosts!r}, ssh_port={sshbed.port})\n"
        f'hosts("web", "{H1}", "{H2}", "{H3}")\n'
        "@task(on='web')\n"
        "def deploy():\n"
        "    run('echo deploying on ' + hostname())\n"
        f"    run('test ' + hostname() + ' != {H2} || {{ echo broken >&2; exit 7; }}')\n"
    )
    for key, value in {**nexus_project.env, "NEXUS_SSH_CONFIG": ""}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.chdir(nexus_project.root)

    pm = PluginManager()
    plan = build_plan(load_project(str(nexus_project.nexusfile)), pm.registry, ["deploy"])
    dash = DashboardRun(lambda: pytest.fail("no plain output on the dashboard"), say=lambda m: None)
    dash.start(RunSession(plan, plugins=pm, subscribers=[("output", dash)], report=dash.report))
    app = dash.make_app()

    async def until(pilot: Any, predicate: Any, steps: int = 1200) -> bool:
        for _ in range(steps):
            if predicate():
                return True
            await pilot.pause(0.05)
        return bool(predicate())

    async def drive() -> None:
        async with app.run_test(size=(140, 40)) as pilot:
            assert await until(pilot, lambda: app.model.final_failures is not None)
            await pilot.pause(0.2)
            labels = [str(app.w_tree.live_label(n)) for n in app.w_tree.root.children[0].children]
            assert [label.split()[:2] for label in labels] == [["✓", H1], ["✗", H2], ["✓", H3]], labels
            await pilot.press("j", "j", "j")  # deploy, H1, H2
            assert await until(pilot, lambda: app.selection == ("host", "deploy", H2)), app.selection
            text = "\n".join(app.w_log.lines)  # the lazy log panel (nexus_core.tui.logview)
            assert f"deploying on {H2}" in text and "broken" in text and H1 not in text
            result = dash.result
            assert result is not None
            style = Style(color=False, live=False, unicode=True, interactive=False)
            see = lambda f: logs_command(result.run_id, f.task, f.host)  # noqa: E731
            assert app.failure_text() == failures_text(style, result.failures, see)
            assert f"Host: {H2}" in app.failure_text() and "Exit code: 7" in app.failure_text()
            await pilot.press("q")

    asyncio.run(drive())
    result = dash.finish(app.return_value)
    assert result.exit_code == 1
