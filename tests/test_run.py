"""Running local pipelines through the real CLI: order, parallelism, failures, retries, timeouts."""

from __future__ import annotations

import json

from helpers import pgrep, wait_for

# Two tasks that each wait (bounded) for the other to have started: both succeed only
# when they really run at the same time.
RENDEZVOUS = """
from nexus_core import config, task, run

WAIT = "for i in $(seq 200); do [ -f {other} ] && exit 0; sleep 0.05; done; exit 1"

@task
def a():
    run("touch a.started && " + WAIT.format(other="b.started"), timeout=30)

@task
def b():
    run("touch b.started && " + WAIT.format(other="a.started"), timeout=30)

@task(deps=[a, b])
def both():
    run("echo both done")
"""


def test_independent_tasks_run_concurrently(nexus_project):
    nexus_project.write(RENDEZVOUS)
    out = nexus_project.run("run", "both")
    assert out.code == 0, out
    assert "Completed" in out.stdout


def test_parallel_limit_one_runs_tasks_one_at_a_time(nexus_project):
    nexus_project.write(RENDEZVOUS.replace("seq 200", "seq 10"))
    out = nexus_project.run("run", "both", "-p", "1")
    assert out.code == 1, out
    assert "both" in out.stdout and "skipped" in out.stdout


def test_each_task_runs_once_even_when_requested_and_depended_on(nexus_project):
    nexus_project.write("""
        from nexus_core import task, run

        @task
        def base():
            run("echo base >> log.txt")

        @task(deps=[base])
        def left():
            run("echo left >> log.txt")

        @task(deps=["base"])
        def right():
            run("echo right >> log.txt")
    """)
    out = nexus_project.run("run", "left", "right", "base")
    assert out.code == 0, out
    lines = (nexus_project.root / "log.txt").read_text().split()
    assert sorted(lines) == ["base", "left", "right"]
    assert lines[0] == "base"


FAILING = """
from nexus_core import task, run

@task
def slow():
    run("sleep 0.5 && echo slow-finished > slow.txt")

@task
def broken():
    run("echo about to fail && exit 3")

@task(deps=[broken])
def after_broken():
    run("touch after_broken.txt")

@task(deps=[slow])
def after_slow():
    run("touch after_slow.txt")
"""


def test_failure_skips_dependents_lets_running_finish_and_stops_new_work(nexus_project):
    nexus_project.write(FAILING)
    out = nexus_project.run("run", "after_broken", "after_slow")
    assert out.code == 1, out
    root = nexus_project.root
    assert (root / "slow.txt").exists(), "a running task must be allowed to finish"
    assert not (root / "after_broken.txt").exists()
    assert not (root / "after_slow.txt").exists(), "no new work starts after a failure"
    assert "Command failed" in out.stderr
    assert "Exit code: 3" in out.stderr
    assert "about to fail" in out.stderr
    assert "failed (broken)" in out.stdout
    assert "skipped" in out.stdout and "after_broken" in out.stdout


def test_continue_on_error_runs_everything_not_depending_on_the_failure(nexus_project):
    nexus_project.write(FAILING)
    out = nexus_project.run("run", "after_broken", "after_slow", "--continue-on-error")
    assert out.code == 1, out
    assert (nexus_project.root / "after_slow.txt").exists()
    assert not (nexus_project.root / "after_broken.txt").exists()


def test_summary_names_succeeded_failed_and_skipped_tasks(nexus_project):
    nexus_project.write(FAILING)
    out = nexus_project.run("run", "after_broken", "after_slow", "--format", "json")
    stop = out.of("pipeline.stop")[0]
    assert stop["status"] == "failed" and stop["exit_code"] == 1
    assert stop["tasks_failed"] == ["broken"]
    assert "after_broken" in stop["tasks_skipped"]
    assert "slow" in stop["tasks_completed"]


def test_previous_commands_are_listed_when_a_later_one_fails(nexus_project):
    nexus_project.write("""
        from nexus_core import task, run

        @task
        def deploy():
            run("echo step one")
            run("echo step two")
            run("echo boom >&2; exit 1")
            run("echo never")
    """)
    out = nexus_project.run("run", "deploy")
    assert out.code == 1
    assert "Previous commands in this task succeeded:" in out.stderr
    assert "echo step one" in out.stderr and "echo step two" in out.stderr
    assert "boom" in out.stderr
    assert "never" not in out.stdout


