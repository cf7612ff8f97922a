"""The run session below the CLI: a plan runs from Python, recorded, without click."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from nexus_core.state.store import StateStore

NEXUSFILE = """
from nexus_core import config, task, run

config(interrupt_grace=0.2, terminate_grace=0.2)

@task
def first():
    run("echo one >> log.txt")

@task(deps=[first])
def second():
    run("echo two >> log.txt")

@task
def slow():
    run("touch slow.started; sleep 30; echo never >> log.txt")
"""

# Runs in a fresh interpreter in the project folder, as an agent or a CI plugin would.
SCRIPT = """
import json, sys, threading, time, os
from nexus_core.loader import load_project
from nexus_core.plan import build_plan
from nexus_core.plugins import PluginManager
from nexus_core.session import RunSession
from nexus_core.state.store import StateStore

task, db = sys.argv[1], sys.argv[2]
pm = PluginManager()
plan = build_plan(load_project("nexusfile.py"), pm.registry, [task])
events = []
store = StateStore(db)
session = RunSession(plan, plugins=pm, store=store, subscribers=[("test", lambda e: events.append(e.name))],
                     report=lambda m: print("REPORT", m, file=sys.stderr))
if task == "slow":
    def stop():
        for _ in range(300):
            if os.path.exists("slow.started"):
                break
            time.sleep(0.05)
        session.interrupt("SIGTERM")
    threading.Thread(target=stop, daemon=True).start()
result = session.run()
store.close()
print(json.dumps({"run_id": result.run_id, "status": result.status, "exit_code": result.exit_code,
                  "tasks": {n: t.status for n, t in result.tasks.items()}, "events": events,
                  "click": "click" in sys.modules}))
"""


def run_script(project, task: str) -> tuple[dict, str, str]:  # type: ignore[type-arg]
    (project.root / "nexusfile.py").write_text(NEXUSFILE)
    db = str(Path(project.env["XDG_STATE_HOME"]) / "state.db")
    env = {**os.environ, **project.env, "NO_COLOR": "1"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, task, db], cwd=project.root, env=env,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1]), db, proc.stderr


def test_a_plan_runs_from_python_and_is_recorded(nexus_project):
    out, db, _ = run_script(nexus_project, "second")
    assert out["status"] == "ok" and out["exit_code"] == 0
    assert out["tasks"] == {"first": "ok", "second": "ok"}
    assert out["events"][0] == "pipeline.start" and out["events"][-1] == "pipeline.stop"
    assert (nexus_project.root / "log.txt").read_text().split() == ["one", "two"]
    assert out["click"] is False, "running a plan imported click"
    store = StateStore(db)
    record = store.get(out["run_id"])
    store.close()
    assert record is not None
    assert record.status == "ok" and record.exit_code == 0
    assert record.requested == ["second"]
    assert {n: t["status"] for n, t in record.tasks.items()} == {"first": "ok", "second": "ok"}


def test_interrupting_a_session_stops_the_run_and_leaves_it_resumable(nexus_project):
    out, db, stderr = run_script(nexus_project, "slow")
    assert out["status"] == "interrupted" and out["exit_code"] == 143
    assert "REPORT SIGTERM: stopping, waiting up to 0.2 s for running commands" in stderr
    assert not (nexus_project.root / "log.txt").exists()
    store = StateStore(db)
    record = store.get(out["run_id"])
    store.close()
    assert record is not None and record.interrupted


def test_importing_the_session_does_not_import_click():
    code = "import sys, nexus_core.session; print(sorted(m for m in sys.modules if m.split('.')[0] == 'click'))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.strip() == "[]"
