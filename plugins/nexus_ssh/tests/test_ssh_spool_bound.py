"""Output spools on hosts stay bounded on disk (``spool_max_bytes``) while a command runs, whether
Nexus follows it or was killed; resume shows the end of the output and never reruns it. A
command's spool takes the files of an earlier command of the run whose output Nexus has read
(no two new files per command), never files a job of that command may still write to; resume
finds a command's output in the files it took."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from nexus_core.testing import NexusProject
from nexus_core.testing.sshbed import HOME_ROOT, USER_KEY, SshBed
from tests.helpers import FAST, check_fast_run, start_nexus, stopped, wait_for

pytestmark = [pytest.mark.ssh, pytest.mark.session_mode]  # session_mode: run again in exec mode (dev.py)

RUNS = HOME_ROOT / USER_KEY / ".cache" / "nexus" / "runs"
#: spool_max_bytes of these tests, and what the keeper may overshoot by: one tick (1 s) of
#: the command's output (~2 MB/s here) plus the 64 KiB rounding of the cut.
CAP = 512 << 10
SLACK = 3 << 20
#: A line of 200 kB every ~0.1 s, 8 MB in all, then a last line (one process).
BIG = (
    "echo once >> {count}; python3 -u -c 'import sys, time\n"
    'for i in range(40): sys.stdout.write("x" * 200000 + "\\n"); sys.stdout.flush(); time.sleep(0.1)\'; '
    "echo the-last-line"
)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder the remote test user can write (the bed's hosts are this machine)."""
    path = Path(tempfile.mkdtemp(prefix="nexus-spool-bound-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _project(nexus_project: NexusProject, sshbed: SshBed, body: str, **config: int) -> NexusProject:
    """``nexus_project`` with one task ``work`` of ``body`` (indented lines) on the bed's first host."""
    nexus_project.env["NEXUS_SSH_CONFIG"] = ""
    nexus_project.env.pop("SSH_AUTH_SOCK", None)
    h1 = sshbed.hosts[0].address
    more = "".join(f", {k}={v!r}" for k, v in config.items())
    nexus_project.write(
        "from nexus_core import config, run, task\n"
        f"config(ssh_user={USER_KEY!r}, ssh_identity={sshbed.key_path('ed25519')!r}, "
        f"ssh_known_hosts_file={sshbed.known_hosts!r}, ssh_port={sshbed.port}{more})\n\n"
        f"@task(on=[{h1!r}])\n"
        f"def work():\n{body}"
    )
    return nexus_project


@pytest.fixture
def project(nexus_project: NexusProject, sshbed: SshBed, shared_dir: Path) -> NexusProject:
    big = BIG.format(count=shared_dir / "count")
    return _project(nexus_project, sshbed, f"    run({big!r})\n", spool_max_bytes=CAP)


def watch_spools(run_id: Callable[[], list[Path]], done: Callable[[], bool]) -> int:
    """The largest disk use (allocated bytes) of the spool files in the run's folders until ``done()``."""
    most = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not done():
        for folder in run_id():
            for f in folder.glob("*.*"):
                if f.suffix in (".out", ".err"):
                    with contextlib.suppress(FileNotFoundError):
                        most = max(most, f.stat().st_blocks * 512)
        time.sleep(0.05)
    return most


def _folders() -> list[Path]:
    return [p for p in RUNS.iterdir() if p.is_dir()] if RUNS.exists() else []


def test_a_followed_spool_on_a_host_stays_bounded(project, shared_dir, tmp_path):
    before = set(_folders())
    # The 8 MB of -v output goes to a file: a pipe nobody reads while the spools are watched
    # would stall Nexus on its own stdout for the whole watch.
    with (tmp_path / "out").open("w+") as sink:
        proc = start_nexus(project, "run", "work", "-v", stdout=sink)
        mine = lambda: [p for p in _folders() if p not in before]  # noqa: E731
        most = watch_spools(mine, lambda: proc.poll() is not None)
        _, err = proc.communicate(timeout=60)
        sink.seek(0)
        out = sink.read()
    assert proc.returncode == 0, (out[-2000:], err[-2000:])
    assert most <= CAP + SLACK, most
    assert "the-last-line" in out and "^@" not in out  # no hole read as NUL bytes
    assert (shared_dir / "count").read_text() == "once\n"


def test_a_spool_on_a_host_stays_bounded_after_kill_9_and_resume_shows_its_end(project, shared_dir):
    count = shared_dir / "count"
    before = set(_folders())
    proc = start_nexus(project, "run", "work")
    assert wait_for(count.exists, timeout=30)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    mine = [p for p in _folders() if p not in before]

    def ended() -> bool:
        return any(" rc " in (p / "status").read_text() for p in mine if (p / "status").exists())

    most = watch_spools(lambda: mine, ended)
    assert ended(), "the command did not outlive Nexus"
    assert most <= CAP + SLACK, most
    result = project.run("resume", "-v")
    assert result.code == 0, result
    # the command's own last line, read back from its spool (the command's text holds it too)
    assert "> the-last-line" in result.stdout, result
    assert count.read_text() == "once\n"  # never run again


def _outputs(stdout: str) -> list[tuple[int, str, str]]:
    """(command index, stream, line) of every ``command.output`` event of a ``--format json`` run."""
    events = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return [(e["index"], e["stream"], e["line"]) for e in events if e["event"] == "command.output"]


def test_commands_take_the_spool_files_of_earlier_ones_and_show_only_their_own_output(
    nexus_project, sshbed, shared_dir
):
    runs = [f"    run('echo out-{i}; echo err-{i} >&2')\n" for i in range(8)]
    # The last commands save the run's status file and count its spools (their own included);
    # $nexus_d is the wrapper's name for the run's folder on the host.
    runs.append(f"    run('cp \"$nexus_d/status\" {shared_dir}/status')\n")
    runs.append('    run(\'ls "$nexus_d" | grep -c "[.]out$"\')\n')
    project = _project(nexus_project, sshbed, "".join(runs))
    result = project.run("run", "work", "--format", "json")
    assert result.code == 0, result.stderr
    shown = _outputs(result.stdout)
    streams = (("stdout", "out"), ("stderr", "err"))
    expected = [(i, stream, f"{word}-{i}") for i in range(8) for stream, word in streams]
    assert sorted(x for x in shown if x[0] < 8) == sorted(expected)
    (count,) = [line for index, _, line in shown if index == 9]
    assert int(count) <= 2, count  # the first command's files serve the others (one pair at a time)
    status = (shared_dir / "status").read_text().splitlines()
    took = [line.split() for line in status if " out " in line]
    assert len(took) >= 7, status
    assert all(words[2].endswith(".0") for words in took), status  # the first command's spool, over and over


def test_tasks_running_at_once_on_a_host_never_share_a_spool(nexus_project, sshbed):
    """Two tasks on one host at once, commands of different lengths: files freed by one task's
    commands serve the other's too, and every line stays its own command's."""
    body = "".join(f"    run('sleep 0.0{i % 3}; echo a-{i}; echo a-err-{i} >&2')\n" for i in range(10))
    project = _project(nexus_project, sshbed, body)
    h1 = sshbed.hosts[0].address
    other = "".join(f"    run('echo b-{i}; sleep 0.0{(i + 1) % 3}; echo b-err-{i} >&2')\n" for i in range(10))
    project.write(project.nexusfile.read_text() + f"\n\n@task(on=[{h1!r}])\ndef other():\n{other}")
    result = project.run("run", "work", "other", "--format", "json")
    assert result.code == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    outputs = [e for e in events if e["event"] == "command.output"]
    shown = sorted((e["task"], e["index"], e["stream"], e["line"]) for e in outputs)
    expected = sorted(
        [("work", i, "stdout", f"a-{i}") for i in range(10)]
        + [("work", i, "stderr", f"a-err-{i}") for i in range(10)]
        + [("other", i, "stdout", f"b-{i}") for i in range(10)]
        + [("other", i, "stderr", f"b-err-{i}") for i in range(10)]
    )
    assert shown == expected
    starts = {e["task"]: e["ts"] for e in events if e["event"] == "task.start"}
    stops = {e["task"]: e["ts"] for e in events if e["event"] == "task.stop"}
    assert starts["work"] < stops["other"] and starts["other"] < stops["work"]  # they ran at once


def test_files_a_background_job_still_writes_to_are_not_taken(nexus_project, sshbed):
    project = _project(
        nexus_project,
        sshbed,
        "    run('(sleep 0.8; echo LATE; echo LATE-err >&2) & echo started')\n"
        "    run('echo one')\n"
        "    run('sleep 1.5; echo two')\n"
        "    run('echo three')\n",
    )
    result = project.run("run", "work", "--format", "json")
    assert result.code == 0, result.stderr
    assert _outputs(result.stdout) == [(0, "stdout", "started"), (1, "stdout", "one"), (2, "stdout", "two"),
                                       (3, "stdout", "three")]  # fmt: skip


def test_resume_shows_the_output_a_command_wrote_into_files_it_took(nexus_project, sshbed, shared_dir):
    count = shared_dir / "count"
    project = _project(
        nexus_project,
        sshbed,
        "    run('echo zero')\n"
        "    run('echo one')\n"
        f"    run('echo once >> {count}; echo two-start; sleep 3; echo two-end')\n",
    )
    before = set(RUNS.iterdir()) if RUNS.exists() else set()
    with stopped(start_nexus(project, "run", "work")) as proc:
        assert wait_for(count.exists, timeout=30)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    folders = [p for p in RUNS.iterdir() if p.is_dir() and p not in before]
    status = "".join((p / "status").read_text() for p in folders if (p / "status").exists())
    assert " out " in status, status  # the command being resumed wrote into an earlier one's files
    result = project.run("resume")
    assert result.code == 0, result
    assert "two-end" in result.stdout + result.stderr
    assert count.read_text() == "once\n"  # never run again


def test_a_followed_spool_the_keeper_cut_on_a_host_shows_no_hole(nexus_project, sshbed, tmp_path):
    """The follower (tail -f on the host) fell behind the keeper: it read the front the keeper
    gave back as NUL bytes, which -v and JSON showed as a "line" of megabytes of ^@, and
    dropped millions of lines without a word."""
    project = _project(nexus_project, sshbed, f"    run({FAST!r})\n", spool_max_bytes=CAP)
    check_fast_run(project, "work", tmp_path)
