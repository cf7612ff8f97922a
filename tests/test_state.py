"""Durable run state: checkpoints survive SIGKILL, interrupted runs resume, pipelines are listed."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import run_in_pty, start_nexus, wait_for

from nexus_core.state.store import StateStore

# Three chains of tasks; every command appends its own name to log.txt exactly once when
# it really runs, so the log says what actually ran.
PIPELINE = """
from nexus_core import config, task, run

config(interrupt_grace=0.2, terminate_grace=0.2, parallel_limit=3)

def step(name, pause):
    # Prints before, during and after its pause: a kill of nexus meets it printing.
    run(f"echo {name} >> log.txt; for t in 1 2 3; do echo {name} tick $t; echo {name} warn $t >&2; sleep 0.01; "
        f"done; sleep {pause}; echo {name} done")

@task
def a1():
    for i in range(3):
        step(f"a1-{i}", 0.05)

@task(deps=[a1])
def a2():
    for i in range(3):
        step(f"a2-{i}", 0.07)

@task
def b1():
    for i in range(4):
        step(f"b1-{i}", 0.04)

@task(deps=[b1, a1])
def b2():
    for i in range(2):
        step(f"b2-{i}", 0.1)

@task(deps=[a2, b2])
def final():
    step("final-0", 0.02)
