"""Output spools stay bounded on disk (``spool_max_bytes``) while a command runs, whether Nexus
follows it or was killed, and resume still shows the end of the output and never reruns it."""

from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path

from helpers import FAST, check_fast_run, start_nexus, wait_for

#: spool_max_bytes of these tests, and what the keeper may overshoot by: one tick (1 s) of
#: the command's output (~2 MB/s here) plus the 64 KiB rounding of the cut.
CAP = 512 << 10
SLACK = 3 << 20
#: The command: a line of 200 kB every ~0.1 s, 8 MB in all, then a last line (one process).
BIG = (
    "echo once >> {count}; python3 -u -c 'import sys, time\n"
    'for i in range(40): sys.stdout.write("x" * 200000 + "\\n"); sys.stdout.flush(); time.sleep(0.1)\'; '
    "echo the-last-line"
)


def nexusfile(count: Path, on: str = "") -> str:
    where = f", on={on}" if on else ""
    return (
        "from nexus_core import config, run, task\n"
        f"config(spool_max_bytes={CAP})\n\n"
        f"@task({where[2:]})\n"
        f"def big():\n    run({BIG.format(count=count)!r})\n"
    )


def watch_spools(runs: Path, done) -> int:  # type: ignore[no-untyped-def]
    """The largest disk use (allocated bytes) of any spool file under ``runs`` until ``done()``."""
    most = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not done():
        for f in runs.glob("*/*.*"):
            if f.suffix in (".out", ".err"):
                with contextlib.suppress(FileNotFoundError):
                    most = max(most, f.stat().st_blocks * 512)
        time.sleep(0.05)
    return most


def _runs(project) -> Path:  # type: ignore[no-untyped-def]
    return Path(project.env["XDG_CACHE_HOME"]) / "nexus" / "runs"


def test_a_followed_local_spool_stays_bounded(nexus_project, tmp_path):
    count = tmp_path / "count"
    nexus_project.write(nexusfile(count))
    proc = start_nexus(nexus_project, "run", "big")
    most = watch_spools(_runs(nexus_project), lambda: proc.poll() is not None)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, (out, err)
    assert most <= CAP + SLACK, most
    assert count.read_text() == "once\n"


def test_a_local_spool_stays_bounded_after_kill_9_and_resume_shows_its_end(nexus_project, tmp_path):
    count = tmp_path / "count"
    nexus_project.write(nexusfile(count))
    proc = start_nexus(nexus_project, "run", "big")
    assert wait_for(lambda: count.exists(), timeout=30)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    runs = _runs(nexus_project)

    def ended() -> bool:
        return any(" rc " in s.read_text() for s in runs.glob("*/status"))

    most = watch_spools(runs, ended)
    assert ended(), "the command did not outlive Nexus"
    assert most <= CAP + SLACK, most
    result = nexus_project.run("resume", "--format", "text", "-v")
    assert result.code == 0, result
    # the command's own last line, read back from its spool (the command's text holds it too)
    assert "> the-last-line" in result.stdout, result
    assert count.read_text() == "once\n"  # never run again


def test_a_keeper_starting_in_a_folder_being_removed_makes_no_pid_file(tmp_path):
    """Started by the run's last command as the clean-up removes the run's folder, the keeper
    found its pid file gone and made it again, which left the folder behind (its rmdir
    failed): it leaves instead. The clean-up also tries again when its first rm left it."""
    import subprocess

    from nexus_core import markers
    from nexus_core.shell import keeper_script

    folder = tmp_path / "run@host"
    folder.mkdir()
    (folder / "status").write_text("k1 pid 1\nk1 rc 0\n")
    subprocess.run(["/bin/sh", "-c", keeper_script(), "nexus-keeper", str(folder), "4096"], timeout=30, check=True)
    assert not (folder / ".keeper").exists()
    line = markers.cleanup_line("r1", "h1")
    assert line.count("rm -rf") == 2 and " || " in line
    assert markers.cleanup_script("r1", "h1").count("rm -rf") == 2


def test_a_followed_local_spool_the_keeper_cut_shows_no_hole(nexus_project, tmp_path):
    nexus_project.write(
        f"from nexus_core import config, run, task\nconfig(spool_max_bytes={CAP})\n\n"
        f"@task\ndef fast():\n    run({FAST!r})\n"
    )
    check_fast_run(nexus_project, "fast", tmp_path)
