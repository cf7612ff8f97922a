"""Status lines (nexus_core.markers) written and read by real shells, as on a host."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from helpers import wait_for

from nexus_core import markers
from nexus_core.shell import wrap

SHELLS = [s for s in ("/bin/sh", "/bin/bash") if shutil.which(s)]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # for local_status_file too
    return dict(os.environ)


def marker(index: int = 0) -> markers.Marker:
    return markers.Marker("20261127-120000-abcdef", markers.key("deploy", "web-1", index), "web-1")


def wrapped(shell: str, script: str, env: dict[str, str], m: markers.Marker | None = None) -> int:
    return subprocess.run([shell, "-c", wrap(script, m or marker())], env=env, check=False).returncode


def probe(env: dict[str, str], m: markers.Marker | None = None) -> markers.ProbeResult:
    m = m or marker()
    out = subprocess.run(
        ["/bin/sh", "-c", markers.probe_script(m.run_id, m.key, m.host)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return markers.parse_probe(out.stdout.splitlines())


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(
    ("script", "code"),
    [
        ("true", 0),
        ("false", 1),
        ("echo out; exit 3", 3),
        ("set -e\nfalse\necho never", 1),
        ("if true; then echo unfinished", 2),  # a syntax error still reaches the trap
        ("exec sh -c 'exit 5'", 5),  # exec: runs in a subshell, the wrapper survives it
        ("trap 'echo own' EXIT; exit 6", 6),  # the script's own trap does not replace ours
    ],
)
def test_the_exit_code_is_recorded_whatever_way_the_script_ends(shell, script, code, env):
    assert wrapped(shell, script, env) == code
    assert probe(env) == markers.ProbeResult("finished", code)


def test_running_then_killed_then_never(env):
    m = marker(1)
    proc = subprocess.Popen(["/bin/sh", "-c", wrap("sleep 30", m)], env=env, start_new_session=True)
    try:
        assert wait_for(lambda: probe(env, m).state == "running", timeout=10)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert probe(env, m) == markers.ProbeResult("killed")
    assert probe(env, marker(2)) == markers.ProbeResult("never")


def test_the_last_attempt_counts_and_commands_share_the_file(env):
    first, second = marker(0), marker(1)
    assert wrapped("/bin/sh", "exit 1", env, first) == 1
    assert wrapped("/bin/sh", "true", env, second) == 0
    assert probe(env, first) == markers.ProbeResult("finished", 1)
    # A retry of the first command: its pid line forgets the earlier exit code.
    status = Path(markers.local_status_file(first.run_id, first.host))
    with status.open("a") as fh:
        fh.write(f"{first.key} pid {os.getpid()}\n")
    assert probe(env, first) == markers.ProbeResult("running")
    assert probe(env, second) == markers.ProbeResult("finished", 0)


def test_cleanup_removes_only_this_hosts_file(env):
    here, other = marker(0), markers.Marker(marker().run_id, "k", "web-2")
    wrapped("/bin/sh", "true", env, here)
    wrapped("/bin/sh", "true", env, other)
    subprocess.run(["/bin/sh", "-c", markers.cleanup_script(here.run_id, here.host)], env=env, check=True)
    assert probe(env, here) == markers.ProbeResult("never")
    assert probe(env, other) == markers.ProbeResult("finished", 0)


def test_a_half_written_last_line_is_not_read_as_an_exit_code(env):
    m = marker()
    status = Path(markers.local_status_file(m.run_id, m.host))
    status.parent.mkdir(parents=True)
    status.write_text(f"{m.key} pid 999999999\n{m.key} rc ")
    assert probe(env, m) == markers.ProbeResult("killed")


def test_adopt_old_layout_turns_a_0_1_status_file_into_the_folder(tmp_path):
    from nexus_core.markers import adopt_old_layout

    folder = tmp_path / "RUN@web-1"
    folder.write_text("k pid 1\nk rc 0\n")
    adopt_old_layout(str(folder))
    assert (folder / "status").read_text() == "k pid 1\nk rc 0\n"
    adopt_old_layout(str(folder))  # a folder already: nothing to do
    assert (folder / "status").exists() and not (tmp_path / "RUN@web-1.v1").exists()


def _spooled(m: markers.Marker, script: str, env: dict[str, str], reuse: tuple[str, int] | None) -> str:
    """Run ``script`` as a remote transport would (spool, replay, process-group line); its stderr."""
    text = wrap(script, m, spool=True, pg=True, reuse=reuse)
    done = subprocess.run(["/bin/sh", "-c", text], env=env, capture_output=True, text=True, check=True)
    return done.stderr


def _spool_of(env: dict[str, str], m: markers.Marker) -> str:
    script = markers.spool_script(m.run_id, m.key, m.host)
    return subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True, check=True).stdout


def test_a_command_takes_an_earlier_spool_only_when_nothing_of_its_group_is_left(env):
    first, second, third = marker(0), marker(1), marker(2)
    _spooled(first, "echo one", env, None)
    gone = subprocess.run(["/bin/sh", "-c", "echo $$"], capture_output=True, text=True, check=True).stdout
    # The first command's group is gone: the second writes into its files and says so.
    assert shell_pg_line(_spooled(second, "echo two", env, (first.key, int(gone)))).endswith(" reused")
    folder = Path(markers.local_status_dir(first.run_id, first.host))
    assert sorted(p.name for p in folder.glob("*.out")) == [f"{first.key}.out"]
    assert f"{second.key} out {first.key}" in (folder / "status").read_text()
    assert "two" in _spool_of(env, second)  # resume finds the output in the files it took
    assert markers.SPOOL_TAKEN in _spool_of(env, first)  # and the first command's is not shown as its
    # A live group (this test's own) may still write to the files: the third makes its own.
    line = shell_pg_line(_spooled(third, "echo three", env, (first.key, os.getpgrp())))
    assert not line.endswith(" reused")
    assert (folder / f"{third.key}.out").exists()
    assert "three" in _spool_of(env, third) and "two" in _spool_of(env, second)


def shell_pg_line(stderr: str) -> str:
    """The process-group line a spooled wrapper printed on stderr."""
    (line,) = [x for x in stderr.split("\n") if x.startswith("\x1eNEXUS-PG ")]  # not splitlines(): \x1e splits
    return line