def test_earlier_commands_skipped_or_failed_are_not_listed_as_succeeded(nexus_project):
    nexus_project.write("""
        from nexus_core import task, run

        @task
        def deploy():
            run("echo made", creates="/")
            run("echo oops; exit 2", continue_on_error=True)
            run("echo fine")
            run("exit 1")
    """)
    out = nexus_project.run("run", "deploy")
    assert out.code == 1
    assert "Previous commands in this task succeeded:" not in out.stderr, out.stderr
    assert "Previous commands in this task:" in out.stderr
    listed = out.stderr.split("Previous commands in this task:")[1].splitlines()[1:4]
    assert [line.strip() for line in listed] == [
        "○ echo made (skipped)",
        "✗ echo oops; exit 2 (failed, continue_on_error)",
        "✓ echo fine",
    ], listed


def test_retries_with_backoff_are_events_and_visible_lines(nexus_project):
    nexus_project.write("""
        from nexus_core import task, run

        @task
        def flaky():
            run("n=$(cat n 2>/dev/null || echo 0); echo $((n+1)) > n; [ $n -ge 2 ]",
                retries=4, retry_delay=0.05)
    """)
    out = nexus_project.run("run", "flaky", "--format", "json")
    assert out.code == 0, out
    retries = out.of("task.retry")
    assert [r["attempt"] for r in retries] == [2, 3]
    assert all(r["max_attempts"] == 5 for r in retries)
    assert (nexus_project.root / "n").read_text().strip() == "3"
    (nexus_project.root / "n").unlink()
    text = nexus_project.run("run", "flaky")
    assert text.code == 0
    assert "attempt 2/5" in text.stdout and "attempt 3/5" in text.stdout


def test_retries_exhausted_fail_the_task(nexus_project):
    nexus_project.write("""
        from nexus_core import task, run

        @task
        def never():
            run("exit 7", retries=2, retry_delay=0.01)
    """)
    out = nexus_project.run("run", "never", "--format", "json")
    assert out.code == 1
    assert len(out.of("command.start")) == 3
    assert out.of("command.stop")[-1]["exit_code"] == 7


def test_timeout_kills_the_whole_process_group_and_exits_4(nexus_project):
    nexus_project.write("""
        from nexus_core import task, run

        @task
        def hang():
            run("sleep 47.25 & sleep 47.5 ; echo unreachable", timeout=0.5)
    """)
    out = nexus_project.run("run", "hang")
    assert out.code == 4, out
    assert "Command timed out" in out.stderr and "Timeout: 0.5s" in out.stderr
    assert wait_for(lambda: not pgrep("sleep 47.25") and not pgrep("sleep 47.5"), timeout=5)


def test_task_timeout_bounds_all_commands_on_a_host(nexus_project):
    nexus_project.write("""
        from nexus_core import task, run

        @task(timeout=0.6)
        def long():
            run("sleep 0.4")
            run("sleep 0.4")
            run("touch never.txt")
    """)
    out = nexus_project.run("run", "long")
    assert out.code == 4, out
    assert "task timeout of 0.6s reached" in out.stderr
    assert not (nexus_project.root / "never.txt").exists()


def test_environment_is_inherited_plus_env_and_cwd_is_the_nexusfile_folder(nexus_project, tmp_path):
    nexus_project.write("""
        from nexus_core import task, run

        @task
        def show():
            run("echo inherited=$FROM_OUTSIDE extra=$EXTRA > env.txt", env={"EXTRA": "yes"})
            run("pwd > pwd.txt")
            run("mkdir -p sub")
            run("pwd > where.txt", cwd="sub")
    """)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = nexus_project.run(
        "run", "show", "-c", str(nexus_project.nexusfile), env={"FROM_OUTSIDE": "here"}, cwd=elsewhere
    )
    assert out.code == 0, out
    root = nexus_project.root
    assert (root / "env.txt").read_text().strip() == "inherited=here extra=yes"
    assert (root / "pwd.txt").read_text().strip() == str(root)
    assert (root / "sub" / "where.txt").exists()


