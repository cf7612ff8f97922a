"""Reliability through the real CLI: closed output pipes, a damaged state database, two runs
of one project at once, control sequences from hosts."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import read_until, run_in_pty, start_nexus, wait_for

from nexus_core.output.safe import clean, json_safe, terminal_safe

# --- a closed output pipe -------------------------------------------------------------------

CHATTY = """
from nexus_core import task, run

@task
def talk():
    run("for i in $(seq 1 3000); do echo line $i; done")

@task(deps=[talk])
def after():
    run("echo after > after.txt; for i in $(seq 1 500); do echo more $i; done")

@task(deps=[after])
def bad():
    run("echo bad > bad.txt; exit 5")
"""


def _state(project) -> dict[str, str]:
    db = Path(project.env["XDG_STATE_HOME"]) / "nexus" / "state.db"
    con = sqlite3.connect(db)
    try:
        return dict(con.execute("SELECT task, status FROM tasks").fetchall())
    finally:
        con.close()


@pytest.mark.parametrize("both", [False, True], ids=["stdout-closed", "stdout-and-stderr-closed"])
@pytest.mark.parametrize("mode", ["-v", "-q", "--format=json"])
def test_a_closed_output_pipe_never_stops_the_run(nexus_project, both, mode):
    nexus_project.write(CHATTY)
    stderr = subprocess.STDOUT if both else subprocess.PIPE
    proc = start_nexus(nexus_project, "run", "after", mode, stderr=stderr)
    assert proc.stdout is not None
    proc.stdout.readline()  # `| head -1`
    proc.stdout.close()
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert (nexus_project.root / "after.txt").read_text() == "after\n"
    assert _state(nexus_project) == {"talk": "ok", "after": "ok"}
    if err:
        assert "Traceback" not in err and "BrokenPipe" not in err and "internal error" not in err


def test_with_a_closed_pipe_the_exit_code_is_the_tasks(nexus_project):
    nexus_project.write(CHATTY)
    proc = start_nexus(nexus_project, "run", "bad", "-v", stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    proc.stdout.readline()
    proc.stdout.close()
    proc.wait(timeout=60)
    assert proc.returncode == 1
    assert (nexus_project.root / "bad.txt").exists()
    assert _state(nexus_project)["bad"] == "failed"


@pytest.mark.parametrize("closed", [">&-", ">&- 2>&-", "<&- >&-"])
@pytest.mark.parametrize("mode", ["", "-v"])
def test_closed_standard_descriptors_are_output_dropped_not_a_failure(nexus_project, closed, mode):
    """`nexus run >&-`: Python has no sys.stdout at all; the run's outcome stands."""
    nexus_project.write(CHATTY)
    env = {**os.environ, **nexus_project.env, "NO_COLOR": "1", "CI": "1"}
    script = f'"$@" {mode} {closed}'
    for task, code in (("after", 0), ("bad", 1)):
        proc = subprocess.run(["sh", "-c", script, "sh", sys.executable, "-m", "nexus_core", "run", task],
                              cwd=nexus_project.root, env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
        assert proc.returncode == code, (task, proc.stderr)
        assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
        assert "subscriber 'output' failed" not in proc.stderr, proc.stderr
    assert _state(nexus_project) == {"talk": "ok", "after": "ok", "bad": "failed"}


def test_a_full_disk_under_stdout_is_said_not_called_a_bug(nexus_project):
    """`nexus pipelines > /dev/full` said "internal error ... This is a bug in Nexus"; a run
    told "event subscriber 'output' failed". A command that ran no task now exits 1 saying its
    output is lost; a run keeps its tasks' exit code."""
    nexus_project.write(CHATTY)
    env = {**os.environ, **nexus_project.env, "NO_COLOR": "1", "CI": "1"}
    for args, code in ((["pipelines"], 1), (["pipelines", "--format", "json"], 1), (["list"], 1),
                       (["run", "after", "-v"], 0), (["run", "bad"], 1)):  # fmt: skip
        with open("/dev/full", "w") as full:
            proc = subprocess.run([sys.executable, "-m", "nexus_core", *args], cwd=nexus_project.root, env=env,
                                  stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)  # fmt: skip
        assert proc.returncode == code, (args, proc.stderr)
        assert "could not write to standard output (No space left on device)" in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, (args, proc.stderr)
        assert "subscriber" not in proc.stderr, (args, proc.stderr)
    assert (nexus_project.root / "after.txt").exists()


def test_head_in_a_shell_pipeline(nexus_project):
    nexus_project.write(CHATTY)
    env = {**os.environ, **nexus_project.env, "NO_COLOR": "1", "CI": "1"}
    cmd = f"{sys.executable} -m nexus_core run after -v 2>&1 | head -1; echo rc=${{PIPESTATUS[0]}}"
    out = subprocess.run(["bash", "-c", cmd], cwd=nexus_project.root, env=env, capture_output=True, text=True,
                         timeout=60, check=False)  # fmt: skip
    assert out.stdout.splitlines()[-1] == "rc=0", out
    assert (nexus_project.root / "after.txt").exists()


# --- a damaged state database ---------------------------------------------------------------

SIMPLE = """
from nexus_core import task, run

@task
def hello():
    run("echo hi >> ran.txt")
"""


def _db(project) -> Path:
    return Path(project.env["XDG_STATE_HOME"]) / "nexus" / "state.db"


def _settle(db: Path) -> None:
    """Everything into the main file, as after SQLite's automatic checkpoints."""
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()


def _truncate(path: Path) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)