"""

ALL = [*(f"a1-{i}" for i in range(3)), *(f"a2-{i}" for i in range(3)), *(f"b1-{i}" for i in range(4)),
       *(f"b2-{i}" for i in range(2)), "final-0"]  # fmt: skip


def db(project) -> str:
    return str(Path(project.env["XDG_STATE_HOME"]) / "nexus" / "state.db")


def log_lines(project) -> list[str]:
    path = project.root / "log.txt"
    return path.read_text().split() if path.exists() else []


def store_outcome(project) -> dict[str, str]:
    """command name -> status, from the store (command names are in the command text)."""
    store = StateStore(db(project))  # opens (and, if the kill came first, creates) it like nexus would
    rows = store.db.execute("SELECT command, status FROM commands").fetchall()
    store.close()
    return {cmd.split()[1]: status for cmd, status in rows}


def forget_store(project) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(db(project) + suffix).unlink(missing_ok=True)


def check_store(project) -> None:
    if not Path(db(project)).exists():
        return
    store = StateStore(db(project))
    assert store.integrity() == []
    store.close()


def test_sigkill_at_random_points_never_corrupts_and_resume_runs_each_command_once(nexus_project):
    nexus_project.write(PIPELINE)
    rng = random.Random(int(os.environ.get("NEXUS_KILL_SEED", "7")))
    iterations = int(os.environ.get("NEXUS_KILL_ITERATIONS", "8"))
    for it in range(iterations):
        (nexus_project.root / "log.txt").unlink(missing_ok=True)
        proc = start_nexus(nexus_project, "run", "final", "--no-resume")
        time.sleep(rng.uniform(0.2, 1.0))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        time.sleep(0.3)  # orphaned commands may finish meanwhile: that is what the host probe is for
        ran = log_lines(nexus_project)
        assert len(ran) == len(set(ran)), f"iteration {it}: a command ran twice before the kill: {ran}"
        check_store(nexus_project)
        if not Path(db(nexus_project)).exists():
            assert ran == []
            continue
        recorded = store_outcome(nexus_project)
        for name, status in recorded.items():
            if status == "ok":
                assert name in ran, f"iteration {it}: store says {name} ran, log says not"
        unrecorded = [n for n in ran if recorded.get(n) not in ("ok",)]
        assert len(unrecorded) <= 3, f"iteration {it}: more than the running commands lost: {unrecorded}"
        store = StateStore(db(nexus_project))
        row = store.db.execute("SELECT status FROM runs").fetchone()
        store.close()
        if row is None:  # killed before the run was recorded: nothing may have run
            assert ran == [], f"iteration {it}: commands ran before the run was recorded: {ran}"
            continue
        if row[0] == "ok":  # the kill came after the run had ended: nothing to resume
            assert sorted(ran) == sorted(ALL)
            forget_store(nexus_project)
            continue
        # resume: each command must have run exactly once in the end
        out = start_nexus(nexus_project, "run", "final", "--resume")
        stdout, stderr = out.communicate(timeout=60)
        assert out.returncode == 0, (stdout, stderr)
        final = log_lines(nexus_project)
        assert sorted(final) == sorted(ALL), f"iteration {it}: {final}"
        check_store(nexus_project)
        forget_store(nexus_project)


def final_pause(seconds: float, source: str = PIPELINE) -> str:
    """The pipeline with its last step sleeping ``seconds`` (long enough to be caught running)."""
    return source.replace('step("final-0", 0.02)', f'step("final-0", {seconds})')


def stop_during(project, source: str, step: str, sig: int) -> int:  # type: ignore[no-untyped-def]
    """Run `nexus run final` on ``source``, send ``sig`` once ``step`` has started; the exit code."""
    project.write(source)
    proc = start_nexus(project, "run", "final")
    assert wait_for(lambda: step in log_lines(project), timeout=20)
    proc.send_signal(sig)
    proc.communicate(timeout=40)
    return proc.returncode


def test_interrupted_run_is_listed_and_resumed_with_the_resume_command(nexus_project):
    assert (
        stop_during(
            nexus_project, PIPELINE.replace('step(f"b2-{i}", 0.1)', 'step(f"b2-{i}", 3)'), "b2-0", signal.SIGINT
        )
        == 130
    )
    listed = json.loads(nexus_project.run("pipelines", "--interrupted", "--format", "json").stdout)["runs"]
    assert len(listed) == 1 and listed[0]["status"] == "interrupted" and listed[0]["requested"] == ["final"]
    run_id = listed[0]["id"]
    text = nexus_project.run("pipelines")
    assert run_id in text.stdout and "interrupted" in text.stdout
    out = nexus_project.run("resume", run_id)
    assert out.code == 0, out
    assert "done before the interruption" in out.stdout
    # b2-0 was stopped half-way (after its echo) by the interrupt, so it runs again; nothing else does
    assert sorted(log_lines(nexus_project)) == sorted([*ALL, "b2-0"])
    after = json.loads(nexus_project.run("pipelines", "--format", "json").stdout)["runs"]
    assert after[0]["id"] == run_id and after[0]["status"] == "ok"
    assert nexus_project.run("pipelines", "--interrupted").stdout.strip() == "No interrupted runs."


def test_without_a_terminal_a_run_starts_fresh_unless_resume_is_given(nexus_project):
    assert stop_during(nexus_project, final_pause(30), "final-0", signal.SIGTERM) == 143
    nexus_project.write(PIPELINE)
    fresh = nexus_project.run("run", "final", "-q")
    assert fresh.code == 0
    assert "was interrupted; starting fresh" in fresh.stderr
    assert log_lines(nexus_project).count("a1-0") == 2


def test_a_fresh_run_after_a_crash_warns_that_its_command_may_still_run(nexus_project):
    assert stop_during(nexus_project, final_pause(3), "final-0", signal.SIGKILL) == -signal.SIGKILL
    fresh = nexus_project.run("run", "final", "-q")
    assert fresh.code == 0, fresh
    assert "crashed; starting fresh (use --resume to continue it)" in fresh.stderr, fresh
    assert "final on local was running a command when run" in fresh.stderr
    assert "it may still be running there (--resume waits for it" in fresh.stderr


def test_resume_refuses_when_the_remaining_plan_changed_unless_forced(nexus_project):
    stop_during(nexus_project, final_pause(4), "final-0", signal.SIGKILL)
    nexus_project.write(PIPELINE.replace('step("final-0", 0.02)', 'step("final-CHANGED", 0.02)'))
    refused = nexus_project.run("run", "final", "--resume")
    assert refused.code == 2, refused
    assert "its remaining work changed (the nexusfile, task arguments or hosts)" in refused.stderr
    assert "Start fresh: nexus run " in refused.stderr and "--no-resume" in refused.stderr
    assert "task 'final'" in refused.stderr
    forced = nexus_project.run("run", "final", "--resume", "--force")
    assert forced.code == 0, forced
    assert "a1-0" in log_lines(nexus_project) and log_lines(nexus_project).count("a1-0") == 1


def test_an_unrelated_edit_does_not_block_resume(nexus_project):
    stop_during(nexus_project, final_pause(4), "final-0", signal.SIGKILL)
    edited = "# a comment that moves every line\n\n" + final_pause(4)
    nexus_project.write(edited)
    resumed = start_nexus(nexus_project, "run", "final", "--resume")
    # final-0 is still running as an orphan: the resume waits for it instead of starting it again
    stdout, stderr = resumed.communicate(timeout=90)
    assert resumed.returncode == 0, (stdout, stderr)
    assert log_lines(nexus_project).count("final-0") == 1


def test_status_files_are_removed_after_a_successful_run(nexus_project):
    nexus_project.write(PIPELINE)
    out = nexus_project.run("run", "final")
    assert out.code == 0
    runs = Path(nexus_project.env["XDG_CACHE_HOME"]) / "nexus" / "runs"
    assert not runs.exists() or not any(runs.iterdir())


def test_non_idempotent_task_is_not_resumed_blindly(nexus_project):
    source = final_pause(30, PIPELINE.replace("@task(deps=[a2, b2])", "@task(deps=[a2, b2], idempotent=False)"))
    stop_during(nexus_project, source, "final-0", signal.SIGINT)
    out = nexus_project.run("run", "final", "--resume")
    assert out.code == 2 and "idempotent=False" in out.stderr


def test_discard_forgets_an_interrupted_run(nexus_project):
    stop_during(nexus_project, final_pause(30), "final-0", signal.SIGINT)
    run_id = json.loads(nexus_project.run("pipelines", "--format", "json").stdout)["runs"][0]["id"]
    out = nexus_project.run("pipelines", "discard", run_id)
    assert out.code == 0 and "Discarded" in out.stdout
    assert nexus_project.run("resume").code == 2
    assert nexus_project.run("pipelines", "discard", "no-such-run").code == 2
    again = nexus_project.run("pipelines", "discard", run_id)
    assert again.code == 0 and "discarded already" in again.stdout, again
    empty = nexus_project.run("pipelines", "discard", "")
    assert empty.code == 2 and "No run id given" in empty.stderr, empty


def test_a_running_or_successful_run_is_not_discarded(nexus_project):
    """Discarding a run under way let `nexus pipelines prune` remove its status files."""
    nexus_project.write(final_pause(30))
    proc = start_nexus(nexus_project, "run", "final")
    try:
        assert wait_for(lambda: "final-0" in log_lines(nexus_project), timeout=20)
        run_id = nexus_project.run("pipelines", "--format", "json").json()["runs"][0]["id"]
        refused = nexus_project.run("pipelines", "discard", run_id)
        assert refused.code == 2 and f"Run {run_id} is still running (pid {proc.pid}" in refused.stderr, refused
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    nexus_project.write(PIPELINE)
    ok = nexus_project.run("run", "final", "--no-resume")
    assert ok.code == 0, ok
    ok_id = nexus_project.run("pipelines", "--format", "json").json()["runs"][0]["id"]
    refused = nexus_project.run("pipelines", "discard", ok_id)
    assert refused.code == 2 and "succeeded: there is nothing to discard" in refused.stderr, refused


def test_concurrent_runs_in_different_projects_share_the_store_safely(nexus_project, tmp_path):
    nexus_project.write(PIPELINE)
    other = tmp_path / "other"
    other.mkdir()
    (other / "nexusfile.py").write_text(PIPELINE)
    env = {**os.environ, **nexus_project.env, "CI": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "nexus_core", "run", "final", "-q"],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for cwd in (nexus_project.root, other, nexus_project.root.parent / "project")
    ]
    results = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), results
    check_store(nexus_project)
    runs = json.loads(nexus_project.run("pipelines", "--format", "json").stdout)["runs"]
    assert len(runs) == 3 and all(r["status"] == "ok" for r in runs)


@pytest.mark.slow
def test_sigkill_soak(nexus_project, monkeypatch):
    monkeypatch.setenv("NEXUS_KILL_ITERATIONS", "60")
    test_sigkill_at_random_points_never_corrupts_and_resume_runs_each_command_once(nexus_project)


def _interrupt_once(nexus_project) -> None:
    stop_during(nexus_project, final_pause(30), "final-0", signal.SIGINT)
    nexus_project.write(final_pause(30).replace("sleep {pause}", "sleep {pause}; true").replace("30)", "0.01)"))


def _answer_in_pty(nexus_project, answer: str) -> tuple[int, str]:
    env = {**os.environ, **nexus_project.env, "TERM": "xterm"}
    env.pop("CI", None)
    answers = {b"Resume? [Y/n/discard]": answer.encode() + b"\r"}
    return run_in_pty(["run", "final", "--force"], nexus_project.root, env, answers)


def test_terminal_prompt_shows_progress_and_resumes_on_yes(nexus_project):
    _interrupt_once(nexus_project)
    code, screen = _answer_in_pty(nexus_project, "y")
    assert code == 0, screen
    assert "was interrupted" in screen and "Completed:" in screen and "In progress:" in screen
    assert log_lines(nexus_project).count("a1-0") == 1


def test_terminal_prompt_discard_starts_fresh_and_forgets_the_run(nexus_project):
    _interrupt_once(nexus_project)
    code, screen = _answer_in_pty(nexus_project, "discard")
    assert code == 0, screen
    assert "Discarded run" in screen
    assert log_lines(nexus_project).count("a1-0") == 2
    runs = json.loads(nexus_project.run("pipelines", "--format", "json").stdout)["runs"]
    assert {r["status"] for r in runs} == {"ok", "discarded"}


MIGRATION = """
from nexus_core import task, run