def test_continue_on_error_option_of_run_keeps_the_task_going(nexus_project):
    nexus_project.write("""
        from nexus_core import task, run

        @task
        def tolerant():
            run("exit 1", continue_on_error=True)
            run("touch reached.txt")
    """)
    out = nexus_project.run("run", "tolerant")
    assert out.code == 0, out
    assert (nexus_project.root / "reached.txt").exists()


def test_dry_run_executes_nothing_and_shows_flags(nexus_project):
    nexus_project.write("""
        from nexus_core import task, run

        @task
        def build():
            run("touch built.txt", retries=5, timeout=30)

        @task(deps=[build])
        def install():
            run("touch installed.txt", sudo=True)
            run("touch as-user.txt", user="postgres")
    """)
    out = nexus_project.run("run", "install", "--dry-run")
    assert out.code == 0, out
    assert not list(nexus_project.root.glob("*.txt")), "a dry run must not execute anything"
    assert "DRY RUN" in out.stdout
    assert "Phase 1" in out.stdout and "Phase 2" in out.stdout
    assert "[retries:5]" in out.stdout and "[timeout:30s]" in out.stdout
    assert "[sudo]" in out.stdout and "[sudo:postgres]" in out.stdout
    js = nexus_project.run("run", "install", "-n", "--format", "json")
    plan = json.loads(js.stdout)["plan"]
    assert plan["phases"] == [["build"], ["install"]]
    assert plan["tasks"]["build"]["hosts"][0]["commands"][0]["retries"] == 5
    assert not list(nexus_project.root.glob("*.txt"))


def test_body_is_evaluated_once_per_host_at_plan_time(nexus_project):
    nexus_project.write("""
        from nexus_core import task, run, hostname

        @task(on=["local"])
        def where():
            run("echo planned-for-" + hostname())
    """)
    out = nexus_project.run("run", "where", "-v")
    assert out.code == 0, out
    assert "planned-for-" in out.stdout


def test_missing_working_directory_is_a_clear_failure(nexus_project):
    nexus_project.write("""
        from nexus_core import task, run

        @task
        def lost():
            run("true", cwd="does/not/exist")
    """)
    out = nexus_project.run("run", "lost")
    assert out.code == 1
    assert "working directory" in out.stderr and "does/not/exist" in out.stderr


CHAIN = """
from nexus_core import task, run

@task
def root():
    run("true")

@task(deps=[root])
def broken():
    run("exit 7")

@task(deps=[broken])
def child():
    run("touch child.txt")

@task(deps=[child, root])
def grandchild():
    run("touch grandchild.txt")

@task(deps=[root])
def sibling():
    run("sleep 0.3; touch sibling.txt")

@task(deps=[sibling])
def nephew():
    run("touch nephew.txt")
"""


def test_a_failure_skips_its_whole_subtree_with_the_reason_and_spares_the_rest(nexus_project):
    nexus_project.write(CHAIN)
    out = nexus_project.run("run", "grandchild", "nephew", "--continue-on-error", "--format", "json")
    assert out.code == 1, out
    stops = {e["task"]: e for e in out.of("task.stop")}
    assert stops["broken"]["status"] == "failed"
    assert (stops["child"]["status"], stops["child"]["reason"]) == ("skipped", "dependency 'broken' failed")
    assert stops["grandchild"]["reason"] == "dependency 'child' was skipped"
    assert stops["nephew"]["status"] == "ok" and (nexus_project.root / "nephew.txt").exists()
    # Without --continue-on-error the nephew is not started once broken failed.
    out = nexus_project.run("run", "grandchild", "nephew", "--format", "json")
    stops = {e["task"]: e for e in out.of("task.stop")}
    assert stops["nephew"]["reason"] == "the run stopped after a failure"
    assert stops["sibling"]["status"] == "ok", "a running task finishes"