def _overwrite_middle(path: Path) -> None:
    with open(path, "r+b") as fh:
        fh.seek(4096)
        fh.write(os.urandom(8192))


def _random_bytes(path: Path) -> None:
    path.write_bytes(os.urandom(40000))


def _text(path: Path) -> None:
    path.write_text("this is not a database\n")


def _emptied(path: Path) -> None:
    """`: > state.db`: SQLite took an empty file for a new database (every run gone, no word)."""
    path.write_bytes(b"")
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


@pytest.mark.parametrize("damage", [_truncate, _overwrite_middle, _random_bytes, _text, _emptied],
                         ids=["truncated", "overwritten", "random-bytes", "text", "emptied"])  # fmt: skip
def test_a_damaged_state_database_is_moved_aside_and_replaced(nexus_project, damage):
    nexus_project.write(SIMPLE)
    for _ in range(6):  # a database of several pages
        assert nexus_project.run("run", "hello").code == 0
    db = _db(nexus_project)
    _settle(db)
    damage(db)

    result = nexus_project.run("run", "hello")
    assert result.code == 0, result
    assert "internal error" not in result.stderr and "This is a bug" not in result.stderr
    assert "permission" not in result.stderr.lower()
    assert "damaged" in result.stderr and "moved it to" in result.stderr
    warning = next(line for line in result.stderr.splitlines() if "moved it to" in line)
    assert "was damaged (" in warning and "***" not in result.stderr, result.stderr  # one line, SQLite's words
    moved = [p for p in db.parent.iterdir() if p.name.startswith("state.db.damaged-")]
    assert len(moved) == 1
    assert re.fullmatch(r"state\.db\.damaged-\d{8}T\d{6}Z", moved[0].name)

    listing = nexus_project.run("pipelines")
    assert listing.code == 0, listing
    assert "damaged" in listing.stdout and str(moved[0]) in listing.stdout
    assert "hello" in listing.stdout  # the run after the recovery is recorded
    data = nexus_project.run("pipelines", "--format", "json").json()
    assert data["recovered"]["moved_to"] == str(moved[0])
    assert [r["pipeline"] for r in data["runs"]] == ["hello"]


def test_every_state_command_reports_a_damaged_database_without_a_bug_message(nexus_project):
    nexus_project.write(SIMPLE)
    assert nexus_project.run("run", "hello").code == 0
    for args in (["pipelines"], ["pipelines", "--interrupted"], ["resume"], ["pipelines", "discard", "x"]):
        _settle(_db(nexus_project))
        _random_bytes(_db(nexus_project))
        result = nexus_project.run(*args)
        assert "This is a bug" not in result.stderr and "Traceback" not in result.stderr, result
        assert "permission" not in result.stderr.lower(), result
        assert "damaged" in result.stderr, result


