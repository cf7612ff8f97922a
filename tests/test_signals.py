"""Ctrl+C, SIGTERM and SIGHUP: no new work, running commands stopped step by step, summary, exit 130/143/129."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from helpers import pgrep, wait_for

PIPELINE = """
from nexus_core import config, task, run

config(interrupt_grace={grace}, terminate_grace={grace})

@task
def quick():
    run("echo quick done")

@task(deps=[quick])
def long():
    run("touch long.started; {body}")

@task(deps=[long])
def after():
    run("touch after.txt")
"""


def start(nexus_project, body: str, grace: float = 5.0, **popen: object) -> subprocess.Popen[str]:
    nexus_project.write(PIPELINE.format(body=body, grace=grace))
    env = {**os.environ, **nexus_project.env, "NO_COLOR": "1", "CI": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nexus_core", "run", "after"],
        cwd=nexus_project.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,  # type: ignore[call-overload]
    )
    assert wait_for(lambda: (nexus_project.root / "long.started").exists(), timeout=15), "long never started"
    return proc


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_running_command_may_finish_within_the_grace_period(nexus_project, sig, code):
    proc = start(nexus_project, "sleep 0.5; touch long.finished", grace=20)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == code, (stdout, stderr)
    assert (nexus_project.root / "long.finished").exists()
    assert "2 succeeded (quick, long)" in stdout
    assert "skipped (after)" in stdout
    assert not (nexus_project.root / "after.txt").exists()


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_running_command_after_grace_skips_the_rest_and_prints_summary(nexus_project, sig, code):
    proc = start(nexus_project, "sleep 41.5", grace=0.2)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == code, (stdout, stderr)
    assert "Interrupted after" in stdout
    assert "1 succeeded (quick)" in stdout
    assert "interrupted (long)" in stdout
    assert "skipped (after)" in stdout
    assert not (nexus_project.root / "after.txt").exists()
    assert "Traceback" not in stderr
    assert wait_for(lambda: not pgrep("sleep 41.5"), timeout=5), "the command outlived Nexus"


def test_a_command_ignoring_sigint_is_escalated_to_sigterm_then_sigkill(nexus_project):
    proc = start(nexus_project, "trap '' INT TERM; sleep 42.5", grace=0.3)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, (stdout, stderr)
    assert wait_for(lambda: not pgrep("sleep 42.5"), timeout=5)


def test_second_ctrl_c_stops_at_once(nexus_project):
    proc = start(nexus_project, "trap '' INT TERM; sleep 43.5", grace=60)
    proc.send_signal(signal.SIGINT)
    wait_for(lambda: False, timeout=0.3)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=15)
    assert proc.returncode == 130, (stdout, stderr)
    assert wait_for(lambda: not pgrep("sleep 43.5"), timeout=5)


def test_json_mode_reports_the_interrupt_as_events(nexus_project):
    nexus_project.write(PIPELINE.format(body="sleep 44.5", grace=0.2))
    env = {**os.environ, **nexus_project.env}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nexus_core", "run", "after", "--format", "json"],
        cwd=nexus_project.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert wait_for(lambda: (nexus_project.root / "long.started").exists(), timeout=15)
    proc.send_signal(signal.SIGINT)
    stdout, _ = proc.communicate(timeout=30)
    events = [json.loads(line) for line in stdout.splitlines()]
    names = [e["event"] for e in events]
    assert "pipeline.interrupt" in names
    assert events[-1]["event"] == "pipeline.stop" and events[-1]["exit_code"] == 130


def test_first_ctrl_c_says_what_happens_next_and_the_summary_says_how_to_resume(nexus_project):
    proc = start(nexus_project, "sleep 45.5", grace=0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, (stdout, stderr)
    assert "waiting up to 0.2 s for running commands; Ctrl+C again to stop now" in stderr
    runs = json.loads(nexus_project.run("pipelines", "--format", "json").stdout)["runs"]
    assert f"Resume with: nexus resume {runs[0]['id']}" in stdout


def test_sighup_stops_like_sigterm_exits_129_and_the_run_can_be_resumed(nexus_project):
    """The terminal (or the SSH session) closes: graceful stop, checkpoint, no orphan, resumable."""
    proc = start(nexus_project, "[ -f go ] || sleep 46.5", grace=0.2, start_new_session=True)
    proc.send_signal(signal.SIGHUP)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 129, (stdout, stderr)
    assert "SIGHUP (terminal closed): stopping, waiting up to 0.2 s for running commands" in stderr
    assert "interrupted (long)" in stdout
    assert "Traceback" not in stderr
    assert wait_for(lambda: not pgrep("sleep 46.5"), timeout=5), "the command outlived Nexus"
    listed = nexus_project.run("pipelines", "--interrupted")
    assert listed.code == 0 and " interrupted " in listed.stdout, listed
    run_id = listed.stdout.split()[0]
    assert f"Resume with: nexus resume {run_id}" in stdout
    # the interrupted command runs again (it never finished), then the rest
    (nexus_project.root / "go").touch()
    resumed = nexus_project.run("resume")
    assert resumed.code == 0, resumed
    assert "done before the interruption" in resumed.stdout  # quick did not run again
    assert (nexus_project.root / "after.txt").exists()
    newest = json.loads(nexus_project.run("pipelines", "--format", "json").stdout)["runs"][0]
    assert (newest["id"], newest["status"], newest["resumes"]) == (run_id, "ok", 1)


def test_closing_the_terminal_stops_the_run_with_129_and_no_orphan(nexus_project):
    """A real hangup: nexus runs on its own terminal, which goes away (writes then fail with EIO)."""
    import fcntl
    import pty
    import termios

    nexus_project.write(PIPELINE.format(body="sleep 48.5", grace=0.2))
    master, slave = pty.openpty()

    def own_terminal() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    env = {**os.environ, **nexus_project.env, "NO_COLOR": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "nexus_core", "run", "after", "-v"], cwd=nexus_project.root,
                            env=env, stdin=slave, stdout=slave, stderr=slave, preexec_fn=own_terminal)  # fmt: skip
    os.close(slave)
    try:
        assert wait_for(lambda: (nexus_project.root / "long.started").exists(), timeout=15), "long never started"
    finally:
        os.close(master)  # the terminal closes: the kernel sends SIGHUP to nexus
    assert proc.wait(timeout=30) == 129
    assert wait_for(lambda: not pgrep("sleep 48.5"), timeout=5), "the command outlived Nexus"
    runs = json.loads(nexus_project.run("pipelines", "--format", "json").stdout)["runs"]
    assert runs[0]["status"] == "interrupted" and runs[0]["exit_code"] == 129


def test_a_stop_ends_a_wait_longer_than_the_clock_can_hold() -> None:
    """A retry pause of any length is cut short by a stop: ``Cancel.sleep`` never raises
    ``OverflowError`` for a wait past ``threading.TIMEOUT_MAX`` (options stop far below it)."""
    import threading

    from nexus_core.api import Cancel

    cancel = Cancel()
    timer = threading.Timer(0.05, cancel.raise_to, (Cancel.STOP,))
    timer.start()
    try:
        assert cancel.sleep(1e300) is False
    finally:
        timer.cancel()
