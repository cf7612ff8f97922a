"""On a host, a command's spool takes the files of an earlier command of the run whose output
Nexus has read (no two new files per command), never files a job of that command may still
write to; resume finds a command's output in the files it took."""

from __future__ import annotations

import json
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from nexus_core.testing import NexusProject
from nexus_core.testing.sshbed import HOME_ROOT, USER_KEY, SshBed
from tests.helpers import start_nexus, stopped, wait_for

pytestmark = [pytest.mark.ssh, pytest.mark.session_mode]  # session_mode: run again in exec mode (dev.py)

RUNS = HOME_ROOT / USER_KEY / ".cache" / "nexus" / "runs"


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder the remote test user can write (the bed's hosts are this machine)."""
    path = Path(tempfile.mkdtemp(prefix="nexus-spool-reuse-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _project(nexus_project: NexusProject, sshbed: SshBed, body: str) -> NexusProject:
    nexus_project.env["NEXUS_SSH_CONFIG"] = ""
    nexus_project.env.pop("SSH_AUTH_SOCK", None)
    h1 = sshbed.hosts[0].address
    nexus_project.write(
        "from nexus_core import config, run, task\n"
        f"config(ssh_user={USER_KEY!r}, ssh_identity={sshbed.key_path('ed25519')!r}, "
        f"ssh_known_hosts_file={sshbed.known_hosts!r}, ssh_port={sshbed.port})\n\n"
        f"@task(on=[{h1!r}])\n"
        f"def work():\n{body}"
    )
    return nexus_project


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