def test_a_state_database_that_is_a_folder_is_named_as_such(nexus_project, tmp_path):
    folder = tmp_path / "state.db"
    folder.mkdir()
    result = nexus_project.run("pipelines", env={"NEXUS_STATE_DB": str(folder)})
    assert result.code == 2, result
    assert f"{folder} is a folder, not a database" in result.stderr and "permission" not in result.stderr, result


def test_a_state_path_that_is_no_database_file_of_ours_is_never_moved(nexus_project, tmp_path):
    # NEXUS_STATE_DB=/dev/null (as root, moving it broke the machine's /dev/null), a named pipe
    # (reading it waits for a writer) or the nexusfile itself: left as they are; the run goes
    # on unrecorded, and commands that need the database say why and how to fix it.
    nexus_project.write(SIMPLE)
    nexusfile = nexus_project.root / "nexusfile.py"
    pipe = tmp_path / "state.db"
    os.mkfifo(pipe)
    for path, why in ((pipe, "it is a named pipe"), (nexusfile, "it is not an SQLite database")):
        before = nexusfile.read_bytes()
        result = nexus_project.run("run", "hello", env={"NEXUS_STATE_DB": str(path)}, timeout=60)
        assert result.code == 0, result
        assert f"{path} cannot be the run-state database: {why}" in result.stderr, result.stderr
        assert "this run is not recorded" in result.stderr and "moved it to" not in result.stderr
        assert nexusfile.read_bytes() == before and path.exists()
        assert not [p for p in path.parent.iterdir() if ".damaged-" in p.name or p.name.endswith(".lock")]
        listing = nexus_project.run("pipelines", env={"NEXUS_STATE_DB": str(path)}, timeout=60)
        assert listing.code == 2 and "point NEXUS_STATE_DB at a file of its own" in listing.stderr, listing
    assert stat.S_ISFIFO(os.stat(pipe).st_mode)


def test_a_state_database_that_cannot_be_written_leaves_the_run_unrecorded_with_a_warning(nexus_project):
    nexus_project.write(SIMPLE)
    assert nexus_project.run("run", "hello").code == 0
    db = _db(nexus_project)
    _settle(db)
    made = subprocess.run(["chattr", "+i", str(db)], capture_output=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"chattr +i is not available here: {made.stderr.decode().strip()}")
    try:
        result = nexus_project.run("run", "hello")
    finally:
        subprocess.run(["chattr", "-i", str(db)], check=False)
    assert result.code == 0, result
    assert "This is a bug" not in result.stderr and "internal error" not in result.stderr, result.stderr
    assert "cannot write the run-state database" in result.stderr and "not recorded" in result.stderr
    assert "hello" in result.stdout


@pytest.mark.parametrize(
    "args",
    [["pipelines"], ["resume"], ["validate"], ["list"], ["run", "hello", "-n"], ["preflight", "hello"], ["logs"],
     ["artifacts"], ["config", "show"], ["policy", "check", "hello"], ["hosts", "scan"], ["hosts", "verify"]],
    ids=lambda a: "-".join(a[:2]),
)  # fmt: skip
def test_log_level_is_accepted_by_every_command_that_opens_the_state(nexus_project, args):
    nexus_project.write(SIMPLE)
    result = nexus_project.run(*args, "--log-level", "debug")
    assert "No such option" not in result.stderr, result


# --- two runs of one project ----------------------------------------------------------------

GATED = """
from nexus_core import task, run

@task
def slow():
    run("echo slow-start >> order.txt; touch started; "
        "for i in $(seq 1 600); do [ -f go ] && break; sleep 0.05; done; echo slow-end >> order.txt")

@task
def quick():
    run("echo quick >> order.txt")
"""