@task
def migrate():
    run("echo start >> log; echo begun; sleep 2; echo finished-while-away; echo done >> log")
"""


@pytest.mark.parametrize("wait_before_resume", [False, True])
def test_a_command_running_at_a_kill_is_never_started_again(nexus_project, wait_before_resume):
    """kill -9 while the command sleeps between two output lines: it finishes anyway, once."""
    nexus_project.write(MIGRATION)
    log = nexus_project.root / "log"
    proc = start_nexus(nexus_project, "run", "migrate", "-v")
    assert wait_for(lambda: log.exists() and "start" in log.read_text(), timeout=20)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    if wait_before_resume:  # it finishes while nobody watches; resume shows its output
        assert wait_for(lambda: "done" in log.read_text(), timeout=20)
    out = start_nexus(nexus_project, "run", "migrate", "--resume", "-v")
    stdout, stderr = out.communicate(timeout=60)
    assert out.returncode == 0, (stdout, stderr)
    assert log.read_text().split() == ["start", "done"]
    assert "finished-while-away" in stdout, stdout


def test_a_command_that_failed_while_nexus_was_down_is_reported_not_run_again(nexus_project):
    nexus_project.write(MIGRATION.replace("echo done >> log", "echo done >> log; echo broken >&2; exit 4"))
    log = nexus_project.root / "log"
    proc = start_nexus(nexus_project, "run", "migrate")
    assert wait_for(lambda: log.exists() and "start" in log.read_text(), timeout=20)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert wait_for(lambda: "done" in log.read_text(), timeout=20)
    out = start_nexus(nexus_project, "run", "migrate", "--resume")
    stdout, stderr = out.communicate(timeout=60)
    assert out.returncode == 1, (stdout, stderr)
    assert log.read_text().split() == ["start", "done"]
    assert "exit code 4" in stdout + stderr and "broken" in stdout + stderr


def test_an_unchanged_database_skips_the_integrity_check_and_a_changed_one_does_not(tmp_path):
    from nexus_core.state.store import StateStore

    path = str(tmp_path / "state.db")
    StateStore(path).close()
    assert os.path.exists(path + "-checked")
    checks: list[str] = []
    real = StateStore._quick_check

    def counted(self: StateStore) -> str:
        checks.append(self.path)
        return real(self)

    StateStore._quick_check = counted  # type: ignore[method-assign]
    try:
        StateStore(path).close()
        assert checks == []  # nobody wrote it since the clean close
        os.utime(path, ns=(1, 1))  # someone else wrote it
        StateStore(path).close()
        assert checks == [path]
    finally:
        StateStore._quick_check = real  # type: ignore[method-assign]


def test_records_of_old_finished_runs_go_with_their_logs(nexus_project):
    # An interrupted run (kept: it can be resumed), then two runs that succeed.
    stop_during(nexus_project, final_pause(30), "final-0", signal.SIGINT)
    other = "@task\ndef other():\n    run('true')\n\n@task\ndef a1():"
    nexus_project.write(PIPELINE.replace("@task\ndef a1():", other))
    assert nexus_project.run("run", "other").code == 0
    assert nexus_project.run("run", "other").code == 0
    store = StateStore(db(nexus_project))
    try:
        runs = {r["id"]: r["status"] for r in store.db.execute("SELECT id, status FROM runs")}
        assert sorted(runs.values()) == ["interrupted", "ok", "ok"]
        # Fifteen days pass (log_retention_days is 14 by default).
        store.execute("UPDATE runs SET started = started - 15 * 86400, ended = ended - 15 * 86400", ())
    finally:
        store.close()
    assert nexus_project.run("run", "other").code == 0
    store = StateStore(db(nexus_project))
    try:
        left = {r["id"]: r["status"] for r in store.db.execute("SELECT id, status FROM runs")}
        orphans = store.db.execute("SELECT count(*) FROM commands WHERE run_id NOT IN (SELECT id FROM runs)")
        assert orphans.fetchone()[0] == 0  # their commands went with them
    finally:
        store.close()
    old_ok = [r for r, s in runs.items() if s == "ok"]
    assert not set(old_ok) & set(left), left
    assert [s for r, s in left.items() if r in runs] == ["interrupted"]  # still offered for resume
    assert sorted(left.values()) == ["interrupted", "ok"]  # and the run just made


def test_the_look_for_old_finished_runs_reads_no_plan(tmp_path):
    # A run's plan is kilobytes of JSON stored before its status and times: a look that read
    # the rows would read every plan of the history at every start (9 ms for 1,200 runs).
    store = StateStore(str(tmp_path / "state.db"))
    try:
        plan = store.db.execute("EXPLAIN QUERY PLAN " + StateStore.OLD_FINISHED + " LIMIT 1", (1.0,)).fetchall()
        details = " ".join(str(row[-1]) for row in plan)
        # Only rows already old enough to go are read: the index answers status and start.
        assert "USING INDEX runs_by_status (status=? AND started<?)" in details, details
    finally:
        store.close()


def test_resuming_a_failed_run_says_what_was_done_before_the_failure(nexus_project):
    """Tasks finished in a failed run were "done before the interruption" when it was resumed."""
    nexus_project.write(
        "from nexus_core import run, task\n\n"
        "@task\ndef a():\n    run('echo a >> ran.txt')\n\n"
        "@task(deps=[a])\ndef b():\n    run('test -f fixed && echo b >> ran.txt')\n"
    )
    assert nexus_project.run("run", "b").code == 1
    (nexus_project.root / "fixed").touch()
    out = nexus_project.run("resume")
    assert out.code == 0, out
    assert "done before the failure" in out.stdout and "interruption" not in out.stdout, out.stdout
    assert (nexus_project.root / "ran.txt").read_text().split() == ["a", "b"]


def test_discarding_a_crashed_run_warns_that_its_command_may_still_run(nexus_project):
    """`pipelines discard` of a run killed mid-command said only "Discarded run ...": the
    command went on, and nobody would wait for it any more."""
    stop_during(nexus_project, final_pause(2.5), "final-0", signal.SIGKILL)
    run_id = json.loads(nexus_project.run("pipelines", "--format", "json").stdout)["runs"][0]["id"]
    out = nexus_project.run("pipelines", "discard", run_id)
    assert out.code == 0 and "Discarded" in out.stdout, out
    assert "final on local was running a command when the run stopped" in out.stderr, out
    assert "discarding the run does not stop it" in out.stderr, out
    time.sleep(3)  # the orphan ends before the test's folder goes


def test_the_resume_prompt_counts_a_fleets_hosts_in_one_state_instead_of_listing_each():
    from types import SimpleNamespace

    from nexus_core.model import Host
    from nexus_core.state.resume import ResumePoint, describe

    labels = [f"10.0.0.{i}:2222" for i in range(1, 61)]
    hosts = [SimpleNamespace(host=Host(name=lb.split(":")[0], port=2222), commands=(1, 2, 3)) for lb in labels]
    plan = SimpleNamespace(
        order=["build", "deploy", "notify"],
        tasks={"deploy": SimpleNamespace(hosts=hosts), "notify": SimpleNamespace(hosts=[])},
    )
    record = SimpleNamespace(started=0.0, display_status="interrupted", pipeline="deploy", id="r1")
    point = ResumePoint(
        "r1",
        done_tasks={"build"},
        done_hosts={("deploy", lb) for lb in labels[:57]},
        start_at={("deploy", labels[57]): 1, ("deploy", labels[58]): 2, ("deploy", labels[59]): 2},
    )
    lines = describe(record, point, plan)  # type: ignore[arg-type]
    progress = next(line for line in lines if "In progress:" in line)
    assert progress == (
        "  In progress: deploy on 57 hosts (10.0.0.1:2222, 10.0.0.2:2222, 10.0.0.3:2222 and 54 more): done; "
        "deploy on 10.0.0.58:2222: 1/3 commands done; deploy on 10.0.0.59:2222: 2/3 commands done; "
        "deploy on 10.0.0.60:2222: 2/3 commands done"
    ), lines
    assert lines[-1] == "  Pending:     notify"


def test_a_refused_resume_names_the_command_that_changed_not_the_first_left_to_run():
    from nexus_core.state.resume import _what_changed

    then = [{"cmd": f"step {i}"} for i in range(1, 6)]
    now = [*then[:4], {"cmd": "step 5, edited"}]
    assert _what_changed(now, then, 0) == "command #5 changed"
    assert _what_changed(now[2:], then[2:], 2) == "command #5 changed"
    both = [{"cmd": "x"}, *now[1:]]
    assert _what_changed(both, then, 0) == "commands #1, #5 changed"
    assert _what_changed(now[:3], then, 0) == "commands were removed (it had 5, now 3)"
    assert _what_changed([*then, {"cmd": "6"}], then, 0) == "commands were added (it had 5, now 6)"
