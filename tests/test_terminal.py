"""On a terminal: a live view of running tasks; in a pipe, under CI or TERM=dumb: plain lines."""

from __future__ import annotations

import os
import subprocess
import sys

from helpers import run_in_pty

SLOW = """
from nexus_core import task, run

@task
def slow():
    run("sleep 1.2")
"""


def run_slow(cwd, env: dict[str, str]) -> tuple[int, str]:
    """Run `nexus run slow` with a pseudo-terminal as stdin/stdout/stderr."""
    return run_in_pty(["run", "slow"], cwd, env, timeout=30)


def base_env(nexus_project) -> dict[str, str]:
    env = {**os.environ, **nexus_project.env, "TERM": "xterm-256color"}
    for key in ("CI", "NO_COLOR", "FORCE_COLOR", "TERM_PROGRAM"):
        env.pop(key, None)
    return env


def test_terminal_shows_a_live_view_of_running_tasks(nexus_project):
    nexus_project.write(SLOW)
    code, screen = run_slow(nexus_project.root, base_env(nexus_project))
    assert code == 0, screen
    assert "slow" in screen and "Completed" in screen
    assert "\x1b[" in screen, "a terminal gets colour and cursor control"
    assert any(frame in screen for frame in "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"), "the live view shows a spinner"


def test_ci_on_a_terminal_has_no_animation(nexus_project):
    nexus_project.write(SLOW)
    code, screen = run_slow(nexus_project.root, {**base_env(nexus_project), "CI": "true"})
    assert code == 0, screen
    assert not any(frame in screen for frame in "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")


def test_dumb_terminal_has_no_animation_and_no_colour(nexus_project):
    nexus_project.write(SLOW)
    code, screen = run_slow(nexus_project.root, {**base_env(nexus_project), "TERM": "dumb"})
    assert code == 0, screen
    assert "\x1b[" not in screen
    assert "✓ Completed" in screen


def test_pipe_gets_plain_lines(nexus_project):
    nexus_project.write(SLOW)
    env = base_env(nexus_project)
    out = subprocess.run(
        [sys.executable, "-m", "nexus_core", "run", "slow"],
        cwd=nexus_project.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0
    assert "\x1b[" not in out.stdout
    assert out.stdout.startswith("● slow")