def test_a_second_run_of_the_project_waits_for_the_first(nexus_project):
    nexus_project.write(GATED)
    first = start_nexus(nexus_project, "run", "slow")
    try:
        assert wait_for(lambda: (nexus_project.root / "started").exists(), timeout=30)
        refused = nexus_project.run("run", "quick", "--no-wait")
        assert refused.code == 2, refused
        assert "Another run of this project is in progress" in refused.stderr
        assert f"pid {first.pid}" in refused.stderr and "slow" in refused.stderr
        run_id = nexus_project.run("pipelines", "--format", "json").json()["runs"][0]["id"]
        assert f"run {run_id}" in refused.stderr

        timed_out = nexus_project.run("run", "quick", "--lock-timeout", "0.3")
        assert timed_out.code == 2 and "after waiting" in timed_out.stderr, timed_out
        # another state database (NEXUS_STATE_DB) is still the same project on the same hosts
        other = nexus_project.run("run", "quick", "--no-wait",
                                  env={"NEXUS_STATE_DB": str(nexus_project.root / "other.db")})  # fmt: skip
        assert other.code == 2 and "Another run of this project is in progress" in other.stderr, other

        err_file = nexus_project.root / "second.err"
        with open(err_file, "w") as err:
            second = start_nexus(nexus_project, "run", "quick", stderr=err)
            assert wait_for(lambda: "waiting for" in err_file.read_text(), timeout=30)
            assert not (nexus_project.root / "order.txt").read_text().count("quick")
            (nexus_project.root / "go").touch()
            second.communicate(timeout=60)
        assert second.returncode == 0
        assert f"run {run_id} (slow, pid {first.pid}" in err_file.read_text()
    finally:
        (nexus_project.root / "go").touch()
        first.communicate(timeout=60)
    assert (nexus_project.root / "order.txt").read_text().split() == ["slow-start", "slow-end", "quick"]


def test_a_lock_left_by_a_killed_run_is_taken_over(nexus_project):
    nexus_project.write(GATED)
    first = start_nexus(nexus_project, "run", "slow")
    assert wait_for(lambda: (nexus_project.root / "started").exists(), timeout=30)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    result = nexus_project.run("run", "quick", "--no-wait")
    assert result.code == 0, result
    (nexus_project.root / "go").touch()  # let the orphaned command end