def test_large_output_on_both_streams_is_read_whole_and_in_order(nexus_project):
    nexus_project.write(
        """
from nexus_core import task, run

@task
def loud():
    run("i=0; while [ $i -lt 3000 ]; do echo out-$i; echo err-$i >&2; i=$((i+1)); done; printf 'no-newline-é'")
"""
    )
    out = nexus_project.run("run", "loud", "--format", "json")
    assert out.code == 0, out
    lines = [(e["stream"], e["line"]) for e in out.of("command.output")]
    assert [line for s, line in lines if s == "stdout"] == [f"out-{i}" for i in range(3000)] + ["no-newline-é"]
    assert [line for s, line in lines if s == "stderr"] == [f"err-{i}" for i in range(3000)]


def test_multibyte_characters_split_across_reads_are_decoded_whole():
    from collections import deque

    from nexus_core.executors.local import LineStream

    got: list[str] = []
    stream = LineStream("stdout", lambda _s, line: got.append(line), deque(maxlen=5))
    for byte in "héllo wörld\r\nlast ü".encode():
        stream.feed(bytes([byte]))
    stream.feed(b"\xff\n")  # not UTF-8: replaced, never an exception
    stream.finish()
    assert got == ["héllo wörld", "last ü\ufffd"]


def test_a_single_huge_line_is_read_in_linear_time_with_bounded_memory(nexus_project):
    """A 40 MB progress bar without a newline: shown capped, and nexus's peak memory stays small."""
    import subprocess
    import sys

    nexus_project.write(
        """
from nexus_core import task, run

@task
def bar():
    run("head -c 40000000 /dev/zero | tr '\\\\0' x; printf '\\\\r100%%\\\\n'; echo after")
"""
    )
    probe = (
        "import resource, subprocess, sys\n"
        "p = subprocess.run([sys.executable, '-m', 'nexus_core', 'run', 'bar', '--format', 'json'],"
        " capture_output=True, text=True)\n"
        "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "sys.stdout.write(p.stdout)\n"
    )
    env = {**__import__("os").environ, **nexus_project.env}
    done = subprocess.run([sys.executable, "-c", probe], cwd=nexus_project.root, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    head, _, rest = done.stdout.partition("\n")
    code, peak_kb = (int(x) for x in head.split())
    assert code == 0, done
    assert peak_kb < 150_000, f"nexus peaked at {peak_kb // 1024} MB for a 40 MB line"
    lines = [json.loads(x)["line"] for x in rest.splitlines() if '"command.output"' in x]
    assert lines[-1] == "after" and lines[0].endswith("more characters not shown]"), [x[-80:] for x in lines]


def test_a_multi_line_command_stops_at_its_first_failing_line(nexus_project):
    nexus_project.write(
        """
from nexus_core import task, run

@task
def script():
    run('''
echo first
false
echo never
''')
"""
    )
    out = nexus_project.run("run", "script", "--format", "json")
    assert out.code == 1, out
    lines = [e["line"] for e in out.of("command.output")]
    assert lines == ["first"], lines


def test_a_background_job_does_not_turn_a_finished_command_into_a_timeout(nexus_project):
    nexus_project.write(
        """
from nexus_core import task, run

@task
def daemon():
    run("sleep 20.17 & echo started", timeout=5)
"""
    )
    out = nexus_project.run("run", "daemon", "--format", "json")
    assert out.code == 0, out
    assert [e["line"] for e in out.of("command.output")] == ["started"]
    pids = pgrep("sleep 20.17")
    for pid in pids:
        __import__("os").kill(pid, 9)


def test_a_rolling_batch_given_as_text_says_how_to_write_it_and_each_problem_is_said_once(nexus_project):
    """batch="2" (as env() returns it) is neither a count nor a percentage: the message says
    both ways to write it; a batch of another type is reported once, by the option's check."""
    task = '@task(strategy="rolling", batch={})\ndef deploy():\n    run("true")\n'
    nexus_project.write("from nexus_core import run, task\n\n" + task.format('"2"'))
    out = nexus_project.run("validate")
    assert out.code == 2, out
    said = out.stdout + out.stderr
    assert "batch '2' is text: write batch=2 for 2 hosts at a time, or batch=\"2%\" for a percentage" in said, out
    for value in ("2.5", "True"):
        nexus_project.write("from nexus_core import run, task\n\n" + task.format(value))
        out = nexus_project.run("validate")
        assert out.code == 2, out
        said = out.stdout + out.stderr
        assert "Validation failed\n" in said and said.count("task 'deploy'") == 1, out  # not "(2 problems)"