def test_a_killed_run_not_yet_collected_by_its_parent_is_crashed_not_running(nexus_project):
    """Killed with kill -9, nexus stays a zombie until its parent waits for it (a script, a CI
    runner): it holds no lock and runs nothing, so it must not count as running."""
    nexus_project.write(GATED)
    root = nexus_project.root
    crashed = start_nexus(nexus_project, "run", "slow")
    assert wait_for(lambda: (root / "started").exists(), timeout=30)
    crashed.send_signal(signal.SIGKILL)
    assert wait_for(lambda: Path(f"/proc/{crashed.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z")
    try:
        listed = nexus_project.run("pipelines", "--format", "json").json()["runs"][0]
        assert listed["status"] == "crashed", listed
        (root / "go").touch()  # the orphaned command ends
        assert wait_for(lambda: "slow-end" in (root / "order.txt").read_text(), timeout=30)
        resumed = nexus_project.run("resume")
        assert resumed.code == 0, resumed
        assert (root / "order.txt").read_text().split() == ["slow-start", "slow-end"]  # not started again
    finally:
        crashed.communicate(timeout=30)


def test_resume_takes_the_lock_too(nexus_project):
    nexus_project.write(GATED + HOLD)
    root = nexus_project.root
    crashed = start_nexus(nexus_project, "run", "slow")
    assert wait_for(lambda: (root / "started").exists(), timeout=30)
    crashed.send_signal(signal.SIGKILL)
    crashed.communicate(timeout=30)
    (root / "go").touch()  # the orphaned command ends
    assert wait_for(lambda: "slow-end" in (root / "order.txt").read_text(), timeout=30)
    holder = start_nexus(nexus_project, "run", "hold")
    try:
        assert wait_for(lambda: (root / "held").exists(), timeout=30)
        refused = nexus_project.run("resume", "--no-wait")
        assert refused.code == 2, refused
        assert "Another run of this project is in progress" in refused.stderr and "hold" in refused.stderr
    finally:
        (root / "go2").touch()
        holder.communicate(timeout=60)
    resumed = nexus_project.run("resume", "--no-wait")
    assert resumed.code == 0, resumed


HOLD = """
@task
def hold():
    run("touch held; for i in $(seq 1 600); do [ -f go2 ] && break; sleep 0.05; done")
"""


# --- control sequences from hosts -----------------------------------------------------------

NASTY = r"""
from nexus_core import task, run

@task
def nasty():
    run(r"printf 'a\033]0;pwned\007b\n'; printf 'c\033[2Jd\n'; printf 'e\302\233f\n'; "
        r"printf 'g\033]8;;http://x.example\033\\link\033]8;;\033\\h\n'; printf 'rtl\342\200\256x\n'")

@task
def nasty_fail():
    run(r"printf 'oops\033]0;pwned\007\n'; exit 3")
"""

ESC_NOT_SGR = re.compile(r"\x1b(?!\[[0-9;]*m)|[\x00-\x08\x0b-\x1a\x1c-\x1f\x7f-\x9f\u202e]")


@pytest.mark.parametrize("mode", ["-v", "-q", "normal"])
def test_text_output_never_carries_control_sequences_from_hosts(nexus_project, mode):
    nexus_project.write(NASTY)
    args = ["run", "nasty", "nasty_fail", "--continue-on-error"] + ([] if mode == "normal" else [mode])
    result = nexus_project.run(*args, env={"FORCE_COLOR": "1", "NO_COLOR": ""})
    assert result.code == 1, result
    for text in (result.stdout, result.stderr):
        assert not ESC_NOT_SGR.search(text), repr(text)
    assert "\x1b[" in result.stdout + result.stderr  # Nexus's own colours are kept
    assert "oops^[]0;pwned^G" in result.stderr  # the failure's output tail, visible
    if mode == "-v":
        assert "a^[]0;pwned^Gb" in result.stdout
        assert "c^[[2Jd" in result.stdout and "e<U+009B>f" in result.stdout and "rtl<U+202E>x" in result.stdout


def test_json_output_escapes_control_sequences(nexus_project):
    nexus_project.write(NASTY)
    result = nexus_project.run("run", "nasty", "--format", "json")
    assert result.code == 0, result
    assert not ESC_NOT_SGR.search(result.stdout.replace("\x1b", "")), repr(result.stdout)
    assert "\x1b" not in result.stdout
    lines = [e["line"] for e in result.of("command.output")]
    assert "a\x1b]0;pwned\x07b" in lines and "e\x9bf" in lines  # exact text once decoded
    assert "\\u001b]0;pwned\\u0007" in result.stdout and "\\u009b" in result.stdout


def test_on_a_terminal_the_window_title_cannot_be_set(nexus_project):
    nexus_project.write(NASTY)
    env = {**os.environ, **nexus_project.env, "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    env.pop("CI", None)
    code, screen = run_in_pty(["run", "nasty", "-v"], nexus_project.root, env)
    assert code == 0, screen
    assert "\x1b]0;pwned" not in screen and "\x1b[2J" not in screen and "\x1b]8;" not in screen
    assert "^[]0;pwned^G" in screen


def test_clean_helpers():
    assert clean("plain text\tand tab") == "plain text\tand tab"
    assert clean("50%\r100%") == "100%"
    assert clean("a\nb") == "a^Jb" and clean("a\nb", multiline=True) == "a\nb"
    assert terminal_safe("\x1b[32mok\x1b[0m \x1b]0;t\x07") == "\x1b[32mok\x1b[0m ^[]0;t^G"
    assert json.loads(json_safe(json.dumps("x\x9b\u202ey", ensure_ascii=False))) == "x\x9b\u202ey"
    assert "\x9b" not in json_safe(json.dumps("x\x9by", ensure_ascii=False))


# --- smaller things -------------------------------------------------------------------------


def test_a_folder_without_a_nexusfile_is_not_reported_as_missing(nexus_project, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = nexus_project.run("validate", "-c", str(empty))
    assert result.code == 2
    assert "does not exist" not in result.stderr
    assert "is a folder without a nexusfile.py" in result.stderr
    assert result.stderr.count(str(empty)) == 1, result.stderr  # the folder named once
    devnull = nexus_project.run("validate", env={"NEXUS_CONFIG": "/dev/null"})
    assert devnull.code == 2
    assert "does not exist" not in devnull.stderr and "not a regular file" in devnull.stderr


@pytest.mark.parametrize("call", ["os._exit(3)", "os.abort()"])
@pytest.mark.parametrize("where", ["body", "top"])
def test_os_exit_in_a_nexusfile_is_reported_by_validate(nexus_project, call, where):
    top = call if where == "top" else "pass"
    body = call if where == "body" else "pass"
    nexus_project.write(f"""
import os
from nexus_core import task, run
{top}

@task
def t():
    run("echo hi")
    {body}
""")
    result = nexus_project.run("validate")
    assert result.code == 2, result
    name = call.split("(")[0]
    assert f"the nexusfile called {name}(" in result.stderr
    assert "nexusfile.py:" in result.stderr
    as_json = nexus_project.run("validate", "--format", "json")
    assert as_json.json()["valid"] is False


def test_task_stop_counts_only_commands_that_ran(nexus_project):
    nexus_project.write("""
from nexus_core import task, run

@task
def t():
    run("true")
    run("exit 4")
    run("echo never")
    run("echo never again")
""")
    result = nexus_project.run("run", "t", "--format", "json")
    assert result.code == 1
    (stop,) = result.of("task.stop")
    assert stop["commands_executed"] == 2


ADOPTED = """
from nexus_core import config, task, run

config(interrupt_grace=1, terminate_grace=1)

@task
def slow():
    run("echo A >> count; sleep 31.7; echo B >> count", timeout=3)

@task
def retried():
    run("echo A >> count; sleep 1.3; exit 7", retries=2, retry_delay=0)

@task
def waited():
    run("echo A >> count; sleep 2.3; echo B >> count")

@task
def loud():
    run("echo A >> count; head -c 200000 /dev/zero | tr '\\\\0' y | fold -w 100; sleep 1.9")

@task
def trapped():
    run("trap '' INT TERM; echo A >> count; sleep 31.9; echo B >> count", timeout=3)
"""


def _killed_during(nexus_project, task: str) -> None:  # type: ignore[no-untyped-def]
    """``nexus run TASK`` killed with kill -9 once its command started (and reaped)."""
    nexus_project.write(ADOPTED)
    proc = start_nexus(nexus_project, "run", task)
    assert wait_for(lambda: (nexus_project.root / "count").exists(), timeout=30)
    proc.kill()
    proc.communicate(timeout=30)


def _interrupt_the_resume(nexus_project) -> str:  # type: ignore[no-untyped-def]
    """``nexus resume`` stopped with Ctrl+C once it waits for command #1; its JSON output."""
    resumed = start_nexus(nexus_project, "resume", "--format", "json")
    assert "command #1 running" in read_until(resumed, lambda line: "command #1 running" in line)
    resumed.send_signal(signal.SIGINT)
    rest, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 130, (rest, err)
    return rest


def _sleeping(value: str) -> list[str]:
    ps = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [line for line in ps.splitlines() if f"sleep {value}" in line and "sh -c" not in line]


def test_a_command_still_running_at_the_resume_is_stopped_at_its_timeout_not_started_again(nexus_project):
    _killed_during(nexus_project, "slow")
    try:
        out = nexus_project.run("resume", timeout=60)
        assert out.code == 4, out
        assert "still ran at the resume, and was stopped" in out.stdout + out.stderr, out
        assert (nexus_project.root / "count").read_text().split() == ["A"]
        assert wait_for(lambda: not _sleeping("31.7"), timeout=10), _sleeping("31.7")
    finally:
        for line in _sleeping("31.7"):
            with contextlib.suppress(OSError):
                os.kill(int(line.split()[0]), signal.SIGKILL)


@pytest.mark.parametrize("how", ["timeout", "ctrl-c"])
def test_a_command_ignoring_term_at_the_resume_is_killed_not_left_running(nexus_project, how):
    """SIGTERM ended the command's wrapper but not the command (it ignores TERM and INT): the
    resume, seeing the wrapper gone, said "was stopped" and left the command running for
    good. The process group is what is asked and signalled now, up to SIGKILL."""
    _killed_during(nexus_project, "trapped")
    try:
        if how == "timeout":
            out = nexus_project.run("resume", timeout=60)
            assert out.code == 4, out
            assert "still ran at the resume, and was stopped" in out.stdout + out.stderr, out
        else:
            _interrupt_the_resume(nexus_project)
        assert wait_for(lambda: not _sleeping("31.9"), timeout=10), _sleeping("31.9")
        assert (nexus_project.root / "count").read_text().split() == ["A"]
    finally:
        for line in _sleeping("31.9"):
            with contextlib.suppress(OSError):
                os.kill(int(line.split()[0]), signal.SIGKILL)


def test_a_command_that_survives_sigkill_at_the_resume_is_reported_not_waited_for_forever(nexus_project):
    """The status file names a process that SIGKILL does not end (here a zombie; on a host, one
    stuck in the kernel): the resume sends TERM at the timeout, KILL once after the grace, then
    gives up and reports it, never started again (it sent KILL every second, for ever)."""
    _killed_during(nexus_project, "slow")
    stuck = subprocess.Popen(["true"])  # never waited for: a zombie, which kill -0 still finds
    try:
        assert wait_for(lambda: Path(f"/proc/{stuck.pid}/stat").read_text().split(") ")[1][0] == "Z", timeout=10)
        (status,) = Path(nexus_project.env["XDG_CACHE_HOME"]).glob("nexus/runs/*/status")
        key = status.read_text().split()[0]
        with status.open("a") as fh:
            fh.write(f"{key} pid {stuck.pid}\n")
        out = nexus_project.run("resume", timeout=90)
        assert out.code == 4, out
        assert "it was still running on the host after SIGKILL: not started a second time" in out.stdout + out.stderr
        assert (nexus_project.root / "count").read_text().split() == ["A"]
    finally:
        stuck.wait(timeout=10)
        for line in _sleeping("31.7"):
            with contextlib.suppress(OSError):
                os.kill(int(line.split()[0]), signal.SIGKILL)


def test_ctrl_c_while_a_resume_waits_for_a_command_stops_that_command(nexus_project):
    _killed_during(nexus_project, "slow")
    try:
        rest = _interrupt_the_resume(nexus_project)
        assert wait_for(lambda: not _sleeping("31.7"), timeout=10), (_sleeping("31.7"), rest)
        assert (nexus_project.root / "count").read_text().split() == ["A"]
    finally:
        for line in _sleeping("31.7"):
            with contextlib.suppress(OSError):
                os.kill(int(line.split()[0]), signal.SIGKILL)


def test_a_command_that_failed_while_nexus_was_down_keeps_its_retries(nexus_project):
    _killed_during(nexus_project, "retried")
    assert wait_for(lambda: not _sleeping("1.3"), timeout=30)  # it failed with nobody watching
    out = nexus_project.run("resume", timeout=60)
    assert out.code == 1, out
    assert (nexus_project.root / "count").read_text().split() == ["A", "A", "A"]  # 1 + 2 retries


def test_sqlites_own_words_about_damage_are_shown_on_one_line():
    from nexus_core.state.recover import _one_line

    text = "*** in database main ***\nPage 7: btreeInitPage() returns error code 11\nPage 9: free space corruption"
    assert _one_line(text) == "Page 7: btreeInitPage() returns error code 11; Page 9: free space corruption"
    assert _one_line("file is not a database") == "file is not a database"


def test_a_command_the_resume_waited_for_says_so(nexus_project):
    _killed_during(nexus_project, "waited")
    out = nexus_project.run("resume", "--format", "json", timeout=60)
    assert out.code == 0, out
    [stop] = [e for e in out.of("command.stop") if e["index"] == 0]
    assert stop["reason"] == "finished while this resume waited for it" and stop["duration"] > 0.5, stop
    assert (nexus_project.root / "count").read_text().split() == ["A", "B"]


def test_output_a_resume_shows_only_in_part_says_how_much_was_left_out(nexus_project):
    _killed_during(nexus_project, "loud")
    assert wait_for(lambda: not _sleeping("1.9"), timeout=30)  # it ended with nobody watching
    out = nexus_project.run("resume", "-v", timeout=60)
    assert out.code == 0, out
    lines = [line.rsplit("] ", 1)[-1].removeprefix("> ") for line in out.stdout.splitlines() if "y" * 20 in line]
    assert lines and all(line == "y" * 100 for line in lines), lines[:3]  # whole lines only
    assert "bytes of output before this were not kept for the resume ...]" in out.stdout, out


@pytest.mark.parametrize(
    "args",
    [
        ("pipelines", "prune", "--older-than", "nan"),
        ("pipelines", "prune", "--older-than", "1e308"),
        ("exec", "local", "--timeout", "nan", "--", "echo"),
        ("exec", "local", "--timeout", "1e9", "--", "echo"),
        ("run", "quick", "--lock-timeout", "nan"),
        ("run", "quick", "--lock-timeout", "inf"),
        ("preflight", "quick", "--timeout", "inf"),
    ],
)
def test_numbers_of_seconds_or_days_on_the_command_line_are_finite_and_bounded(nexus_project, args):
    """``nan``, ``inf`` and absurd values are usage errors naming the option (exit 2): they
    were an internal error (prune), a problem blamed on the nexusfile (exec) or a wait that
    never ended (--lock-timeout nan)."""
    nexus_project.write('from nexus_core import task, run\n\n@task\ndef quick():\n    run("true")\n')
    out = nexus_project.run(*args, timeout=30)
    assert out.code == 2, out
    option = next(a for a in args if a.startswith("--") and a != "--")
    assert f"Invalid value for '{option}'" in out.stdout + out.stderr, out
    assert "internal error" not in out.stdout + out.stderr


def test_a_cache_folder_that_is_a_file_is_named_with_the_fix(nexus_project, tmp_path):
    """The run's status folders live under $XDG_CACHE_HOME: when it is a file, the failure
    names the folder and the setting, not just 'cannot start the command: Not a directory'."""
    nexus_project.write('from nexus_core import task, run\n\n@task\ndef quick():\n    run("true")\n')
    afile = tmp_path / "afile"
    afile.write_text("")
    out = nexus_project.run("run", "quick", env={"XDG_CACHE_HOME": str(afile)})
    assert out.code == 1, out
    text = out.stdout + out.stderr
    assert f"cannot make the run's status folder {afile}" in text, text
    assert f"XDG_CACHE_HOME={afile} must be a folder you can write in" in text, text


def test_a_local_command_that_removes_the_runs_status_folder_does_not_fail_the_next_ones(nexus_project):
    # A task that cleans ~/.cache takes Nexus's status folders with it: the next command's
    # spool files could not be made ("cannot start the command"), over SSH they were.
    nexus_project.write(
        "from nexus_core import task, run\n\n@task\ndef clean():\n"
        "    run('echo before; rm -rf \"${XDG_CACHE_HOME:-$HOME/.cache}/nexus/runs/\"*; echo after')\n"
        '    run("echo next-ok")\n    run("echo last-ok")\n'
    )
    result = nexus_project.run("run", "clean", "-v")
    assert result.code == 0, result
    assert "next-ok" in result.stdout and "last-ok" in result.stdout, result.stdout
